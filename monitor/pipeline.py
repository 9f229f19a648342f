"""Orchestration of one feed poll: fetch → parse → store → dedupe → match → outbox.

The stages themselves are pure modules; this is the one place that sequences them
and touches network, storage and clock (Miniflux's ``handler.go`` shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, insert, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.sql.dml import Update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.dedupe import Prepared, StoryIndex, StoryItem, article_url, is_material_change
from monitor.fetch import FetchResult, fetch
from monitor.intervals import learned_cadence, next_interval, parse_cache_headers
from monitor.match import Hit
from monitor.models import Entry
from monitor.parse import ParseResult
from monitor.runtime import Runtime, alert_channel, slack_sink
from monitor.store.queries import (
    claim_due_feeds,
    deferred_feeds,
    entries_since_id,
    gone_feeds,
    hold_ingest_lock,
    renew_leases,
    window_entries,
)
from monitor.store.tables import AlertRow, EntryRow, FeedRow, MatchRow, StoryRow

log = logging.getLogger("wirewatch.pipeline")

GUID_FLOOD_MIN = 5  # a poll with at least this many "new" guids that are old links is a flood


@dataclass
class PollReport:
    feed: str
    url: str
    status: int | None = None
    not_modified: bool = False
    entries: int = 0
    new: int = 0
    updated: int = 0
    alerts: int = 0
    error: str | None = None
    parse_error: str | None = None
    relinked: int = 0
    # new entries that matched a watchlist but were published longer ago than max_age,
    # so were stored without an alert (a first run on a backlog says how many)
    too_old: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # the feed row's new state
    # guid -> when an entry of this poll was first stored (the ones already known)
    seen_at: dict[str, datetime] = field(default_factory=dict, repr=False)


@dataclass
class CycleReport:
    polls: list[PollReport] = field(default_factory=list)
    # with all_feeds: failing feeds left to wait out their backoff or Retry-After
    # (name, when they are due, their last error)
    waiting: list[tuple[str, datetime, str]] = field(default_factory=list)
    # with all_feeds: configured feeds a poll switched off (410 Gone): (name, why)
    gone: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[PollReport]:
        return [p for p in self.polls if p.error]

    @property
    def new(self) -> int:
        return sum(p.new for p in self.polls)

    @property
    def alerts(self) -> int:
        return sum(p.alerts for p in self.polls)

    @property
    def too_old(self) -> int:
        return sum(p.too_old for p in self.polls)


class HostGate:
    """Per-host concurrency limit and minimum spacing between requests to one host.

    Spacing is measured between the moments requests actually start (``start``), so a
    feed that waited out its host's spacing and then for a global slot does not go
    right behind another request to the same host."""

    def __init__(self, per_host: int, spacing: float) -> None:
        self.per_host = per_host  # both may change (a reload): they hold from then on
        self.spacing = spacing
        self._active: dict[str, int] = defaultdict(int)
        self._freed: dict[str, asyncio.Condition] = {}
        self._last: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """One of the host's ``per_host`` slots, held for the block. A lower ``per_host``
        set meanwhile holds back new requests until the host is under it."""
        freed = self._freed.get(host)
        if freed is None:
            freed = self._freed[host] = asyncio.Condition()
        async with freed:
            await freed.wait_for(lambda: self._active[host] < max(1, self.per_host))
            self._active[host] += 1
        try:
            yield
        finally:
            async with freed:
                self._active[host] -= 1
                freed.notify()

    async def wait_turn(self, host: str) -> None:
        """Sleep until the host's spacing since its last request has passed (another
        request may start meanwhile: ``start`` tells)."""
        if self.spacing <= 0:
            return
        last = self._last.get(host)
        if last is not None:
            delay = last + self.spacing - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)

    def start(self, host: str) -> bool:
        """Whether a request to ``host`` may start now; if so it is counted as started.
        (No await inside: check and mark happen together.)"""
        if self.spacing <= 0:
            return True
        now = asyncio.get_running_loop().time()
        last = self._last.get(host)
        if last is not None and now < last + self.spacing:
            return False
        self._last[host] = now
        return True


# --------------------------------------------------------------------------- polling


class Poller:
    """The feeds being polled, each started as it falls due and written back as soon as
    it finishes: a slow server holds up its own feed (and its host's queue), never the
    others. Global and per-host limits hold over everything in flight; a feed in flight
    is never claimed again, and its lease is renewed every third of the lease so another
    process sharing the database does not claim it either.

    ``poll_cycle`` drives one to completion; the daemon keeps one and tops it up at
    every tick."""

    LINGER_S = 0.25  # finished polls are written back together, this long after the first
    SAVE_TRIES = 3  # a finished poll's state refused this many times on its own is given up

    def __init__(self, rt: Runtime) -> None:
        poll = rt.config.settings.poll
        self.rt = rt
        self.gate = HostGate(poll.per_host, poll.per_host_spacing)
        self._concurrency = poll.concurrency
        self._sem = asyncio.Semaphore(poll.concurrency)
        self.running: dict[asyncio.Task[PollReport], FeedRow] = {}
        self._keeper: asyncio.Task[None] | None = None
        # finished polls whose state is not written yet: their report, failed writes
        self._unsaved: dict[asyncio.Task[PollReport], tuple[PollReport, int]] = {}

    def ids(self) -> set[int]:
        return {row.id for row in self.running.values() if row.id is not None}

    async def start_due(self, *, all_feeds: bool = False, exclude: set[int] | None = None) -> int:
        """Claim due feeds (with ``all_feeds``, every enabled feed not waiting out a
        failure backoff or a Retry-After), up to a few times the concurrency in flight,
        and start polling them. Returns how many were started."""
        rt = self.rt
        poll = rt.config.settings.poll
        self._refresh_limits()
        room = max(poll.concurrency * 4, 100) - len(self.running)
        if room <= 0:
            return 0
        async with rt.sessions() as session:
            feeds = await claim_due_feeds(
                session,
                now=rt.clock(),
                owner=rt.owner,
                lease_s=poll.lease,
                limit=room,
                all_feeds=all_feeds,
                exclude=(exclude or set()) | self.ids(),
            )
        for row in feeds:
            task = asyncio.create_task(self._one(row, self._sem), name=f"poll {row.name}")
            self.running[task] = row
        if self.running and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.create_task(self._keep_leases(), name="lease keeper")
        return len(feeds)

    def _refresh_limits(self) -> None:
        """Take up what a reload changed: a new concurrency for the polls started from
        now on (those in flight finish under the old); per_host and the spacing at once,
        for every request not started yet."""
        poll = self.rt.config.settings.poll
        if poll.concurrency != self._concurrency:
            self._concurrency = poll.concurrency
            self._sem = asyncio.Semaphore(poll.concurrency)
        self.gate.per_host, self.gate.spacing = poll.per_host, poll.per_host_spacing

    async def _one(self, row: FeedRow, sem: asyncio.Semaphore) -> PollReport:
        host = urlsplit(row.url).hostname or ""
        # the host's slot and its spacing first: a feed queued behind its busy host
        # holds no global slot that a feed on another host could use
        gate = self.gate
        async with gate.slot(host):
            while True:
                await gate.wait_turn(host)
                async with sem:
                    if gate.start(host):
                        return await poll_feed(self.rt, row)
                # another request to the host started while this one waited for a
                # global slot: give the slot back and wait out the spacing again

    async def collect(self, wait: float | None = None) -> list[PollReport]:
        """Wait up to ``wait`` seconds (None: as long as it takes; 0: not at all) for
        a poll to finish, then write back every finished poll's state in one go and
        return their reports."""
        if self.running and wait != 0:
            first, _ = await asyncio.wait(
                self.running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if first and len(first) < len(self.running):  # let the polls finishing now join
                await asyncio.wait(self.running, timeout=self.LINGER_S)
        done = [t for t in self.running if t.done()]
        for task in done:
            if task not in self._unsaved:
                self._unsaved[task] = (self._report(task), 0)
        # forgotten only once written: if the database refuses, the next call retries;
        # a state refused SAVE_TRIES times on its own (bad data, not a passing outage)
        # is given up, so one bad poll never holds up the others
        try:
            await _save_states(self.rt, [st for t in done if (st := self._unsaved[t][0].state)])
        except Exception:
            if len(done) == 1:
                if not self._give_up(done[0]):
                    raise
            else:
                log.warning("writing back %d polls failed; one by one", len(done), exc_info=True)
                done = [t for t in done if await self._save_one(t)]
        reports = [self._unsaved.pop(t)[0] for t in done]
        for task in done:
            del self.running[task]
        return reports

    async def _save_one(self, task: asyncio.Task[PollReport]) -> bool:
        """Write one finished poll's state: True once written or given up."""
        state = self._unsaved[task][0].state
        try:
            await _save_states(self.rt, [state] if state else [])
        except Exception:
            return self._give_up(task)
        return True

    def _give_up(self, task: asyncio.Task[PollReport]) -> bool:
        """Count a refused write of a finished poll's state (called while handling the
        error); True, logged, once it has been refused SAVE_TRIES times."""
        report, tries = self._unsaved[task]
        if tries + 1 < self.SAVE_TRIES:
            self._unsaved[task] = (report, tries + 1)
            return False
        log.error(
            "feed %s: its poll's state could not be written; given up", report.feed, exc_info=True
        )
        return True

    def _report(self, task: asyncio.Task[PollReport]) -> PollReport:
        row = self.running[task]
        if task.cancelled():
            failed = PollReport(row.name, row.url, error="poll cancelled")
            return failed  # no state: the feed keeps its due time; its lease is released
        exc = task.exception()
        if exc is None:
            return task.result()
        if not isinstance(exc, Exception):
            raise exc
        log.error("poll of %s crashed", row.name, exc_info=exc, extra={"feed": row.name})
        failed = PollReport(row.name, row.url, error=f"internal error: {exc!r}")
        failed.state = _record_failure(self.rt, row, failed.error or "", "internal", None, None)
        return failed

    async def close(self, grace: float = 0.0) -> list[PollReport]:
        """Let the polls in flight finish for up to ``grace`` seconds, cancel the rest,
        write back what finished and release this process's leases on the rest."""
        if self.running and grace > 0:
            await asyncio.wait(self.running, timeout=grace)
        rest = [t for t in self.running if not t.done()]
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.wait(rest)
        ids = [row.id for t, row in self.running.items() if t in rest and row.id is not None]
        try:
            reports = await self.collect(wait=0)
        finally:
            if self._keeper is not None:
                self._keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._keeper
        if ids:
            async with self.rt.sessions() as session:
                conn = await session.connection()
                await conn.execute(_release(self.rt, ids))
                await session.commit()
        return reports

    async def _keep_leases(self) -> None:
        """Every third of the lease, extend this process's leases on the feeds in flight."""
        rt = self.rt
        while self.running:
            await asyncio.sleep(max(rt.config.settings.poll.lease / 3, 0.05))
            ids = sorted(self.ids())
            if not ids:
                continue
            try:
                async with rt.sessions() as session:
                    until = rt.clock() + timedelta(seconds=rt.config.settings.poll.lease)
                    await renew_leases(session, ids, owner=rt.owner, until=until)
            except Exception:  # the next renewal (or the poll's end) will do
                log.warning("could not renew feed leases", exc_info=True)


async def poll_cycle(rt: Runtime, *, all_feeds: bool = False) -> CycleReport:
    """Claim due feeds (with ``all_feeds``, every enabled feed not waiting out a failure
    backoff or a Retry-After) and poll them concurrently within the global and per-host
    limits, claiming more as polls finish, until none is due. Returns what happened to
    each feed."""
    report = CycleReport()
    poller = Poller(rt)
    done: set[int] = set()
    try:
        while True:
            if await poller.start_due(all_feeds=all_feeds, exclude=done):
                done |= poller.ids()
            if not poller.running:
                break
            report.polls.extend(await poller.collect())
    finally:
        report.polls.extend(await poller.close())
    if all_feeds:
        async with rt.sessions() as session:
            report.waiting = await deferred_feeds(session, now=rt.clock(), exclude=done)
            report.gone = await gone_feeds(session, [f.name for f in rt.config.feeds])
    return report


async def poll_feed(rt: Runtime, row: FeedRow) -> PollReport:
    """Poll one feed and record the outcome on its row. Never raises for feed problems."""
    report = PollReport(row.name, row.url)
    metrics = rt.metrics
    started = time.perf_counter()
    result = await fetch(
        rt.http, row.url, etag=row.etag, last_modified=row.last_modified, limits=rt.limits
    )
    metrics.fetch_seconds.observe(time.perf_counter() - started)
    report.status = result.status
    if result.not_modified:
        report.not_modified = True
        report.state = _record_success(rt, row, result, None, [])
        metrics.poll(error_kind=None, not_modified=True)
        return report
    if result.error or result.body is None:
        report.error = result.error or f"HTTP {result.status} with no body"
        report.state = _record_failure(
            rt, row, report.error, result.error_kind, result.status, result
        )
        metrics.poll(error_kind=result.error_kind or "http", not_modified=False)
        return report
    tags = tuple(t for t in row.tags.split(",") if t)
    started = time.perf_counter()
    parsed = await rt.pool.parse(
        result.body,
        result.headers,
        url=result.final_url,
        feed=row.name,
        source=row.source or row.name,
        feed_tags=tags,
        now=rt.clock(),
    )
    metrics.parse_seconds.observe(time.perf_counter() - started)
    report.entries = len(parsed.entries)
    if parsed.error:
        report.parse_error = parsed.error
    if not parsed.entries and parsed.error:
        report.error = parsed.error
        report.state = _record_failure(rt, row, parsed.error, "parse", result.status, result)
        metrics.poll(error_kind="parse", not_modified=False)
        return report
    hits = None
    if parsed.hits is not None and parsed.generation == rt.pool.generation:
        hits = {e.guid: h for e, h in zip(parsed.entries, parsed.hits, strict=True)}
    prepared = None
    if parsed.prepared is not None:
        prepared = {e.guid: p for e, p in zip(parsed.entries, parsed.prepared, strict=True)}
    await ingest(rt, row, parsed.entries, report, hits, prepared)
    times = [e.published for e in parsed.entries]
    if not any(times):
        # an undated feed: when each item was first seen stands in for when it was
        # published, so its cadence is still learned (to within one poll interval)
        now = rt.clock()
        times = [report.seen_at.get(e.guid, now) for e in parsed.entries]
    report.state = _record_success(rt, row, result, parsed, times)
    metrics.poll(error_kind=None, not_modified=False)
    return report


_STATE_COLUMNS = (
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


def _state(row: FeedRow) -> dict[str, Any]:
    # "_polled": the URL this poll fetched; the new state is only written while the feed
    # still has it (see _save_states). enabled/disabled_reason are the config's (a
    # reload may change them while the feed is polled): a poll writes them only when a
    # 410 disables the feed ("_gone")
    return {"id": row.id, "_polled": row.url, **{c: getattr(row, c) for c in _STATE_COLUMNS}}


def _record_success(
    rt: Runtime,
    feed: FeedRow,
    result: FetchResult,
    parsed: ParseResult | None,
    times: Sequence[datetime | None],
) -> dict[str, Any]:
    """The feed's new state after a successful poll (applied in bulk by poll_cycle).
    Built as a plain dict: the ORM row is not touched (attribute instrumentation costs
    more than the rest of a 304 poll)."""
    now = rt.clock()
    st = _state(feed)
    st["last_polled"] = st["last_success"] = now
    st["last_status"] = result.status
    if not result.not_modified:
        st["etag"] = result.etag
        st["last_modified"] = result.last_modified
    if result.permanent_redirect and result.permanent_redirect != feed.url:
        log.warning(
            "feed %s moved permanently: %s -> %s",
            feed.name,
            feed.url,
            result.permanent_redirect,
            extra={"feed": feed.name},
        )
        st["url"] = result.permanent_redirect
    st["consecutive_failures"] = 0
    if parsed is not None and parsed.error:
        # entries were recovered, but the feed is malformed: keep the reason visible
        st["last_error"], st["last_error_kind"], st["last_error_at"] = parsed.error, "parse", now
    elif parsed is not None or (result.not_modified and st["last_error_kind"] != "parse"):
        # (a 304 says the body is unchanged: a malformed one still is, so its reason stays)
        st["last_error"] = st["last_error_kind"] = None
    if parsed is not None and parsed.meta.title:
        st["title"] = parsed.meta.title[:500]
    if parsed is not None:
        # what the body says about polling, kept for the 304s that follow (no body)
        st["ttl_minutes"] = parsed.meta.ttl_minutes
        st["update_period_minutes"] = parsed.meta.update_period_minutes
        cadence = learned_cadence([t for t in times if t is not None], now)
        if cadence is not None or times:
            st["cadence_s"] = cadence
    interval = _interval(rt, feed, 0, result, st, now)
    st["current_interval_s"] = interval
    st["next_due"] = now + timedelta(seconds=interval)
    st["lease_until"] = st["lease_owner"] = None
    return st


def _record_failure(
    rt: Runtime,
    feed: FeedRow,
    error: str,
    kind: str | None,
    status: int | None,
    result: FetchResult | None,
) -> dict[str, Any]:
    """The feed's new state after a failed poll: the reason is kept on the feed."""
    now = rt.clock()
    st = _state(feed)
    st["last_polled"] = now
    st["last_status"] = status
    st["last_error"], st["last_error_kind"], st["last_error_at"] = error, kind, now
    failures = st["consecutive_failures"] = feed.consecutive_failures + 1
    if kind == "gone" or status == 410:
        st["_gone"] = f"410 Gone at {now:%Y-%m-%d %H:%M}Z: disabled"
        log.warning("feed %s answered 410 Gone: disabled", feed.name, extra={"feed": feed.name})
    else:
        log.warning(
            "feed %s failed (%s): %s", feed.name, kind or "error", error, extra={"feed": feed.name}
        )
    interval = _interval(rt, feed, failures, result, st, now)
    st["current_interval_s"] = interval
    st["next_due"] = now + timedelta(seconds=interval)
    st["lease_until"] = st["lease_owner"] = None
    return st


async def _save_states(rt: Runtime, states: list[dict[str, Any]]) -> None:
    """One bulk UPDATE by primary key for a whole batch of polled feeds.

    A feed whose URL was changed meanwhile (a config reload gave it a new one) keeps
    what the reload set (new URL, no validators, due now): the poll of its old URL is
    not written back over it; only this process's lease on it is released."""
    if not states:
        return
    table = FeedRow.__table__  # type: ignore[attr-defined]
    stmt = (
        update(table)
        .where(table.c.id == bindparam("_id"), table.c.url == bindparam("_polled"))
        .values({c: bindparam(c) for c in _STATE_COLUMNS})
    )
    params = [
        {**{c: st[c] for c in _STATE_COLUMNS}, "_id": st["id"], "_polled": st["_polled"]}
        for st in states
    ]
    gone = [
        {"_id": st["id"], "_polled": st["_polled"], "_reason": st["_gone"]}
        for st in states
        if st.get("_gone")
    ]
    async with rt.sessions() as session:
        conn = await session.connection()
        await conn.execute(stmt, params)  # executemany: one round trip
        if gone:
            await conn.execute(
                update(table)
                .where(table.c.id == bindparam("_id"), table.c.url == bindparam("_polled"))
                .values(enabled=False, disabled_reason=bindparam("_reason")),
                gone,
            )
        await conn.execute(_release(rt, [st["id"] for st in states]))
        await session.commit()


def _release(rt: Runtime, ids: list[int]) -> Update:
    """This process's leases on the feeds ``ids``, let go."""
    table = FeedRow.__table__  # type: ignore[attr-defined]
    return (
        update(table)
        .where(table.c.id.in_(ids), table.c.lease_owner == rt.owner)
        .values(lease_until=None, lease_owner=None)
    )


def _interval(
    rt: Runtime,
    feed: FeedRow,
    failures: int,
    result: FetchResult | None,
    st: dict[str, Any],
    now: datetime,
) -> float:
    """Seconds to the next poll: the response's cache headers and Retry-After, and the
    body hints and cadence in the feed's new state ``st`` (those of its last full body
    when this poll had none: a 304 or a failure)."""
    poll = rt.config.settings.poll
    max_age, expires_in = (None, None)
    if result is not None:
        max_age, expires_in = parse_cache_headers(result.headers, now)
    default = feed.interval_s or poll.default_interval
    interval = next_interval(
        min_s=min(poll.min_interval, default),
        max_s=max(poll.max_interval, default),
        default_s=default,
        ttl_minutes=st["ttl_minutes"],
        update_period_minutes=st["update_period_minutes"],
        cache_max_age=max_age,
        expires_in=expires_in,
        retry_after=result.retry_after if result else None,
        cadence_s=st["cadence_s"],
        consecutive_failures=failures,
        now=now,
        rng=rt.rng,
        pinned_s=feed.interval_s,
    )
    return interval


# --------------------------------------------------------------------------- ingest


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


INGEST_BATCH = 2000  # entries stored per transaction when many polls wait at once
YIELD_EVERY = 64  # entries deduped and matched between two yields to the event loop


@dataclass
class _Job:
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
    (a cold cycle over 1,000 feeds makes a few dozen transactions, not 1,000). When a
    batch fails, each of its polls is retried alone, so one bad poll fails only its
    own feed. Returns once this poll's entries are committed."""
    assert feed.id is not None
    # one entry per guid (feeds sometimes repeat an item)
    unique: dict[str, Entry] = {}
    for e in entries:
        unique.setdefault(e.guid, e)
    job = _Job(feed, unique, report, asyncio.get_running_loop().create_future(), hits, prepared)
    rt.ingest_queue.append(job)
    async with rt.ingest_lock:
        while not job.done.done():
            batch: list[_Job] = []
            size = 0
            while rt.ingest_queue and (not batch or size < INGEST_BATCH):
                nxt = rt.ingest_queue.pop(0)
                batch.append(nxt)
                size += len(nxt.unique)
            await _run_batch(rt, batch)
    await job.done


async def _run_batch(rt: Runtime, batch: list[_Job]) -> None:
    try:
        try:
            await _ingest_jobs(rt, batch)
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
                    await _ingest_jobs(rt, [job])
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


async def _ingest_jobs(rt: Runtime, jobs: list[_Job]) -> None:
    if not rt.index_loaded:  # a lazy start-up (``wirewatch once``): first new entries
        await load_index(rt)
        rt.index_loaded = True
    now = rt.clock()
    stored: list[int] = []
    rt.metrics.begin_batch()  # (what a rolled-back attempt staged is not counted)
    async with rt.sessions() as session:
        started = time.perf_counter()
        caught = await catch_up(rt, session)  # what other processes sharing the database stored
        if rt.seen_entry_id is not None:
            rt.metrics.catch_up_seconds.observe(time.perf_counter() - started)
            rt.metrics.catch_up_entries.inc(caught)
        feed_ids = sorted({j.feed.id for j in jobs if j.feed.id is not None})
        guids = sorted({g for j in jobs for g in j.unique})
        # guids and links are looked up for every feed of the batch at once; the rare
        # row of another feed with the same guid is filtered out below
        existing: dict[tuple[int, str], EntryRow] = {}
        for chunk in _chunks(guids, 500):
            rows = await session.exec(
                select(EntryRow)
                .where(col(EntryRow.feed_id).in_(feed_ids))
                .where(col(EntryRow.guid).in_(chunk))
            )
            existing.update({(r.feed_id, r.guid): r for r in rows.all()})
        links = sorted(
            {
                e.link
                for j in jobs
                for g, e in j.unique.items()
                if e.link and (j.feed.id, g) not in existing
            }
        )
        # stored titles under each link: a new guid on a known link is the same entry
        # only when it keeps the title, or when most of the poll came back that way.
        # Under a site's front page (a feed linking every item to it holds its whole
        # history there) only the last week's entries are read
        known_links: dict[tuple[int, str], list[str]] = {}
        articles = [link for link in links if article_url(link)]
        front_pages = [link for link in links if not article_url(link)]
        for group, since in ((articles, None), (front_pages, now - timedelta(days=7))):
            for chunk in _chunks(group, 500):
                query = (
                    select(EntryRow.feed_id, EntryRow.link, EntryRow.title)
                    .where(col(EntryRow.feed_id).in_(feed_ids))
                    .where(col(EntryRow.link).in_(chunk))
                )
                if since is not None:
                    query = query.where(col(EntryRow.seen_at) >= since)
                for fid, link, title in (await session.exec(query)).all():
                    known_links.setdefault((fid, link), []).append(title)
        per_job: list[list[Entry]] = []
        for job in jobs:
            feed, report = job.feed, job.report
            assert feed.id is not None
            fresh: list[Entry] = []
            linked: list[tuple[Entry, list[str]]] = []
            for guid, e in job.unique.items():
                old = existing.get((feed.id, guid))
                if old is not None:
                    report.seen_at[guid] = old.seen_at
                    if is_material_change(old.title, e.title):
                        old.title, old.summary = e.title, e.summary or old.summary
                        old.updates += 1
                        session.add(old)
                        report.updated += 1
                        if old.story_id is not None:
                            story = await session.get(StoryRow, old.story_id)
                            if story is not None:
                                story.updated_at = now
                                session.add(story)
                    continue
                titles = known_links.get((feed.id, e.link)) if e.link else None
                if titles is not None:
                    linked.append((e, titles))
                else:
                    fresh.append(e)
            fresh.extend(_drop_relinked(linked, len(job.unique), report))
            per_job.append(fresh)
        # most of a poll looking new: a feed that regenerated guids *and* links
        # (tracking ids, new CMS) still repeats its titles; those are not new
        suspects = [
            (job, fresh)
            for job, fresh in zip(jobs, per_job, strict=True)
            if len(fresh) >= GUID_FLOOD_MIN and len(fresh) * 2 >= len(job.unique)
        ]
        known_titles = await _known_titles(session, suspects, now)
        suspect_ids = {id(job) for job, _ in suspects}
        fresh_all: list[tuple[_Job, Entry]] = []
        counts: list[tuple[_Job, int]] = []
        for job, fresh in zip(jobs, per_job, strict=True):
            feed, report = job.feed, job.report
            if known_titles and id(job) in suspect_ids:
                fresh = _drop_known_titles(feed.id or 0, fresh, known_titles, report)
            if report.relinked >= GUID_FLOOD_MIN:
                log.warning(
                    "feed %s: %d items came back with new guids but known links or titles "
                    "(guid regeneration); treated as already seen",
                    feed.name,
                    report.relinked,
                )
            fresh_all.extend((job, e) for e in fresh)
            counts.append((job, len(fresh)))
        if fresh_all:
            alerts = await _ingest_fresh(rt, session, fresh_all, now, stored)
            for job, n in counts:
                job.report.new += n
                job.report.alerts += alerts.get(job.feed.id or 0, 0)
            seen = [{"_id": job.feed.id, "_n": n, "_now": now} for job, n in counts if n]
            table = FeedRow.__table__  # type: ignore[attr-defined]
            conn = await session.connection()
            await conn.execute(
                update(table)
                .where(table.c.id == bindparam("_id"))
                .values(
                    last_new_entry=bindparam("_now"),
                    entries_seen=table.c.entries_seen + bindparam("_n"),
                ),
                seen,
            )
        await session.commit()
    rt.metrics.commit_batch()
    if rt.seen_entry_id is not None and stored:
        # stored under the ingest lock, taken by catch_up: no other process stored an
        # entry since, so every id up to this batch's highest is in the index
        rt.seen_entry_id = max(rt.seen_entry_id, *stored)
    if any(j.report.alerts for j in jobs):
        rt.outbox_wakeup.set()


async def _known_titles(
    session: AsyncSession, suspects: list[tuple[_Job, list[Entry]]], now: datetime
) -> set[tuple[int, str]]:
    """(feed id, title) of the suspect polls' "new" titles already stored for that feed
    in the last 7 days: one query for the whole batch."""
    if not suspects:
        return set()
    since = now - timedelta(days=7)
    feed_ids = sorted({job.feed.id for job, _ in suspects if job.feed.id is not None})
    titles = sorted({e.title for _, fresh in suspects for e in fresh if e.title})
    known: set[tuple[int, str]] = set()
    for chunk in _chunks(titles, 500):
        rows = await session.exec(
            select(EntryRow.feed_id, EntryRow.title)
            .where(col(EntryRow.feed_id).in_(feed_ids))
            .where(col(EntryRow.seen_at) >= since)
            .where(col(EntryRow.title).in_(chunk))
        )
        known.update((fid, title) for fid, title in rows.all())
    return known


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


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


@dataclass
class _Pending:
    entry: Entry
    row: dict[str, Any]  # the entries row, inserted with plain Core
    story_id: int
    hits: list[Hit]
    entry_id: int = 0
    new_outlet: bool = False
    outlets: int = 0  # outlets carrying the story once this entry is in


async def _reserve_story_ids(rt: Runtime, session: AsyncSession, n: int) -> list[int]:
    """Story ids for stories about to be created, known before insert so the story
    index can learn them while the batch is still being built. PostgreSQL takes them
    from the table's sequence (safe with many processes); SQLite, a one-process
    database, counts on from the largest id."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        conn = await session.connection()
        rows = await conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('stories', 'id')) "
                "FROM generate_series(1, :n)"
            ).bindparams(n=n)
        )
        return [int(r[0]) for r in rows.all()]
    if rt.next_story_id is None:
        top = (await session.exec(select(func.max(StoryRow.id)))).one()
        rt.next_story_id = int(top or 0) + 1
    start = rt.next_story_id
    rt.next_story_id += n
    return list(range(start, start + n))


async def _ingest_fresh(
    rt: Runtime,
    session: AsyncSession,
    fresh: list[tuple[_Job, Entry]],
    now: datetime,
    stored: list[int],
) -> dict[int, int]:
    """Store new entries (of one or several polls), fold them into stories and queue
    alerts with a handful of batched statements (not several round trips per entry).
    Returns the alerts queued per feed id; the new entries' ids are added to ``stored``.
    Entries that matched but were older than max_age (not alerted) are counted on their
    poll's report (``too_old``; reset with the rest if the batch is retried)."""
    max_age = rt.max_age
    pending: list[_Pending] = []
    new_stories: dict[int, dict[str, Any]] = {}
    spare: list[int] = []
    for i, (job, e) in enumerate(fresh):
        feed = job.feed
        assert feed.id is not None
        if i and i % YIELD_EVERY == 0:
            # let the loop hand finished parses back and start new ones: the parse
            # workers would otherwise sit idle through a long batch
            await asyncio.sleep(0)
        item = StoryItem(
            key=f"{feed.id}:{e.guid}",
            title=e.title,
            summary=e.summary,
            published=e.published or now,
            source=e.source,
            url=e.link,
        )
        ready = job.prepared.get(e.guid) if job.prepared is not None else None
        story_id = rt.index.find(item, now, ready).story_id
        if story_id is None:
            if not spare:
                spare = await _reserve_story_ids(rt, session, max(8, len(fresh) - i))
            story_id = spare.pop(0)
            new_stories[story_id] = _story_values(story_id, e, now)
        rt.index.add(item, story_id)
        too_old = (
            max_age is not None
            and e.published is not None
            and e.published < now - timedelta(seconds=max_age)
        )
        if job.hits is not None and e.guid in job.hits:
            hits: list[Hit] = list(job.hits[e.guid])  # matched in the parse worker
        else:
            hits = rt.matcher.match_entry(e)
        if too_old:
            if hits:
                job.report.too_old += 1
            hits = []
        row = {
            "feed_id": feed.id,
            "guid": e.guid,
            "link": e.link,
            "title": e.title,
            "summary": e.summary,
            "content": e.content,
            "author": e.author,
            "categories": "\n".join(e.categories),
            "source": e.source,
            "published": e.published,
            "seen_at": now,
            "story_id": story_id,
            "updates": 0,
        }
        pending.append(_Pending(e, row, story_id, hits))

    # what the database knows about the existing stories this batch touches
    old_ids = sorted({p.story_id for p in pending} - set(new_stories))
    stories: dict[int, StoryRow] = {}
    sources: dict[int, set[str]] = defaultdict(set)
    matches: dict[int, dict[str, _Match]] = defaultdict(dict)
    parents: dict[tuple[int, str, str], _Parent] = {}
    conn = await session.connection()
    for start in range(0, len(old_ids), 500):
        chunk = old_ids[start : start + 500]
        found = await session.exec(select(StoryRow).where(col(StoryRow.id).in_(chunk)))
        for known in found.all():
            stories[known.id or 0] = known
        src_rows = await session.exec(
            select(EntryRow.story_id, EntryRow.source)
            .where(col(EntryRow.story_id).in_(chunk))
            .distinct()
        )
        for sid, source in src_rows.all():
            sources[sid or 0].add(source)
        found_m = await conn.execute(
            sa_select(
                col(MatchRow.id),
                col(MatchRow.story_id),
                col(MatchRow.entry_id),
                col(MatchRow.watchlist),
                col(MatchRow.terms),
                col(MatchRow.words),
                col(MatchRow.alerted),
            ).where(col(MatchRow.story_id).in_(chunk))
        )
        for mid, msid, meid, mwl, mterms, mwords, malerted in found_m.all():
            matches[msid][mwl] = _Match(
                mid, msid, meid, mwl, json.loads(mterms), json.loads(mwords), malerted
            )
        found_a = await conn.execute(
            sa_select(
                col(AlertRow.id),
                col(AlertRow.story_id),
                col(AlertRow.watchlist),
                col(AlertRow.sink),
                col(AlertRow.channel),
            )
            .where(col(AlertRow.story_id).in_(chunk), col(AlertRow.kind) == "new")
            .order_by(col(AlertRow.id))
        )
        for aid, asid, awl, asink, achannel in found_a.all():
            parents.setdefault((asid, awl, asink), _Parent(aid, achannel))

    # outlets per story, in arrival order: who is new, and how many carry it so far
    counts: dict[int, int] = {sid: st.source_count for sid, st in stories.items()}
    for p in pending:
        if p.story_id not in stories and p.story_id not in new_stories:
            # the index knew a story the database no longer has: start it again
            sid = (await _reserve_story_ids(rt, session, 1))[0]
            new_stories[sid] = _story_values(sid, p.entry, now)
            p.story_id = p.row["story_id"] = sid
        p.new_outlet = p.entry.source not in sources[p.story_id]
        if p.new_outlet:
            sources[p.story_id].add(p.entry.source)
            counts[p.story_id] = counts.get(p.story_id, 0) + 1
        p.outlets = counts[p.story_id]
    for sid, st in stories.items():
        st.source_count, st.updated_at = counts[sid], now
        session.add(st)
    for sid, values in new_stories.items():
        values["source_count"] = counts[sid]

    # plain Core inserts: one multi-row statement each, no ORM bookkeeping per entry
    if new_stories:
        await conn.execute(insert(StoryRow), list(new_stories.values()))
    # ids come back keyed by (feed, guid), unique per entry: without
    # sort_by_parameter_order SQLAlchemy can send many rows per statement
    # ("insertmanyvalues") instead of one statement per row
    inserted = await conn.execute(
        insert(EntryRow).returning(col(EntryRow.id), col(EntryRow.feed_id), col(EntryRow.guid)),
        [p.row for p in pending],
    )
    ids = {(fid, guid): int(eid or 0) for eid, fid, guid in inserted.all()}
    for p in pending:
        p.entry_id = ids[(p.row["feed_id"], p.row["guid"])]
    stored.extend(ids.values())

    queued: dict[int, int] = defaultdict(int)
    alerts: list[tuple[dict[str, Any], _Parent | None]] = []
    for p in pending:
        if p.hits or (p.new_outlet and matches.get(p.story_id)):
            n = _queue_alerts(rt, p, now, matches[p.story_id], parents, alerts)
            queued[p.row["feed_id"]] += n

    # matches: new ones inserted, changed ones updated, each in one executemany
    fresh_m = [m for ms in matches.values() for m in ms.values() if m.id is None]
    changed_m = [m for ms in matches.values() for m in ms.values() if m.id and m.dirty]
    if fresh_m:
        await conn.execute(insert(MatchRow), [m.values() for m in fresh_m])
    rt.metrics.stage(
        entries=len(pending),
        new_stories=len(new_stories),
        matched=(m.watchlist for m in fresh_m),
        published=(p.entry.published for p in pending),
        now=now,
    )
    if changed_m:
        mt = MatchRow.__table__  # type: ignore[attr-defined]
        await conn.execute(
            update(mt)
            .where(mt.c.id == bindparam("_id"))
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
                for m in changed_m
            ],
        )
    # alerts: the batch's new parents first (their ids are needed), then follow-ups
    new_rows = [row for row, parent in alerts if parent is None]
    if new_rows:
        made = await conn.execute(
            insert(AlertRow).returning(
                col(AlertRow.id),
                col(AlertRow.story_id),
                col(AlertRow.watchlist),
                col(AlertRow.sink),
            ),
            new_rows,
        )
        for aid, asid, awl, asink in made.all():
            parent = parents.get((asid, awl, asink))
            if parent is not None and parent.id is None:
                parent.id = aid
    follow = [{**row, "parent_id": parent.id} for row, parent in alerts if parent is not None]
    if follow:
        await conn.execute(insert(AlertRow), follow)
    return queued


def _story_values(story_id: int, e: Entry, now: datetime) -> dict[str, Any]:
    """The stories row of a story that ``e`` starts (its outlet count is set later)."""
    return {
        "id": story_id,
        "title": e.title,
        "link": e.link,
        "source": e.source,
        "source_count": 0,
        "created_at": now,
        "updated_at": now,
    }


@dataclass(slots=True)
class _Match:
    """A story's match for one watchlist, as stored (``id`` None until inserted)."""

    id: int | None
    story_id: int
    entry_id: int
    watchlist: str
    terms: list[str]
    words: list[str]
    alerted: bool
    dirty: bool = False
    created_at: datetime | None = None

    def alert(
        self, entry_id: int, sink: str, channel: str, kind: str, now: datetime
    ) -> dict[str, Any]:
        """An alerts row (outbox) for this match."""
        return {
            "story_id": self.story_id,
            "entry_id": entry_id,
            "watchlist": self.watchlist,
            "sink": sink,
            "channel": channel,
            "kind": kind,
            "parent_id": None,
            "next_attempt_at": now,
            "created_at": now,
            "terms": json.dumps(self.terms),
            "words": json.dumps(self.words),
        }

    def values(self) -> dict[str, Any]:
        return {
            "story_id": self.story_id,
            "entry_id": self.entry_id,
            "watchlist": self.watchlist,
            "terms": json.dumps(self.terms),
            "words": json.dumps(self.words),
            "alerted": self.alerted,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class _Parent:
    """A story's first alert on one sink: follow-ups thread under it."""

    id: int | None  # None while it is queued in this batch and not inserted yet
    channel: str


def _queue_alerts(
    rt: Runtime,
    p: _Pending,
    now: datetime,
    matches: dict[str, _Match],
    parents: dict[tuple[int, str, str], _Parent],
    alerts: list[tuple[dict[str, Any], _Parent | None]],
) -> int:
    """One alert per story per watchlist (per sink): the first when the story reaches
    the watchlist's ``min_sources`` (``p.outlets`` carry it now); then a follow-up for
    each new outlet (threads). Alerts are appended to ``alerts`` as rows to insert, a
    follow-up with the parent it threads under (whose id may not be known yet)."""
    story_id = p.story_id
    queued = 0
    for hit in p.hits:
        m = matches.get(hit.watchlist)
        if m is None:
            matches[hit.watchlist] = _Match(
                None, story_id, p.entry_id, hit.watchlist, list(hit.terms), list(hit.words),
                False, created_at=now,
            )  # fmt: skip
        else:
            terms, words = _union(m.terms, hit.terms), _union(m.words, hit.words)
            if terms != m.terms or words != m.words:
                m.terms, m.words, m.dirty = terms, words, True
    for name, m in matches.items():
        wl = rt.matcher.watchlists.get(name)
        if wl is None:
            continue
        sinks = _routes(rt, wl.sinks)
        if not m.alerted:
            if p.outlets >= max(1, wl.min_sources):
                m.alerted = m.dirty = True
                for sink in sinks:
                    made = _Parent(None, alert_channel(rt.config, wl.channel, sink))
                    alerts.append((m.alert(m.entry_id, sink, made.channel, "new", now), None))
                    parents[(story_id, name, sink)] = made
                    queued += 1
        elif p.new_outlet and wl.followups == "thread":
            for sink in sinks:
                parent = parents.get((story_id, name, sink))
                if parent is not None:
                    row = m.alert(p.entry_id, sink, parent.channel, "followup", now)
                    alerts.append((row, parent))
                    queued += 1
    return queued


def _union(old: list[str], new: Sequence[str]) -> list[str]:
    out = list(old)
    for v in new:
        if v not in out:
            out.append(v)
    return out


def _routes(rt: Runtime, wanted: Sequence[str]) -> list[str]:
    """Sinks for a watchlist: the configured ones it names (``slack`` covers the bot and
    the incoming webhook), or every configured sink. A watchlist that names only sinks
    that are not configured still alerts, on every configured sink, rather than lose it."""
    configured = list(rt.notifiers) or [slack_sink(rt.config) or "console"]
    if not wanted:
        return configured
    chosen = [s for s in configured if s.split("-")[0] in wanted]
    if not chosen:
        log.warning(
            "watchlist routes to %s, which is not configured; using %s",
            ", ".join(wanted),
            ", ".join(configured),
        )
    return chosen or configured


async def load_index(rt: Runtime) -> int:
    """Rebuild the in-memory story index from the entries stored within the window."""
    import gc  # (here: only this function needs it)

    # (the index's settings are those it started with: dedupe settings need a restart,
    # and a rebuild after a failed batch must not change them half-way)
    index = rt.index = StoryIndex(rt.index.config)
    since = rt.clock() - timedelta(hours=index.config.window_hours)
    count = 0
    # The cyclic garbage collector is paused while the index is built: the rows and the
    # index's tuples form no cycles, but its full collections, triggered again and again by
    # so many new objects, took a sixth of the time (restored even on error).
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
                top = (await session.exec(select(func.max(EntryRow.id)))).one()
                upto = rt.seen_entry_id = int(top or 0)
            # only the summary prefix the index keeps (StoryIndex.add_stored)
            query = window_entries(since, summary_chars=3 * index.config.summary_chars, upto=upto)
            result = await session.stream(query)
            add = index.add_stored
            async for part in result.partitions(5000):  # batches: no task switch per row
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
    if rt.seen_entry_id is None:
        return 0
    await hold_ingest_lock(session)
    conn = await session.connection()
    query = entries_since_id(rt.seen_entry_id, summary_chars=3 * rt.index.config.summary_chars)
    added = 0
    for eid, title, summary, when, source, link, sid in (await conn.execute(query)).all():
        rt.seen_entry_id = max(rt.seen_entry_id, eid)
        if sid is not None:
            rt.index.add_stored(title, summary, when, source, link, sid)
            added += 1
    return added
