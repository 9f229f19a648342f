"""Queries on the ``entries`` table: every item read from a feed, with its story."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import EntryRow, FeedRow


async def entry_and_feed(
    session: AsyncSession, entry_id: int
) -> tuple[EntryRow, FeedRow | None] | None:
    """Entry ``entry_id`` and the feed it came from, or None when there is no such entry."""
    row = await session.get(EntryRow, entry_id)
    if row is None:
        return None
    return row, await session.get(FeedRow, row.feed_id)


async def entries_titled(
    session: AsyncSession, title: str, *, limit: int = 10
) -> list[tuple[int, str]]:
    """(id, feed name) of the entries titled exactly ``title``, newest first."""
    rows = await session.exec(
        select(EntryRow.id, FeedRow.name)
        .join(FeedRow, col(FeedRow.id) == col(EntryRow.feed_id))
        .where(col(EntryRow.title) == title)
        .order_by(col(EntryRow.id).desc())
        .limit(limit)
    )
    return [(int(i or 0), name) for i, name in rows.all()]


async def entries_in_stories_since(session: AsyncSession, since: datetime) -> list[EntryRow]:
    """The entries first seen at or after ``since`` that belong to a story, in id order."""
    rows = await session.exec(
        select(EntryRow)
        .where(col(EntryRow.seen_at) >= since)
        .where(col(EntryRow.story_id).is_not(None))
        .order_by(col(EntryRow.id))
    )
    return list(rows.all())
