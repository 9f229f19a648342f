"""Queries on ``feeds``: each configured feed, its polling state and its lease."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.config import FeedConfig
from monitor.store.tables import AlertRow, FeedRow

log = logging.getLogger(__name__)

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


async def sync_feeds(session: AsyncSession, feeds: Sequence[FeedConfig], now: datetime) -> None:
    """Make the feeds table reflect the config: new feeds are due now, feeds no longer
    configured are disabled (their history stays).

    A URL edited in the YAML (compared with the URL the YAML gave last time, not with the
    polled URL, which a permanent redirect moves) is polled from now on with fresh
    validators, and re-enables a feed that a 410 Gone disabled: editing the URL is how a
    user says "it lives here now". An unchanged YAML URL keeps a redirect's new URL."""
    rows = {r.name: r for r in (await session.exec(select(FeedRow))).all()}
    wanted = {f.name for f in feeds}
    # a feed renamed in the YAML (new name, same URL as a name that is gone) is the same
    # feed: it keeps its row, so its entries, validators and history stay with it
    # instead of a fresh start that stores and alerts its items again
    orphans: dict[str, list[FeedRow]] = {}
    for name, gone in rows.items():
        if name not in wanted:
            orphans.setdefault(gone.config_url or gone.url, []).append(gone)
    for f in feeds:
        row = rows.get(f.name)
        tags = ",".join(f.tags)
        if row is None and len(orphans.get(f.url, ())) == 1:
            row = orphans.pop(f.url)[0]
            log.info("feed %s renamed to %s (same URL): its history is kept", row.name, f.name)
            del rows[row.name]
            row.name = f.name
            rows[f.name] = row
        if row is None:
            session.add(
                FeedRow(
                    name=f.name,
                    url=f.url,
                    config_url=f.url,
                    source=f.outlet,
                    tags=tags,
                    enabled=f.enabled,
                    interval_s=f.interval,
                    next_due=now,
                    created_at=now,
                )
            )
            continue
        # (config_url is None: a database from before it was kept, where url was the YAML's)
        configured = row.config_url if row.config_url is not None else row.url
        if configured != f.url:
            # a new address is a new start: no validators, failures or interval hints of
            # the old one
            row.url, row.config_url, row.etag, row.last_modified = f.url, f.url, None, None
            row.next_due = now
            row.consecutive_failures = 0
            row.ttl_minutes = row.update_period_minutes = row.cadence_s = None
            if row.disabled_reason is not None:
                log.info("feed %s: URL changed in the config, enabled again", f.name)
                row.disabled_reason = None
        elif row.config_url is None:
            row.config_url = f.url
        row.source, row.tags, row.interval_s = f.outlet, tags, f.interval
        if row.disabled_reason is None:
            row.enabled = f.enabled
        if row.next_due is None:
            row.next_due = now
        session.add(row)
    for name, row in rows.items():
        if name not in wanted and row.enabled:
            row.enabled = False
            session.add(row)


async def claim_due_feeds(
    session: AsyncSession,
    *,
    now: datetime,
    owner: str,
    lease_s: float,
    limit: int,
    all_feeds: bool = False,
    exclude: set[int] | None = None,
) -> list[FeedRow]:
    """Claim up to ``limit`` enabled feeds whose due time has passed with an expiring
    lease, so several processes sharing one PostgreSQL never poll the same feed at once
    (``FOR UPDATE SKIP LOCKED``).

    ``all_feeds`` (``wirewatch once``) also claims healthy feeds that are not due yet, but
    never a failing one before its due time: that time is its backoff or the server's
    Retry-After, which a run from cron must respect as much as the daemon does."""
    query = (
        select(FeedRow)
        .where(col(FeedRow.enabled).is_(True))
        .where(or_(col(FeedRow.lease_until).is_(None), col(FeedRow.lease_until) < now))
        .order_by(col(FeedRow.next_due))
        .limit(limit)
    )
    if exclude:
        query = query.where(col(FeedRow.id).not_in(exclude))
    due = or_(col(FeedRow.next_due).is_(None), col(FeedRow.next_due) <= now)
    query = query.where(or_(due, col(FeedRow.consecutive_failures) == 0) if all_feeds else due)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list((await session.exec(query)).all())
    if rows:
        until = now + timedelta(seconds=lease_s)
        await session.exec(
            update(FeedRow)
            .where(col(FeedRow.id).in_([r.id for r in rows]))
            .values(lease_until=until, lease_owner=owner)
        )
        for row in rows:
            row.lease_until, row.lease_owner = until, owner
    await session.commit()
    return rows


async def deferred_feeds(
    session: AsyncSession, *, now: datetime, exclude: set[int]
) -> list[tuple[str, datetime, str]]:
    """Enabled feeds that ``claim_due_feeds(all_feeds=True)`` leaves alone: failing and
    not due yet (their backoff or the server's Retry-After). (name, due time, last error)."""
    query = (
        select(FeedRow.name, FeedRow.next_due, FeedRow.last_error)
        .where(col(FeedRow.enabled).is_(True))
        .where(col(FeedRow.consecutive_failures) > 0)
        .where(col(FeedRow.next_due) > now)
        .order_by(col(FeedRow.next_due))
    )
    if exclude:
        query = query.where(col(FeedRow.id).not_in(exclude))
    rows = (await session.exec(query)).all()
    return [(name, due, error or "") for name, due, error in rows if due is not None]


async def gone_feeds(session: AsyncSession, configured: Sequence[str]) -> list[tuple[str, str]]:
    """Feeds among ``configured`` (names) that a poll switched off (a 410 Gone): (name,
    why). A new URL in the config switches them on again (``sync_feeds``)."""
    rows = await session.exec(
        select(FeedRow.name, FeedRow.disabled_reason)
        .where(col(FeedRow.disabled_reason).is_not(None))
        .order_by(col(FeedRow.name))
    )
    names = set(configured)
    return [(name, reason or "") for name, reason in rows.all() if name in names]


async def shift_schedule(session: AsyncSession, *, by: timedelta, now: datetime) -> int:
    """Move every due time still ahead of ``now`` (feeds' next polls and leases, alerts'
    next attempts) by ``by``: after the wall clock stepped back, times written before
    the step would otherwise wait out the step on top of their own delay. Returns how
    many moved. Row by row (SQLite has no datetime arithmetic that SQLAlchemy renders
    portably; there are as many rows as feeds and queued alerts), each update only
    while the row still holds the time read, so a poll writing its feed back meanwhile
    (a lease let go, a new due time) is not overwritten."""
    moved = 0
    feeds = await session.exec(
        select(FeedRow.id, FeedRow.next_due, FeedRow.lease_until).where(
            or_(col(FeedRow.next_due) > now, col(FeedRow.lease_until) > now)
        )
    )
    for fid, due, lease in feeds.all():
        changed = 0
        for name, value in (("next_due", due), ("lease_until", lease)):
            if value is None or value <= now:
                continue
            column = getattr(FeedRow, name)
            res = await session.exec(
                update(FeedRow)
                .where(col(FeedRow.id) == fid, column == value)
                .values({name: value + by})
            )
            changed += res.rowcount or 0
        moved += 1 if changed else 0
    pending = await session.exec(
        select(AlertRow.id, AlertRow.next_attempt_at)
        .where(col(AlertRow.state) == "pending")
        .where(col(AlertRow.next_attempt_at) > now)
    )
    for aid, when in pending.all():
        res = await session.exec(
            update(AlertRow)
            .where(col(AlertRow.id) == aid, col(AlertRow.next_attempt_at) == when)
            .where(col(AlertRow.state) == "pending")
            .values(next_attempt_at=when + by)
        )
        moved += res.rowcount or 0
    await session.commit()
    return moved


async def clamp_schedule(
    session: AsyncSession, *, now: datetime, feeds_within: timedelta, alerts_within: timedelta
) -> int:
    """Make due now what is due further ahead than any delay Wirewatch sets
    (``feeds_within``, ``alerts_within``): written while the clock was wrong (ahead),
    it would otherwise hold a feed or a channel back for as long as the clock was off.
    Leases further ahead than ``feeds_within`` are let go. Returns how many rows."""
    fixed = 0
    for values, where in (
        ({"next_due": now}, col(FeedRow.next_due) > now + feeds_within),
        ({"lease_until": None, "lease_owner": None}, col(FeedRow.lease_until) > now + feeds_within),
    ):
        res = await session.exec(update(FeedRow).where(where).values(values))
        fixed += res.rowcount or 0
    res = await session.exec(
        update(AlertRow)
        .where(col(AlertRow.state) == "pending")
        .where(col(AlertRow.next_attempt_at) > now + alerts_within)
        .values(next_attempt_at=now)
    )
    fixed += res.rowcount or 0
    await session.commit()
    return fixed


async def renew_leases(
    session: AsyncSession, ids: Sequence[int], *, owner: str, until: datetime
) -> None:
    """Extend ``owner``'s leases on feeds ``ids`` (still being polled) to ``until``."""
    await session.exec(
        update(FeedRow)
        .where(col(FeedRow.id).in_(list(ids)))
        .where(col(FeedRow.lease_owner) == owner)
        .values(lease_until=until)
    )
    await session.commit()


async def held_leases(session: AsyncSession, now: datetime) -> list[tuple[str, int, datetime]]:
    """Leases still running at ``now``: (owner, feeds, until the last of them ends)."""
    rows = await session.exec(
        select(FeedRow.lease_owner, func.count(), func.max(FeedRow.lease_until))
        .where(col(FeedRow.lease_until) > now)
        .group_by(col(FeedRow.lease_owner))
        .order_by(col(FeedRow.lease_owner))
    )
    return [(owner or "?", int(n), until or now) for owner, n, until in rows.all()]


async def take_over_leases(session: AsyncSession) -> list[tuple[str, int]]:
    """Release every lease (only for a process that knows it is the database's only
    user): (former owner, feeds) for each owner that held some."""
    rows = await session.exec(
        select(FeedRow.lease_owner, func.count())
        .where(col(FeedRow.lease_owner).is_not(None))
        .group_by(col(FeedRow.lease_owner))
    )
    held = [(owner or "?", int(n)) for owner, n in rows.all()]
    if held:
        await session.exec(
            update(FeedRow)
            .where(col(FeedRow.lease_owner).is_not(None))
            .values(lease_until=None, lease_owner=None)
        )
        await session.commit()
    return held


async def release_leases(session: AsyncSession, owner: str) -> None:
    await session.exec(
        update(FeedRow)
        .where(col(FeedRow.lease_owner) == owner)
        .values(lease_until=None, lease_owner=None)
    )
    await session.commit()
