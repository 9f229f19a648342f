"""Queries used by the pipeline and the CLI. Each takes a session and returns rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.config import FeedConfig
from monitor.store.messages import forget_messages_of
from monitor.store.tables import AlertRow, EntryRow, FeedRow, MatchRow, StoryRow

log = logging.getLogger(__name__)


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


@dataclass
class Pruned:
    stories: int = 0
    entries: int = 0  # deleted
    kept: int = 0  # entries kept emptied, out of their story (see prune)
    alerts: int = 0


KEEP_PER_FEED = 50  # newest entries of a feed kept (emptied): health.CADENCE_ENTRIES
INGEST_LOCK_KEY = 0x77697265_77617463  # PostgreSQL advisory lock: "wirewatc"


async def hold_ingest_lock(session: AsyncSession) -> None:
    """On PostgreSQL, take the lock that makes storing one process at a time, until
    ``session``'s transaction ends (pipeline.catch_up, and each prune batch, which must
    not delete a story another process is storing into). SQLite: one process, no-op."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        conn = await session.connection()
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY})


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


async def queued_alerts(session: AsyncSession) -> int:
    """Alerts not delivered yet (pending, or sent with the outcome unknown)."""
    count = await session.exec(
        select(func.count()).where(col(AlertRow.state).in_(["pending", "sending"]))
    )
    return int(count.one())


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


async def story_sources(session: AsyncSession, story_id: int) -> list[tuple[str, str, str]]:
    """(outlet, link, title) of every entry of a story, first seen first, one per outlet."""
    return (await stories_sources(session, [story_id])).get(story_id, [])


async def stories_sources(
    session: AsyncSession, story_ids: Sequence[int]
) -> dict[int, list[tuple[str, str, str]]]:
    """``story_sources`` of several stories, a few queries in all (by 500 stories)."""
    out: dict[int, list[tuple[str, str, str]]] = {}
    seen: dict[int, set[str]] = {}
    ids = sorted(set(story_ids))
    for start in range(0, len(ids), 500):
        rows = (
            await session.exec(
                select(EntryRow.story_id, EntryRow.source, EntryRow.link, EntryRow.title)
                .where(col(EntryRow.story_id).in_(ids[start : start + 500]))
                .order_by(col(EntryRow.id))
            )
        ).all()
        for sid, source, link, title in rows:
            if sid is None:
                continue
            outlets = seen.setdefault(sid, set())
            if source not in outlets:
                outlets.add(source)
                out.setdefault(sid, []).append((source, link, title))
    return out
