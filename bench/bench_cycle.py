"""Issue 5: one full ``wirewatch once`` cycle over 1,000 feeds x 50 items, cold and warm.

Run by hand:  .venv/bin/python bench/bench_cycle.py [--feeds 1000] [--items 50]
              [--concurrency 100] [--no-cli] [--profile]

A local aiohttp.web server in its own process (forked before anything is measured, so
it never takes the measured process's CPU or memory) serves ``/feed/{i}``: realistic
news text spliced from the real headlines in ../shared/data/captures (synthetic text,
with a notice, when that data is absent), a fifth of each feed's items being wire
copies carried by several feeds, each feed with an ETag so a second poll is all 304.

Measured, in this order:

1. in-process, exactly as the CLI and the tests drive it: ``load_config`` ->
   ``open_runtime(notifiers={})`` -> ``startup`` -> ``poll_cycle(all_feeds=True)``:
   fetch, parse (process pool), store (SQLite in a temp dir), dedupe, match (4
   watchlists, 33 terms), alerts queued in the outbox (no notifier: they stay queued).
   Cold (empty database), then warm (same runtime, every feed answers 304).
   CPU = this process (RUSAGE_SELF) + the parse workers (/proc/PID/stat, read while
   they are alive). Peak memory = ru_maxrss of this process and VmHWM of each worker.
2. the floor, same URLs and concurrency: plain aiohttp GET + read(); and plain
   aiohttp + ``feedparser.parse`` on each body in this one process (sequential parse).
3. the real CLI, ``.venv/bin/wirewatch once --config DIR``, cold and then warm on the
   same database; alerts go to the console notifier (stdout to a scratch file). CPU
   and peak RSS from ``os.wait4`` (the CLI and its reaped parse workers).

All feeds are on one local host, so the per-host limit is raised to the global one
and per-host spacing set to 0 (a real deployment spreads 1,000 feeds over many hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from common import (
    ROOT,
    WATCHLISTS,
    machine,
    news_pool,
    pool_pids,
    proc_cpu,
    proc_status_mb,
    self_cpu,
    self_maxrss_mb,
    start_feed_server,
    table,
)

COLD_TARGET = 12.0
WARM_TARGET = 1.0


@dataclass
class Row:
    name: str
    wall: float
    cpu_main: float
    cpu_workers: float = 0.0
    peak_mb: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu(self) -> float:
        return self.cpu_main + self.cpu_workers


def write_config(root: Path, urls: list[str], concurrency: int, per_host: int) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    settings = {
        "database_url": f"sqlite:///{root / 'data' / 'wirewatch.db'}",
        "log_level": "WARNING",
        "poll": {
            "concurrency": concurrency,
            "per_host": per_host,
            "per_host_spacing": "0s",
            "parse_workers": int(os.environ.get("BENCH_PARSE_WORKERS", "2")),
        },
        "delivery": {"per_channel_interval": "0s"},
    }
    feeds = [{"name": f"outlet-{i}", "source": f"Outlet {i}", "url": u} for i, u in enumerate(urls)]
    (cfg / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    (cfg / "watchlists.yaml").write_text(
        yaml.safe_dump({"watchlists": WATCHLISTS}, allow_unicode=True), encoding="utf-8"
    )
    return cfg


# --------------------------------------------------------------------------- pipeline


async def pipeline(cfg_dir: Path, profile: bool) -> tuple[list[Row], dict[str, Any]]:
    from sqlalchemy import func
    from sqlmodel import select

    from monitor.config import load_config
    from monitor.pipeline import poll_cycle
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import startup
    from monitor.store.tables import AlertRow, EntryRow, StoryRow

    rows: list[Row] = []
    facts: dict[str, Any] = {}
    cfg = load_config(cfg_dir, env={})
    t0 = time.perf_counter()
    async with open_runtime(cfg, notifiers={}) as rt:
        await startup(rt)
        facts["startup_s"] = time.perf_counter() - t0

        # cold
        cpu0, t0 = self_cpu(), time.perf_counter()
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        cold = await poll_cycle(rt, all_feeds=True)
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
        cpu_main = self_cpu() - cpu0
        pids = pool_pids(rt.pool)
        cpu_workers = sum(proc_cpu(p) for p in pids)  # the workers started in this cycle
        worker_peak = [proc_status_mb(p, "VmHWM") for p in pids]
        peak = self_maxrss_mb()
        statuses = {p.status for p in cold.polls}
        facts["cold_failed"] = [(p.feed, p.error) for p in cold.failed][:5]
        facts["cold_statuses"] = sorted(str(s) for s in statuses)
        rows.append(
            Row(
                "**pipeline cold**: fetch+parse+store+dedupe+match+queue",
                wall,
                cpu_main,
                cpu_workers,
                f"{peak:.0f} (+ workers {', '.join(f'{w:.0f}' for w in worker_peak)})",
                f"{len(cold.polls)} feeds, {cold.new} new entries, {cold.alerts} alerts queued,"
                f" {len(cold.failed)} failed",
            )
        )

        # warm: every feed answers 304
        cpu0, t0 = self_cpu(), time.perf_counter()
        wcpu0 = sum(proc_cpu(p) for p in pool_pids(rt.pool))
        warm = await poll_cycle(rt, all_feeds=True)
        wall = time.perf_counter() - t0
        n304 = sum(1 for p in warm.polls if p.not_modified)
        rows.append(
            Row(
                "**pipeline warm**: every feed 304",
                wall,
                self_cpu() - cpu0,
                sum(proc_cpu(p) for p in pool_pids(rt.pool)) - wcpu0,
                f"{self_maxrss_mb():.0f}",
                f"{len(warm.polls)} feeds, {n304} answered 304, {warm.new} new",
            )
        )
        async with rt.sessions() as s:
            for name, model in (("entries", EntryRow), ("stories", StoryRow), ("alerts", AlertRow)):
                q = select(func.count()).select_from(model)
                facts[name] = int((await s.exec(q)).one())
    if prof:
        if os.environ.get("BENCH_PROFILE_OUT"):  # full stats, for pstats callers/callees
            prof.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(35)
        facts["profile"] = out.getvalue()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        facts["profile_tottime"] = out.getvalue()
    return rows, facts


# --------------------------------------------------------------------------- floor


async def _fetch_all(
    urls: list[str], concurrency: int, handle: Callable[[bytes, dict[str, str]], Awaitable[int]]
) -> tuple[int, float, float]:
    """Plain concurrent aiohttp GET + read() of every URL, each body then given to
    ``handle``: (the sum of what ``handle`` returned, wall s, this process's CPU s)."""
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    cpu0, t0 = self_cpu(), time.perf_counter()
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def one(url: str) -> int:
            async with sem, session.get(url) as resp:
                body = await resp.read()
                headers = dict(resp.headers)
            return await handle(body, headers)

        total = sum(await asyncio.gather(*(one(u) for u in urls)))
    return total, time.perf_counter() - t0, self_cpu() - cpu0


async def floor(urls: list[str], concurrency: int, parse: bool) -> Row:
    import feedparser

    async def handle(body: bytes, headers: dict[str, str]) -> int:
        return len(feedparser.parse(body, response_headers=headers).entries) if parse else 0

    entries, wall, cpu = await _fetch_all(urls, concurrency, handle)
    if parse:
        return Row(
            "fetch + `feedparser.parse`, one process",
            wall,
            cpu,
            note=f"plain aiohttp, then feedparser on the loop; {entries} entries",
        )
    return Row("**floor**: plain concurrent aiohttp GET + read()", wall, cpu)


def _parse_only(body: bytes, headers: dict[str, str]) -> int:
    """``feedparser.parse`` exactly as the parse workers call it (speed-ups installed by
    the pool's initializer, no sanitizer, no relative-URI rewriting), nothing else."""
    import feedparser

    parsed = feedparser.parse(
        body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    return len(parsed.entries)


async def parse_bound(urls: list[str], concurrency: int, workers: int = 2) -> Row:
    """The least any cycle costs when feedparser parses every body: plain aiohttp fetch,
    then the bodies parsed as the workers parse them, in ``workers`` processes (started
    and warmed before the clock starts), results reduced to a count."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from monitor.parse import install_speedups

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=install_speedups) as ex:
        tiny = b"<rss version='2.0'><channel/></rss>"
        list(ex.map(_parse_only, [tiny] * workers, [{}] * workers))
        loop = asyncio.get_running_loop()
        pids = pool_pids(ex)
        wcpu0 = sum(proc_cpu(p) for p in pids)

        async def handle(body: bytes, headers: dict[str, str]) -> int:
            return await loop.run_in_executor(ex, _parse_only, body, headers)

        entries, wall, cpu = await _fetch_all(urls, concurrency, handle)
        wcpu = sum(proc_cpu(p) for p in pids) - wcpu0
    return Row(
        f"lower bound: fetch + `feedparser.parse` in {workers} processes, as the workers call it",
        wall,
        cpu,
        wcpu,
        note=f"nothing stored, deduped or matched; {entries} entries",
    )


# --------------------------------------------------------------------------- CLI


def cli_once(cfg_dir: Path, label: str, out_file: Path) -> Row:
    exe = ROOT / ".venv" / "bin" / "wirewatch"
    cmd = [str(exe), "once", "--config", str(cfg_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_"))}
    with out_file.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    summary = ""
    lines = out_file.read_bytes().decode("utf-8", "replace").splitlines()
    for line in reversed(err.decode("utf-8", "replace").splitlines()):
        if line.startswith("polled "):
            summary = line
            break
    if proc.returncode != 0:
        summary = f"exit {proc.returncode}: {err.decode()[-400:]}"
    return Row(
        label,
        wall,
        ru.ru_utime + ru.ru_stime,
        peak_mb=f"{ru.ru_maxrss / 1024:.0f}",
        note=f"{summary} ({len(lines)} console lines)",
    )


# --------------------------------------------------------------------------- main


def progress(rows: list[Row]) -> None:
    for r in rows:
        split = f" (main {r.cpu_main:.2f} + workers {r.cpu_workers:.2f})" if r.cpu_workers else ""
        print(
            f"  done: {r.name}: {r.wall:.2f} s wall, {r.cpu:.2f} s CPU{split}; {r.note}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI runs")
    ap.add_argument("--profile", action="store_true", help="cProfile the cold cycle")
    ap.add_argument(
        "--pipeline-only", action="store_true", help="only the in-process cold and warm cycles"
    )
    ap.add_argument(
        "--floors-only",
        action="store_true",
        help="only the floors (plain fetch, fetch + feedparser, the 2-process lower bound)",
    )
    args = ap.parse_args()

    now = datetime.now(UTC)
    _, source = news_pool()
    print(f"feed text: {source}", flush=True)
    server, port, size = start_feed_server(args.feeds, args.items, now)
    urls = [f"http://127.0.0.1:{port}/feed/{i}" for i in range(args.feeds)]
    per_host = min(args.concurrency, 100)
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ww-bench-cycle-") as tmp:
            cfg = write_config(Path(tmp) / "inproc", urls, args.concurrency, per_host)
            if not args.floors_only:
                prow, facts = asyncio.run(pipeline(cfg, args.profile))
                rows += prow
                progress(prow)
            if args.pipeline_only:
                if args.profile:
                    print("\n#### cProfile of the cold cycle (main process only)\n")
                    print(facts["profile"])
                    print(facts["profile_tottime"])
                return
            plain = asyncio.run(floor(urls, args.concurrency, parse=False))
            fp = asyncio.run(floor(urls, args.concurrency, parse=True))
            bound = asyncio.run(parse_bound(urls, args.concurrency))
            rows += [plain, fp, bound]
            progress([plain, fp, bound])
            if args.floors_only:
                return
            if not args.no_cli:
                cli_cfg = write_config(Path(tmp) / "cli", urls, args.concurrency, per_host)
                out = Path(tmp) / "cli-stdout.txt"
                for label in ("cold (process total)", "warm (all 304)"):
                    rows.append(cli_once(cli_cfg, f"`wirewatch once` CLI, {label}", out))
                    progress(rows[-1:])
    finally:
        server.terminate()
        server.join(5)

    cold, warm = prow[0], prow[1]
    print()
    print(f"### Poll cycle: {args.feeds} feeds x {args.items} items ({size / 2**20:.1f} MB of RSS)")
    print()
    print(f"Machine: {machine()}. Feed text: {source}.")
    print(
        f"Local aiohttp.web server in a separate process; all feeds on one host, so "
        f"`poll.concurrency: {args.concurrency}`, `per_host: {per_host}`, "
        f"`per_host_spacing: 0s`; `parse_workers: 2`; SQLite (WAL) in a temp dir; "
        f"{sum(len(w['terms']) for w in WATCHLISTS)} watchlist terms in "
        f"{len(WATCHLISTS)} watchlists; in-process runs queue alerts without a notifier."
    )
    print()
    print(
        table(
            [
                "run",
                "wall s",
                "CPU s (main)",
                "CPU s (parse workers)",
                "CPU s total",
                "peak RSS MB",
                "notes",
            ],
            [
                (
                    r.name,
                    r.wall,
                    r.cpu_main,
                    r.cpu_workers if r.cpu_workers else "-",
                    r.cpu,
                    r.peak_mb or "-",
                    r.note,
                )
                for r in rows
            ],
        )
    )
    print()
    print(
        f"Stored after the cold cycle: {facts['entries']} entries in {facts['stories']} "
        f"stories, {facts['alerts']} alerts queued. `startup()` on the empty database: "
        f"{facts['startup_s']:.2f} s. HTTP statuses seen (cold): {facts['cold_statuses']}."
    )
    if facts["cold_failed"]:
        print(f"Failures (first 5): {facts['cold_failed']}")
    print()
    print(
        table(
            ["ratio", "wall", "CPU"],
            [
                (
                    "pipeline cold / floor (plain aiohttp)",
                    f"{cold.wall / plain.wall:.1f}x",
                    f"{cold.cpu / plain.cpu:.1f}x",
                ),
                (
                    "pipeline cold / fetch + feedparser (one process)",
                    f"{cold.wall / fp.wall:.2f}x",
                    f"{cold.cpu / fp.cpu:.2f}x",
                ),
                (
                    "pipeline cold / lower bound (feedparser alone on 2 processes)",
                    f"{cold.wall / bound.wall:.2f}x",
                    f"{cold.cpu / bound.cpu:.2f}x",
                ),
                (
                    "fetch + feedparser / floor",
                    f"{fp.wall / plain.wall:.1f}x",
                    f"{fp.cpu / plain.cpu:.1f}x",
                ),
            ],
        )
    )
    print()
    ok_cold = "met" if cold.wall <= COLD_TARGET else "MISSED"
    ok_warm = "met" if warm.wall <= WARM_TARGET else "MISSED"
    print(
        f"Targets: cold <= {COLD_TARGET:g} s: {ok_cold} ({cold.wall:.2f} s); "
        f"warm <= {WARM_TARGET:g} s: {ok_warm} ({warm.wall:.2f} s). "
        "For scale (issue 5): newsboat about 25 s cold and 25 s warm on this machine."
    )
    print(
        f"feedparser alone, on both cores, takes {bound.wall:.2f} s of the {COLD_TARGET:g} s "
        f"({bound.cpu:.1f} CPU-s): {max(COLD_TARGET - bound.wall, 0):.2f} s would be left for "
        "fetching, storing, deduping and matching."
    )
    if args.profile:
        print("\n#### cProfile of the cold cycle (main process only)\n")
        print(facts["profile"])
        print(facts["profile_tottime"])


if __name__ == "__main__":
    main()
