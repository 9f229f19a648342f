"""The daemon: one APScheduler 3.x ``AsyncIOScheduler`` per process running short jobs.

* ``poll`` claims feeds whose persisted due time has passed (leases in the database,
  so due times survive restarts and several processes can share PostgreSQL);
* ``deliver`` drains the alert outbox;
* ``reload`` notices changed YAML (mtime watch; SIGHUP forces it) and swaps the
  matcher without a restart, keeping the last good config when the new one is bad;
* ``health`` (hourly) logs a feed that has gone silent, once, and when it stops being;
* ``feed_states`` (every half minute) judges each feed's health and tells the ops
  channel (``slack.ops_channel``, or the console) once per change of state.

With ``slack.app_token`` (``SLACK_APP_TOKEN``) it holds a Slack Socket Mode connection
for the buttons on the cards (``monitor.deliver.socket``, ``monitor.scheduler.actions``).

With ``http`` (``--http HOST:PORT``) it serves ``/healthz``, ``/readyz`` and ``/metrics``
(``monitor.scheduler.http``).

Shutdown (SIGINT/SIGTERM): no new jobs start; in-flight polls and sends finish; leases
are released; then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor import __version__
from monitor.config import AppConfig, ConfigError, parse_http_address
from monitor.dedupe.embed import load_in_background
from monitor.deliver.ops import OpsSink, ops_sink
from monitor.deliver.socket import SlackSocket
from monitor.health import (
    announced_state,
    feed_state,
    health_message,
    silence,
    span,
    state_detail,
)
from monitor.holds import longest_hold, rehold
from monitor.intervals import FAILURE_CAP_S, JITTER, RETRY_AFTER_CAP_S
from monitor.models import DeskAction
from monitor.outbox import RECONCILE_AFTER, delivery_loop, reconcile, stranded
from monitor.pipeline import CycleReport, Poller, PollReport, load_index
from monitor.pipeline.runtime import Runtime
from monitor.scheduler.actions import apply_action
from monitor.scheduler.http import OpsServer, Probe
from monitor.store.alerts import held_alerts, queued_alerts, set_due
from monitor.store.entries import newest_published
from monitor.store.feeds import (
    clamp_schedule,
    held_leases,
    list_feeds,
    release_leases,
    shift_schedule,
    sync_feeds,
    take_over_leases,
)
from monitor.store.history import feed_history
from monitor.store.ops import (
    claim_announcements,
    finish_announcement,
    health_states,
    record_stop,
    record_tick,
    set_health,
)
from monitor.store.retention import Pruned, prune

log = logging.getLogger("wirewatch.daemon")


@dataclass
class Reloader:
    """Re-reads the configuration when one of its files changes."""

    load: Callable[[], AppConfig]
    files: list[Path]
    mtimes: dict[Path, float] = field(default_factory=dict)

    def snapshot(self) -> None:
        self.mtimes = {p: _mtime(p) for p in self.files}

    def changed(self) -> bool:
        return any(_mtime(p) != self.mtimes.get(p) for p in self.files)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return -1.0


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


FEED_STATES_S = 30.0  # how often feed health is judged and changes announced
ANNOUNCE_HOLD_S = 60.0  # a node's claim on a feed-health message it is sending
CLOCK_CHECK_S = 5.0  # how often the wall clock is compared with the monotonic one
CLOCK_STEP_S = 60.0  # a step back larger than this moves the schedule back with it


def _horizons(rt: Runtime) -> dict[str, timedelta]:
    """How far ahead Wirewatch ever schedules a feed's poll or an alert's next attempt
    (longest interval, failure backoff or Retry-After, with jitter; a watchlist's
    longest hold), plus an hour."""
    s = rt.config.settings
    pinned = [f.interval for f in rt.config.feeds if f.interval is not None]
    feeds = max(s.poll.max_interval, FAILURE_CAP_S, RETRY_AFTER_CAP_S, *pinned)
    # (an alert held by its watchlist's quiet hours or digest is due up to that far ahead)
    held = [longest_hold(w) for w in rt.config.watchlists]
    alerts = max(s.delivery.max_backoff, RETRY_AFTER_CAP_S, *held)
    return {
        "feeds_within": timedelta(seconds=feeds * (1 + JITTER) + 3600),
        "alerts_within": timedelta(seconds=alerts + 3600),
    }


async def retain(rt: Runtime) -> Pruned:
    """Prune what is older than ``retention`` from the database (see ``store.retention.
    prune``); nothing when retention is ``none``."""
    keep = rt.config.settings.retention
    if keep is None:
        return Pruned()
    now = rt.clock()
    before = now - timedelta(seconds=keep)
    window = timedelta(hours=rt.ingest.index.config.window_hours)  # (the window it runs with)
    async with rt.sessions() as session:
        # A clock far ahead (no RTC and NTP not there yet, a clock set by hand) must not
        # prune the stories the story window still folds copies into. What this host
        # wrote is dated by that clock too, so the reference is the publishers' clocks:
        # the newest publication date among the entries stored lately.
        published = await newest_published(session, now - 2 * window, now)
        if published is not None:
            before = min(before, _aware(published) - window - timedelta(days=1))
        done = await prune(session, before=before, lock=rt.ingest.lock)
    if done.stories:
        log.info(
            "retention: pruned %d stories (%d entries, %d alerts) untouched for %s; "
            "%d entries kept emptied (undated, or their feed's newest) so their items "
            "are still recognised",
            done.stories,
            done.entries,
            done.alerts,
            f"{keep / 86400:g}d",
            done.kept,
        )
    return done


async def startup(rt: Runtime, *, lazy_index: bool = False) -> int:
    """Sync configured feeds to the database, rebuild the story window, and settle
    alerts a previous process left half-sent. Returns the entries loaded.

    ``lazy_index`` (``wirewatch once``) leaves the story window to the first poll that
    brings new entries: a run where every feed answers 304 never needs it."""
    async with rt.sessions() as session:
        await sync_feeds(session, rt.config.feeds, rt.clock())
        await session.commit()
        fixed = await clamp_schedule(session, now=rt.clock(), **_horizons(rt))
        await _leases_at_start(rt, session)
    if fixed:
        log.warning(
            "%d due times lay further ahead than any delay Wirewatch sets (written while "
            "the clock was ahead?): due now",
            fixed,
        )
    loaded = 0
    load_in_background()  # the dedupe embedding model, for titles the workers left
    if not lazy_index:
        loaded = await load_index(rt)
        rt.ingest.loaded = True
    # alerts left "sending" by a previous process: checked at once when this process is
    # the database's only user; sharing PostgreSQL, another node may be sending them right
    # now, so only those older than the orphan limit (the delivery worker checks the rest
    # as they pass it)
    await reconcile(rt, older_than=0.0 if rt.exclusive else RECONCILE_AFTER)
    for sink, n in (await stranded(rt)).items():
        log.warning(
            "%d alert%s queued for %s, which is not configured now: kept until it is "
            "again (`wirewatch outbox` lists them)",
            n,
            "" if n == 1 else "s",
            sink,
        )
    return loaded


async def _leases_at_start(rt: Runtime, session: AsyncSession) -> None:
    """Leases left in the database by processes that stopped without releasing them
    (killed, crashed): their feeds would not be polled until the leases ran out. As the
    database's only user (a locked SQLite file) this process takes them over now;
    sharing a PostgreSQL, it cannot tell a dead owner from a busy one, so it says whose
    they are and until when."""
    if rt.exclusive:
        for owner, n in await take_over_leases(session):
            log.warning(
                "took over %d feed lease%s left by %s, which ended without releasing them",
                n,
                "" if n == 1 else "s",
                owner,
            )
        return
    for owner, n, until in await held_leases(session, rt.clock()):
        if owner != rt.owner:
            log.warning("%s", lease_note(owner, n, until))


def lease_note(owner: str, feeds: int, until: datetime) -> str:
    """ "3 feeds leased by host:1234 until 2026-12-04 18:05:00Z": polled by that process,
    or by any other once its leases run out."""
    return (
        f"{feeds} feed{'' if feeds == 1 else 's'} leased by {owner} until "
        f"{_aware(until).astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"
    )


async def apply_reload(rt: Runtime, reloader: Reloader) -> bool:
    """Load the config again; swap it in if valid. Invalid: log every problem and
    keep running on the last good config."""
    reloader.snapshot()
    try:
        config = reloader.load()
    except ConfigError as exc:
        log.error(
            "configuration reload failed; keeping the last good config:\n%s",
            "\n".join(f"  {p}" for p in exc.problems),
        )
        return False
    rt.swap_config(config)
    now = rt.clock()
    async with rt.sessions() as session:
        await sync_feeds(session, config.feeds, now)
        held = [(i, w, k, _aware(d)) for i, w, k, d in await held_alerts(session, now)]
        sooner = rehold(held, rt.matcher.watchlists, now)
        await set_due(session, sooner)
        await session.commit()
    log.info("configuration reloaded: %s", config.summary())
    if sooner:
        log.info("%d held alerts are due sooner under the new quiet hours or digests", len(sooner))
        rt.delivery.wakeup.set()
    return True


class Daemon:
    def __init__(
        self,
        rt: Runtime,
        reloader: Reloader | None = None,
        heartbeat: Path | None = None,
        *,
        http: str = "",
        ops: OpsSink | None = None,
    ) -> None:
        self.rt = rt
        self.probe = Probe()  # what /healthz and /readyz report
        self.server: OpsServer | None = None
        if http:
            self.server = OpsServer(rt, self.probe, *parse_http_address(http))
        self.ops = ops or ops_sink(rt.config.settings.slack.ops_channel, rt.notifiers)
        self.reloader = reloader
        # touched at every poll tick that ran: a container's HEALTHCHECK reads its age
        self.heartbeat = heartbeat
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.inflight: set[asyncio.Task[object]] = set()
        # feeds are started as they fall due and written back as each finishes, so one
        # slow server never holds up the next tick's feeds
        self.poller = Poller(rt)
        self.silent: set[str] = set()  # feeds already reported silent
        self.quiet: dict[str, tuple[float, float]] = {}  # their (age, usual gap)
        self.socket: SlackSocket | None = None  # Slack Socket Mode (SLACK_APP_TOKEN)

    def _tracked(self, fn: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            if self.stopping.is_set():
                return
            task = asyncio.current_task()
            if task is not None:
                self.inflight.add(task)
            try:
                await fn()
            except Exception:
                log.exception("job failed; it will run again at its next tick")
            finally:
                if task is not None:
                    self.inflight.discard(task)

        return job

    async def _poll(self) -> None:
        """One tick: write back the polls that finished since the last, start the feeds
        that fell due since. Returns at once; the polls run on."""
        try:
            self._log_polls(await self.poller.collect(wait=0))
        except Exception:  # kept for the next tick; feeds falling due still start
            log.warning("could not write back finished polls; retrying", exc_info=True)
        await self.poller.start_due()
        now = asyncio.get_running_loop().time()
        if self.probe.last_tick is not None:
            tick = self.rt.config.settings.poll.tick
            self.probe.tick_lag = max(0.0, now - self.probe.last_tick - tick)
        self.probe.last_tick = now
        try:
            async with self.rt.sessions() as session:
                http = self.server.url if self.server is not None else ""
                await record_tick(
                    session,
                    owner=self.rt.owner,
                    version=__version__,
                    http=http,
                    now=self.rt.clock(),
                )
        except Exception as exc:  # (status shows an older tick; polling goes on)
            log.warning("could not record this node's tick: %s", exc)
        if self.heartbeat is not None:
            try:
                self.heartbeat.touch()
            except OSError as exc:
                log.warning("could not touch the heartbeat file %s: %s", self.heartbeat, exc)

    @staticmethod
    def _log_polls(polls: list[PollReport]) -> None:
        report = CycleReport(polls)
        if polls:
            log.info(
                "polled %d feeds: %d new entries, %d alerts queued, %d failed",
                len(report.polls),
                report.new,
                report.alerts,
                len(report.failed),
            )

    async def _health(self) -> None:
        """Log each feed that has gone silent (far longer than its usual cadence without
        a new item; the rule is in ``monitor.health``) once, and when it stops being;
        ``wirewatch feeds`` shows the same state. Failing feeds are reported as failing
        by their polls, not here."""
        now = self.rt.clock()
        async with self.rt.sessions() as session:
            rows = await list_feeds(session, enabled_only=True)
            history = await feed_history(session, rows, now)
        quiet: dict[str, tuple[float, float]] = {}
        healthy = {r.name for r in rows if not r.consecutive_failures}
        for row in rows:
            h = history.get(row.id) if row.id is not None else None
            found = silence(h, now) if h is not None and not row.consecutive_failures else None
            if found is not None:
                quiet[row.name] = found
        for name in sorted(quiet.keys() - self.silent):
            age, usual = quiet[name]
            log.warning(
                "feed %s: silent, no new item for %s (it usually publishes every %s)",
                name,
                span(age),
                span(usual),
            )
        for name in sorted((self.silent - quiet.keys()) & healthy):  # not failing, removed
            log.info("feed %s: no longer silent", name)
        self.silent = set(quiet)
        self.quiet = quiet

    async def _feed_states(self) -> None:
        """Judge every configured feed's health (failing after ``health.failures``
        failures in a row, silent, disabled by a 410, moved by a 301, or ok) and record
        the changes; then announce each change not yet announced, once: a node claims
        the message in the database before sending it, so N nodes send it once."""
        rt = self.rt
        now = rt.clock()
        failing_after = rt.config.settings.health.failures
        configured = {f.name: f for f in rt.config.feeds}
        async with rt.sessions() as session:
            rows = await list_feeds(session)
            known = await health_states(session)
        changes: list[tuple[str, str, str]] = []
        for row in rows:
            state = feed_state(
                row, configured.get(row.name), row.name in self.silent, failing_after
            )
            if state in ("removed", "off"):  # the operator's doing: nothing to tell
                continue
            said = announced_state(state)
            detail = state_detail(said, row, self.quiet.get(row.name), now)
            old = known.get(row.name)
            if (old is None and said != "ok") or (
                old is not None and (old.state, old.detail) != (said, detail)
            ):
                changes.append((row.name, said, detail))
        if changes:
            try:
                async with rt.sessions() as session:
                    await set_health(session, changes, now)
            except IntegrityError:  # another node recorded it first: judged again soon
                log.debug("feed health recorded by another node meanwhile")
        await self._announce()

    async def _announce(self) -> None:
        rt = self.rt
        async with rt.sessions() as session:
            due = await claim_announcements(
                session, owner=rt.owner, now=rt.clock(), hold=ANNOUNCE_HOLD_S
            )
        for row in due:
            text = health_message(row.feed, row.state, row.detail, row.announced)
            result = await self.ops.post(text)
            async with rt.sessions() as session:
                await finish_announcement(
                    session,
                    owner=rt.owner,
                    feed=row.feed,
                    state=row.state if result.ok else None,
                    now=rt.clock(),
                )
            if result.ok:
                level = logging.INFO if row.state == "ok" else logging.WARNING
                log.log(level, "%s (sent to %s)", text, self.ops.name, extra={"feed": row.feed})
            else:
                log.warning(
                    "feed %s: could not send the feed-health message (%s); will retry",
                    row.feed,
                    result.error,
                    extra={"feed": row.feed},
                )

    async def _prune(self) -> None:
        async with self.rt.ingest.lock:  # not in the middle of a batch being stored
            dropped = self.rt.ingest.index.prune(self.rt.clock())
        if dropped:
            log.info("story window: dropped %d entries older than the window", dropped)

    async def _retain(self) -> None:
        await retain(self.rt)

    async def _watch_clock(self, scheduler: AsyncIOScheduler) -> None:
        """Every few seconds, compare the wall clock with the monotonic one (see
        ``clock_stepped``)."""
        loop = asyncio.get_running_loop()
        offset = self.rt.clock().timestamp() - loop.time()
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), CLOCK_CHECK_S)
            try:
                offset = await self.clock_stepped(scheduler, offset)
            except Exception:  # (the database away for a moment: the next check retries)
                log.exception("clock check failed; checking again in %.0f s", CLOCK_CHECK_S)

    async def clock_stepped(self, scheduler: AsyncIOScheduler, offset: float) -> float:
        """After the wall clock stepped back (a VM resumed, a clock set by hand, NTP
        stepping at boot), every time scheduled before the step, in the database and in
        APScheduler, which counts in wall time too, is moved back by the step: otherwise
        polling and delivery would stall for as long as the step. ``offset`` is wall
        minus monotonic time at the last check; returns it as it is now. A step forward
        only makes things due early, which costs nothing."""
        now = self.rt.clock()
        current = now.timestamp() - asyncio.get_running_loop().time()
        step = current - offset
        if step < -CLOCK_STEP_S:
            by = timedelta(seconds=step)
            async with self.rt.sessions() as session:
                moved = await shift_schedule(session, by=by, now=now)
            for job in scheduler.get_jobs():
                if job.next_run_time is not None:
                    job.modify(next_run_time=max(now, job.next_run_time + by))
            log.warning(
                "the system clock went back %.0f s: %d due times moved back with it",
                -step,
                moved,
            )
        return current

    async def _reload(self) -> None:
        if self.reloader is None:
            return
        if self.reload_requested.is_set() or self.reloader.changed():
            self.reload_requested.clear()
            ok = await apply_reload(self.rt, self.reloader)
            self.probe.config_error = (
                None if ok else "the last reload failed: running on the last good config"
            )

    async def _start_socket(self) -> None:
        """Slack Socket Mode when an app token is configured: the cards' buttons."""
        slack = self.rt.config.settings.slack
        if not slack.app_token:
            return
        rt = self.rt

        async def on_action(action: DeskAction) -> None:
            await apply_action(rt, action)

        self.socket = SlackSocket(slack.app_token, on_action, base_url=slack.api_url)
        await self.socket.start()

    def request_stop(self) -> None:
        self.stopping.set()

    def request_reload(self) -> None:
        self.reload_requested.set()

    async def run(self) -> None:
        if self.server is not None:  # (/healthz answers while the window loads)
            url = await self.server.start()
            log.info("serving %s/healthz, /readyz and /metrics", url)
        try:
            await self._run()
        finally:
            if self.server is not None:
                await self.server.close()

    async def _run(self) -> None:
        rt = self.rt
        loaded = await startup(rt)
        if self.reloader is not None:
            self.reloader.snapshot()
        log.info(
            "wirewatch running: %s; %d entries in the story window",
            rt.config.summary(),
            loaded,
        )
        tick = rt.config.settings.poll.tick
        scheduler = AsyncIOScheduler(timezone=UTC)
        common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        scheduler.add_job(
            self._tracked(self._poll),
            "interval",
            seconds=tick,
            id="poll",
            next_run_time=rt.clock(),
            **common,
        )
        scheduler.add_job(self._tracked(self._reload), "interval", seconds=1, id="reload", **common)
        scheduler.add_job(self._tracked(self._prune), "interval", minutes=10, id="prune", **common)
        scheduler.add_job(
            self._tracked(self._retain),
            "interval",
            hours=1,
            id="retain",
            next_run_time=rt.clock() + timedelta(minutes=5),
            **common,
        )
        scheduler.add_job(
            self._tracked(self._health),
            "interval",
            hours=1,
            id="health",
            next_run_time=rt.clock() + timedelta(minutes=1),  # once soon after a start
            **common,
        )
        scheduler.add_job(
            self._tracked(self._feed_states),
            "interval",
            seconds=FEED_STATES_S,
            id="feed_states",
            **common,
        )
        scheduler.start()
        deliverer = asyncio.create_task(delivery_loop(rt, self.stopping), name="delivery")
        watcher = asyncio.create_task(self._watch_clock(scheduler), name="clock")
        try:
            await self._start_socket()
            await self.stopping.wait()
        finally:
            watcher.cancel()
            log.info("stopping: finishing in-flight work")
            if self.socket is not None:  # no more clicks; those received take effect
                await self.socket.aclose()
            scheduler.pause()
            if self.inflight:
                await asyncio.wait(self.inflight, timeout=max(30.0, tick))
            self._log_polls(await self.poller.close(grace=max(30.0, tick)))
            await asyncio.wait({deliverer}, timeout=45)
            scheduler.shutdown(wait=False)
            async with rt.sessions() as session:
                await release_leases(session, rt.owner)
                await record_stop(session, rt.owner, rt.clock())
                queued = await queued_alerts(session)
            if queued:
                log.warning(
                    "%d alert%s not delivered yet: kept in the database for the next start",
                    queued,
                    "" if queued == 1 else "s",
                )
            log.info("stopped")
