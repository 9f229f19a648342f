"""Slack Socket Mode: the clicks on a card's buttons, with no public URL.

slack-sdk's socket-mode client (aiohttp) asks ``apps.connections.open`` for a WebSocket
URL with the app-level token (``SLACK_APP_TOKEN``, ``xapp-``, scope
``connections:write``), connects out to it and reconnects when Slack asks or the link
drops. Every envelope is acknowledged (``{"envelope_id": ...}``) as soon as it arrives,
before anything else, since Slack shows the user an error when no ack comes within 3 s.
A ``block_actions`` payload from one of Wirewatch's buttons becomes a ``DeskAction``
handed to ``on_action``; what it does (a mute, an acknowledgement) is the caller's
(``monitor.scheduler.actions``): this module only speaks to the network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from monitor.deliver.slack import (
    ACTION_ACK,
    ACTION_MUTE_STORY,
    ACTION_MUTE_TERM,
    DEFAULT_BASE_URL,
    NETWORK_ERRORS,
    connect_retry_handler,
    from_api_error,
)
from monitor.models import DeskAction, DeskActionKind

__all__ = ["SlackSocket", "parse_actions"]

log = logging.getLogger("wirewatch.socket")

OnAction = Callable[[DeskAction], Awaitable[None]]

# the WebSocket URL carries a connection ticket (a credential while it is valid): the
# socket-mode client's own log lines (under slack_sdk, which the CLI quiets to WARNING)
# never show it
_TICKET = re.compile(r"(ticket=)[^&\s'\"]+")


class _NoTicket(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:  # (an exception's text may quote the URL too)
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = _TICKET.sub(r"\1…", message), None
        return True


_SDK_LOG = logging.getLogger("slack_sdk.socket_mode.wirewatch")
_SDK_LOG.addFilter(_NoTicket())


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _kind(action_id: str) -> DeskActionKind | None:
    if action_id == ACTION_MUTE_STORY:
        return DeskActionKind.MUTE_STORY
    if action_id == ACTION_ACK:
        return DeskActionKind.ACK
    if action_id == ACTION_MUTE_TERM or action_id.startswith(ACTION_MUTE_TERM + ":"):
        return DeskActionKind.MUTE_TERM
    return None


def parse_actions(payload: dict[str, Any]) -> list[DeskAction]:
    """The Wirewatch buttons pressed in one ``block_actions`` payload (others' actions,
    and values that are not ours, are left out)."""
    if payload.get("type") != "block_actions":
        return []
    user = payload.get("user") or {}
    who = _str(user.get("id")) or _str(user.get("username")) or "unknown"
    channel = _str((payload.get("channel") or {}).get("id"))
    container = payload.get("container") or {}
    message_ts = _str(container.get("message_ts")) or _str((payload.get("message") or {}).get("ts"))
    out: list[DeskAction] = []
    for action in payload.get("actions") or []:
        if not isinstance(action, dict):
            continue
        kind = _kind(str(action.get("action_id") or ""))
        if kind is None:
            continue
        raw = action.get("value")
        if raw is None:  # a menu: the option chosen
            raw = (action.get("selected_option") or {}).get("value")
        try:
            value = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            value = None
        if not isinstance(value, dict):
            log.warning("a %s from %s carried no value Wirewatch wrote; ignored", kind, who)
            continue
        out.append(
            DeskAction(
                kind=kind,
                user=who,
                alert_id=_int(value.get("alert")),
                story_id=_int(value.get("story")),
                watchlist=_str(value.get("watchlist")),
                term=_str(value.get("term")),
                channel=channel,
                message_ts=message_ts,
            )
        )
    return out


class SlackSocket:
    """One Socket Mode connection: ``start`` connects (in the background: Slack being
    unreachable never holds up the daemon; the client keeps retrying), ``aclose``
    disconnects and waits for the actions already received to take effect."""

    def __init__(
        self,
        app_token: str,
        on_action: OnAction,
        *,
        base_url: str | None = None,
        ping_interval: float = 5.0,
    ) -> None:
        self._token = app_token
        self._on_action = on_action
        self._base_url = base_url or DEFAULT_BASE_URL
        self._ping_interval = ping_interval
        self.client: SocketModeClient | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.acked = 0  # envelopes acknowledged (tests and the bench read it)

    async def start(self) -> None:
        web = AsyncWebClient(
            base_url=self._base_url, retry_handlers=[connect_retry_handler()], timeout=15
        )
        self.client = SocketModeClient(
            app_token=self._token,
            web_client=web,
            ping_interval=self._ping_interval,
            logger=_SDK_LOG,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self._connecting = asyncio.create_task(self._connect(self.client), name="slack-socket")

    async def _connect(self, client: SocketModeClient) -> None:
        """Ask for the WebSocket URL ourselves first: a refused app token is said once,
        plainly, instead of the client's retry (and traceback) every few seconds;
        Slack unreachable is retried with backoff. Then the client connects and keeps
        the link up."""
        delay = 1.0
        while not client.closed:
            try:
                # (as the client's own issue_new_wss_url, without its error log line)
                resp = await client.web_client.apps_connections_open(app_token=self._token)
                client.wss_uri = str(resp["url"])
                break
            except SlackApiError as exc:
                error = from_api_error(exc)
                if error.permanent:
                    log.error(
                        "Slack refused the app token (%s): check SLACK_APP_TOKEN (an "
                        "app-level xapp- token with connections:write); the card buttons "
                        "do nothing until it is fixed and wirewatch restarted",
                        error.error,
                    )
                    return
                log.warning("Slack Socket Mode: %s; retrying in %.0f s", error.error, delay)
            except NETWORK_ERRORS as exc:
                log.warning(
                    "Slack Socket Mode: cannot reach Slack (%s); retrying in %.0f s",
                    type(exc).__name__,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        await client.connect()  # type: ignore[no-untyped-call]
        if not client.closed:
            log.info("Slack Socket Mode connected: card buttons are live")

    async def connected(self) -> bool:
        return self.client is not None and await self.client.is_connected()

    async def _on_request(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        # the ack first, whatever the envelope: Slack retries an envelope left unacked
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        self.acked += 1
        if req.type != "interactive":
            log.debug("Slack %s envelope acknowledged (not used)", req.type)
            return
        for action in parse_actions(req.payload):
            task = asyncio.create_task(self._apply(action))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _apply(self, action: DeskAction) -> None:
        try:
            await self._on_action(action)
        except Exception:
            log.exception(
                "the %s from Slack user %s could not be applied",
                action.kind,
                action.user,
                extra={"slack_user": action.user, "alert_id": action.alert_id},
            )

    async def aclose(self, grace: float = 10.0) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
