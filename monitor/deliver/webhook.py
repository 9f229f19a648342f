"""Generic JSON webhook sink, signed with HMAC-SHA256.

Each alert is one ``POST`` with ``Content-Type: application/json`` and this body::

    {
      "type": "wirewatch.alert",      # constant
      "version": 1,                   # body schema version
      "sent_at": 1714564800,          # unix seconds; equals X-Wirewatch-Timestamp
      "alert_id": 42, "story_id": 7,  # alert_id is stable across retries: dedupe on it
      "kind": "new" | "followup" | "update" | "escalation" | "digest",
      "watchlist": "korea", "channel": "#alerts", "severity": "info" | "high" | "critical",
      "title": "...", "link": "https://...", "source": "BBC World",
      "published": "2024-05-01T12:00:00+00:00" | null,
      "summary": "...", "matched_terms": ["Kim Jong Un"], "matched_words": ["Kim Jong-un"],
      "sources": [{"source": "BBC World", "link": "https://...", "title": "..."}],
      "thread_ts": null,
      "change": {"old": "...", "new": "..."} | null,   # kind "update": the headline change
      "rule": "5 outlets within 15m" | null,          # kind "escalation": the rule crossed
      "digest": [ {same fields, without digest}, ... ]   # non-empty only for kind "digest"
    }

Headers: ``X-Wirewatch-Timestamp: <sent_at>``, ``X-Wirewatch-Delivery: <alert_id>``
(idempotency key) and, when a secret is configured,
``X-Wirewatch-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``. The timestamp is
inside the signed body, so receivers can reject stale replays. Text is passed through as the
pipeline normalised it (plain text); receivers must escape it for their own medium.

Outcome: 2xx ok; 429 (honouring ``Retry-After``), 408, 5xx and network errors transient;
redirects and other 4xx permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from monitor import __version__
from monitor.deliver.base import DeliveryResult, network_error
from monitor.models import AlertMessage

__all__ = ["WebhookNotifier", "alert_payload", "sign"]

SIGNATURE_HEADER = "X-Wirewatch-Signature"
TIMESTAMP_HEADER = "X-Wirewatch-Timestamp"
DELIVERY_HEADER = "X-Wirewatch-Delivery"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _item(msg: AlertMessage) -> dict[str, Any]:
    return {
        "alert_id": msg.alert_id,
        "story_id": msg.story_id,
        "kind": "digest" if msg.digest else msg.kind,
        "watchlist": msg.watchlist,
        "channel": msg.channel,
        "severity": msg.severity,
        "title": msg.title,
        "link": msg.link,
        "source": msg.source,
        "published": _iso(msg.published),
        "summary": msg.summary,
        "matched_terms": list(msg.matched_terms),
        "matched_words": list(msg.matched_words),
        "sources": [{"source": s.source, "link": s.link, "title": s.title} for s in msg.sources],
        "thread_ts": msg.thread_ts,
        # an update: the headline before and after; an escalation: the rule it crossed
        "change": {"old": msg.change[0], "new": msg.change[1]} if msg.change else None,
        "rule": msg.rule or None,
    }


def alert_payload(msg: AlertMessage, sent_at: int) -> dict[str, Any]:
    """The JSON body documented in this module's docstring."""
    body = {"type": "wirewatch.alert", "version": 1, "sent_at": sent_at, **_item(msg)}
    body["digest"] = [_item(m) for m in msg.digest]
    return body


def sign(secret: str, body: bytes) -> str:
    """Value of the signature header for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class WebhookNotifier:
    """POSTs each alert as signed JSON to ``url``."""

    name = "webhook"
    # one body per alert, never a digest: a receiver drops retried copies by
    # X-Wirewatch-Delivery, and a digest resent after an unanswered POST (the outbox
    # cannot ask a webhook what arrived) could group its alerts differently, under
    # another delivery id: the receiver would show them twice. Machines need no pacing.
    paced = False

    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 15.0,
        user_agent: str = f"Wirewatch/{__version__} (webhook)",
    ) -> None:
        self.url = url
        self.secret = secret
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    def build_request(
        self, msg: AlertMessage, now: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """(body, headers) for ``msg``; exposed for tests and for receivers' docs."""
        sent_at = int(time.time()) if now is None else now
        body = json.dumps(alert_payload(msg, sent_at), ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self._user_agent,
            TIMESTAMP_HEADER: str(sent_at),
            DELIVERY_HEADER: str(msg.alert_id),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return body, headers

    async def send(self, msg: AlertMessage) -> DeliveryResult:
        body, headers = self.build_request(msg)
        try:
            async with self._get_session().post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except aiohttp.ClientConnectorError as exc:
            return DeliveryResult(
                ok=False, error=f"connection refused: {exc.os_error or exc}"[:200]
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return DeliveryResult(ok=False, error=network_error(exc, "the webhook"), uncertain=True)
        if 200 <= status < 300:
            return DeliveryResult(ok=True)
        if status == 429:
            return DeliveryResult(ok=False, error="http_429", retry_after=_retry_after(retry_after))
        if status >= 500 or status == 408:
            return DeliveryResult(ok=False, error=f"http_{status}")
        return DeliveryResult(ok=False, error=f"http_{status}", permanent=True)

    async def update(self, msg: AlertMessage, ts: str, part: int = 0) -> DeliveryResult:
        return DeliveryResult(ok=True)

    async def find_sent(self, msg: AlertMessage, since: datetime) -> str | None:
        return None

    async def aclose(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
