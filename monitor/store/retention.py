"""Retention: what is older than ``retention`` pruned, keeping what the story
window and feed health still read."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.entries import hold_ingest_lock
from monitor.store.messages import forget_messages_of
from monitor.store.tables import AlertRow, EntryRow, MatchRow, StoryRow


@dataclass
class Pruned:
    stories: int = 0
    entries: int = 0  # deleted
    kept: int = 0  # entries kept emptied, out of their story (see prune)
    alerts: int = 0


KEEP_PER_FEED = 50  # newest entries of a feed kept (emptied): health.CADENCE_ENTRIES


async def prune(
    session: AsyncSession,
    *,
    before: datetime,
    batch: int = 500,
    lock: asyncio.Lock | None = None,
) -> Pruned:
    """Delete the stories untouched since ``before`` with their alerts, matches and
    entries, a batch at a time (each its own short transaction, under ``lock`` if given:
    the ingest lock, so no batch being stored touches a story being deleted). Kept:

    * a story with an alert still pending or being sent;
    * the stories holding the highest story, alert and entry ids: SQLite gives out
      ``max(id) + 1``, and a reused alert id would look like an alert already delivered
      to a webhook receiver (which dedupes on it) and to Slack reconciliation;
    * emptied and out of their story, so their guids are still known and a feed still
      listing them does not make them new: undated entries (stored again, they would
      alert), and each feed's newest ``KEEP_PER_FEED`` (its history for ``wirewatch
      feeds``' silent check, and the items it most likely still lists).

    Other entries dated before ``before`` go: if a feed still lists one, it comes back
    as new but too old to alert (``max_age``; with ``max_age: none`` it would alert)."""
    done = Pruned()
    newest = _Newest(session)
    while True:
        async with lock or contextlib.nullcontext():
            await hold_ingest_lock(session)
            ids = await _untouched_stories(session, before, batch)
            if not ids:
                done.entries += await _forget_old_kept(session, before, newest)
                await session.commit()
                return done
            await _delete_stories(session, ids, before, newest, done)
            await session.commit()
            done.stories += len(ids)


class _Newest:
    """Each feed's newest entries' ids (read once a run: later entries only make it keep
    more than it must, never less)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.ids: dict[int, set[int]] = {}

    async def of(self, feed_ids: set[int]) -> dict[int, set[int]]:
        for feed_id in feed_ids - set(self.ids):
            rows = await self.session.exec(
                select(EntryRow.id)
                .where(col(EntryRow.feed_id) == feed_id)
                .order_by(col(EntryRow.id).desc())
                .limit(KEEP_PER_FEED)
            )
            self.ids[feed_id] = {eid for eid in rows.all() if eid is not None}
        return self.ids


async def _untouched_stories(session: AsyncSession, before: datetime, batch: int) -> list[int]:
    """Up to ``batch`` stories untouched since ``before`` with no alert pending or being
    sent, the stories holding the highest ids excepted."""
    busy = (
        select(AlertRow.id)
        .where(col(AlertRow.story_id) == col(StoryRow.id))
        .where(col(AlertRow.state).in_(["pending", "sending"]))
    )
    keep = await _newest_stories(session)
    rows = await session.exec(
        select(StoryRow.id)
        .where(col(StoryRow.updated_at) < before)
        .where(col(StoryRow.id).not_in(keep))
        .where(~busy.exists())
        .limit(batch)
    )
    return [sid for sid in rows.all() if sid is not None]


async def _forget_old_kept(session: AsyncSession, before: datetime, newest: _Newest) -> int:
    """Entries kept emptied earlier that have since left their feed's newest (dated
    ones: undated entries stay known for good), deleted; how many."""
    old = (
        await session.exec(
            select(EntryRow.id, EntryRow.feed_id)
            .where(col(EntryRow.story_id).is_(None))
            .where(col(EntryRow.published) < before)
        )
    ).all()
    kept = await newest.of({f for _, f in old})
    return await _delete_entries(
        session, [eid for eid, f in old if eid is not None and eid not in kept[f]]
    )


async def _delete_stories(
    session: AsyncSession, ids: list[int], before: datetime, newest: _Newest, done: Pruned
) -> None:
    """Delete stories ``ids`` with their alerts (and the records of the messages that
    showed them) and matches; their entries go too, except those kept emptied."""
    entries = (
        await session.exec(
            select(EntryRow.id, EntryRow.feed_id, EntryRow.published).where(
                col(EntryRow.story_id).in_(ids)
            )
        )
    ).all()
    kept = await newest.of({f for _, f, _ in entries})
    gone = [
        eid
        for eid, feed_id, published in entries
        if eid is not None
        and published is not None
        and published < before
        and eid not in kept[feed_id]
    ]
    doomed = await session.exec(select(AlertRow.id).where(col(AlertRow.story_id).in_(ids)))
    await forget_messages_of(session, [a for a in doomed.all() if a is not None])
    res = await session.exec(delete(AlertRow).where(col(AlertRow.story_id).in_(ids)))
    done.alerts += res.rowcount or 0
    await session.exec(delete(MatchRow).where(col(MatchRow.story_id).in_(ids)))
    done.entries += await _delete_entries(session, gone)
    res = await session.exec(
        update(EntryRow)
        .where(col(EntryRow.story_id).in_(ids))
        .values(story_id=None, summary="", content="")
    )
    done.kept += res.rowcount or 0
    await session.exec(delete(StoryRow).where(col(StoryRow.id).in_(ids)))


async def _delete_entries(session: AsyncSession, ids: list[int]) -> int:
    for start in range(0, len(ids), 500):
        await session.exec(delete(EntryRow).where(col(EntryRow.id).in_(ids[start : start + 500])))
    return len(ids)


async def _newest_stories(session: AsyncSession) -> list[int]:
    """The stories holding the highest story, alert and entry ids (see ``prune``)."""
    keep = []
    for query in (
        select(func.max(StoryRow.id)),
        select(AlertRow.story_id).order_by(col(AlertRow.id).desc()).limit(1),
        select(EntryRow.story_id).order_by(col(EntryRow.id).desc()).limit(1),
    ):
        sid = (await session.exec(query)).first()
        if sid is not None:
            keep.append(int(sid))
    return keep
