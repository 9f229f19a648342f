"""Issue 15: several `wirewatch run` nodes on one PostgreSQL, as real processes.

Run by hand (needs PostgreSQL; makes and drops databases named <db>_bench*):

    WIREWATCH_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/ww15 \\
        .venv/bin/python bench/bench_nodes.py [--only latency,throughput,memory] [--short]

* ``latency``: alert latency from a new item appearing on the feed server to the local
  Slack server accepting its alert, p50/p99, 200 feeds at a 60 s poll interval, 1 and 3
  nodes. Floor (same run): from the item appearing to the first request for its feed
  after that, the wait the poll interval alone imposes.
* ``throughput``: entries per second from fetch to stored, 300 feeds x 20 new items
  appearing at once, 1, 2 and 3 nodes; with each node's catch-up time per ingest batch
  (``wirewatch_catch_up_seconds`` from its /metrics). Floor (same run): one process
  fetching the same bodies with aiohttp and parsing them with feedparser, nothing stored.
* ``memory``: RSS per node (main process and its parse worker) with 10,000 feeds and a
  100,000-entry story window, 3 nodes. Floor (same run): a Python process that has
  imported Wirewatch and its libraries.

The feed server (tests/feedserver.py) and the Slack server (tests/fakeslack.py) run in
this process, in threads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from common import build_feed_bodies, machine, percentile, proc_status_mb, table

from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import (
    free_port,
    fresh_database,
    http_get,
    metric_samples,
    pg_run,
    start_wirewatch,
)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- plumbing


def write_config(
    root: Path, feeds: list[dict[str, Any]], poll: dict[str, Any], terms: list[str]
) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    settings = {
        "poll": {"per_host": 50, "per_host_spacing": "0s", "parse_workers": 1, **poll},
        "delivery": {"per_channel_interval": "0s", "burst_max": 100000},
        "log_level": "INFO",
    }
    (cfg / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    watch = {"watchlists": [{"name": "bench", "terms": terms}]}
    (cfg / "watchlists.yaml").write_text(yaml.safe_dump(watch), encoding="utf-8")
    return cfg


class Nodes:
    """k `wirewatch run` processes on one database, each with /metrics on its own port."""

    def __init__(self, cfg: Path, dsn: str, slack: FakeSlack, logdir: Path) -> None:
        self.cfg, self.dsn, self.slack, self.logdir = cfg, dsn, slack, logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bases: list[str] = []

    def start(self, k: int, timeout: float = 300) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_D"))}
        env.update(SLACK_BOT_TOKEN="xoxb-test-token", SLACK_API_URL=self.slack.base_url)
        for i in range(k):
            port = free_port()
            log = (self.logdir / f"node{len(self.procs)}.log").open("wb")
            args = ["run", "--config", str(self.cfg), "--database", self.dsn]
            args += ["--http", f"127.0.0.1:{port}"]
            self.procs.append(start_wirewatch(args, env, stdout=subprocess.DEVNULL, stderr=log))
            self.bases.append(f"http://127.0.0.1:{port}")
            self.wait_ready(len(self.bases) - 1, timeout)  # (one at a time: migrations)
            del i

    def wait_ready(self, i: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while http_get(self.bases[i] + "/readyz")[0] != 200:
            if self.procs[i].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node {i} did not get ready; see {self.logdir}")
            time.sleep(0.5)

    def metrics(self, i: int) -> dict[str, float]:
        _status, text = http_get(self.bases[i] + "/metrics")
        return {name: v for (name, labels), v in metric_samples(text).items() if not labels}

    def rss_mb(self, i: int) -> tuple[float, float]:
        """(main process, its children) VmRSS in MB."""
        pid = self.procs[i].pid
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return proc_status_mb(pid, "VmRSS"), sum(proc_status_mb(c, "VmRSS") for c in kids)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(90)
            except subprocess.TimeoutExpired:
                p.kill()


# --------------------------------------------------------------------------- latency


def latency(dsn: str, k: int, *, feeds: int, items: int, spread: float) -> dict[str, Any]:
    rng = random.Random(k)
    with FeedServer() as server, FakeSlack() as slack, tempfile.TemporaryDirectory() as tmp:
        content: dict[int, list[dict[str, str]]] = {
            f: [{"title": f"Weather report {f}", "guid": f"w{f}"}] for f in range(feeds)
        }
        for f in range(feeds):
            server.set(f"/f{f}.xml", rss(f"Outlet {f}", content[f]), etag='"0"')
        cfg = write_config(
            Path(tmp),
            [
                {
                    "name": f"f{f}",
                    "source": f"Outlet {f}",
                    "url": server.url(f"/f{f}.xml"),
                    "interval": "60s",
                }
                for f in range(feeds)
            ],
            {},
            ["water accord"],
        )
        with fresh_database(dsn, f"benchlat{k}") as db:
            nodes = Nodes(cfg, db, slack, Path(tmp))
            try:
                nodes.start(k)
                time.sleep(65)  # every feed polled once: now on its 60 s rhythm
                appeared: dict[str, tuple[int, float, float]] = {}
                t0 = time.monotonic()
                for n, at in enumerate(sorted(rng.uniform(0, spread) for _ in range(items))):
                    time.sleep(max(0.0, t0 + at - time.monotonic()))
                    f = rng.randrange(feeds)
                    title = f"Minister {n} signs water accord with Outlet {f} city"
                    content[f].append({"title": title, "guid": f"n{n}"})
                    server.set(f"/f{f}.xml", rss(f"Outlet {f}", content[f]), etag=f'"{n + 1}"')
                    appeared[title] = (f, time.monotonic(), time.time())
                deadline = time.monotonic() + 90
                while len(slack.messages) < items and time.monotonic() < deadline:
                    time.sleep(0.5)
            finally:
                nodes.stop()
        accepted = {}
        for m in slack.messages:
            for title in appeared:
                if title in m["text"] and not m["thread_ts"]:
                    accepted[title] = float(m["ts"])
        lat, floor = [], []
        for title, (f, mono, wall) in appeared.items():
            if title not in accepted:
                continue
            polls = [r.at for r in server.hits(f"/f{f}.xml") if r.at >= mono]
            lat.append(accepted[title] - wall)
            floor.append(polls[0] - mono if polls else float("nan"))
    return {"k": k, "alerted": len(lat), "items": items, "lat": lat, "floor": floor}


# --------------------------------------------------------------------------- throughput


def _baseline(bodies: list[bytes], base: str) -> float:
    """One process: aiohttp fetches every body (20 at a time), feedparser parses each;
    nothing is stored. Seconds."""
    import aiohttp
    import feedparser

    async def run() -> float:
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(20)
        async with aiohttp.ClientSession() as http:

            async def one(i: int) -> None:
                async with sem, http.get(f"{base}/f{i}.xml") as resp:
                    feedparser.parse(await resp.read(), response_headers=dict(resp.headers))

            await asyncio.gather(*(one(i) for i in range(len(bodies))))
        return time.perf_counter() - t0

    return asyncio.run(run())


def throughput(dsn: str, k: int, *, feeds: int, per_feed: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    bodies = build_feed_bodies(feeds, per_feed, now=datetime.now(UTC), seed=k)
    with FeedServer() as server, FakeSlack() as slack, tempfile.TemporaryDirectory() as tmp:
        for f in range(feeds):
            server.set(f"/f{f}.xml", rss(f"Outlet {f}", []), etag='"empty"')
        cfg = write_config(
            Path(tmp),
            [
                {
                    "name": f"f{f}",
                    "source": f"Outlet {f}",
                    "url": server.url(f"/f{f}.xml"),
                    "interval": "5s",
                }
                for f in range(feeds)
            ],
            {"tick": "1s", "min_interval": "1s", "concurrency": 20},
            ["Kim Jong Un"],
        )
        with fresh_database(dsn, f"benchtp{k}") as db:
            nodes = Nodes(cfg, db, slack, Path(tmp))
            try:
                nodes.start(k)
                time.sleep(8)  # every feed polled (empty): due every 5 s from now
                for f in range(feeds):
                    server.set(f"/f{f}.xml", bodies[f], etag='"full"')
                published = time.monotonic()
                first = None
                total = feeds * per_feed
                while True:
                    n = pg_run(db, fetch="SELECT count(*) AS n FROM entries")[0]["n"]
                    if first is None:
                        hits = [r.at for r in server.requests if r.at >= published]
                        first = min(hits) if hits else None
                    if n >= total or time.monotonic() - published > 600:
                        break
                    time.sleep(0.2)
                done = time.monotonic()
                metrics = [nodes.metrics(i) for i in range(k)]
            finally:
                nodes.stop()
        floor = _baseline(bodies, f"http://127.0.0.1:{server.port}")
    seconds = done - (first or published)
    catch = [
        (m.get("wirewatch_catch_up_seconds_sum", 0.0), m.get("wirewatch_catch_up_seconds_count", 0))
        for m in metrics
    ]
    return {
        "k": k,
        "entries": n,
        "seconds": seconds,
        "rate": n / seconds,
        "floor_rate": n / floor,
        "catch_up_ms": [1000 * s / c if c else 0.0 for s, c in catch],
        "batches": [int(c) for _, c in catch],
    }


# --------------------------------------------------------------------------- memory


def memory(dsn: str, k: int, *, feeds: int, entries: int) -> dict[str, Any]:
    from bench_restart import build

    with FeedServer() as server, FakeSlack() as slack, tempfile.TemporaryDirectory() as tmp:
        server.set("/empty.xml", rss("empty", []), etag='"e"')
        cfg = write_config(
            Path(tmp),
            [
                {
                    "name": f"outlet-{i}",
                    "source": f"Outlet {i}",
                    "url": server.url(f"/empty.xml?f={i}"),
                }
                for i in range(feeds)
            ],
            {},
            ["Kim Jong Un"],
        )
        with fresh_database(dsn, "benchmem") as db:
            settings = yaml.safe_load((cfg / "settings.yaml").read_text())
            settings["database_url"] = db
            (cfg / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
            built, _stories = asyncio.run(build(cfg, entries))
            # (build gives explicit ids: move PostgreSQL's sequences past them)
            pg_run(
                db,
                *(
                    f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))"
                    for t in ("feeds", "stories", "entries")
                ),
            )
            nodes = Nodes(cfg, db, slack, Path(tmp))
            try:
                t0 = time.monotonic()
                nodes.start(k)
                ready = time.monotonic() - t0
                time.sleep(20)  # the first polls of 10,000 feeds under way
                sizes = [nodes.rss_mb(i) for i in range(k)]
                window = [
                    line.split("; ")[-1]
                    for line in (Path(tmp) / "node0.log").read_text().splitlines()
                    if "in the story window" in line
                ]
                loaded = [nodes.metrics(i) for i in range(k)]
            finally:
                nodes.stop()
    floor = subprocess.run(
        [
            sys.executable,
            "-c",
            "import monitor.cli, monitor.scheduler, monitor.scheduler.http; "
            "print(open('/proc/self/status').read())",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    floor_mb = next(
        int(line.split()[1]) / 1024 for line in floor.splitlines() if line.startswith("VmRSS")
    )
    del loaded
    return {
        "k": k,
        "rss": sizes,
        "window": window,
        "floor_mb": floor_mb,
        "ready_s": ready,
        "build_s": built,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="latency,throughput,memory")
    ap.add_argument("--short", action="store_true", help="shorter runs (fewer items)")
    args = ap.parse_args()
    dsn = os.environ.get("WIREWATCH_TEST_POSTGRES_DSN")
    if not dsn:
        raise SystemExit("set WIREWATCH_TEST_POSTGRES_DSN (a PostgreSQL server to bench on)")
    only = set(args.only.split(","))
    print(f"machine: {machine()}\n")
    if "latency" in only:
        rows = []
        for k in (1, 3):
            items, spread = (30, 90.0) if args.short else (60, 240.0)
            r = latency(dsn, k, feeds=200, items=items, spread=spread)
            lat, floor = r["lat"], [f for f in r["floor"] if f == f]
            after = [a - b for a, b in zip(lat, r["floor"], strict=True) if b == b]
            rows.append(
                [
                    k,
                    f"{r['alerted']}/{r['items']}",
                    f"{statistics.median(lat):.1f} s",
                    f"{percentile(lat, 99):.1f} s",
                    f"{statistics.median(floor):.1f} s",
                    f"{percentile(floor, 99):.1f} s",
                    f"{statistics.median(lat) / statistics.median(floor):.2f}",
                    f"{statistics.median(after):.2f} s",
                ]
            )
            print(f"latency k={k}: {json.dumps({x: r[x] for x in ('alerted', 'items')})}")
        print(
            table(
                [
                    "nodes",
                    "alerted",
                    "p50",
                    "p99",
                    "floor p50",
                    "floor p99",
                    "p50 / floor",
                    "p50 after the poll",
                ],
                rows,
            )
        )
    if "throughput" in only:
        rows = []
        for k in (1, 2, 3):
            r = throughput(dsn, k, feeds=300, per_feed=10 if args.short else 20)
            rows.append(
                [
                    k,
                    r["entries"],
                    f"{r['seconds']:.1f} s",
                    f"{r['rate']:.0f}",
                    f"{r['floor_rate']:.0f}",
                    f"{r['rate'] / r['floor_rate']:.2f}",
                    ", ".join(f"{ms:.0f}" for ms in r["catch_up_ms"]),
                    ", ".join(str(b) for b in r["batches"]),
                ]
            )
        print(
            table(
                [
                    "nodes",
                    "entries",
                    "fetch→stored",
                    "entries/s",
                    "floor entries/s",
                    "ratio",
                    "catch-up ms/batch per node",
                    "batches per node",
                ],
                rows,
            )
        )
    if "memory" in only:
        r = memory(dsn, 3, feeds=10000, entries=20000 if args.short else 100000)
        rows = [
            [i, f"{main:.0f} MB", f"{kids:.0f} MB", f"{main / r['floor_mb']:.1f}"]
            for i, (main, kids) in enumerate(r["rss"])
        ]
        print(
            f"memory: floor {r['floor_mb']:.0f} MB (a process that imported Wirewatch); "
            f"build {r['build_s']:.0f} s; 3 nodes ready in {r['ready_s']:.0f} s; node 0: "
            f"{', '.join(r['window'])}"
        )
        print(table(["node", "RSS main", "RSS parse worker", "main / floor"], rows))


if __name__ == "__main__":
    main()
