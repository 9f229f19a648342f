"""A local WebSocket server speaking Slack's Socket Mode envelope protocol.

Real sockets on 127.0.0.1, served by aiohttp from a background thread (its own event
loop), so tests can drive it from synchronous code and from ``asyncio.run`` alike. Pair it
with ``FakeSlack`` (``slack.socket_url = sock.url``): ``apps.connections.open`` answers
that URL to the app-level token, as Slack does.

On each connection the server sends ``{"type": "hello", ...}``; then the test sends
envelopes: ``click(card, action)`` (an ``interactive`` envelope with the ``block_actions``
payload Slack sends when a button on ``card`` is pressed), ``send_event(event)`` (an
``events_api`` envelope) or ``send(envelope)``. Acks (``{"envelope_id": ...}``) are
recorded with the time they came: ``wait_ack(envelope_id)``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from aiohttp import WSMsgType, web


class FakeSocketMode:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._ws: web.WebSocketResponse | None = None
        self._cond = threading.Condition()
        self.port = 0
        self.connections = 0  # WebSocket connections accepted so far
        self.sent: dict[str, float] = {}  # envelope id -> when it was sent (perf_counter)
        self.sent_wall: dict[str, float] = {}  # (time.time(), for other processes' clocks)
        self.acks: dict[str, float] = {}  # envelope id -> when its ack came
        self.ack_bodies: list[dict[str, Any]] = []
        self.received: list[str] = []  # every text frame the client sent

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSocketMode:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/link", self._handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def _stop() -> None:
            if self._ws is not None:
                await self._ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link?ticket=fake-ticket&app_id=A0000FAKE"

    # ------------------------------------------------------------------ server side

    async def _handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._cond:
            self._ws = ws
            self.connections += 1
            self._cond.notify_all()
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "connection_info": {"app_id": "A0000FAKE"},
                    "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                }
            )
        )
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            now = time.perf_counter()
            with self._cond:
                self.received.append(msg.data)
                try:
                    body = json.loads(msg.data)
                except ValueError:
                    body = None
                if isinstance(body, dict) and body.get("envelope_id"):
                    self.acks.setdefault(str(body["envelope_id"]), now)
                    self.ack_bodies.append(body)
                self._cond.notify_all()
        with self._cond:
            if self._ws is ws:
                self._ws = None
            self._cond.notify_all()
        return ws

    # ------------------------------------------------------------------ test side

    def wait_connected(self, timeout: float = 10.0, connections: int = 1) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._ws is None or self.connections < connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no Socket Mode connection")
                self._cond.wait(left)

    def send(self, envelope: dict[str, Any]) -> str:
        eid = str(envelope.setdefault("envelope_id", str(uuid.uuid4())))

        async def _send() -> None:
            ws = self._ws
            if ws is None:
                raise ConnectionError("no client connected")
            self.sent_wall[eid] = time.time()
            self.sent[eid] = time.perf_counter()
            await ws.send_str(json.dumps(envelope))

        fut: Future[None] = asyncio.run_coroutine_threadsafe(_send(), self._loop)
        fut.result(10)
        return eid

    def send_event(self, event: dict[str, Any]) -> str:
        return self.send(
            {
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": {
                    "type": "event_callback",
                    "team_id": "T0000FAKE",
                    "api_app_id": "A0000FAKE",
                    "event": event,
                    "event_id": "Ev" + uuid.uuid4().hex[:10].upper(),
                    "event_time": int(time.time()),
                },
            }
        )

    def click(
        self,
        card: dict[str, Any],
        action: str,
        *,
        user: str = "U0ANN1234",
        term: str | None = None,
    ) -> str:
        """Press the button ``action`` ("mute_story", "mute_term", "ack") on ``card`` (a
        message as ``FakeSlack`` recorded it); ``term`` picks a term's button, or its
        option in the menu."""
        element, chosen = find_action(card, action, term)
        act: dict[str, Any] = {
            "action_id": element["action_id"],
            "block_id": "wirewatch.actions",
            "action_ts": f"{time.time():.6f}",
        }
        if chosen is not None:
            act.update(type="static_select", selected_option=chosen)
        else:
            act.update(type="button", value=element["value"], text=element["text"])
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T0000FAKE"},
            "api_app_id": "A0000FAKE",
            "team": {"id": "T0000FAKE", "domain": "fake"},
            "container": {
                "type": "message",
                "message_ts": card["ts"],
                "channel_id": card["channel_id"],
                "is_ephemeral": False,
            },
            "channel": {"id": card["channel_id"], "name": str(card["channel"]).lstrip("#")},
            "message": {"ts": card["ts"], "text": card["text"], "blocks": card["blocks"]},
            "trigger_id": "1.2.fake",
            "response_url": "https://hooks.slack.test/actions/fake",
            "actions": [act],
        }
        envelope = {"type": "interactive", "accepts_response_payload": False, "payload": payload}
        return self.send(envelope)

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> float:
        """Seconds from sending the envelope to its ack."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"envelope {envelope_id} was not acknowledged")
                self._cond.wait(left)
            return self.acks[envelope_id] - self.sent[envelope_id]


def actions_of(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The elements of a card's ``actions`` block (none: [])."""
    for block in card.get("blocks") or []:
        if block.get("type") == "actions":
            return list(block.get("elements") or [])
    return []


def find_action(
    card: dict[str, Any], action: str, term: str | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(element, chosen option or None) for the button ``action`` on ``card``."""
    wanted = f"wirewatch.{action}"
    for element in actions_of(card):
        aid = str(element.get("action_id") or "")
        if aid != wanted and not aid.startswith(wanted + ":"):
            continue
        if element.get("type") == "static_select":
            for option in element.get("options") or []:
                if term is None or json.loads(option["value"]).get("term") == term:
                    return element, option
            continue
        if term is not None and json.loads(element["value"]).get("term") != term:
            continue
        return element, None
    raise LookupError(f"no {action} button on the card (term {term!r})")
