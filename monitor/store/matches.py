"""Queries on ``matches``: which watchlist each story matched, with its terms."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import MatchRow


@dataclass(slots=True)
class StoredMatch:
    """A story's match for one watchlist (``id`` None until inserted); ``dirty`` when
    it changed since it was read."""

    id: int | None
    story_id: int
    entry_id: int
    watchlist: str
    terms: list[str]
    words: list[str]
    alerted: bool
    dirty: bool = False
    created_at: datetime | None = None


async def matches_of_stories(
    session: AsyncSession, story_ids: Sequence[int]
) -> dict[int, dict[str, StoredMatch]]:
    """The stored matches of these stories, by story id and watchlist."""
    out: dict[int, dict[str, StoredMatch]] = {}
    conn = await session.connection()
    ids = sorted(story_ids)
    for start in range(0, len(ids), 500):
        rows = await conn.execute(
            sa_select(
                col(MatchRow.id),
                col(MatchRow.story_id),
                col(MatchRow.entry_id),
                col(MatchRow.watchlist),
                col(MatchRow.terms),
                col(MatchRow.words),
                col(MatchRow.alerted),
            ).where(col(MatchRow.story_id).in_(ids[start : start + 500]))
        )
        for match_id, story, entry, watchlist, terms, words, alerted in rows.all():
            out.setdefault(story, {})[watchlist] = StoredMatch(
                match_id, story, entry, watchlist, json.loads(terms), json.loads(words), alerted
            )
    return out


async def save_matches(session: AsyncSession, matches: Sequence[StoredMatch]) -> list[StoredMatch]:
    """Insert the new matches and update the changed ones, one statement each. Returns
    the new ones."""
    conn = await session.connection()
    new = [m for m in matches if m.id is None]
    changed = [m for m in matches if m.id is not None and m.dirty]
    if new:
        await conn.execute(insert(MatchRow), [_values(m) for m in new])
    if changed:
        table = MatchRow.__table__  # type: ignore[attr-defined]
        await conn.execute(
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values(
                terms=bindparam("_terms"), words=bindparam("_words"), alerted=bindparam("_alerted")
            ),
            [
                {
                    "_id": m.id,
                    "_terms": json.dumps(m.terms),
                    "_words": json.dumps(m.words),
                    "_alerted": m.alerted,
                }
                for m in changed
            ],
        )
    return new


def _values(m: StoredMatch) -> dict[str, Any]:
    return {
        "story_id": m.story_id,
        "entry_id": m.entry_id,
        "watchlist": m.watchlist,
        "terms": json.dumps(m.terms),
        "words": json.dumps(m.words),
        "alerted": m.alerted,
        "created_at": m.created_at,
    }


async def first_matches(
    session: AsyncSession, story_ids: Sequence[int]
) -> dict[tuple[int, str], MatchRow]:
    """Each story's first match per watchlist, by (story, watchlist)."""
    out: dict[tuple[int, str], MatchRow] = {}
    ids = sorted(story_ids)
    for start in range(0, len(ids), 500):
        rows = await session.exec(
            select(MatchRow)
            .where(col(MatchRow.story_id).in_(ids[start : start + 500]))
            .order_by(col(MatchRow.id))
        )
        for m in rows.all():
            out.setdefault((m.story_id, m.watchlist), m)
    return out
