"""Alert delivery against the local Slack Web API server over real sockets: nothing
lost, nothing doubled, order kept per channel, one bad channel never blocks another."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from monitor.config import load_config
from monitor.outbox import deliver_pending, next_due_in
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import Runtime, open_runtime
from monitor.scheduler import startup
from monitor.store.tables import AlertRow
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import pubdate, write_config

ROOT = Path(__file__).resolve().parents[1]
PLACES = ["Wonsan", "Sinpo", "Hamhung", "Nampo", "Kaesong", "Chongjin", "Haeju", "Rason"]
THINGS = ["shipyard", "farm", "hospital", "school", "airport", "factory", "railway", "dam"]


def _stories(prefix: str, n: int, verb: str = "tours", offset: int = 0) -> str:
    items = [
        {
            "title": f"Kim Jong Un {verb} {THINGS[(i + offset) % 8]} in {PLACES[i % 8]} "
            f"on visit {i + 1 + offset * 10}",
            "link": f"https://{prefix}.example/{i}",
            "guid": f"{prefix}-{i}",
            "description": f"State media showed the leader at the {THINGS[(i + offset) % 8]}.",
            "pubDate": pubdate(),
        }
        for i in range(n)
    ]
    return rss(prefix, items)


def _env(slack: FakeSlack) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": slack.token or "xoxb-test-token", "SLACK_API_URL": slack.base_url}


async def _drain(rt: Runtime, limit: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        await deliver_pending(rt)
        wait = await next_due_in(rt)
        if wait is None:
            return
        await asyncio.sleep(min(wait, 1.0) + 0.05)
    raise AssertionError("outbox did not drain")


def _poll_and_deliver(cfg: Path, env: dict[str, str]) -> list[AlertRow]:
    """One poll of every feed, then drain the outbox; returns the outbox rows."""

    async def go() -> list[AlertRow]:
        async with open_runtime(load_config(cfg, env=env)) as rt:
            await startup(rt)
            await poll_cycle(rt, all_feeds=True)
            await _drain(rt)
            async with rt.sessions() as s:
                return list((await s.exec(select(AlertRow).order_by(col(AlertRow.id)))).all())

    return asyncio.run(go())


def _setup(tmp: Path, server: FeedServer, n: int = 4, **settings: Any) -> Path:
    server.set("/a.xml", _stories("a", n))
    server.set("/b.xml", _stories("b", n, verb="visits", offset=3))
    return write_config(
        tmp,
        feeds=[
            {"name": "a", "url": server.url("/a.xml")},
            {"name": "b", "url": server.url("/b.xml")},
        ],
        watchlists=[
            {"name": "desk-a", "terms": ["tours"], "channel": "#desk-a"},
            {"name": "desk-b", "terms": ["visits"], "channel": "#desk-b"},
        ],
        settings=settings,
    )


def _outbox(cfg: Path, slack: FakeSlack, *args: str) -> str:
    """``wirewatch outbox ARGS`` (the operator's command, in its own process): stdout."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "outbox", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(slack)},
        cwd=ROOT,
        check=True,
    ).stdout


def _drain_now(cfg: Path, slack: FakeSlack) -> None:
    """The daemon's next delivery pass, run to the end of the queue."""

    async def again() -> None:
        async with open_runtime(load_config(cfg, env=_env(slack))) as rt:
            await _drain(rt)

    asyncio.run(again())


def _order_ok(slack: FakeSlack, channel: str, n: int) -> None:
    msgs = [m for m in slack.messages if m["channel"] == channel and not m.get("thread_ts")]
    ids = [m["metadata"]["event_payload"]["alert_id"] for m in msgs]
    assert len(ids) == n and len(set(ids)) == n, ids
    assert ids == sorted(ids), f"order not kept in {channel}: {ids}"


def test_rate_limited_for_a_while_every_alert_arrives_once_in_order(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    cfg = _setup(tmp_path, feed_server)
    slack.rate_limit(5, retry_after=1)

    _poll_and_deliver(cfg, _env(slack))
    assert any(c["status"] == 429 for c in slack.calls)
    _order_ok(slack, "#desk-a", 4)
    _order_ok(slack, "#desk-b", 4)


def test_server_errors_then_recovery(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    cfg = _setup(tmp_path, feed_server, delivery={"max_backoff": "1s"})
    slack.server_errors(4, status=503)

    _poll_and_deliver(cfg, _env(slack))
    assert sum(1 for c in slack.calls if c["status"] == 503) == 4
    _order_ok(slack, "#desk-a", 4)
    _order_ok(slack, "#desk-b", 4)


def test_permanent_error_on_one_channel_while_the_other_keeps_receiving(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    cfg = _setup(tmp_path, feed_server)
    slack.channel_error("#desk-a", "channel_not_found")

    rows = _poll_and_deliver(cfg, _env(slack))
    _order_ok(slack, "#desk-b", 4)
    failed = [r for r in rows if r.channel == "#desk-a"]
    assert len(failed) == 4
    assert all(r.state == "failed" and r.last_error == "channel_not_found" for r in failed)

    # the operator fixes the channel and re-queues: all four arrive
    slack.channel_error("#desk-a", None)
    out = _outbox(cfg, slack)
    failed_lines = [line for line in out.splitlines() if " failed " in line]
    assert len(failed_lines) == 4
    for line in failed_lines:  # a story's own alert, with what to do about its error
        assert " failed   new " in line
        assert "channel_not_found: fix SLACK_CHANNEL or the watchlist's, then retry" in line
    first_failed = failed_lines[0].split()[0]
    _outbox(cfg, slack, "retry", first_failed)
    _outbox(cfg, slack, "retry", first_failed)  # (one of them re-queued by id, twice)
    _outbox(cfg, slack, "retry", "--failed")
    out = _outbox(cfg, slack)
    # re-queued: pending, and the old reason is marked as the one from before (once,
    # however often it is re-queued), still with what to do about it
    assert out.count(" pending  new ") == 4
    assert out.count("re-queued by hand; before: channel_not_found: fix SLACK_CHANNEL") == 4
    assert "before: re-queued" not in out
    _drain_now(cfg, slack)
    _order_ok(slack, "#desk-a", 4)


def test_a_mistyped_channel_fixed_in_the_config_gets_the_retried_alerts(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """channel_not_found because the YAML says #desk-aa: once the YAML says #desk-a,
    `outbox retry --failed` sends the failed stories there, instead of failing them on
    the old channel again and losing them for good."""
    cfg = _setup(tmp_path, feed_server)
    wl = cfg / "watchlists.yaml"
    wl.write_text(wl.read_text().replace("'#desk-a'", "'#desk-aa'"))
    slack.channel_error("#desk-aa", "channel_not_found")
    rows = _poll_and_deliver(cfg, _env(slack))
    assert [r.state for r in rows if r.channel == "#desk-aa"] == ["failed"] * 4
    wl.write_text(wl.read_text().replace("#desk-aa", "#desk-a"))
    out = _outbox(cfg, slack, "retry", "--failed")
    assert out == (
        "re-queued 4 alerts; the running daemon, or the next `wirewatch once`, sends them:\n"
        "  4 for #desk-a (moved from #desk-aa)\n"
    )
    _drain_now(cfg, slack)
    _order_ok(slack, "#desk-a", 4)


def test_killed_after_slack_accepted_before_recorded_sends_no_second_message(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    feed_server.set("/a.xml", _stories("a", 1))
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": feed_server.url("/a.xml")}],
        watchlists=[{"name": "w", "terms": ["Kim Jong Un"], "channel": "#desk"}],
        settings={"poll": {"tick": "1s"}},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(_env(slack))
    slack.hold_answers(30)
    cmd = [sys.executable, "-m", "monitor", "run", "--config", str(cfg)]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        slack.wait_for(1, timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the daemon and its parser processes
        proc.wait(timeout=10)
    slack.hold_answers(0)
    assert len(slack.messages) == 1

    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = 20.0
        while deadline > 0 and not any(c["method"] == "conversations.history" for c in slack.calls):
            asyncio.run(asyncio.sleep(0.2))
            deadline -= 0.2
        asyncio.run(asyncio.sleep(2))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert any(c["method"] == "conversations.history" for c in slack.calls), err
    assert len(slack.messages) == 1, err
    assert "already delivered" in err


def test_burst_becomes_digest_without_dropping_any_story(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    feed_server.set("/a.xml", _stories("a", 8))
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": feed_server.url("/a.xml")}],
        watchlists=[{"name": "w", "terms": ["Kim Jong Un"], "channel": "#desk"}],
        settings={"delivery": {"burst_max": 3, "burst_window": "60s"}},
    )

    rows = _poll_and_deliver(cfg, _env(slack))
    assert len(rows) == 8 and all(r.state == "sent" for r in rows)
    msgs = slack.messages_in("#desk")
    assert len(msgs) == 4  # three single alerts, then one digest of the other five
    digest = msgs[-1]["text"] + str(msgs[-1]["blocks"])
    for i in range(3, 8):
        assert f"https://a.example/{i}" in digest


def test_an_alert_another_node_sent_meanwhile_is_passed_over_and_the_rest_still_go(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """Nodes share the outbox: while this one sends a channel's first alert, another
    sends the second. This node must pass over the alert it lost and send the third;
    it used to try to claim the lost one again and again, for ever (issue 15: the
    three-node test's deliveries that stopped with every session idle)."""
    feed_server.set("/a.xml", _stories("a", 3))
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": feed_server.url("/a.xml")}],
        watchlists=[{"name": "w", "terms": ["Kim Jong Un"], "channel": "#desk"}],
        settings={"delivery": {"per_channel_interval": "0s"}},
    )

    async def go() -> list[AlertRow]:
        async with open_runtime(load_config(cfg, env=_env(slack))) as rt:
            await startup(rt)
            await poll_cycle(rt, all_feeds=True)
            async with rt.sessions() as s:
                ids = list((await s.exec(select(AlertRow.id).order_by(col(AlertRow.id)))).all())
            assert len(ids) == 3
            notifier = rt.notifiers["slack"]
            send = notifier.send

            async def send_while_another_node_sends_the_next(msg: Any) -> Any:
                result = await send(msg)
                if msg.alert_id == ids[0]:  # the other node, between two of these sends
                    async with rt.sessions() as s:
                        await s.exec(
                            update(AlertRow)
                            .where(col(AlertRow.id) == ids[1])
                            .values(state="sent", sent_at=rt.clock())
                        )
                        await s.commit()
                return result

            notifier.send = send_while_another_node_sends_the_next  # type: ignore[method-assign]
            try:
                await asyncio.wait_for(deliver_pending(rt), 15)
            finally:
                for task in rt.delivery.channel_tasks.values():
                    task.cancel()
            async with rt.sessions() as s:
                return list((await s.exec(select(AlertRow).order_by(col(AlertRow.id)))).all())

    rows = asyncio.run(go())
    assert [r.state for r in rows] == ["sent", "sent", "sent"]
    posted = [m["metadata"]["event_payload"]["alert_id"] for m in slack.messages_in("#desk")]
    assert posted == [rows[0].id, rows[2].id]  # the second is the other node's to post


def test_routing_per_watchlist_to_webhook_and_slack(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    import hashlib
    import hmac
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[dict[str, Any], str, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), self.headers["X-Wirewatch-Signature"], body))
            self.send_response(204)
            self.end_headers()

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        cfg = _setup(tmp_path, feed_server, n=1)
        (cfg / "watchlists.yaml").write_text(
            "watchlists:\n"
            "  - name: desk-a\n    terms: [tours]\n    sinks: [webhook]\n"
            "  - name: desk-b\n    terms: [visits]\n    channel: '#desk-b'\n"
        )
        env = {
            **_env(slack),
            "WIREWATCH_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_address[1]}/hook",
            "WIREWATCH_WEBHOOK_SECRET": "s3cret",
        }
        _poll_and_deliver(cfg, env)
    finally:
        hook.shutdown()
    assert [m["channel"] for m in slack.messages] == ["#desk-b"]
    assert sorted(p["watchlist"] for p, _, _ in received) == ["desk-a", "desk-b"]
    for _, sig, body in received:
        expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert sig == f"sha256={expected}"
