"""Several real `wirewatch run` processes: three nodes sharing one fresh PostgreSQL
database with a node killed half-way, and a SIGTERM in the middle of a busy cycle.

What is checked is what people see: the Slack channel (every story alerted exactly
once, nothing lost, nothing twice), the feed server's log (every feed polled within its
interval plus the lease, the killed node's feeds too) and each node's /metrics."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ENV
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, drip_handler, rss
from tests.util import (
    free_port,
    fresh_database,
    http_get,
    metric_samples,
    pg_run,
    pubdate,
    start_wirewatch,
    wirewatch,
    write_config,
)

INTERVAL = 3.0  # every feed's poll interval
LEASE = 6.0  # poll.lease: how long a killed node's feeds stay claimed
ALIVE = 15.0  # wirewatch status: a node is alive while it ticked within max(3 ticks, 15 s)
SLACK_ENV = {"SLACK_BOT_TOKEN": "xoxb-test-token"}


def _env(slack: FakeSlack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_D"))}
    return {**env, **SLACK_ENV, "SLACK_API_URL": slack.base_url}


def _query(dsn: str, sql: str) -> list[Any]:
    return pg_run(dsn, fetch=sql)


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.3) -> None:
    began = time.monotonic()
    while not check():
        if time.monotonic() > began + timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)
    print(f"{what}: {time.monotonic() - began:.1f} s")  # (shown with -s, or on failure)


def _metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = http_get(base + "/metrics")
    assert status == 200, text
    return metric_samples(text)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A database of its own, made for the test and dropped after it."""
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    with fresh_database(dsn, "nodes") as url:
        yield url


# --------------------------------------------------------------------------- 3 nodes

SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "vas", "zor", "quin", "bel", "dra", "fen", "gol"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


class _World:
    """300 feeds; 100 stories, each carried by 2-5 feeds (the same headline under each
    outlet's own link), arriving in 4 phases."""

    FEEDS = 300
    STORIES = 100
    PHASES = 4

    def __init__(self, server: FeedServer) -> None:
        rng = random.Random(15)
        self.server = server
        names: set[str] = set()
        self.titles: list[str] = []
        while len(self.titles) < self.STORIES:
            a, b, c = _name(rng), _name(rng), _name(rng)
            if {a, b, c} & names or len({a, b, c}) < 3:
                continue
            names |= {a, b, c}
            self.titles.append(f"{a} and {b} sign water accord in {c}")
        self.carriers = [rng.sample(range(self.FEEDS), rng.randint(2, 5)) for _ in self.titles]
        self.phase_of = [i * self.PHASES // self.STORIES for i in range(self.STORIES)]

    def publish(self, phase: int) -> None:
        items: dict[int, list[dict[str, str]]] = {f: [] for f in range(self.FEEDS)}
        for story, feeds in enumerate(self.carriers):
            if self.phase_of[story] > phase:
                continue
            for f in feeds:
                items[f].append(
                    {
                        "title": self.titles[story],
                        "link": f"https://outlet{f}.example/news/{story}",
                        "guid": f"s{story}-f{f}",
                        "description": f"Officials said the {self.titles[story]} deal holds.",
                        "pubDate": pubdate(0.05),
                    }
                )
        for f in range(self.FEEDS):
            body = rss(f"Outlet {f}", items[f])
            self.server.set(f"/f{f}.xml", body, etag=f'"p{phase}"')

    def entries_until(self, phase: int) -> int:
        return sum(len(c) for s, c in enumerate(self.carriers) if self.phase_of[s] <= phase)

    def stories_until(self, phase: int) -> int:
        return sum(1 for p in self.phase_of if p <= phase)


@pytest.mark.postgres
def test_three_nodes_share_the_feeds_and_survive_a_kill(tmp_path: Path, fresh_pg: str) -> None:
    started = time.monotonic()
    with FeedServer() as server, FakeSlack() as slack:
        world = _World(server)
        world.publish(0)
        cfg = write_config(
            tmp_path,
            feeds=[
                {
                    "name": f"f{i}",
                    "source": f"Outlet {i}",
                    "url": server.url(f"/f{i}.xml"),
                    "interval": f"{INTERVAL:g}s",
                }
                for i in range(world.FEEDS)
            ],
            watchlists=[{"name": "water", "terms": ["water accord"]}],
            settings={
                "poll": {
                    "tick": "1s",
                    "min_interval": "1s",
                    "lease": f"{LEASE:g}s",
                    "per_host": 50,
                    "per_host_spacing": "0s",
                    "parse_workers": 1,
                },
                "delivery": {"burst_max": 1000},
            },
        )
        env = _env(slack)
        ports = [free_port() for _ in range(3)]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        logs = [tmp_path / f"node{i}.log" for i in range(3)]
        procs: list[subprocess.Popen[bytes]] = []

        def start(i: int) -> None:
            with logs[i].open("wb") as log:
                args = ["run", "--config", str(cfg), "--database", fresh_pg]
                args += ["--http", f"127.0.0.1:{ports[i]}"]
                procs.append(start_wirewatch(args, env, stdout=subprocess.DEVNULL, stderr=log))

        def ready(i: int) -> Callable[[], bool]:
            return lambda: http_get(bases[i] + "/readyz")[0] == 200

        def settled(phase: int) -> Callable[[], bool]:
            def check() -> bool:
                rows = _query(
                    fresh_pg,
                    "SELECT (SELECT count(*) FROM entries) AS e, (SELECT count(*) FROM alerts "
                    "WHERE state IN ('pending', 'sending')) AS q, (SELECT count(*) FROM alerts "
                    "WHERE kind = 'new' AND state = 'sent') AS s",
                )
                e, q, s = rows[0]["e"], rows[0]["q"], rows[0]["s"]
                return bool(e == world.entries_until(phase) and q == 0) and bool(
                    s == world.stories_until(phase)
                )

            return check

        try:
            start(0)  # the first node makes the tables
            _wait("node 0 ready", ready(0), 60)
            start(1)
            start(2)
            _wait("nodes 1 and 2 ready", lambda: ready(1)() and ready(2)(), 60)
            _wait("phase 0 stored and alerted", settled(0), 40)
            world.publish(1)
            _wait("phase 1 stored and alerted", settled(1), 40)
            # node 2 is between two phases (its counters final for what it did), then
            # killed without warning: its leases stay until they run out
            checked_until = time.monotonic()  # (set again below)
            victim = _metrics(bases[2])
            procs[2].send_signal(signal.SIGKILL)
            procs[2].wait(10)
            killed_at = time.monotonic()
            for phase in (2, 3):
                world.publish(phase)
                _wait(f"phase {phase} stored and alerted", settled(phase), 40)
            # every feed polled again after the kill, by the nodes left; and the killed
            # node's last tick old enough for status to count it gone
            wait = max(INTERVAL + LEASE, ALIVE) - (time.monotonic() - killed_at) + 2
            time.sleep(max(0.0, wait))
            checked_until = time.monotonic()
            survivors = [_metrics(bases[0]), _metrics(bases[1])]
            status = wirewatch(
                "status", "--json", "--config", str(cfg), "--database", fresh_pg, env=SLACK_ENV
            )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in procs]
        ended = time.monotonic()
        print(f"stopped in {ended - checked_until:.1f} s; {ended - started:.1f} s in all")

        # -- the channel: every story exactly once; no alert posted twice
        top = [m for m in slack.messages if not m["thread_ts"]]
        assert len(top) == world.STORIES, [m["text"][:60] for m in top]
        for title in world.titles:
            assert sum(title in m["text"] for m in top) == 1, title
        alert_ids = [m["metadata"]["event_payload"]["alert_id"] for m in slack.messages]
        assert len(alert_ids) == len(set(alert_ids))
        db = _query(
            fresh_pg,
            "SELECT (SELECT count(*) FROM entries) AS entries, (SELECT count(*) FROM stories) "
            "AS stories, (SELECT count(*) FROM matches WHERE watchlist = 'water') AS matches, "
            "(SELECT count(*) FROM alerts WHERE state = 'sent') AS sent, "
            "(SELECT count(*) FROM alerts WHERE state <> 'sent') AS unsent",
        )[0]
        assert db["stories"] == world.STORIES and db["unsent"] == 0
        assert db["entries"] == world.entries_until(world.PHASES - 1)

        # -- the feed server: no feed waited longer than its interval plus the lease
        limit = INTERVAL + LEASE + 4.0  # (+ a tick and a loaded machine's slack)
        hits: dict[str, list[float]] = {}
        for r in server.requests:
            hits.setdefault(r.path, []).append(r.at)
        assert len(hits) == world.FEEDS
        gaps = {
            path: max(b - a for a, b in zip(times, [*times[1:], checked_until], strict=False))
            for path, times in hits.items()
        }
        late = {p: round(g, 1) for p, g in gaps.items() if g > limit}
        detail = {p: [round(t - killed_at, 1) for t in hits[p]] for p in list(late)[:3]}
        assert not late, (late, detail)

        # -- /metrics: the nodes' counters add up to the database
        def total(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
            return sum(m.get((name, labels), 0.0) for m in [*survivors, victim])

        assert total("wirewatch_entries_stored_total") == db["entries"]
        assert total("wirewatch_stories_total", (("outcome", "new"),)) == db["stories"]
        joined = total("wirewatch_stories_total", (("outcome", "joined"),))
        assert joined == db["entries"] - db["stories"]
        assert total("wirewatch_matches_total", (("watchlist", "water"),)) == db["matches"]
        assert total("wirewatch_alerts_sent_total", (("sink", "slack"),)) == db["sent"]
        for m in (*survivors, victim):  # every node did part of the work
            assert m.get(("wirewatch_polls_total", (("result", "ok"),)), 0) > 0
        for m in survivors:
            assert m[("wirewatch_alerts_pending", (("sink", "slack"),))] == 0
            assert m[("wirewatch_feeds_overdue", ())] == 0

        # -- status: the two nodes left are alive, the killed one is not
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert sum(n["alive"] for n in report["nodes"]) == 2, report["nodes"]
        assert report["outbox"]["queued"] == 0
        assert codes[:2] == [0, 0], [p.read_text()[-2000:] for p in logs[:2]]
    assert ended - started < 90, f"took {ended - started:.0f} s"


# --------------------------------------------------------------------------- SIGTERM

STOP_DEADLINE = 45.0  # well within systemd's TimeoutStopSec=90 and Kubernetes' grace


def test_sigterm_during_a_busy_cycle_exits_in_time_and_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM while polls are in flight (slow servers), entries are being stored and
    alerts are being sent (a slow Slack): exit 0 within the deadline; a run afterwards
    alerts every remaining story, and no story is alerted twice."""
    n = 60
    with FeedServer() as server, FakeSlack() as slack:
        feeds = []
        titles = []
        for i in range(n):
            title = f"Minister {i} signs water accord number {i}"
            titles.append(title)
            body = rss(
                f"Outlet {i}",
                [
                    {
                        "title": title,
                        "guid": f"g{i}",
                        "link": f"https://o{i}.example/a",
                        "pubDate": pubdate(0.1),
                    }
                ],
            )
            if i % 3 == 0:  # a slow server: about 3 s per poll
                server.set(f"/f{i}.xml", handler=drip_handler(body.encode(), 3.0 / len(body)))
            else:
                server.set(f"/f{i}.xml", body)
            feeds.append(
                {"name": f"f{i}", "source": f"Outlet {i}", "url": server.url(f"/f{i}.xml")}
            )
        cfg = write_config(
            tmp_path,
            feeds=feeds,
            watchlists=[{"name": "water", "terms": ["water accord"]}],
            settings={"poll": {"tick": "1s"}, "delivery": {"burst_max": 1000}},
        )
        slack.set_delay(0.15)  # each post takes a while: some are queued at the stop
        env = _env(slack)
        log = tmp_path / "run.log"
        with log.open("wb") as err:
            args = ["run", "--config", str(cfg)]
            proc = start_wirewatch(args, env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            slack.wait_for(3, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            at_stop = len(slack.messages)
            try:
                code = proc.wait(STOP_DEADLINE + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        took = time.monotonic() - stopping
        text = log.read_text()
        assert code == 0, text[-3000:]
        assert took < STOP_DEADLINE, f"stopped in {took:.0f} s"
        assert "stopped" in text
        assert at_stop < n  # stopped mid-cycle: alerts were still to be sent
        slack.set_delay(0)
        res = wirewatch(
            "once", "--config", str(cfg), env={**SLACK_ENV, "SLACK_API_URL": slack.base_url}
        )
        assert res.returncode == 0, res.stderr
        top = [m for m in slack.messages if not m["thread_ts"]]
        for title in titles:
            assert sum(title in m["text"] for m in top) == 1, title
        assert len(top) == n
