"""Queries on ``alerts``: the outbox. One row per story, watchlist and sink (``new``),
and one per further outlet (``followup``); states in :class:`monitor.models.AlertState`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.models import AlertKind, AlertState
from monitor.store.tables import AlertRow, EntryRow

PENDING, SENDING, SENT = AlertState.PENDING, AlertState.SENDING, AlertState.SENT


async def first_alerts_of_stories(
    session: AsyncSession, story_ids: Sequence[int]
) -> list[tuple[int, int, str, str, str]]:
    """(id, story, watchlist, sink, channel) of these stories' ``new`` alerts, oldest
    first: the parents their follow-ups thread under."""
    out: list[tuple[int, int, str, str, str]] = []
    ids = sorted(story_ids)
    conn = await session.connection()
    for start in range(0, len(ids), 500):
        rows = await conn.execute(
            sa_select(
                col(AlertRow.id),
                col(AlertRow.story_id),
                col(AlertRow.watchlist),
                col(AlertRow.sink),
                col(AlertRow.channel),
            )
            .where(col(AlertRow.story_id).in_(ids[start : start + 500]))
            .where(col(AlertRow.kind) == AlertKind.NEW)
            .order_by(col(AlertRow.id))
        )
        out.extend((int(a or 0), int(s), w, k, c) for a, s, w, k, c in rows.all())
    return out


async def insert_alerts(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[tuple[int, int, str, str]]:
    """Queue alerts rows; (id, story, watchlist, sink) of each, for follow-ups to
    thread under."""
    if not rows:
        return []
    conn = await session.connection()
    made = await conn.execute(
        insert(AlertRow).returning(
            col(AlertRow.id), col(AlertRow.story_id), col(AlertRow.watchlist), col(AlertRow.sink)
        ),
        list(rows),
    )
    return [(int(a or 0), int(s), w, k) for a, s, w, k in made.all()]


async def queue_followups(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn = await session.connection()
        await conn.execute(insert(AlertRow), list(rows))


async def parent_headlines(
    session: AsyncSession, alert_ids: Sequence[int]
) -> dict[int, tuple[str | None, str]]:
    """(ts, headline) of these alerts: where their follow-ups thread, and what they
    announced."""
    rows = await session.exec(
        select(AlertRow.id, AlertRow.ts, EntryRow.title)
        .join(EntryRow, col(EntryRow.id) == col(AlertRow.entry_id))
        .where(col(AlertRow.id).in_(list(alert_ids)))
    )
    return {aid or 0: (ts, title) for aid, ts, title in rows.all()}


async def stuck_sending(session: AsyncSession, since: datetime) -> list[AlertRow]:
    """Rows claimed for sending at or before ``since`` and never settled."""
    rows = await session.exec(
        select(AlertRow)
        .where(AlertRow.state == SENDING)
        .where(col(AlertRow.sending_at) <= since)
        .order_by(col(AlertRow.id))
    )
    return list(rows.all())


async def due_channels(
    session: AsyncSession, now: datetime, sinks: Sequence[str]
) -> list[tuple[str, str]]:
    """(sink, channel) pairs of these sinks with an alert due by ``now``."""
    rows = await session.exec(
        select(AlertRow.sink, AlertRow.channel)
        .where(AlertRow.state == PENDING)
        .where(col(AlertRow.next_attempt_at) <= now)
        .where(col(AlertRow.sink).in_(list(sinks)))
        .distinct()
    )
    return [(sink, channel) for sink, channel in rows.all()]


async def pending_in_channel(session: AsyncSession, sink: str, channel: str) -> list[AlertRow]:
    """A channel's pending alerts, in queue (id) order."""
    rows = await session.exec(
        select(AlertRow)
        .where(AlertRow.state == PENDING)
        .where(AlertRow.sink == sink, AlertRow.channel == channel)
        .order_by(col(AlertRow.id))
    )
    return list(rows.all())


async def count_sent_new(session: AsyncSession, sink: str, channel: str, since: datetime) -> int:
    """First alerts a channel was sent since ``since`` (the burst that digests)."""
    n = (
        await session.exec(
            select(func.count())
            .select_from(AlertRow)
            .where(AlertRow.sink == sink, AlertRow.channel == channel)
            .where(AlertRow.kind == AlertKind.NEW, AlertRow.state == SENT)
            .where(col(AlertRow.sent_at) >= since)
        )
    ).one()
    return int(n)


async def claim_alerts(session: AsyncSession, alert_ids: Sequence[int], now: datetime) -> set[int]:
    """Move these alerts from pending to sending with one conditional UPDATE; the ids it
    moved. Only the caller that moves a row may send it (no double send, even across
    processes)."""
    res = await session.exec(
        update(AlertRow)
        .where(col(AlertRow.id).in_(list(alert_ids)), col(AlertRow.state) == PENDING)
        .values(state=SENDING, sending_at=now, attempts=col(AlertRow.attempts) + 1)
        .returning(col(AlertRow.id))
    )
    return set(res.scalars().all())


async def alerts_by_id(session: AsyncSession, alert_ids: Sequence[int]) -> list[AlertRow]:
    rows = await session.exec(select(AlertRow).where(col(AlertRow.id).in_(list(alert_ids))))
    return list(rows.all())


async def mark_shown_in_parent(
    session: AsyncSession, alert_ids: Sequence[int], ts: str | None, now: datetime, note: str
) -> int:
    """Pending copies shown in their story's message: sent, with its ts. How many."""
    res = await session.exec(
        update(AlertRow)
        .where(col(AlertRow.id).in_(list(alert_ids)), col(AlertRow.state) == PENDING)
        .values(state=SENT, ts=ts, sent_at=now, last_error=note)
    )
    return int(res.rowcount)


async def withdraw_queued_replies(session: AsyncSession, story_id: int) -> int:
    """Delete a story's replies and escalations still waiting in the outbox (a muted
    story gets no more of them); rows a worker has claimed may already be in the channel
    and are left to finish. How many."""
    res = await session.exec(
        delete(AlertRow).where(
            col(AlertRow.story_id) == story_id,
            col(AlertRow.state) == PENDING,
            col(AlertRow.kind).in_(
                [AlertKind.FOLLOWUP.value, AlertKind.UPDATE.value, AlertKind.ESCALATION.value]
            ),
        )
    )
    return int(res.rowcount)


async def pending_by_other_sinks(session: AsyncSession, sinks: Sequence[str]) -> dict[str, int]:
    """Pending alerts per sink not among ``sinks``."""
    rows = await session.exec(
        select(AlertRow.sink, func.count())
        .where(AlertRow.state == PENDING)
        .where(col(AlertRow.sink).not_in(list(sinks)))
        .group_by(col(AlertRow.sink))
    )
    return {sink: int(n) for sink, n in rows.all()}


async def next_pending_at(
    session: AsyncSession, sinks: Sequence[str], *, held_after: datetime | None = None
) -> datetime | None:
    """When the next pending alert of these sinks is due; with ``held_after``, leaving
    out the alerts held past it (never tried, due later: quiet hours, a digest)."""
    stmt = (
        select(func.min(AlertRow.next_attempt_at))
        .where(AlertRow.state == PENDING)
        .where(col(AlertRow.sink).in_(list(sinks)))
    )
    if held_after is not None:
        stmt = stmt.where(
            or_(col(AlertRow.attempts) > 0, col(AlertRow.next_attempt_at) <= held_after)
        )
    when: datetime | None = (await session.exec(stmt)).one()
    return when


async def held_until(
    session: AsyncSession, alert_ids: Sequence[int], now: datetime
) -> dict[int, datetime]:
    """Of these alerts, those held past ``now`` (pending, never tried, due later: their
    watchlist's quiet hours or digest), with when they are due."""
    out: dict[int, datetime] = {}
    ids = sorted(set(alert_ids))
    for start in range(0, len(ids), 500):
        rows = await session.exec(
            select(AlertRow.id, AlertRow.next_attempt_at)
            .where(col(AlertRow.id).in_(ids[start : start + 500]))
            .where(AlertRow.state == PENDING, AlertRow.attempts == 0)
            .where(col(AlertRow.next_attempt_at) > now)
        )
        out.update((int(aid or 0), when) for aid, when in rows.all())
    return out


async def held_alerts(session: AsyncSession, now: datetime) -> list[tuple[int, str, str, datetime]]:
    """(id, watchlist, kind, due) of every alert held past ``now`` by its watchlist's
    quiet hours or digest (pending, never tried, due later)."""
    rows = await session.exec(
        select(AlertRow.id, AlertRow.watchlist, AlertRow.kind, AlertRow.next_attempt_at)
        .where(AlertRow.state == PENDING, AlertRow.attempts == 0)
        .where(col(AlertRow.next_attempt_at) > now)
    )
    return [(int(aid or 0), wl, kind, when) for aid, wl, kind, when in rows.all()]


async def set_due(session: AsyncSession, due: dict[int, datetime]) -> None:
    """Move held alerts' due times (a reload shortened their watchlist's hold): one
    statement per distinct new time (a watchlist's held alerts share their release)."""
    by_time: dict[datetime, list[int]] = {}
    for alert_id, when in due.items():
        by_time.setdefault(when, []).append(alert_id)
    for when, ids in by_time.items():
        await session.exec(
            update(AlertRow)
            .where(col(AlertRow.id).in_(ids), col(AlertRow.state) == PENDING)
            .values(next_attempt_at=when)
        )


async def release_held(session: AsyncSession, alert_ids: Sequence[int], now: datetime) -> int:
    """Make these held alerts due now (a story that escalates breaks through its
    watchlist's quiet hours or digest). How many."""
    if not alert_ids:
        return 0
    res = await session.exec(
        update(AlertRow)
        .where(col(AlertRow.id).in_(list(alert_ids)))
        .where(col(AlertRow.state) == PENDING, col(AlertRow.attempts) == 0)
        .where(col(AlertRow.next_attempt_at) > now)
        .values(next_attempt_at=now)
    )
    return int(res.rowcount)


async def queued_alerts(session: AsyncSession) -> int:
    """Alerts not delivered yet (pending, or sent with the outcome unknown)."""
    count = await session.exec(
        select(func.count()).where(col(AlertRow.state).in_(["pending", "sending"]))
    )
    return int(count.one())


async def story_alerts(
    session: AsyncSession, story_ids: Sequence[int]
) -> list[tuple[int, int, int, str, str, str, str, str | None]]:
    """(id, story, entry, watchlist, sink, channel, kind, detail) of these stories'
    alerts other than follow-ups, oldest first: the parents replies thread under, the
    headline last announced, and the escalations already queued."""
    out: list[tuple[int, int, int, str, str, str, str, str | None]] = []
    ids = sorted(story_ids)
    conn = await session.connection()
    for start in range(0, len(ids), 500):
        rows = await conn.execute(
            sa_select(
                col(AlertRow.id),
                col(AlertRow.story_id),
                col(AlertRow.entry_id),
                col(AlertRow.watchlist),
                col(AlertRow.sink),
                col(AlertRow.channel),
                col(AlertRow.kind),
                col(AlertRow.detail),
            )
            .where(col(AlertRow.story_id).in_(ids[start : start + 500]))
            .where(col(AlertRow.kind) != AlertKind.FOLLOWUP)
            .order_by(col(AlertRow.id))
        )
        out.extend(
            (int(a or 0), int(s), int(e), w, k, c, kind, d)
            for a, s, e, w, k, c, kind, d in rows.all()
        )
    return out


async def alert_by_id(session: AsyncSession, alert_id: int) -> AlertRow | None:
    """The alert ``alert_id``, or None when there is none."""
    return await session.get(AlertRow, alert_id)


async def list_alerts_with_titles(
    session: AsyncSession, states: Sequence[str]
) -> list[tuple[AlertRow, str]]:
    """The alerts in ``states``, each with its entry's title, in id order."""
    rows = await session.exec(
        select(AlertRow, EntryRow.title)
        .join(EntryRow, col(EntryRow.id) == col(AlertRow.entry_id))
        .where(col(AlertRow.state).in_(list(states)))
        .order_by(col(AlertRow.id))
    )
    return [(a, t) for a, t in rows.all()]


async def requeue_alerts(
    session: AsyncSession, *, alert_id: int | None, now: datetime, mark: str
) -> list[int]:
    """Make alert ``alert_id`` (when failed or pending), or every failed alert, pending
    and due at ``now`` with its attempts reset. The reason it had stays, prefixed by
    ``mark`` (once, however often it is re-queued), so that it reads as the reason
    before the retry. Returns the ids re-queued; the caller commits."""
    stmt = update(AlertRow).values(
        state="pending",
        next_attempt_at=now,
        attempts=0,
        check_failures=0,
        last_error=func.substr(
            mark + func.replace(func.coalesce(col(AlertRow.last_error), "-"), mark, ""), 1, 500
        ),
    )
    if alert_id is not None:
        stmt = stmt.where(col(AlertRow.id) == alert_id).where(
            col(AlertRow.state).in_(["failed", "pending"])
        )
    else:
        stmt = stmt.where(col(AlertRow.state) == "failed")
    return list((await session.exec(stmt.returning(col(AlertRow.id)))).scalars())


async def redirect_all_alerts(session: AsyncSession, sink: str) -> None:
    """Send every alert in the database to ``sink`` (a dry run's copy: to the console)."""
    await session.exec(update(AlertRow).values(sink=sink))
    await session.commit()


def set_alert_channel(session: AsyncSession, alert: AlertRow, channel: str) -> None:
    """Send ``alert`` to ``channel`` from now on; the caller commits."""
    alert.channel = channel
    session.add(alert)


async def acknowledge(
    session: AsyncSession, alert_id: int, user: str, now: datetime
) -> tuple[AlertRow | None, bool]:
    """Mark the story alert ``alert_id`` (a ``new`` alert: the card) acknowledged by
    ``user`` at ``now``, unless someone already did: the first acknowledgement stands.
    Returns the row (None when there is no such alert) and whether it changed."""
    res = await session.exec(
        update(AlertRow)
        .where(col(AlertRow.id) == alert_id, col(AlertRow.kind) == AlertKind.NEW)
        .where(col(AlertRow.acked_by).is_(None))
        .values(acked_by=user, acked_at=now)
    )
    rows = await session.exec(
        select(AlertRow)
        .where(col(AlertRow.id) == alert_id, col(AlertRow.kind) == AlertKind.NEW)
        .execution_options(populate_existing=True)
    )
    return rows.first(), bool(res.rowcount)
