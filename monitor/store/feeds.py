"""Queries on the ``feeds`` table: one row per feed ever configured, with its schedule,
health counters and lease."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import FeedRow


async def all_feeds(session: AsyncSession) -> list[FeedRow]:
    """Every stored feed, configured or not any more."""
    return list((await session.exec(select(FeedRow))).all())
