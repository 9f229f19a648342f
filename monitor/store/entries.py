"""Queries on ``entries``: the items polled, each stored once per feed and guid."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, func, insert, text, type_coerce
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.models import came_out
from monitor.store.tables import EntryRow, FeedRow

CHUNK = 500  # values per IN (...) list


def _chunks(values: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


async def entries_by_guid(
    session: AsyncSession, feed_ids: Sequence[int], guids: Sequence[str]
) -> dict[tuple[int, str], EntryRow]:
    """Stored entries of these feeds with these guids, by (feed id, guid). Looked up
    for every feed at once: a row of another feed of the batch with the same guid comes
    back too, and the caller keys by its own feed."""
    found: dict[tuple[int, str], EntryRow] = {}
    for chunk in _chunks(sorted(guids)):
        rows = await session.exec(
            select(EntryRow)
            .where(col(EntryRow.feed_id).in_(feed_ids))
            .where(col(EntryRow.guid).in_(chunk))
        )
        found.update({(r.feed_id, r.guid): r for r in rows.all()})
    return found


async def titles_by_link(
    session: AsyncSession,
    feed_ids: Sequence[int],
    links: Sequence[str],
    since: datetime | None = None,
) -> dict[tuple[int, str], list[str]]:
    """The titles stored under each (feed id, link); with ``since``, only of entries
    seen since then."""
    found: dict[tuple[int, str], list[str]] = {}
    for chunk in _chunks(sorted(links)):
        query = (
            select(EntryRow.feed_id, EntryRow.link, EntryRow.title)
            .where(col(EntryRow.feed_id).in_(feed_ids))
            .where(col(EntryRow.link).in_(chunk))
        )
        if since is not None:
            query = query.where(col(EntryRow.seen_at) >= since)
        for fid, link, title in (await session.exec(query)).all():
            found.setdefault((fid, link), []).append(title)
    return found


async def recent_titles(
    session: AsyncSession, feed_ids: Sequence[int], titles: Sequence[str], since: datetime
) -> set[tuple[int, str]]:
    """(feed id, title) of these titles stored for these feeds since ``since``."""
    known: set[tuple[int, str]] = set()
    for chunk in _chunks(sorted(titles)):
        rows = await session.exec(
            select(EntryRow.feed_id, EntryRow.title)
            .where(col(EntryRow.feed_id).in_(feed_ids))
            .where(col(EntryRow.seen_at) >= since)
            .where(col(EntryRow.title).in_(chunk))
        )
        known.update((fid, title) for fid, title in rows.all())
    return known


async def outlets_of_stories(
    session: AsyncSession, story_ids: Sequence[int]
) -> dict[int, dict[str, datetime]]:
    """The outlets (entry sources) each story's entries come from, with when each
    outlet's first copy was published (first seen, when that is earlier or unknown)."""
    out: dict[int, dict[str, datetime]] = {}
    for chunk in _chunks(sorted(story_ids)):
        rows = await session.exec(
            select(
                EntryRow.story_id,
                EntryRow.source,
                func.min(EntryRow.published),
                func.min(EntryRow.seen_at),
            )
            .where(col(EntryRow.story_id).in_(chunk))
            .group_by(col(EntryRow.story_id), col(EntryRow.source))
        )
        for sid, source, published, seen_at in rows.all():
            out.setdefault(sid or 0, {})[source] = came_out(published, seen_at)
    return out


async def insert_entries(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> dict[tuple[int, str], int]:
    """Insert entries rows (plain Core, one multi-row statement); their new ids by
    (feed id, guid)."""
    conn = await session.connection()
    # ids come back keyed by (feed, guid), unique per entry: without
    # sort_by_parameter_order SQLAlchemy can send many rows per statement
    # ("insertmanyvalues") instead of one statement per row
    inserted = await conn.execute(
        insert(EntryRow).returning(col(EntryRow.id), col(EntryRow.feed_id), col(EntryRow.guid)),
        list(rows),
    )
    return {(fid, guid): int(eid or 0) for eid, fid, guid in inserted.all()}


async def highest_entry_id(session: AsyncSession) -> int:
    top = (await session.exec(select(func.max(EntryRow.id)))).one()
    return int(top or 0)


IndexRow = tuple[str, str, datetime | str, str, str, int]


async def stream_window(
    session: AsyncSession, since: datetime, summary_chars: int, upto: int | None = None
) -> AsyncIterator[Sequence[Any]]:
    """Entries the story index needs at start-up, in batches: those seen since ``since``,
    in order, with just what ``StoryIndex.add_stored`` reads: title, the first
    ``summary_chars`` characters of the summary, time (published, else seen), outlet,
    link, story; with ``upto``, only entries with ids up to it.

    The time comes without SQLAlchemy's per-row datetime processing (a large share of
    the cost of reading the rows): SQLite gives its stored text, PostgreSQL's driver an
    aware datetime; ``add_stored`` takes either."""
    query = (
        sa_select(*_index_columns(summary_chars))
        .where(col(EntryRow.seen_at) >= since)
        .where(col(EntryRow.story_id).is_not(None))
        .order_by(col(EntryRow.id))
        .execution_options(yield_per=5000)
    )
    if upto is not None:
        query = query.where(col(EntryRow.id) <= upto)
    result = await session.stream(query)
    async for part in result.partitions(5000):  # batches: no task switch per row
        yield part


async def entries_since_id(session: AsyncSession, after: int, summary_chars: int) -> Sequence[Any]:
    """``stream_window``'s columns, after the entry id, for the entries with an id above
    ``after``: what other processes stored since the story index last looked."""
    ids = col(EntryRow.id)
    query = sa_select(ids, *_index_columns(summary_chars)).where(ids > after).order_by(ids)
    conn = await session.connection()
    return (await conn.execute(query)).all()


def _index_columns(summary_chars: int) -> tuple[Any, ...]:
    when = func.coalesce(col(EntryRow.published), col(EntryRow.seen_at))
    return (
        col(EntryRow.title),
        func.substr(col(EntryRow.summary), 1, summary_chars),
        type_coerce(when, String()),
        col(EntryRow.source),
        col(EntryRow.link),
        type_coerce(col(EntryRow.story_id), Integer()),
    )


def retitle_entry(session: AsyncSession, row: EntryRow, title: str, summary: str) -> None:
    """A stored entry's outlet changed its title materially: keep the new one, and
    count the update (written with the session)."""
    row.title, row.summary = title, summary
    row.updates += 1
    session.add(row)


async def newest_published(
    session: AsyncSession, seen_since: datetime, now: datetime
) -> datetime | None:
    """The newest publication date, not after ``now``, among entries seen since
    ``seen_since``: the publishers' clocks, to check this host's against."""
    newest: datetime | None = (
        await session.exec(
            select(func.max(EntryRow.published))
            .where(col(EntryRow.seen_at) >= seen_since)
            .where(col(EntryRow.published) <= now)
        )
    ).one()
    return newest


INGEST_LOCK_KEY = 0x77697265_77617463  # PostgreSQL advisory lock: "wirewatc"


async def hold_ingest_lock(session: AsyncSession) -> None:
    """On PostgreSQL, take the lock that makes storing one process at a time, until
    ``session``'s transaction ends (``monitor.pipeline.index.catch_up``, and each prune
    batch, which must not delete a story another process is storing into). SQLite: one
    process, no-op."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        conn = await session.connection()
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY})


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
