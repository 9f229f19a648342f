"""The one interface every alert sink implements, and the result it reports.

The outbox worker (``monitor.outbox``) owns retries, pacing and backoff; a notifier
makes exactly one delivery attempt per call and reports what happened as data. It never
raises for delivery failures (network down, HTTP errors, Slack API errors): those come
back as a ``DeliveryResult`` with ``ok=False``. ``find_sent`` is the exception: when the
lookup itself cannot be made it raises ``LookupFailed`` so that "could not check" is never
mistaken for "not there" (which would post a second copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from monitor.models import AlertMessage

__all__ = ["DeliveryResult", "LookupFailed", "Notifier", "network_error"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Outcome of one delivery attempt.

    ``ok``: delivered. ``ts``: Slack message timestamp (threading/editing key), ``None``
    for sinks without one. ``error``: short reason (a Slack error code such as
    ``channel_not_found``, ``ratelimited``, ``http_503``, ``connection refused``).
    ``permanent``: retrying cannot help (bad channel, bad token, payload rejected): mark
    the alert failed. ``retry_after``: seconds the server asked us to wait (429).
    ``uncertain``: the request may have reached the server before the connection broke,
    so the message may exist: reconcile with ``find_sent`` before sending again.
    ``channel``: the channel id Slack reported for the post (for later edits/lookups).
    ``parts``: the ts of every message posted for it, in order (a digest posts several;
    after a failure part-way, the parts that did go out).
    """

    ok: bool
    ts: str | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    uncertain: bool = False
    channel: str | None = None
    parts: tuple[str, ...] = ()


def network_error(exc: BaseException, peer: str) -> str:
    """A short reason for a failed request to ``peer`` (``Slack``, ``the webhook``):
    ``timeout: no answer from Slack in time``, ``ServerDisconnectedError: ...``. Many of
    these exceptions have no message of their own (``TimeoutError()``), which left
    reasons like ``timeout: `` in logs and in ``wirewatch outbox``."""
    kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
    text = str(exc).strip()
    if not text:
        text = (
            f"no answer from {peer} in time"
            if kind == "timeout"
            else f"the connection to {peer} failed"
        )
    return f"{kind}: {text}"[:200]


class LookupFailed(Exception):
    """``find_sent`` could not determine whether the message exists. ``permanent``: the
    sink answered with an error that retrying will not fix (a missing scope, an unknown
    method): the outbox gives up after a few tries rather than guess."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@runtime_checkable
class Notifier(Protocol):
    name: str

    async def send(self, msg: AlertMessage) -> DeliveryResult:
        """Deliver ``msg``: ``kind == "new"`` a parent post, ``"followup"`` a reply in
        ``msg.thread_ts``; a non-empty ``msg.digest`` is a digest (all of its parts)."""
        ...

    async def update(self, msg: AlertMessage, ts: str, part: int = 0) -> DeliveryResult:
        """Replace message ``ts`` with ``msg`` re-rendered whole: a card (every outlet
        carrying the story) or, when ``msg.digest`` is set, part ``part`` of that digest.
        Sinks that cannot edit return ``DeliveryResult(ok=True)`` without doing anything."""
        ...

    async def find_sent(self, msg: AlertMessage, since: datetime) -> str | None:
        """After a crash: the ts of a message already delivered for ``msg.alert_id`` at or
        after ``since``, else ``None``. Sinks that cannot look return ``None``."""
        ...

    async def aclose(self) -> None: ...
