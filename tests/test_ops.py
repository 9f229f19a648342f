"""Running it for months: feed-health messages in the ops channel, the daemon's HTTP
endpoints and metrics against the database, JSON logs without secrets, `status`, and the
deployment files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import func, update
from sqlmodel import col, select

from monitor.config import load_config
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import Runtime, open_runtime
from monitor.scheduler import Daemon, startup
from monitor.store.tables import AlertRow, EntryRow, FeedRow, MatchRow, StoryRow
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, raw_handler, redirect_handler, rss
from tests.util import metric_samples, pubdate, seed_feeds, start_wirewatch, wirewatch, write_config

ROOT = Path(__file__).resolve().parents[1]


def _slack_env(slack: FakeSlack) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.base_url}


async def _poll_now(rt: Runtime) -> None:
    """Make every feed due (a failing one too, whatever its backoff) and poll."""
    async with rt.sessions() as session:
        await session.exec(update(FeedRow).values(next_due=rt.clock() - timedelta(seconds=1)))
        await session.commit()
    await poll_cycle(rt)


def _ops_texts(slack: FakeSlack) -> list[str]:
    return [m["text"] for m in slack.messages_in("#ops")]


# --------------------------------------------------------------------- feed health


def test_a_failing_feed_is_told_once_and_once_more_when_it_recovers(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """Five failures in a row: one message in the ops channel, none for the failures
    after it, one when the feed answers again. A silent feed: one message, not repeated
    at the next check. What the channel shows is what is checked."""
    feed_server.set("/flaky.xml", rss("flaky", [{"title": "Weather", "guid": "w1"}]))
    quiet = [{"title": f"Item {i}", "guid": f"q{i}", "pubDate": pubdate(7 + i)} for i in range(10)]
    feed_server.set("/quiet.xml", rss("quiet", quiet))
    cfg_dir = write_config(
        tmp_path,
        feeds=[
            {"name": "flaky", "url": feed_server.url("/flaky.xml")},
            {"name": "quiet", "url": feed_server.url("/quiet.xml")},
        ],
        settings={"slack": {"ops_channel": "#ops"}},
    )

    async def main() -> list[list[str]]:
        seen: list[list[str]] = []
        async with open_runtime(load_config(cfg_dir, env=_slack_env(slack))) as rt:
            await startup(rt)
            daemon = Daemon(rt)
            await _poll_now(rt)
            await daemon._health()  # (hourly: silence)
            await daemon._feed_states()
            seen.append(_ops_texts(slack))
            feed_server.set("/flaky.xml", b"oops", status=500)
            for _ in range(7):
                await _poll_now(rt)
                await daemon._feed_states()
                seen.append(_ops_texts(slack))
            feed_server.set("/flaky.xml", rss("flaky", [{"title": "Weather", "guid": "w1"}]))
            await _poll_now(rt)
            await daemon._health()
            await daemon._feed_states()
            await daemon._feed_states()
            seen.append(_ops_texts(slack))
        return seen

    seen = asyncio.run(main())
    first = seen[0]
    assert len(first) == 1 and "feed quiet has gone silent: no new item for 7.0 h" in first[0]
    # failures 1-4: nothing new; the 5th: one message; 6th and 7th: nothing more
    assert [len(s) for s in seen[1:8]] == [1, 1, 1, 1, 2, 2, 2], seen
    assert "feed flaky is failing: 5 failures in a row" in seen[5][1]
    assert "HTTP 500" in seen[5][1]
    final = seen[-1]
    assert len(final) == 3, final
    assert "feed flaky recovered: healthy again (was failing)" in final[2]


def test_a_gone_feed_and_a_moved_feed_are_told_once_each(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    feed_server.set("/new.xml", rss("new", [{"title": "Weather", "guid": "w1"}]))
    feed_server.set("/old.xml", handler=redirect_handler(feed_server.url("/new.xml")))
    feed_server.set("/gone.xml", handler=raw_handler(410))
    cfg_dir = write_config(
        tmp_path,
        feeds=[
            {"name": "mover", "url": feed_server.url("/old.xml")},
            {"name": "gone", "url": feed_server.url("/gone.xml")},
        ],
        settings={"slack": {"ops_channel": "#ops"}},
    )

    async def main() -> None:
        async with open_runtime(load_config(cfg_dir, env=_slack_env(slack))) as rt:
            await startup(rt)
            daemon = Daemon(rt)
            for _ in range(3):
                await _poll_now(rt)
                await daemon._feed_states()

    asyncio.run(main())
    texts = sorted(_ops_texts(slack))
    assert len(texts) == 2, texts
    assert "feed gone was disabled: 410 Gone" in texts[0]
    assert "feed mover has moved: moved permanently from" in texts[1]
    assert "/new.xml" in texts[1]


def test_feed_health_goes_to_the_console_without_an_ops_channel(
    tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_server.set("/gone.xml", handler=raw_handler(410))
    cfg_dir = write_config(tmp_path, feeds=[{"name": "gone", "url": feed_server.url("/gone.xml")}])

    async def main() -> None:
        async with open_runtime(load_config(cfg_dir, env={})) as rt:
            await startup(rt)
            daemon = Daemon(rt)
            await _poll_now(rt)
            await daemon._feed_states()
            await daemon._feed_states()

    asyncio.run(main())
    out = capsys.readouterr().out
    assert out.count("[feed health]") == 1, out
    assert "feed gone was disabled: 410 Gone" in out


# --------------------------------------------------------------------- endpoints


def test_metrics_agree_with_the_database_and_probes_answer(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    feeds = []
    for path, body in seed_feeds().items():
        feed_server.set(path, body, etag=f'"{path}"')
        feeds.append({"name": path.strip("/.xml"), "url": feed_server.url(path)})
    cfg_dir = write_config(tmp_path, feeds=feeds, settings={"poll": {"tick": "1s"}})

    async def main() -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
        async with open_runtime(load_config(cfg_dir, env=_slack_env(slack))) as rt:
            daemon = Daemon(rt, http="127.0.0.1:0")
            task = asyncio.create_task(daemon.run())
            try:
                async with aiohttp.ClientSession() as http:
                    for _ in range(600):  # until both feeds are in and the alert is out
                        await asyncio.sleep(0.1)
                        if daemon.server is None or not daemon.server.url:
                            continue
                        async with rt.sessions() as session:
                            sent = (
                                await session.exec(
                                    select(func.count()).where(col(AlertRow.state) == "sent")
                                )
                            ).one()
                            queued = (
                                await session.exec(
                                    select(func.count()).where(
                                        col(AlertRow.state).in_(["pending", "sending"])
                                    )
                                )
                            ).one()
                            polled = (
                                await session.exec(
                                    select(func.count()).where(
                                        col(FeedRow.last_success).is_not(None)
                                    )
                                )
                            ).one()
                        if sent and not queued and polled == 2:
                            break
                    base = daemon.server.url if daemon.server else ""
                    probes = {}
                    for path in ("/healthz", "/readyz"):
                        async with http.get(base + path) as resp:
                            probes[path] = (resp.status, await resp.text())
                    async with http.get(base + "/metrics") as resp:
                        probes["type"] = resp.headers["Content-Type"]
                        metrics = metric_samples(await resp.text())
                async with rt.sessions() as session:
                    db = {
                        "entries": (await session.exec(select(func.count(col(EntryRow.id))))).one(),
                        "stories": (await session.exec(select(func.count(col(StoryRow.id))))).one(),
                        "matches": (
                            await session.exec(
                                select(func.count(col(MatchRow.id))).where(
                                    col(MatchRow.watchlist) == "korea"
                                )
                            )
                        ).one(),
                        "sent": (
                            await session.exec(
                                select(func.count()).where(col(AlertRow.state) == "sent")
                            )
                        ).one(),
                    }
            finally:
                daemon.request_stop()
                await asyncio.wait_for(task, 60)
        return probes, db, {"m": metrics}

    probes, db, wrapped = asyncio.run(main())
    m = wrapped["m"]
    assert probes["/healthz"][0] == 200
    assert probes["/readyz"][0] == 200, probes["/readyz"]
    assert "database: ok" in probes["/readyz"][1]
    assert probes["type"].startswith("text/plain; version=0.0.4")
    assert db["entries"] == 4 and db["sent"] >= 1
    assert m[("wirewatch_entries_stored_total", ())] == db["entries"]
    assert m[("wirewatch_stories_total", (("outcome", "new"),))] == db["stories"]
    joined = m.get(("wirewatch_stories_total", (("outcome", "joined"),)), 0)
    assert joined == db["entries"] - db["stories"]
    assert m[("wirewatch_matches_total", (("watchlist", "korea"),))] == db["matches"]
    assert m[("wirewatch_alerts_sent_total", (("sink", "slack"),))] == db["sent"]
    assert m[("wirewatch_alerts_pending", (("sink", "slack"),))] == 0
    assert m[("wirewatch_oldest_pending_alert_seconds", ())] == 0
    assert m[("wirewatch_polls_total", (("result", "ok"),))] >= 2
    assert m[("wirewatch_fetch_seconds_count", ())] >= 2
    assert m[("wirewatch_seen_to_alerted_seconds_count", ())] == db["sent"]
    # the seed items were published an hour ago: that is how late they were seen
    assert m[("wirewatch_publish_to_seen_seconds_sum", ())] >= 3600 * db["entries"] * 0.9


def test_readyz_needs_a_tick_and_a_valid_config(tmp_path: Path) -> None:
    from monitor.scheduler.http import OpsServer, Probe

    cfg_dir = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])

    async def main() -> list[tuple[int, str]]:
        out = []
        async with open_runtime(load_config(cfg_dir, env={}), notifiers={}) as rt:
            probe = Probe()
            server = OpsServer(rt, probe, "127.0.0.1", 0)
            base = await server.start()
            try:
                async with aiohttp.ClientSession() as http:

                    async def ready() -> None:
                        async with http.get(base + "/readyz") as resp:
                            out.append((resp.status, await resp.text()))

                    await ready()  # no tick yet
                    probe.last_tick = asyncio.get_running_loop().time()
                    await ready()
                    probe.config_error = "the last reload failed"
                    await ready()
                    probe.config_error = None
                    probe.last_tick = asyncio.get_running_loop().time() - 60  # tick 5 s
                    await ready()
            finally:
                await server.close()
        return out

    results = asyncio.run(main())
    assert [s for s, _ in results] == [503, 200, 503, 503], results
    assert "scheduler: not ticked yet" in results[0][1]
    assert "config: invalid" in results[2][1]
    assert "scheduler: last tick 60 s ago" in results[3][1]


def test_http_address_is_checked(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[], settings={"http": "localhost"})
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2 and "not an address: 'localhost'" in res.stderr, res.stderr
    cfg = write_config(tmp_path, feeds=[])
    res = wirewatch("run", "--config", str(cfg), "--http", "nowhere")
    assert res.returncode == 2 and "--http: not an address" in res.stderr, res.stderr


# --------------------------------------------------------------------- logs


def test_json_logs_carry_ids_and_never_secrets() -> None:
    from monitor.cli.logs import JsonFormatter, Redactor, TextFormatter

    token = "xoxb-1111-2222-abcdefSECRET"
    redact = Redactor((token, "hook-secret-value"))
    record = logging.LogRecord(
        "wirewatch.outbox",
        logging.WARNING,
        __file__,
        1,
        "alert %s failed: token %s rejected; db %s; hook %s; secret %s",
        (
            7,
            token,
            "postgresql://ww:pg-password@db/ww",
            "https://hooks.slack.com/services/T0/B0/XYZ",
            "hook-secret-value",
        ),
        None,
    )
    record.alert_id, record.story_id, record.feed = 7, 3, "bbc"
    line = JsonFormatter(redact).format(record)
    obj = json.loads(line)
    assert obj["alert_id"] == 7 and obj["story_id"] == 3 and obj["feed"] == "bbc"
    assert obj["level"] == "WARNING" and obj["logger"] == "wirewatch.outbox"
    assert re.search(r"[+-]\d\d:\d\d$", obj["time"]), obj["time"]  # its UTC offset
    text = TextFormatter(redact).format(record)
    for out in (line, text):
        for secret in (token, "pg-password", "XYZ", "hook-secret-value", "1111-2222"):
            assert secret not in out, out
        assert "postgresql://ww:[redacted]@db/ww" in out


def test_the_daemon_logs_json_lines_without_the_token(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """`run --log-format json` with a feed that fails and Slack: every line is one JSON
    object, the feed's failure carries the feed's name, and the bot token is nowhere,
    even though the failing feed's URL carries it."""
    token = "xoxb-test-token"
    feed_server.set("/broken.xml", b"no", status=500)
    feeds = [{"name": "broken", "url": feed_server.url(f"/broken.xml?t={token}")}]
    for path, body in seed_feeds().items():
        feed_server.set(path, body)
        feeds.append({"name": path.strip("/.xml"), "url": feed_server.url(path)})
    cfg = write_config(tmp_path, feeds=feeds, settings={"poll": {"tick": "1s"}})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_D"))}
    proc = start_wirewatch(
        ["run", "--config", str(cfg), "--log-format", "json"],
        {**env, **_slack_env(slack)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        slack.wait_for(1, timeout=60)
        deadline = time.monotonic() + 30
        while not feed_server.hits("/broken.xml") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]  # every line: one object
    assert any(o.get("feed") == "broken" and o["level"] == "WARNING" for o in lines), lines
    assert any(o["message"].startswith("alerts → slack") for o in lines)
    assert token not in err


# --------------------------------------------------------------------- status


def test_status_reads_without_creating_and_reports_the_queue(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feeds = []
    for path, body in seed_feeds().items():
        feed_server.set(path, body)
        feeds.append({"name": path.strip("/.xml"), "url": feed_server.url(path)})
    cfg = write_config(tmp_path, feeds=feeds)
    res = wirewatch("status", "--config", str(cfg))
    assert res.returncode == 1 and "no database at" in res.stderr, res.stderr
    assert not (tmp_path / "data" / "wirewatch.db").exists()
    assert wirewatch("once", "--config", str(cfg)).returncode == 0
    res = wirewatch("status", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["nodes"] == []  # `once` is not a node
    assert report["feeds"]["enabled"] == 2 and report["feeds"]["overdue"] == 0
    assert report["outbox"] == {"queued": 0, "by_sink": {}, "oldest_age_s": None, "failed": 0}
    assert report["schema"] == "0006_desk"
    assert report["database"].startswith("sqlite:///")
    res = wirewatch("status", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "nodes alive: 0" in res.stdout
    assert "feeds: 2 enabled, 0 due, 0 overdue" in res.stdout
    assert "outbox: 0 queued; 0 failed" in res.stdout


# --------------------------------------------------------------------- deploy


def test_compose_file_wires_two_nodes_to_postgres_with_readyz_checks() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = [s for s in services.values() if s.get("image") == "wirewatch"]
    assert len(nodes) == 2
    assert "postgres" in services
    for node in nodes:
        test = " ".join(node["healthcheck"]["test"])
        assert "/readyz" in test
        assert any("config" in v for v in node["volumes"])
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "wirewatch-rules.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for metric in (
        "wirewatch_feeds_overdue",
        "wirewatch_alerts_pending",
        "wirewatch_oldest_pending_alert_seconds",
        "wirewatch_alerts_failed_total",
    ):
        assert metric in exprs, metric
    k8s = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "wirewatch.yaml").read_text()))
    kinds = {d["kind"] for d in k8s}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    deployment = next(d for d in k8s if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any("secretRef" in e for e in container["envFrom"])
    unit = (ROOT / "deploy" / "wirewatch.service").read_text()
    assert "--http 127.0.0.1:9108" in unit
    assert "/readyz" in unit


def _compose() -> bool:
    """Whether `docker compose` (the v2 plugin) is there to run."""
    if shutil.which("docker") is None:
        return False
    res = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return res.returncode == 0


@pytest.mark.skipif(not _compose(), reason="`docker compose` is not installed here")
def test_docker_compose_config_validates() -> None:
    res = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "deploy" / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def test_the_slack_app_token_is_one_of_the_secrets_logs_never_show() -> None:
    from monitor.cli.logs import Redactor, secrets_of
    from monitor.config import AppConfig, Settings

    settings = Settings()
    slack = settings.slack.model_copy(update={"app_token": "xapp-1-A111-SECRET"})
    cfg = AppConfig(settings=settings.model_copy(update={"slack": slack}), feeds=[], watchlists=[])
    assert "xapp-1-A111-SECRET" in secrets_of(cfg)
    assert "SECRET" not in Redactor(secrets_of(cfg))("socket opened with xapp-1-A111-SECRET")
