"""Issue 17, acting from Slack with no public endpoint: Socket Mode over real sockets.

A local WebSocket server speaks the Socket Mode envelope protocol (tests/fakesocket.py:
hello, ``interactive`` and ``events_api`` envelopes, acks); the local Slack Web API
stand-in (tests/fakeslack.py) hands its URL out from ``apps.connections.open``. The real
slack-sdk socket-mode client connects to it, and the buttons on the cards Wirewatch
posted are pressed as Slack would send the clicks."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.config import AppConfig, load_config
from monitor.deliver.slack import render_slack, render_update
from monitor.deliver.socket import SlackSocket
from monitor.models import AlertMessage
from monitor.outbox import deliver_pending
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import Runtime, open_runtime
from monitor.scheduler import startup
from monitor.scheduler.actions import apply_action
from monitor.scheduler.daemon import Daemon
from monitor.store.alerts import alerts_by_id, queued_alerts
from monitor.store.mutes import list_mutes, muted_stories, muted_terms
from tests.fakeslack import FakeSlack
from tests.fakesocket import FakeSocketMode, actions_of
from tests.feedserver import FeedServer, rss
from tests.util import write_config

OUTLETS = ["Reuters", "AFP", "AP", "BBC"]
KOREA = {"name": "korea", "terms": ["ballistic missile", "Kim Jong Un"]}
STORY = "North Korea fires ballistic missile into the sea off its east coast"
SUMMARY = "The launch was the third this month, the Joint Chiefs of Staff in Seoul said."
OTHER = "Japan tracks ballistic missile launched from the Korean peninsula near Hokkaido"
ANN, BOB = "U0ANN1234", "U0BOB5678"


@pytest.fixture
def sock() -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as s:
        yield s


def _slug(outlet: str) -> str:
    return outlet.lower().replace(" ", "")


class Desk:
    """Outlet feeds, a Slack stand-in with Socket Mode, and a clock the test moves."""

    def __init__(
        self,
        tmp_path: Path,
        feed_server: FeedServer,
        slack: FakeSlack,
        sock: FakeSocketMode | None,
        *,
        app_token: bool = True,
        database_url: str | None = None,
    ) -> None:
        self.server, self.slack, self.sock = feed_server, slack, sock
        self.offset = timedelta(0)
        self.items: dict[str, list[dict[str, str]]] = {o: [] for o in OUTLETS}
        feeds = []
        for outlet in OUTLETS:
            path = f"/{_slug(outlet)}.xml"
            feed_server.set(path, rss(outlet, []))
            feeds.append({"name": outlet, "source": outlet, "url": feed_server.url(path)})
        env = {
            "SLACK_BOT_TOKEN": slack.token or "",
            "SLACK_API_URL": slack.base_url,
            "SLACK_CHANNEL": "#korea",
        }
        if app_token:
            env["SLACK_APP_TOKEN"] = slack.app_token
        if sock is not None:
            slack.socket_url = sock.url
        self.cfg: AppConfig = load_config(
            write_config(
                tmp_path,
                feeds=feeds,
                watchlists=[KOREA],
                settings={"database_url": database_url} if database_url else None,
            ),
            env=env,
        )

    def clock(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def publish(self, outlet: str, title: str, slug: str, minutes_ago: float = 2) -> None:
        when = self.clock() - timedelta(minutes=minutes_ago)
        self.items[outlet].append(
            {
                "title": title,
                "link": f"https://{_slug(outlet)}.example/{slug}",
                "guid": f"{_slug(outlet)}-{slug}",
                "description": SUMMARY,
                "pubDate": format_datetime(when),
            }
        )
        self.server.set(f"/{_slug(outlet)}.xml", rss(outlet, self.items[outlet]))

    async def cycle(self, rt: Runtime) -> None:
        await poll_cycle(rt, all_feeds=True)
        await deliver_pending(rt)

    def cards(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.view("#korea") if not m["thread_ts"]]

    def replies(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages if m["thread_ts"]]


class Socket:
    """The socket-mode client as the daemon wires it, for one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        slack = rt.config.settings.slack
        assert slack.app_token

        async def on_action(action: Any) -> None:
            await apply_action(rt, action)

        self.client = SlackSocket(slack.app_token, on_action, base_url=slack.api_url)

    async def __aenter__(self) -> SlackSocket:
        await self.client.start()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for an effect that lands in the database or in the Slack stand-in (another
    thread): polled, since neither can signal this loop."""
    async with asyncio.timeout(5.0):
        while not await check():  # noqa: ASYNC110 - nothing to wait on but the state
            await asyncio.sleep(0.01)


async def _connected(sock: FakeSocketMode, connections: int = 1) -> None:
    await asyncio.to_thread(sock.wait_connected, 10.0, connections)


def _shown(m: dict[str, Any]) -> str:
    return m["text"] + " " + json.dumps(m.get("blocks") or [], ensure_ascii=False)


def _labels(m: dict[str, Any]) -> list[str]:
    out = []
    for e in actions_of(m):
        if e["type"] == "button":
            out.append(e["text"]["text"])
        else:
            out.extend(f"menu:{o['text']['text']}" for o in e["options"])
    return out


# --------------------------------------------------------------------------- buttons


def test_cards_carry_the_buttons_and_keep_them_when_edited(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, sock: FakeSocketMode
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            desk.publish("AFP", STORY, "missile")  # a second outlet: the card is edited
            await desk.cycle(rt)

    asyncio.run(main())
    (card,) = desk.cards()
    assert _labels(card) == ["Mute story", "Mute term “ballistic missile” 24h", "Acknowledge"]
    values = [json.loads(e["value"]) for e in actions_of(card)]
    assert values[0]["story"] == values[1]["story"] and values[0]["alert"] == values[2]["alert"]
    assert values[1]["watchlist"] == "korea" and values[1]["term"] == "ballistic missile"
    # the edit (carried by 2 outlets) kept the buttons; the thread reply has none
    edited = [u for u in slack.updates if u["ts"] == card["ts"]]
    assert edited and "Carried by 2 outlets" in _shown(edited[-1])
    assert _labels(edited[-1]) == _labels(card)
    assert all(not actions_of(r) for r in desk.replies())


def test_without_the_app_token_no_card_has_buttons_and_the_rest_works(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    desk = Desk(tmp_path, feed_server, slack, None, app_token=False)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            desk.publish("AFP", STORY, "missile")
            await desk.cycle(rt)
            daemon = Daemon(rt)
            await daemon._start_socket()
            assert daemon.socket is None  # no app token: no Socket Mode either

    asyncio.run(main())
    (card,) = desk.cards()
    assert "actions" not in {b["type"] for b in card["blocks"]}
    assert len(desk.replies()) == 1 and "Also reported by" in _shown(desk.replies()[0])
    edited = [u for u in slack.updates if u["ts"] == card["ts"]]
    assert edited and not any(actions_of(u) for u in edited)
    assert not [c for c in slack.calls if c["method"] == "apps.connections.open"]


def test_several_terms_get_a_button_each_and_many_a_menu() -> None:
    def msg(terms: tuple[str, ...]) -> AlertMessage:
        return AlertMessage(
            alert_id=7, story_id=3, watchlist="korea", channel="#korea", severity="info",
            title=STORY, link="https://reuters.example/m", source="Reuters",
            published=None, summary="", matched_terms=terms, actions=True,
        )  # fmt: skip

    two = msg(("ballistic missile", "Kim Jong Un"))
    for _, blocks in (render_slack(two), render_update(two)):
        labels = _labels({"blocks": blocks})
        assert labels == [
            "Mute story",
            "Mute “ballistic missile” 24h",
            "Mute “Kim Jong Un” 24h",
            "Acknowledge",
        ]
    many = msg(tuple(f"term {i}" for i in range(5)))
    labels = _labels({"blocks": render_slack(many)[1]})
    assert labels == ["Mute story", *(f"menu:term {i}" for i in range(5)), "Acknowledge"]
    assert FakeSlack._check_blocks(render_slack(many)[1]) is None
    plain = msg(("ballistic missile",))
    plain.actions = False
    assert not actions_of({"blocks": render_slack(plain)[1]})


# --------------------------------------------------------------------------- effects


async def _mute_story(rt: Runtime, desk: Desk, sock: FakeSocketMode, card: dict[str, Any]) -> float:
    """Click *Mute story* on ``card`` as ANN; wait for the mute to be stored. The ack's
    delay."""
    eid = sock.click(card, "mute_story", user=ANN)
    ack = await asyncio.to_thread(sock.wait_ack, eid)

    async def muted() -> bool:
        async with rt.sessions() as s:
            return bool(await muted_stories(s, [_story(card)], desk.clock()))

    await _until(muted)
    return ack


def test_mute_story_is_acked_stored_survives_a_restart_and_expires(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    sock: FakeSocketMode,
    db_url: str,
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock, database_url=db_url)
    acks: list[float] = []

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            async with Socket(rt):
                await _connected(sock)
                (card,) = desk.cards()
                acks.append(await _mute_story(rt, desk, sock, card))
            desk.publish("AFP", STORY, "missile")
            await desk.cycle(rt)
        assert desk.replies() == []  # no "also reported by" for a muted story
        # a restart: the mute is in the database
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("AP", STORY, "missile")
            await desk.cycle(rt)
            assert desk.replies() == []
            async with rt.sessions() as s:
                (mute,) = await list_mutes(s, desk.clock())
            assert (mute.kind, mute.created_by) == ("story", ANN)
            assert mute.expires_at is not None
            window = timedelta(seconds=desk.cfg.settings.dedupe.window)
            left = _aware(mute.expires_at) - desk.clock()
            assert window - timedelta(minutes=1) < left <= window
            # the dedupe window later the mute has expired
            desk.offset = window + timedelta(minutes=1)
            async with rt.sessions() as s:
                assert await list_mutes(s, desk.clock()) == []

    asyncio.run(main())
    assert acks and acks[0] < 1.0


def test_mute_story_withdraws_the_replies_already_queued_for_it(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    sock: FakeSocketMode,
    db_url: str,
) -> None:
    """Copies seen before the click but not yet delivered never reach the thread."""
    desk = Desk(tmp_path, feed_server, slack, sock, database_url=db_url)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            (card,) = desk.cards()
            desk.publish("AFP", STORY, "missile")
            desk.publish("AP", STORY, "missile")
            await poll_cycle(rt, all_feeds=True)  # queued, not yet delivered
            async with rt.sessions() as s:
                assert await queued_alerts(s) >= 1  # the copies wait in the outbox
            async with Socket(rt):
                await _connected(sock)
                await _mute_story(rt, desk, sock, card)
            await deliver_pending(rt)
            async with rt.sessions() as s:
                assert await queued_alerts(s) == 0
        assert desk.replies() == []  # nothing posted under the muted story's card
        assert len(desk.cards()) == 1

    asyncio.run(main())


def test_mute_term_24h_stops_the_term_alerting_across_a_restart_until_it_expires(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    sock: FakeSocketMode,
    db_url: str,
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock, database_url=db_url)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            async with Socket(rt):
                await _connected(sock)
                (card,) = desk.cards()
                eid = sock.click(card, "mute_term", user=BOB, term="ballistic missile")
                await asyncio.to_thread(sock.wait_ack, eid)

                async def muted() -> bool:
                    async with rt.sessions() as s:
                        return ("korea", "ballistic missile") in await muted_terms(s, desk.clock())

                await _until(muted)
                # pressed again: no second mute
                eid = sock.click(card, "mute_term", user=ANN, term="ballistic missile")
                await asyncio.to_thread(sock.wait_ack, eid)
                await asyncio.sleep(0.2)
            async with rt.sessions() as s:
                (mute,) = await list_mutes(s, desk.clock())
            assert (mute.kind, mute.watchlist, mute.term) == ("term", "korea", "ballistic missile")
            assert mute.created_by == BOB and mute.expires_at is not None
            left = _aware(mute.expires_at) - desk.clock()
            assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)
            desk.publish("BBC", OTHER, "japan")
            await desk.cycle(rt)
            assert len(desk.cards()) == 1  # the muted term alerted nothing
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:  # a restart
            await startup(rt)
            desk.offset = timedelta(hours=23)
            desk.publish("AP", OTHER + " again", "japan-2")
            await desk.cycle(rt)
            assert len(desk.cards()) == 1
            desk.offset = timedelta(hours=24, minutes=5)  # expired
            desk.publish("AFP", "Seoul says ballistic missile flew 600 km before landing", "km")
            await desk.cycle(rt)
            assert len(desk.cards()) == 2, [c["text"] for c in desk.cards()]

    asyncio.run(main())


def test_acknowledge_updates_the_card_with_who_and_when_and_is_kept(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    sock: FakeSocketMode,
    db_url: str,
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock, database_url=db_url)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            (card,) = desk.cards()
            async with Socket(rt):
                await _connected(sock)
                eid = sock.click(card, "ack", user=ANN)
                await asyncio.to_thread(sock.wait_ack, eid)

                async def updated() -> bool:
                    return any(u["ts"] == card["ts"] for u in slack.updates)

                await _until(updated)
                # a second person: the first acknowledgement stands, no new edit
                eid = sock.click(card, "ack", user=BOB)
                await asyncio.to_thread(sock.wait_ack, eid)
                await asyncio.sleep(0.2)
            async with rt.sessions() as s:
                (row,) = await alerts_by_id(s, [_alert(card)])
            assert row.acked_by == ANN and row.acked_at is not None
        edits = [u for u in slack.updates if u["ts"] == card["ts"]]
        assert len(edits) == 1
        shown = _shown(edits[0])
        assert f"Acknowledged by <@{ANN}> at " in shown and BOB not in shown
        assert _labels(edits[0]) == _labels(card)  # still the card, with its buttons
        # a restart, then a new outlet edits the card: the acknowledgement is still there
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("AFP", STORY, "missile")
            await desk.cycle(rt)
        last = [u for u in slack.updates if u["ts"] == card["ts"]][-1]
        assert "Carried by 2 outlets" in _shown(last)
        assert f"Acknowledged by <@{ANN}>" in _shown(last)

    asyncio.run(main())


def test_events_and_foreign_actions_are_acked_and_change_nothing(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, sock: FakeSocketMode
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            async with Socket(rt) as client:
                await _connected(sock)
                ids = [
                    sock.send_event({"type": "app_mention", "user": ANN, "text": "hi"}),
                    sock.send(
                        {
                            "type": "interactive",
                            "payload": {
                                "type": "block_actions",
                                "user": {"id": ANN},
                                "actions": [{"action_id": "someone.else", "value": "{}"}],
                            },
                        }
                    ),
                ]
                for eid in ids:
                    await asyncio.to_thread(sock.wait_ack, eid)
                assert client.acked == 2
            async with rt.sessions() as s:
                assert await list_mutes(s, desk.clock()) == []
        assert slack.updates == []

    asyncio.run(main())
    assert {b["envelope_id"] for b in sock.ack_bodies} == set(sock.acks)


def test_the_daemon_holds_the_socket_and_lets_go_on_shutdown(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, sock: FakeSocketMode
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            daemon = Daemon(rt)
            task = asyncio.create_task(daemon.run())
            await _connected(sock)
            (card,) = desk.cards()
            eid = sock.click(card, "mute_story", user=ANN)
            await asyncio.to_thread(sock.wait_ack, eid)

            async def muted() -> bool:
                async with rt.sessions() as s:
                    return bool(await list_mutes(s, desk.clock()))

            await _until(muted)
            daemon.request_stop()
            await asyncio.wait_for(task, 60)
            assert daemon.socket is not None and daemon.socket.client is None

    asyncio.run(main())
    calls = [c for c in slack.calls if c["method"] == "apps.connections.open"]
    assert calls and all(c["error"] is None for c in calls)
    # the server saw the connection close
    deadline = time.monotonic() + 5
    while sock._ws is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sock._ws is None


def _story(card: dict[str, Any]) -> int:
    return int(card["metadata"]["event_payload"]["story_id"])


def _alert(card: dict[str, Any]) -> int:
    return int(card["metadata"]["event_payload"]["alert_id"])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_a_refused_app_token_is_said_once_and_the_rest_works(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    sock: FakeSocketMode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk = Desk(tmp_path, feed_server, slack, sock)
    slack.app_token = "xapp-other-token"  # Slack knows another one

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            async with Socket(rt) as client:
                await asyncio.sleep(1.5)
                assert not await client.connected()
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)

    with caplog.at_level(logging.INFO, logger="wirewatch"):
        asyncio.run(main())
    refused = [r for r in caplog.records if "refused the app token" in r.getMessage()]
    assert len(refused) == 1 and "invalid_auth" in refused[0].getMessage()
    assert "check SLACK_APP_TOKEN" in refused[0].getMessage()
    assert "xapp-test-token" not in caplog.text, caplog.text
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == ["ERROR"]
    assert len([c for c in slack.calls if c["method"] == "apps.connections.open"]) == 1
    assert sock.connections == 0
    assert len(desk.cards()) == 1  # alerts go out as ever


def test_the_sdk_log_never_shows_the_connection_ticket() -> None:
    from monitor.deliver import socket as sm

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    sm._SDK_LOG.addHandler(handler)
    try:
        try:
            raise ConnectionError("url='wss://wss.slack.test/link/?ticket=SECRET123&app_id=A1'")
        except ConnectionError as exc:
            sm._SDK_LOG.error("Failed to connect (error: %s); Retrying...", exc, exc_info=True)
    finally:
        sm._SDK_LOG.removeHandler(handler)
    assert records and "SECRET123" not in records[0] and "ticket=…" in records[0]


def test_a_refresh_from_slack_reconnects_and_clicks_still_work(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    sock: FakeSocketMode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack asks a connection to go (``disconnect``, ``refresh_requested``) every few
    hours: the client fetches a new URL and reconnects; each click is logged with the
    Slack user who made it."""
    desk = Desk(tmp_path, feed_server, slack, sock)

    async def main() -> None:
        async with open_runtime(desk.cfg, clock=desk.clock) as rt:
            await startup(rt)
            desk.publish("Reuters", STORY, "missile")
            await desk.cycle(rt)
            async with Socket(rt):
                await _connected(sock)
                sock.send({"type": "disconnect", "reason": "refresh_requested"})
                await _connected(sock, connections=2)
                (card,) = desk.cards()
                eid = sock.click(card, "mute_story", user=BOB)
                await asyncio.to_thread(sock.wait_ack, eid)

                async def muted() -> bool:
                    async with rt.sessions() as s:
                        return bool(await list_mutes(s, desk.clock()))

                await _until(muted)

    with caplog.at_level(logging.INFO, logger="wirewatch"):
        asyncio.run(main())
    assert len([c for c in slack.calls if c["method"] == "apps.connections.open"]) == 2
    (line,) = [r for r in caplog.records if r.name == "wirewatch.actions"]
    assert line.getMessage().startswith(f"{BOB} muted story ")
    assert getattr(line, "slack_user", None) == BOB and getattr(line, "mute_id", None)
