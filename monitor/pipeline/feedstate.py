"""What one poll leaves on its feed: validators, errors, the learned cadence and the
next due time, as a :class:`FeedState` the poller writes back in bulk."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.fetch import FetchErrorKind, FetchResult
from monitor.intervals import learned_cadence, next_interval, parse_cache_headers
from monitor.parse import ParseResult
from monitor.pipeline.runtime import Runtime
from monitor.store.feeds import POLL_STATE_COLUMNS
from monitor.store.tables import FeedRow

log = logging.getLogger("wirewatch.pipeline")


@dataclass(slots=True)
class FeedState:
    """A feed row's polling columns as a poll leaves them. Built apart from the ORM row
    (whose attribute instrumentation costs more than the rest of a 304 poll) and
    written back for a whole batch of polls in one statement.

    ``polled`` is the URL this poll fetched: the state is written only while the feed
    still has it (a reload may have moved it meanwhile). ``gone`` says why a 410
    disabled the feed; a poll writes ``enabled`` only then (it is the config's)."""

    id: int
    polled: str
    url: str
    etag: str | None
    last_modified: str | None
    next_due: datetime | None
    lease_until: datetime | None
    lease_owner: str | None
    last_polled: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_kind: str | None
    last_error_at: datetime | None
    consecutive_failures: int
    last_status: int | None
    title: str
    current_interval_s: float | None
    ttl_minutes: int | None
    update_period_minutes: float | None
    cadence_s: float | None
    gone: str | None = None

    @classmethod
    def of(cls, row: FeedRow) -> FeedState:
        assert row.id is not None
        return cls(id=row.id, polled=row.url, **{c: getattr(row, c) for c in POLL_STATE_COLUMNS})

    def columns(self) -> dict[str, Any]:
        """What :func:`monitor.store.feeds.save_poll_states` writes."""
        return {
            "id": self.id,
            "polled": self.polled,
            **{c: getattr(self, c) for c in POLL_STATE_COLUMNS},
        }

    def succeeded(self, now: datetime, result: FetchResult, parsed: ParseResult | None) -> None:
        """A poll that got the feed (``parsed``) or was told it is unchanged (a 304)."""
        self.last_polled = self.last_success = now
        self.last_status = result.status
        if not result.not_modified:
            self.etag, self.last_modified = result.etag, result.last_modified
        if result.permanent_redirect and result.permanent_redirect != self.polled:
            self.url = result.permanent_redirect
        self.consecutive_failures = 0
        if parsed is not None and parsed.error:
            # entries were recovered, but the feed is malformed: keep the reason visible
            self._error(parsed.error, FetchErrorKind.PARSE, now)
        elif parsed is not None or (result.not_modified and self.last_error_kind != "parse"):
            # (a 304 says the body is unchanged: a malformed one still is, so its reason stays)
            self.last_error = self.last_error_kind = None
        if parsed is not None and parsed.meta.title:
            self.title = parsed.meta.title[:500]
        if parsed is not None:
            # what the body says about polling, kept for the 304s that follow (no body)
            self.ttl_minutes = parsed.meta.ttl_minutes
            self.update_period_minutes = parsed.meta.update_period_minutes

    def learn_cadence(self, times: Sequence[datetime | None], now: datetime) -> None:
        """The median gap between the feed's items, from their times."""
        cadence = learned_cadence([t for t in times if t is not None], now)
        if cadence is not None or times:
            self.cadence_s = cadence

    def failed(self, now: datetime, error: str, kind: str | None, status: int | None) -> None:
        """A poll that failed: the reason is kept on the feed; a 410 disables it."""
        self.last_polled = now
        self.last_status = status
        self._error(error, kind, now)
        self.consecutive_failures += 1
        if kind == "gone" or status == 410:
            self.gone = f"410 Gone at {now:%Y-%m-%d %H:%M}Z: disabled"

    def schedule(self, interval: float, now: datetime) -> None:
        """Due again ``interval`` seconds from now; the lease is let go."""
        self.current_interval_s = interval
        self.next_due = now + timedelta(seconds=interval)
        self.lease_until = self.lease_owner = None

    def _error(self, error: str, kind: str | None, now: datetime) -> None:
        self.last_error, self.last_error_kind, self.last_error_at = error, kind, now


def record_success(
    rt: Runtime,
    feed: FeedRow,
    result: FetchResult,
    parsed: ParseResult | None,
    times: Sequence[datetime | None],
) -> FeedState:
    """The feed's new state after a successful poll (written back by the poller)."""
    now = rt.clock()
    st = FeedState.of(feed)
    st.succeeded(now, result, parsed)
    if st.url != feed.url:
        log.warning(
            "feed %s moved permanently: %s -> %s",
            feed.name,
            feed.url,
            st.url,
            extra={"feed": feed.name},
        )
    if parsed is not None:
        st.learn_cadence(times, now)
    st.schedule(next_poll_in(rt, feed, 0, result, st, now), now)
    return st


def record_failure(
    rt: Runtime,
    feed: FeedRow,
    error: str,
    kind: str | None,
    status: int | None,
    result: FetchResult | None,
) -> FeedState:
    """The feed's new state after a failed poll: the reason is kept on the feed."""
    now = rt.clock()
    st = FeedState.of(feed)
    st.failed(now, error, kind, status)
    if st.gone:
        log.warning("feed %s answered 410 Gone: disabled", feed.name, extra={"feed": feed.name})
    else:
        log.warning(
            "feed %s failed (%s): %s", feed.name, kind or "error", error, extra={"feed": feed.name}
        )
    st.schedule(next_poll_in(rt, feed, st.consecutive_failures, result, st, now), now)
    return st


def next_poll_in(
    rt: Runtime,
    feed: FeedRow,
    failures: int,
    result: FetchResult | None,
    st: FeedState,
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
    return next_interval(
        min_s=min(poll.min_interval, default),
        max_s=max(poll.max_interval, default),
        default_s=default,
        ttl_minutes=st.ttl_minutes,
        update_period_minutes=st.update_period_minutes,
        cache_max_age=max_age,
        expires_in=expires_in,
        retry_after=result.retry_after if result else None,
        cadence_s=st.cadence_s,
        consecutive_failures=failures,
        now=now,
        rng=rt.rng,
        pinned_s=feed.interval_s,
    )
