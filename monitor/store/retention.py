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
    busy = (
        select(AlertRow.id)
        .where(col(AlertRow.story_id) == col(StoryRow.id))
        .where(col(AlertRow.state).in_(["pending", "sending"]))
    )
    # feed id -> its newest entries' ids (read once a run: later entries only make it
    # keep more than it must, never less)
    newest: dict[int, set[int]] = {}

    async def newest_of(feed_ids: set[int]) -> None:
        for feed_id in feed_ids - set(newest):
            rows = await session.exec(
                select(EntryRow.id)
                .where(col(EntryRow.feed_id) == feed_id)
                .order_by(col(EntryRow.id).desc())
                .limit(KEEP_PER_FEED)
            )
            newest[feed_id] = {eid for eid in rows.all() if eid is not None}

    while True:
        async with lock or contextlib.nullcontext():
            await hold_ingest_lock(session)
            keep = await _newest_stories(session)
            ids = list(
                (
                    await session.exec(
                        select(StoryRow.id)
                        .where(col(StoryRow.updated_at) < before)
                        .where(col(StoryRow.id).not_in(keep))
                        .where(~busy.exists())
                        .limit(batch)
                    )
                ).all()
            )
            if not ids:
                # entries kept emptied earlier that have since left their feed's newest
                # (dated ones: undated entries stay known for good)
                old = (
                    await session.exec(
                        select(EntryRow.id, EntryRow.feed_id)
                        .where(col(EntryRow.story_id).is_(None))
                        .where(col(EntryRow.published) < before)
                    )
                ).all()
                await newest_of({f for _, f in old})
                stale = [eid for eid, f in old if eid is not None and eid not in newest[f]]
                done.entries += await _delete_entries(session, stale)
                await session.commit()
                return done
            entries = (
                await session.exec(
                    select(EntryRow.id, EntryRow.feed_id, EntryRow.published).where(
                        col(EntryRow.story_id).in_(ids)
                    )
                )
            ).all()
            await newest_of({f for _, f, _ in entries})
            gone = [
                eid
                for eid, feed_id, published in entries
                if eid is not None
                and published is not None
                and published < before
                and eid not in newest[feed_id]
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
            await session.commit()
            done.stories += len(ids)


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
