"""Ingest: a poll's entries stored once, the new ones folded into stories, matched,
and their alerts queued, all in one transaction per batch of polls.

The chain, one named step each: catch up with other processes → sort out the entries
already stored (retitles count as updates) → drop regenerated guids → store the new
ones (:mod:`monitor.pipeline.fold`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.dedupe import Prepared, article_url, is_material_change
from monitor.match import Hit
from monitor.models import Entry
from monitor.pipeline import fold
from monitor.pipeline.index import catch_up, load_index
from monitor.pipeline.runtime import Runtime
from monitor.store.entries import entries_by_guid, recent_titles, retitle_entry, titles_by_link
from monitor.store.feeds import count_new_entries
from monitor.store.stories import touch_story
from monitor.store.tables import EntryRow, FeedRow

if TYPE_CHECKING:
    from monitor.pipeline.poll import PollReport

log = logging.getLogger("wirewatch.pipeline")

INGEST_BATCH = 2000  # entries stored per transaction when many polls wait at once
GUID_FLOOD_MIN = 5  # a poll with at least this many "new" guids that are old links is a flood


def stored_entry(row: EntryRow, feed: FeedRow | None) -> Entry:
    """A stored entry as the parser produced it, for matching it again (explain, replay)."""
    return Entry(
        feed=feed.name if feed else "",
        source=row.source,
        guid=row.guid,
        link=row.link,
        title=row.title,
        summary=row.summary,
        published=row.published,
        content=row.content,
        author=row.author,
        categories=tuple(c for c in row.categories.split("\n") if c),
        feed_tags=tuple(t for t in (feed.tags if feed else "").split(",") if t),
    )


@dataclass
class Job:
    """One poll's entries waiting to be stored."""

    feed: FeedRow
    unique: dict[str, Entry]
    report: PollReport
    done: asyncio.Future[None]
    hits: dict[str, tuple[Hit, ...]] | None  # by guid, when the parse worker matched
    prepared: dict[str, Prepared] | None  # by guid, dedupe's first step from the worker


async def ingest(
    rt: Runtime,
    feed: FeedRow,
    entries: Sequence[Entry],
    report: PollReport,
    hits: dict[str, tuple[Hit, ...]] | None = None,
    prepared: dict[str, Prepared] | None = None,
) -> None:
    """Store new entries, fold them into stories, match watchlists and queue alerts,
    all in one transaction (the alert is written with its match). Serialised per
    process so the in-memory story index and the database agree.

    Group commit: while one poll is being stored, the polls that finish meanwhile
    queue up, and the next holder of the lock stores all of them in one transaction
    (a cold cycle over many feeds makes a few dozen transactions, not one per feed).
    When a batch fails, each of its polls is retried alone, so one bad poll fails only
    its own feed. Returns once this poll's entries are committed."""
    assert feed.id is not None
    # one entry per guid (feeds sometimes repeat an item)
    unique: dict[str, Entry] = {}
    for e in entries:
        unique.setdefault(e.guid, e)
    job = Job(feed, unique, report, asyncio.get_running_loop().create_future(), hits, prepared)
    rt.ingest.queue.append(job)
    async with rt.ingest.lock:
        while not job.done.done():
            batch: list[Job] = []
            size = 0
            while rt.ingest.queue and (not batch or size < INGEST_BATCH):
                nxt = rt.ingest.queue.pop(0)
                batch.append(nxt)
                size += len(nxt.unique)
            await _run_batch(rt, batch)
    await job.done


async def _run_batch(rt: Runtime, batch: list[Job]) -> None:
    try:
        try:
            await ingest_jobs(rt, batch)
        except Exception as exc:
            # the index may hold items of the rolled-back transaction: rebuild it
            await load_index(rt)
            if len(batch) == 1:
                _reset(batch[0].report)  # (nothing of it was stored)
                batch[0].done.set_exception(exc)
                return
            for job in batch:  # isolate the poll that broke it
                _reset(job.report)
                try:
                    await ingest_jobs(rt, [job])
                except Exception as one_exc:
                    await load_index(rt)
                    job.done.set_exception(one_exc)
                else:
                    job.done.set_result(None)
            return
        for job in batch:
            job.done.set_result(None)
    finally:
        for job in batch:  # cancelled mid-batch: the polls waiting on it must not hang
            if not job.done.done():
                job.done.cancel()


def _reset(report: PollReport) -> None:
    report.new = report.updated = report.alerts = report.relinked = report.too_old = 0


async def ingest_jobs(rt: Runtime, jobs: list[Job]) -> None:
    """Store one batch of polls in one transaction."""
    if not rt.ingest.loaded:  # a lazy start-up (``wirewatch once``): first new entries
        await load_index(rt)
        rt.ingest.loaded = True
    now = rt.clock()
    stored: list[int] = []
    rt.metrics.begin_batch()  # (what a rolled-back attempt staged is not counted)
    async with rt.sessions() as session:
        await _catch_up(rt, session)
        per_job, retitled = await _unseen(session, jobs, now)
        per_job = await _drop_regenerated(session, jobs, per_job, now)
        if any(per_job):
            await _store_new(rt, session, jobs, per_job, now, stored)
        if retitled:
            await _queue_updates(rt, session, retitled, now)
        await session.commit()
    rt.metrics.commit_batch()
    if rt.ingest.seen_entry_id is not None and stored:
        # stored under the ingest lock, taken by catch_up: no other process stored an
        # entry since, so every id up to this batch's highest is in the index
        rt.ingest.seen_entry_id = max(rt.ingest.seen_entry_id, *stored)
    if any(j.report.alerts for j in jobs):
        rt.delivery.wakeup.set()


async def _catch_up(rt: Runtime, session: AsyncSession) -> None:
    """What other processes sharing the database stored, into the story index."""
    started = time.perf_counter()
    caught = await catch_up(rt, session)
    if rt.ingest.seen_entry_id is not None:
        rt.metrics.catch_up_seconds.observe(time.perf_counter() - started)
        rt.metrics.catch_up_entries.inc(caught)


Retitle = tuple[int, int, str, str]  # (entry id, story id, old title, new title)


async def _unseen(
    session: AsyncSession, jobs: list[Job], now: datetime
) -> tuple[list[list[Entry]], list[tuple[Job, Retitle]]]:
    """Each poll's entries not stored yet, and the stored ones retitled materially (an
    update of the entry and its story). A new guid on a known link is the same entry
    when it keeps the title, or when most of the poll came back that way."""
    feed_ids = sorted({j.feed.id for j in jobs if j.feed.id is not None})
    guids = sorted({g for j in jobs for g in j.unique})
    existing = await entries_by_guid(session, feed_ids, guids)
    known_links = await _titles_under_links(session, jobs, feed_ids, existing, now)
    per_job: list[list[Entry]] = []
    retitled: list[tuple[Job, Retitle]] = []
    for job in jobs:
        feed_id = job.feed.id or 0
        fresh: list[Entry] = []
        linked: list[tuple[Entry, list[str]]] = []
        for guid, e in job.unique.items():
            old = existing.get((feed_id, guid))
            if old is not None:
                before = old.title
                if await _seen_again(session, job.report, old, e, now) and old.story_id:
                    retitled.append((job, (old.id or 0, old.story_id, before, old.title)))
            elif e.link and (titles := known_links.get((feed_id, e.link))) is not None:
                linked.append((e, titles))
            else:
                fresh.append(e)
        fresh.extend(_drop_relinked(linked, len(job.unique), job.report))
        per_job.append(fresh)
    return per_job, retitled


async def _titles_under_links(
    session: AsyncSession,
    jobs: list[Job],
    feed_ids: list[int],
    existing: dict[tuple[int, str], EntryRow],
    now: datetime,
) -> dict[tuple[int, str], list[str]]:
    """The titles stored under the links of the entries not found by guid. Under a
    site's front page (a feed linking every item to it holds its whole history there)
    only the last week's entries are read."""
    links = {
        e.link
        for j in jobs
        for g, e in j.unique.items()
        if e.link and (j.feed.id, g) not in existing
    }
    articles = [link for link in links if article_url(link)]
    front_pages = [link for link in links if not article_url(link)]
    found = await titles_by_link(session, feed_ids, articles)
    found.update(await titles_by_link(session, feed_ids, front_pages, now - timedelta(days=7)))
    return found


async def _seen_again(
    session: AsyncSession, report: PollReport, old: EntryRow, e: Entry, now: datetime
) -> bool:
    """An entry already stored: a material retitle is an update of it (and its story).
    Whether it was one."""
    report.seen_at[e.guid] = old.seen_at
    if not is_material_change(old.title, e.title):
        return False
    retitle_entry(session, old, e.title, e.summary or old.summary)
    report.updated += 1
    if old.story_id is not None:
        await touch_story(session, old.story_id, now)
    return True


def _drop_relinked(
    linked: list[tuple[Entry, list[str]]], polled: int, report: PollReport
) -> list[Entry]:
    """Entries with a new guid but a link already stored for the feed, with the titles
    stored under that link: those that are genuinely new. The same article under a
    regenerated guid keeps its title; a poll where most items came back with new guids
    on known links, many different ones, is a guid regeneration (titles edited along the
    way included). A new guid with a new title on a known link (a liveblog's burst of
    updates, a status page, a feed linking every item to one page) is a new entry."""
    links = {e.link for e, _ in linked}
    if len(links) >= GUID_FLOOD_MIN and len(linked) * 2 >= polled:
        report.relinked += len(linked)
        return []
    kept = []
    for e, titles in linked:
        if any(not is_material_change(t, e.title) for t in titles):
            report.relinked += 1  # the same article under a regenerated guid
        else:
            kept.append(e)
    return kept


async def _drop_regenerated(
    session: AsyncSession, jobs: list[Job], per_job: list[list[Entry]], now: datetime
) -> list[list[Entry]]:
    """Most of a poll looking new: a feed that regenerated guids *and* links (tracking
    ids, a new CMS) still repeats its titles; those are not new."""
    suspects = [
        (job, fresh)
        for job, fresh in zip(jobs, per_job, strict=True)
        if len(fresh) >= GUID_FLOOD_MIN and len(fresh) * 2 >= len(job.unique)
    ]
    known: set[tuple[int, str]] = set()
    if suspects:
        known = await recent_titles(
            session,
            sorted({job.feed.id for job, _ in suspects if job.feed.id is not None}),
            sorted({e.title for _, fresh in suspects for e in fresh if e.title}),
            now - timedelta(days=7),
        )
    suspect_ids = {id(job) for job, _ in suspects}
    out: list[list[Entry]] = []
    for job, fresh in zip(jobs, per_job, strict=True):
        if known and id(job) in suspect_ids:
            fresh = _drop_known_titles(job.feed.id or 0, fresh, known, job.report)
        if job.report.relinked >= GUID_FLOOD_MIN:
            log.warning(
                "feed %s: %d items came back with new guids but known links or titles "
                "(guid regeneration); treated as already seen",
                job.feed.name,
                job.report.relinked,
            )
        out.append(fresh)
    return out


def _drop_known_titles(
    feed_id: int, fresh: list[Entry], known: set[tuple[int, str]], report: PollReport
) -> list[Entry]:
    """A poll whose "new" items mostly repeat stored titles regenerated its guids: those
    items are not new. A busy poll with a few repeated titles keeps them all."""
    repeated = {e.title for e in fresh if (feed_id, e.title) in known}
    if not repeated or len(repeated) * 2 < len(fresh):
        return fresh  # a genuinely busy poll, not a regeneration
    kept = []
    for e in fresh:
        if (feed_id, e.title) in known:
            report.relinked += 1
        else:
            kept.append(e)
    return kept


async def _queue_updates(
    rt: Runtime, session: AsyncSession, retitled: list[tuple[Job, Retitle]], now: datetime
) -> None:
    """Thread replies for the alerted stories whose copies were retitled, counted on
    the polls that saw the retitles."""
    queued = await fold.queue_retitles(rt, session, [r for _, r in retitled], now)
    for job, (entry_id, _, _, _) in retitled:
        job.report.alerts += queued.pop(entry_id, 0)


async def _store_new(
    rt: Runtime,
    session: AsyncSession,
    jobs: list[Job],
    per_job: list[list[Entry]],
    now: datetime,
    stored: list[int],
) -> None:
    """Fold the new entries into stories, queue their alerts, and count them on their
    polls and feeds."""
    fresh = [(job, e) for job, entries in zip(jobs, per_job, strict=True) for e in entries]
    alerts = await fold.store_new_entries(rt, session, fresh, now, stored)
    for job, entries in zip(jobs, per_job, strict=True):
        job.report.new += len(entries)
        job.report.alerts += alerts.get(job.feed.id or 0, 0)
    counts = [(job.feed.id or 0, len(e)) for job, e in zip(jobs, per_job, strict=True) if e]
    await count_new_entries(session, counts, now)
