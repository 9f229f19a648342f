"""Notifiers over real sockets: slack-sdk against the local fake Slack, the generic webhook
against a local aiohttp receiver, and the console."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from monitor.deliver import (
    ConsoleNotifier,
    DeliveryResult,
    Notifier,
    SlackBotNotifier,
    SlackWebhookNotifier,
    WebhookNotifier,
)
from monitor.models import AlertMessage, SourceRef
from tests.fakeslack import FakeSlack

SINCE = datetime.now(UTC) - timedelta(minutes=1)


def alert(i: int = 1, **kw: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "alert_id": i,
        "story_id": 100 + i,
        "watchlist": "korea",
        "channel": "#alerts",
        "severity": "high",
        "title": f"Kim Jong Un oversees missile launch {i}",
        "link": f"https://news.example/story/{i}",
        "source": "BBC World",
        "published": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "summary": "North Korea fired a missile.",
        "matched_terms": ("Kim Jong Un",),
        "sources": [SourceRef("BBC World", f"https://news.example/story/{i}")],
    }
    fields.update(kw)
    return AlertMessage(**fields)


def bot(slack: FakeSlack, **kw: Any) -> SlackBotNotifier:
    return SlackBotNotifier(
        slack.token or "", default_channel="#default", base_url=slack.base_url, **kw
    )


def test_all_sinks_implement_the_protocol() -> None:
    sinks = [
        SlackBotNotifier("x", default_channel="#a"),
        SlackWebhookNotifier("http://127.0.0.1:1/x"),
        WebhookNotifier("http://127.0.0.1:1/x", secret=None),
        ConsoleNotifier(io.StringIO()),
    ]
    assert all(isinstance(s, Notifier) for s in sinks)
    assert len({s.name for s in sinks}) == 4


# --------------------------------------------------------------------------- Slack bot


def test_post_carries_metadata_fallback_text_and_no_unfurls(slack: FakeSlack) -> None:
    async def go() -> DeliveryResult:
        n = bot(slack)
        try:
            return await n.send(alert(title="<!channel> hostile & co", severity="info"))
        finally:
            await n.aclose()

    result = asyncio.run(go())
    assert result.ok and result.ts
    [msg] = slack.messages
    assert msg["ts"] == result.ts and msg["channel"] == "#alerts"
    assert result.channel == msg["channel_id"]
    assert msg["metadata"] == {
        "event_type": "wirewatch_alert",
        "event_payload": {"alert_id": 1, "story_id": 101},
    }
    p = msg["payload"]
    assert p["unfurl_links"] is False and p["unfurl_media"] is False and p["link_names"] is False
    assert "hostile" in msg["text"]
    raw = json.dumps(p)
    assert "<!channel>" not in raw and "&lt;!channel&gt; hostile &amp; co" in raw


def test_default_channel_thread_reply_and_update(slack: FakeSlack) -> None:
    async def go() -> tuple[DeliveryResult, DeliveryResult, DeliveryResult]:
        n = bot(slack)
        parent = await n.send(alert(channel=""))
        assert parent.ts
        reply = await n.send(
            alert(2, channel="", kind="followup", thread_ts=parent.ts, source="NHK World")
        )
        srcs = [SourceRef("BBC World", "https://b.example/1"), SourceRef("NHK", "https://n/2")]
        edit = await n.update(alert(channel="", sources=srcs), parent.ts)
        return parent, reply, edit

    parent, reply, edit = asyncio.run(go())
    assert parent.ok and reply.ok and edit.ok
    first, second = slack.messages
    assert first["channel"] == "#default" and first["thread_ts"] is None
    assert second["thread_ts"] == parent.ts and "Also reported by" in second["text"]
    [upd] = slack.updates
    assert upd["ts"] == parent.ts and upd["channel_id"] == first["channel_id"]
    assert "Carried by 2 outlets" in json.dumps(upd["blocks"])
    assert edit.ts == parent.ts


def test_find_sent_after_restart_uses_metadata(slack: FakeSlack) -> None:
    async def go() -> tuple[str | None, str | None, str | None, str | None]:
        before = await bot(slack).send(alert(7))
        reply = await bot(slack).send(alert(8, kind="followup", thread_ts=before.ts))
        fresh = bot(slack)  # a new process: no cached channel ids
        return (
            before.ts,
            await fresh.find_sent(alert(7), SINCE),
            await fresh.find_sent(alert(9), SINCE),
            await fresh.find_sent(alert(8, kind="followup", thread_ts=before.ts), SINCE)
            if reply.ok
            else "reply failed",
        )

    sent_ts, found, missing, found_reply = asyncio.run(go())
    assert found == sent_ts
    assert missing is None
    assert found_reply == slack.messages[1]["ts"]
    assert any(c["method"] == "conversations.history" for c in slack.calls)
    history = next(c for c in slack.calls if c["method"] == "conversations.history")
    assert history["payload"]["channel"] == slack.messages[0]["channel_id"]


def test_crash_after_slack_accepted_is_reconciled_not_doubled(slack: FakeSlack) -> None:
    slack.accept_then_drop(1)

    async def go() -> tuple[DeliveryResult, str | None]:
        first = await bot(slack).send(alert(5))
        # the outbox sees an uncertain failure and reconciles before re-sending
        return first, await bot(slack).find_sent(alert(5), SINCE)

    first, found = asyncio.run(go())
    assert not first.ok and first.uncertain and not first.permanent
    assert found == slack.messages[0]["ts"]
    assert len(slack.messages) == 1


def test_digest_sends_every_part_and_resumes_after_partial_send(slack: FakeSlack) -> None:
    digest = alert(50, digest=[alert(1000 + i) for i in range(45)])
    slack.accept_then_drop(1)  # part 1 lands, then the "process dies"

    async def go() -> tuple[DeliveryResult, str | None, DeliveryResult, str | None]:
        first = await bot(slack).send(digest)
        restarted = bot(slack)
        found = await restarted.find_sent(digest, SINCE)
        again = await restarted.send(digest)
        return first, found, again, await bot(slack).find_sent(digest, SINCE)

    first, found, again, found_after = asyncio.run(go())
    assert not first.ok and first.uncertain
    assert found is None  # incomplete: not yet delivered
    assert again.ok and again.ts == slack.messages[0]["ts"]
    assert found_after == again.ts
    parts = [m["metadata"]["event_payload"]["part"] for m in slack.messages]
    assert parts == [0, 1, 2]
    # each item can be reconciled on its own: alert 1025 is listed in the second part
    item = asyncio.run(bot(slack).find_sent(alert(1025), SINCE))
    assert item == slack.messages[1]["ts"]
    raw = json.dumps([m["blocks"] for m in slack.messages])
    for i in range(45):
        assert raw.count(f"https://news.example/story/{1000 + i}|") == 1


def test_rate_limit_returns_retry_after_without_sleeping(slack: FakeSlack) -> None:
    slack.rate_limit(1, retry_after=7)

    async def go() -> tuple[DeliveryResult, DeliveryResult]:
        n = bot(slack)
        return await n.send(alert()), await n.send(alert())

    t0 = time.monotonic()
    limited, ok = asyncio.run(go())
    assert time.monotonic() - t0 < 3
    assert limited == DeliveryResult(ok=False, error="ratelimited", retry_after=7.0)
    assert ok.ok and len(slack.messages) == 1


def test_permanent_and_transient_errors(slack: FakeSlack) -> None:
    slack.channel_error("#gone", "channel_not_found")
    slack.channel_error("#private", "not_in_channel")

    async def go() -> list[DeliveryResult]:
        n = bot(slack)
        out = [await n.send(alert(channel="#gone")), await n.send(alert(channel="#private"))]
        out.append(await n.send(alert(channel="#alerts")))  # other channels keep flowing
        slack.server_errors(1, status=500)
        out.append(await n.send(alert(channel="#alerts")))
        slack.server_errors(1, status=503)
        out.append(await n.send(alert(channel="#alerts")))
        bad = SlackBotNotifier("xoxb-wrong", default_channel="#a", base_url=slack.base_url)
        out.append(await bad.send(alert()))
        return out

    gone, private, ok, e500, e503, badauth = asyncio.run(go())
    assert (gone.ok, gone.permanent, gone.error) == (False, True, "channel_not_found")
    assert (private.permanent, private.error) == (True, "not_in_channel")
    assert ok.ok
    assert not e500.ok and not e500.permanent and e500.error == "http_500"
    assert not e503.ok and not e503.permanent
    assert badauth.permanent and badauth.error == "invalid_auth"
    assert [m["channel"] for m in slack.messages] == ["#alerts"]


def test_server_down_is_a_transient_result_then_recovers(slack: FakeSlack) -> None:
    async def go() -> tuple[DeliveryResult, DeliveryResult]:
        n = bot(slack, connect_retries=0)
        slack.down()
        try:
            down = await n.send(alert())
        finally:
            slack.up()
        return down, await n.send(alert())

    down, up = asyncio.run(go())
    assert not down.ok and not down.permanent and not down.uncertain
    assert down.error and "connection refused" in down.error
    assert up.ok and len(slack.messages) == 1


def test_find_sent_raises_lookup_failed_when_slack_unreachable(slack: FakeSlack) -> None:
    from monitor.deliver import LookupFailed

    async def go() -> None:
        n = bot(slack, connect_retries=0)
        await n.send(alert())
        slack.down()
        try:
            await n.find_sent(alert(), SINCE)
        finally:
            slack.up()

    with pytest.raises(LookupFailed):
        asyncio.run(go())


def test_fake_accepts_form_bodies_and_pages_history(slack: FakeSlack) -> None:
    async def go() -> list[str]:
        client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
        for i in range(5):
            await client.api_call(
                "chat.postMessage",
                data={"channel": "C0FAKE01", "text": f"m{i}", "blocks": json.dumps([])},
            )
        seen: list[str] = []
        cursor = None
        while True:
            r = await client.conversations_history(channel="C0FAKE01", limit=2, cursor=cursor)
            seen += [m["text"] for m in r["messages"]]
            cursor = r["response_metadata"]["next_cursor"]
            if not cursor:
                return seen

    assert asyncio.run(go()) == ["m4", "m3", "m2", "m1", "m0"]
    assert slack.wait_for(5, timeout=1)[0]["channel_id"] == "C0FAKE01"


# --------------------------------------------------------------------------- Slack webhook


def test_slack_incoming_webhook(slack: FakeSlack) -> None:
    async def go() -> list[DeliveryResult]:
        n = SlackWebhookNotifier(slack.webhook_url)
        out = [await n.send(alert(title="<!here> x"))]
        out.append(await n.send(alert(2, kind="followup", thread_ts="1.0")))
        slack.rate_limit(1, retry_after=4)
        out.append(await n.send(alert(3)))
        slack.channel_error(slack.webhook_channel, "channel_is_archived")
        out.append(await n.send(alert(4)))
        out.append(await n.update(alert(), "1.0"))
        out.append(DeliveryResult(ok=await n.find_sent(alert(), SINCE) is None))
        await n.aclose()
        return out

    posted, followup, limited, archived, updated, found_none = asyncio.run(go())
    assert posted.ok and posted.ts is None
    assert followup.ok
    assert limited.retry_after == 4.0 and not limited.permanent
    assert archived.permanent and archived.error == "channel_is_archived"
    assert updated.ok and found_none.ok
    [msg] = slack.messages
    assert msg["via"] == "webhook" and "&lt;!here&gt;" in msg["text"]
    assert msg["payload"]["unfurl_links"] is False


# --------------------------------------------------------------------------- generic webhook


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[tuple[int, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        status, headers = self.statuses.pop(0) if self.statuses else (204, {})
        return web.Response(status=status, headers=headers)


async def _serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def test_webhook_signature_is_verifiable_and_body_documented() -> None:
    secret = "s3cret"
    receiver = Receiver()

    async def go() -> DeliveryResult:
        runner, url = await _serve(receiver)
        n = WebhookNotifier(url, secret=secret)
        try:
            return await n.send(alert(3, title="Title with \u00e9 & <b>", severity="critical"))
        finally:
            await n.aclose()
            await runner.cleanup()

    result = asyncio.run(go())
    assert result.ok
    [(headers, body)] = receiver.requests
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Wirewatch-Signature"], f"sha256={expected}")
    data = json.loads(body)
    assert data["type"] == "wirewatch.alert" and data["version"] == 1
    assert str(data["sent_at"]) == headers["X-Wirewatch-Timestamp"]
    assert headers["X-Wirewatch-Delivery"] == "3"
    assert data["alert_id"] == 3 and data["story_id"] == 103 and data["kind"] == "new"
    assert data["title"] == "Title with \u00e9 & <b>"
    assert data["published"] == "2024-05-01T12:30:00+00:00"
    assert data["sources"] == [
        {"source": "BBC World", "link": "https://news.example/story/3", "title": ""}
    ]
    assert data["severity"] == "critical" and data["digest"] == []
    tampered = body.replace(b"critical", b"info")
    forged = hmac.new(secret.encode(), tampered, hashlib.sha256).hexdigest()
    assert f"sha256={forged}" != headers["X-Wirewatch-Signature"]


def test_webhook_status_mapping() -> None:
    receiver = Receiver()
    receiver.statuses = [(429, {"Retry-After": "9"}), (500, {}), (404, {}), (302, {}), (200, {})]

    async def go() -> list[DeliveryResult]:
        runner, url = await _serve(receiver)
        n = WebhookNotifier(url, secret=None)
        try:
            out = [await n.send(alert()) for _ in range(5)]
        finally:
            await runner.cleanup()
        out.append(await n.send(alert()))  # receiver gone: connection refused
        await n.aclose()
        return out

    limited, e500, e404, redirect, ok, refused = asyncio.run(go())
    assert limited == DeliveryResult(ok=False, error="http_429", retry_after=9.0)
    assert not e500.ok and not e500.permanent
    assert e404.permanent and redirect.permanent
    assert ok.ok
    assert not refused.ok and not refused.permanent
    assert "X-Wirewatch-Signature" not in receiver.requests[0][0]


# --------------------------------------------------------------------------- console


def test_console_is_readable_and_strips_escape_sequences() -> None:
    out = io.StringIO()
    evil = "\x1b[31mRED\x1b[0m \x1b]0;pwned\x07title\u202e\u2066 \x9b2J \x07bell\x08"

    async def go() -> None:
        n = ConsoleNotifier(out)
        await n.send(
            alert(
                title=evil,
                summary=evil,
                source="Out\x1blet",
                matched_words=("Kim\x1b[1m Jong-un",),
                sources=[SourceRef("BBC World", "https://b/1"), SourceRef("NHK\x1b[2J", "x")],
            )
        )
        await n.send(alert(2, kind="followup", source="Al Jazeera", link="https://aj/1"))
        await n.send(
            alert(
                4,
                kind="followup",
                sources=[SourceRef("NHK", "https://nhk/1", "NHK's title"), SourceRef("DW", "d")],
                parent_title="Kim meets\x1b[2J Putin",
            )
        )
        await n.send(alert(3, digest=[alert(10 + i, title=f"T{i}\x1b[K") for i in range(3)]))

    asyncio.run(go())
    text = out.getvalue()
    for bad in ("\x1b", "\x07", "\x08", "\x9b", "\u202e", "\u2066"):
        assert bad not in text
    assert "RED" in text and "pwned" not in text
    assert "[HIGH] RED" in text
    for field in ("outlet:", "published: 2024-05-01 12:30 UTC", "watchlist: korea", "link:"):
        assert field in text
    assert "matched:   Kim Jong Un" in text and "summary:" in text
    assert "outlet:    Outlet (also: BBC World, NHK)" in text
    followups = [line for line in text.splitlines() if "also reported by" in line]
    assert followups == [
        "  ↳ also reported by Al Jazeera: Kim Jong Un oversees missile launch 2 https://aj/1",
        "  ↳ also reported by NHK: NHK's title https://nhk/1",
        "  ↳ also reported by DW: d",
    ]
    # a console has no threads: a reply names the story it belongs to
    assert "  ↳ also reported by DW: d\n    (story: Kim meets Putin)\n" in text
    assert "Digest: 3 alerts" in text and "T2" in text


def test_console_closed_stream_is_a_failed_result() -> None:
    stream = io.StringIO()
    stream.close()
    result = asyncio.run(ConsoleNotifier(stream).send(alert()))
    assert not result.ok and result.error


def test_slack_timeout_is_an_uncertain_transient_result() -> None:
    # Slack may have posted before we gave up waiting: the outbox must reconcile
    async def go() -> DeliveryResult:
        with FakeSlack() as fake:
            fake.set_delay(1.5)
            n = SlackBotNotifier(
                fake.token or "", default_channel="#a", base_url=fake.base_url, timeout=1
            )
            return await n.send(alert())

    result = asyncio.run(go())
    assert not result.ok and result.uncertain and not result.permanent
    assert result.error and result.error.startswith("timeout")
