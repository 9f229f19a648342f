"""Polling: which feeds are due, fetching and parsing them within the global and
per-host limits, and writing back what each poll left on its feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from monitor.fetch import FetchErrorKind, fetch
from monitor.pipeline.feedstate import FeedState, record_failure, record_success
from monitor.pipeline.ingest import ingest
from monitor.pipeline.runtime import Runtime
from monitor.store.feeds import (
    claim_due_feeds,
    deferred_feeds,
    gone_feeds,
    release_feed_leases,
    renew_leases,
    save_poll_states,
)
from monitor.store.tables import FeedRow

log = logging.getLogger("wirewatch.pipeline")


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
    state: FeedState | None = None  # what the poll leaves on the feed
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
            await save_states(self.rt, [st for t in done if (st := self._unsaved[t][0].state)])
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
            await save_states(self.rt, [state] if state else [])
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
        failed.state = record_failure(self.rt, row, failed.error or "", "internal", None, None)
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
                await release_feed_leases(session, ids, self.rt.owner)
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
        report.state = record_success(rt, row, result, None, [])
        metrics.poll(error_kind=None, not_modified=True)
        return report
    if result.error or result.body is None:
        report.error = result.error or f"HTTP {result.status} with no body"
        report.state = record_failure(
            rt, row, report.error, result.error_kind, result.status, result
        )
        metrics.poll(error_kind=result.error_kind or FetchErrorKind.HTTP, not_modified=False)
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
        report.state = record_failure(
            rt, row, parsed.error, FetchErrorKind.PARSE, result.status, result
        )
        metrics.poll(error_kind=FetchErrorKind.PARSE, not_modified=False)
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
    report.state = record_success(rt, row, result, parsed, times)
    metrics.poll(error_kind=None, not_modified=False)
    return report


async def save_states(rt: Runtime, states: list[FeedState]) -> None:
    """Write back a batch of polled feeds' states in one transaction."""
    if not states:
        return
    disabled = [(st.id, st.polled, st.gone) for st in states if st.gone]
    async with rt.sessions() as session:
        await save_poll_states(session, [st.columns() for st in states], disabled, rt.owner)
        await session.commit()
