"""The in-memory story index and the database kept in step: built from the stored
window at start, and taught what other processes sharing the database stored."""

from __future__ import annotations

import gc
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.dedupe import StoryIndex
from monitor.pipeline.runtime import Runtime
from monitor.store.entries import (
    entries_since_id,
    highest_entry_id,
    hold_ingest_lock,
    stream_window,
)


async def load_index(rt: Runtime) -> int:
    """Rebuild the in-memory story index from the entries stored within the window."""
    # (the index's settings are those it started with: dedupe settings need a restart,
    # and a rebuild after a failed batch must not change them half-way)
    index = rt.ingest.index = StoryIndex(rt.ingest.index.config)
    since = rt.clock() - timedelta(hours=index.config.window_hours)
    count = 0
    # The cyclic garbage collector is paused while the index is built: the rows and the
    # index's tuples form no cycles, but its full collections, triggered again and again by
    # so many new objects, took a large share of the time (restored even on error).
    collect = gc.isenabled()
    gc.disable()
    try:
        async with rt.sessions() as session:
            upto = None
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # processes share this database: under the ingest lock (no other process
                # is storing meanwhile) read the window up to the highest entry id, and
                # learn what the others store after it before each ingest (catch_up)
                await hold_ingest_lock(session)
                upto = rt.ingest.seen_entry_id = await highest_entry_id(session)
            # only the summary prefix the index keeps (StoryIndex.add_stored)
            chars = 3 * index.config.summary_chars
            add = index.add_stored
            async for part in stream_window(session, since, chars, upto):
                for title, summary, when, source, link, sid in part:
                    add(title, summary, when, source, link, sid)
                count += len(part)
    finally:
        if collect:
            gc.enable()
    return count


async def catch_up(rt: Runtime, session: AsyncSession) -> int:
    """Teach the story index the entries other processes stored since it last looked,
    so a copy this process polls joins their story instead of starting a second one
    (and alerting twice). On PostgreSQL it first takes the ingest lock for the rest of
    ``session``'s transaction: one process stores at a time (fetching and parsing stay
    parallel), so nothing another process is storing can be missed, and every id up to
    the highest read is read. A no-op on SQLite (one process). Returns how many entries
    it added."""
    if rt.ingest.seen_entry_id is None:
        return 0
    await hold_ingest_lock(session)
    chars = 3 * rt.ingest.index.config.summary_chars
    added = 0
    for eid, title, summary, when, source, link, sid in await entries_since_id(
        session, rt.ingest.seen_entry_id, chars
    ):
        rt.ingest.seen_entry_id = max(rt.ingest.seen_entry_id, eid)
        if sid is not None:
            rt.ingest.index.add_stored(title, summary, when, source, link, sid)
            added += 1
    return added
