"""Queries on the ``alerts`` table, the outbox: one row per alert to deliver, with its
state, sink, channel and the last reason it failed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import AlertRow, EntryRow


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
