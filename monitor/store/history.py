"""Feed history for :mod:`monitor.health`: each feed's recent entry times, read with
window functions (SQLite and PostgreSQL) in a bounded number of queries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.health import (
    CADENCE_ENTRIES,
    CADENCE_SPAN,
    SILENT_FLOOR,
    SILENT_LONGEST,
    SILENT_MIN_ENTRIES,
    History,
)
from monitor.store.tables import EntryRow


async def feed_history(
    session: AsyncSession, feeds: list[Any], now: datetime
) -> dict[int, History]:
    """Every feed's recent history in a bounded number of queries: one over the entries
    first seen in the last CADENCE_SPAN (the seen_at index bounds the scan), then the
    whole history of the feeds that had too few entries in it, 500 feeds a query."""
    since = now - timedelta(seconds=CADENCE_SPAN)
    out = await _history_query(session, col(EntryRow.seen_at) >= since, now)
    few = [
        f.id
        for f in feeds
        if f.entries_seen and (f.id not in out or out[f.id].count < SILENT_MIN_ENTRIES)
    ]
    for start in range(0, len(few), 500):
        chunk = few[start : start + 500]
        out.update(await _history_query(session, col(EntryRow.feed_id).in_(chunk), now))
    return out


async def _history_query(session: AsyncSession, where: Any, now: datetime) -> dict[int, History]:
    """Per feed, among the entries ``where`` selects: the newest CADENCE_ENTRIES and,
    within CADENCE_SPAN of the newest, the gaps long enough to matter; with the oldest
    date and the count of the last week. Window functions (SQLite and PostgreSQL)."""
    pub, seen_at = col(EntryRow.published), col(EntryRow.seen_at)
    dated = (
        select(
            col(EntryRow.feed_id).label("feed_id"),
            # undated → first seen; compared as stored, converted to seconds once
            func.extract("epoch", case((pub < seen_at, pub), else_=seen_at)).label("t"),
            func.extract("epoch", seen_at).label("seen"),
        )
        .where(where)
        .subquery()
    )
    by_feed, newest_first = dated.c.feed_id, dated.c.t.desc()
    ranked = select(
        dated.c.feed_id,
        dated.c.t,
        dated.c.seen,
        func.row_number().over(partition_by=by_feed, order_by=newest_first).label("rn"),
        (dated.c.t - func.lead(dated.c.t).over(partition_by=by_feed, order_by=newest_first)).label(
            "gap"
        ),
        func.max(dated.c.t).over(partition_by=by_feed).label("newest"),
        func.min(dated.c.t).over(partition_by=by_feed).label("oldest"),
        func.count(case((dated.c.t >= now.timestamp() - 7 * 86400, 1)))
        .over(partition_by=by_feed)
        .label("week"),
    ).subquery()
    r = ranked.c
    # a shorter gap never decides: SILENT_FLOOR is more than SILENT_LONGEST x it
    short = SILENT_FLOOR / SILENT_LONGEST
    query = (
        select(ranked)
        .where((r.rn <= CADENCE_ENTRIES) | ((r.t >= r.newest - CADENCE_SPAN) & (r.gap > short)))
        .order_by(r.feed_id, r.rn)
    )
    out: dict[int, History] = {}
    first_seen: dict[int, float] = {}
    conn = await session.connection()  # plain rows; the ORM session adds nothing here
    for row in (await conn.execute(query)).all():
        h = out.get(row.feed_id)
        if h is None:
            h = out[row.feed_id] = History(
                newest=float(row.newest),
                oldest=float(row.oldest),
                gaps=[],
                longest=0.0,
                arrived=None,
                last_week=int(row.week),
                count=0,
            )
        gap = None if row.gap is None else float(row.gap)
        if gap is not None:
            h.longest = max(h.longest, gap)
        if row.rn <= CADENCE_ENTRIES:
            h.count += 1
            seen = float(row.seen)
            h.arrived = max(h.arrived or seen, seen)
            first_seen[row.feed_id] = min(first_seen.get(row.feed_id, seen), seen)
            if gap is not None:
                h.gaps.append(gap)
    for feed_id, h in out.items():
        if h.arrived is not None and h.arrived <= first_seen[feed_id]:
            h.arrived = None  # all in one poll (a backlog): only their dates tell
    return out
