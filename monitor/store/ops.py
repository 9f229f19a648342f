"""Statements for operating Wirewatch: node liveness, queue and schedule figures (for
``/metrics``, ``/readyz`` and ``wirewatch status``) and feed-health announcements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, or_, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import AlertRow, FeedHealthRow, FeedRow, NodeRow

QUEUED = ("pending", "sending")


async def ping(session: AsyncSession) -> None:
    """One round trip: raises when the database does not answer."""
    await session.exec(select(text("1")))


async def record_tick(
    session: AsyncSession, *, owner: str, version: str, http: str, now: datetime
) -> None:
    """This node ticked at ``now`` (its row made at its first tick)."""
    res = await session.exec(
        update(NodeRow)
        .where(col(NodeRow.owner) == owner)
        .values(last_tick=now, stopped_at=None, version=version, http=http)
    )
    if not res.rowcount:
        # nodes gone for a week are forgotten (a restart is a new host:pid)
        await session.exec(
            NodeRow.__table__.delete().where(  # type: ignore[attr-defined]
                col(NodeRow.last_tick) < now - timedelta(days=7)
            )
        )
        session.add(NodeRow(owner=owner, version=version, http=http, started_at=now, last_tick=now))
    await session.commit()


async def record_stop(session: AsyncSession, owner: str, now: datetime) -> None:
    await session.exec(update(NodeRow).where(col(NodeRow.owner) == owner).values(stopped_at=now))
    await session.commit()


async def nodes(session: AsyncSession) -> list[NodeRow]:
    """Every node not yet forgotten, the most recent tick first."""
    rows = await session.exec(select(NodeRow).order_by(col(NodeRow.last_tick).desc()))
    return list(rows.all())


@dataclass
class Queue:
    pending: dict[str, int] = field(default_factory=dict)  # per sink: pending or sending
    # since when the oldest of them is due to go out: when it was queued (a held alert:
    # when its quiet hours end or its digest goes out, which may be ahead)
    oldest: datetime | None = None
    failed: int = 0

    @property
    def depth(self) -> int:
        return sum(self.pending.values())


async def queue(session: AsyncSession) -> Queue:
    out = Queue()
    rows = await session.exec(
        select(
            AlertRow.sink,
            func.count(),
            func.min(
                case(
                    (col(AlertRow.attempts) == 0, col(AlertRow.next_attempt_at)),
                    else_=col(AlertRow.created_at),
                )
            ),
        )
        .where(col(AlertRow.state).in_(QUEUED))
        .group_by(col(AlertRow.sink))
    )
    for sink, n, oldest in rows.all():
        out.pending[sink] = int(n)
        if oldest is not None and (out.oldest is None or oldest < out.oldest):
            out.oldest = oldest
    failed = await session.exec(select(func.count()).where(col(AlertRow.state) == "failed"))
    out.failed = int(failed.one())
    return out


@dataclass
class Schedule:
    enabled: int = 0
    due: int = 0  # enabled feeds whose due time has passed
    overdue: int = 0  # ... by more than the grace


async def schedule(session: AsyncSession, *, now: datetime, grace: float) -> Schedule:
    late = now - timedelta(seconds=grace)
    row = (
        await session.exec(
            select(
                func.count(),
                func.count().filter(col(FeedRow.next_due) <= now),
                func.count().filter(col(FeedRow.next_due) < late),
            ).where(col(FeedRow.enabled))
        )
    ).one()
    return Schedule(int(row[0]), int(row[1]), int(row[2]))


# -- feed health ---------------------------------------------------------------------


async def health_states(session: AsyncSession) -> dict[str, FeedHealthRow]:
    return {r.feed: r for r in (await session.exec(select(FeedHealthRow))).all()}


async def set_health(
    session: AsyncSession, changes: Sequence[tuple[str, str, str]], now: datetime
) -> None:
    """Record each (feed, state, detail) whose state changed. A feed seen for the first
    time in a good state is recorded as announced (nothing to say about it)."""
    known = await health_states(session)
    for feed, state, detail in changes:
        row = known.get(feed)
        if row is None:
            session.add(FeedHealthRow(feed=feed, state=state, detail=detail, since=now))
        elif row.state != state or row.detail != detail:
            if row.state != state:
                row.since = now
            row.state, row.detail = state, detail
            session.add(row)
    await session.commit()


async def claim_announcements(
    session: AsyncSession, *, owner: str, now: datetime, hold: float
) -> list[FeedHealthRow]:
    """Feeds whose state changed since it was last announced, claimed by ``owner`` for
    ``hold`` seconds (a node that dies mid-send leaves them to the next after that)."""
    table = FeedHealthRow.__table__  # type: ignore[attr-defined]
    res = await session.exec(
        update(FeedHealthRow)
        .where(table.c.state != table.c.announced)
        .where(or_(table.c.claim_until.is_(None), table.c.claim_until < now))
        .values(claim_owner=owner, claim_until=now + timedelta(seconds=hold))
        .returning(table.c.feed, table.c.state, table.c.detail, table.c.announced)
    )
    claimed = [
        FeedHealthRow(feed=f, state=s, detail=d, announced=a, since=now) for f, s, d, a in res.all()
    ]
    await session.commit()
    return claimed


async def finish_announcement(
    session: AsyncSession, *, owner: str, feed: str, state: str | None, now: datetime
) -> None:
    """Release ``owner``'s claim on ``feed``; with ``state``, it was announced."""
    values: dict[str, object] = {"claim_owner": None, "claim_until": None}
    if state is not None:
        values.update(announced=state, announced_at=now)
    await session.exec(
        update(FeedHealthRow)
        .where(col(FeedHealthRow.feed) == feed, col(FeedHealthRow.claim_owner) == owner)
        .values(**values)
    )
    await session.commit()


async def schema_revision(session: AsyncSession) -> str:
    row = await session.exec(select(text("version_num FROM alembic_version")))
    return ", ".join(sorted(str(r) for r in row.all()))
