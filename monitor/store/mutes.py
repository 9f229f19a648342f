"""Queries on ``mutes``: stories and watchlist terms silenced from Slack or the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import MuteRow

STORY, TERM = "story", "term"


def _active(now: datetime) -> ColumnElement[bool]:
    return or_(col(MuteRow.expires_at).is_(None), col(MuteRow.expires_at) > now)


async def add_mute(session: AsyncSession, row: MuteRow) -> MuteRow:
    session.add(row)
    await session.flush()
    return row


async def list_mutes(session: AsyncSession, now: datetime) -> list[MuteRow]:
    """The mutes in force, oldest first."""
    rows = await session.exec(select(MuteRow).where(_active(now)).order_by(col(MuteRow.id)))
    return list(rows.all())


async def remove_mute(session: AsyncSession, mute_id: int) -> bool:
    """Lift a mute; whether there was one."""
    res = await session.exec(delete(MuteRow).where(col(MuteRow.id) == mute_id))
    return bool(res.rowcount)


async def muted_stories(session: AsyncSession, story_ids: Sequence[int], now: datetime) -> set[int]:
    """Which of these stories are muted now."""
    if not story_ids:
        return set()
    rows = await session.exec(
        select(MuteRow.story_id)
        .where(MuteRow.kind == STORY, _active(now))
        .where(col(MuteRow.story_id).in_(sorted(set(story_ids))))
    )
    return {sid for sid in rows.all() if sid is not None}


async def muted_terms(session: AsyncSession, now: datetime) -> set[tuple[str, str]]:
    """(watchlist, term) pairs muted now."""
    rows = await session.exec(
        select(MuteRow.watchlist, MuteRow.term).where(MuteRow.kind == TERM, _active(now))
    )
    return {(w, t) for w, t in rows.all() if w is not None and t is not None}


async def active_mute(
    session: AsyncSession,
    now: datetime,
    *,
    story_id: int | None = None,
    watchlist: str | None = None,
    term: str | None = None,
) -> MuteRow | None:
    """The mute in force on this story (``story_id``) or this watchlist term, if any."""
    query = select(MuteRow).where(_active(now))
    if story_id is not None:
        query = query.where(MuteRow.kind == STORY, MuteRow.story_id == story_id)
    else:
        query = query.where(MuteRow.kind == TERM, MuteRow.watchlist == watchlist)
        query = query.where(MuteRow.term == term)
    rows = await session.exec(query.order_by(col(MuteRow.id)))
    return rows.first()
