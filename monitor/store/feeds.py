"""Queries on ``feeds``: each configured feed, its polling state and its lease."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import FeedRow

# what a poll writes back (the rest of the row is the config's)
POLL_STATE_COLUMNS = (
    "url",
    "etag",
    "last_modified",
    "next_due",
    "lease_until",
    "lease_owner",
    "last_polled",
    "last_success",
    "last_error",
    "last_error_kind",
    "last_error_at",
    "consecutive_failures",
    "last_status",
    "title",
    "current_interval_s",
    "ttl_minutes",
    "update_period_minutes",
    "cadence_s",
)


async def save_poll_states(
    session: AsyncSession,
    states: Sequence[Mapping[str, Any]],
    disabled: Sequence[tuple[int, str, str]],
    owner: str,
) -> None:
    """One bulk UPDATE by primary key for a batch of polled feeds (``states``: the
    :data:`POLL_STATE_COLUMNS` plus ``id`` and ``polled``, the URL the poll fetched).

    A feed whose URL changed meanwhile (a config reload gave it a new one) keeps what
    the reload set: the poll of its old URL is not written over it. ``disabled``: (id,
    polled URL, reason) of feeds a poll found gone. Then ``owner``'s leases on all of
    them are let go."""
    table = FeedRow.__table__  # type: ignore[attr-defined]
    same_feed = (table.c.id == bindparam("_id"), table.c.url == bindparam("_polled"))
    conn = await session.connection()
    await conn.execute(  # executemany: one round trip
        update(table).where(*same_feed).values({c: bindparam(c) for c in POLL_STATE_COLUMNS}),
        [
            {**{c: st[c] for c in POLL_STATE_COLUMNS}, "_id": st["id"], "_polled": st["polled"]}
            for st in states
        ],
    )
    if disabled:
        await conn.execute(
            update(table)
            .where(*same_feed)
            .values(enabled=False, disabled_reason=bindparam("_reason")),
            [{"_id": i, "_polled": url, "_reason": why} for i, url, why in disabled],
        )
    await release_feed_leases(session, [st["id"] for st in states], owner)


async def count_new_entries(
    session: AsyncSession, counts: Sequence[tuple[int, int]], now: datetime
) -> None:
    """Record (feed id, how many) new entries stored now."""
    if not counts:
        return
    table = FeedRow.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    await conn.execute(
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values(
            last_new_entry=bindparam("_now"),
            entries_seen=table.c.entries_seen + bindparam("_n"),
        ),
        [{"_id": fid, "_n": n, "_now": now} for fid, n in counts],
    )


async def release_feed_leases(session: AsyncSession, feed_ids: Sequence[int], owner: str) -> None:
    """``owner``'s leases on these feeds, let go."""
    table = FeedRow.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    await conn.execute(
        update(table)
        .where(table.c.id.in_(list(feed_ids)), table.c.lease_owner == owner)
        .values(lease_until=None, lease_owner=None)
    )


async def list_feeds(session: AsyncSession, *, enabled_only: bool = False) -> list[FeedRow]:
    """The feeds table (with ``enabled_only``, the feeds being polled)."""
    query = select(FeedRow)
    if enabled_only:
        query = query.where(col(FeedRow.enabled))
    return list((await session.exec(query)).all())
