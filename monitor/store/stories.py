"""Queries on ``stories``: one row per story, the copies of one report folded together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, text
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.models import came_out
from monitor.store.tables import EntryRow, StoryRow


@dataclass
class StoryIds:
    """Ids for stories about to be created, known before insert so the story index can
    learn them while a batch is still being built. PostgreSQL takes them from the
    table's sequence (safe with many processes); SQLite, a one-process database, counts
    on from the largest id, read once."""

    next_id: int | None = None

    async def take(self, session: AsyncSession, n: int) -> list[int]:
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            conn = await session.connection()
            rows = await conn.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence('stories', 'id')) "
                    "FROM generate_series(1, :n)"
                ).bindparams(n=n)
            )
            return [int(r[0]) for r in rows.all()]
        if self.next_id is None:
            top = (await session.exec(select(func.max(StoryRow.id)))).one()
            self.next_id = int(top or 0) + 1
        start = self.next_id
        self.next_id += n
        return list(range(start, start + n))


async def stories_by_id(session: AsyncSession, story_ids: Sequence[int]) -> dict[int, StoryRow]:
    out: dict[int, StoryRow] = {}
    ids = sorted(story_ids)
    for start in range(0, len(ids), 500):
        found = await session.exec(
            select(StoryRow).where(col(StoryRow.id).in_(ids[start : start + 500]))
        )
        out.update({row.id or 0: row for row in found.all()})
    return out


async def insert_stories(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert stories rows (with their ids, from :class:`StoryIds`) in one statement."""
    if rows:
        conn = await session.connection()
        await conn.execute(insert(StoryRow), list(rows))


async def touch_story(session: AsyncSession, story_id: int, now: datetime) -> None:
    """Mark a story as changed now (one of its entries was retitled)."""
    story = await session.get(StoryRow, story_id)
    if story is not None:
        story.updated_at = now
        session.add(story)


async def stories_sources(
    session: AsyncSession, story_ids: Sequence[int]
) -> dict[int, list[tuple[str, str, str, datetime]]]:
    """Each story's outlets in the order their first copy was stored: (outlet, link,
    title, when it was published, or first seen when that is earlier or unknown); a few
    queries in all (by 500 stories)."""
    out: dict[int, list[tuple[str, str, str, datetime]]] = {}
    seen: dict[int, set[str]] = {}
    ids = sorted(set(story_ids))
    for start in range(0, len(ids), 500):
        conn = await session.connection()
        rows = await conn.execute(
            sa_select(
                col(EntryRow.story_id),
                col(EntryRow.source),
                col(EntryRow.link),
                col(EntryRow.title),
                col(EntryRow.published),
                col(EntryRow.seen_at),
            )
            .where(col(EntryRow.story_id).in_(ids[start : start + 500]))
            .order_by(col(EntryRow.id))
        )
        for sid, source, link, title, published, seen_at in rows.all():
            if sid is None:
                continue
            outlets = seen.setdefault(sid, set())
            if source not in outlets:
                outlets.add(source)
                out.setdefault(sid, []).append((source, link, title, came_out(published, seen_at)))
    return out
