"""Prometheus metrics of one process (``/metrics``): counters the pipeline and the outbox
bump as work is committed, and gauges read from the database when scraped.

Each runtime has its own registry (tests run several in one process). Counters count
what this process did since it started; the gauges (pending alerts, feeds overdue) are
the database's, the same on every node sharing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

# fetch and parse times of one feed, in seconds
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# "how late are we": from seconds (a feed polled as it publishes) to a day (a backlog)
_LATENESS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


@dataclass
class _Batch:
    """What one ingest transaction did; counted only once it commits."""

    entries: int = 0
    new_stories: int = 0
    joined: int = 0
    matches: Counter[str] = field(default_factory=Counter)
    publish_to_seen: list[float] = field(default_factory=list)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.polls = PromCounter(
            "wirewatch_polls",
            "Feed polls by result (ok, not_modified, error).",
            ["result"],
            registry=r,
        )
        self.fetch_errors = PromCounter(
            "wirewatch_fetch_errors", "Failed polls by kind of error.", ["kind"], registry=r
        )
        self.fetch_seconds = Histogram(
            "wirewatch_fetch_seconds", "Time to fetch one feed.", buckets=_STAGE_BUCKETS, registry=r
        )
        self.parse_seconds = Histogram(
            "wirewatch_parse_seconds", "Time to parse one feed.", buckets=_STAGE_BUCKETS, registry=r
        )
        self.entries = PromCounter("wirewatch_entries_stored", "New entries stored.", registry=r)
        self.stories = PromCounter(
            "wirewatch_stories",
            "Stored entries by story outcome: new (started a story) or joined.",
            ["outcome"],
            registry=r,
        )
        self.matches = PromCounter(
            "wirewatch_matches", "Stories newly matched, per watchlist.", ["watchlist"], registry=r
        )
        self.alerts_sent = PromCounter(
            "wirewatch_alerts_sent", "Alerts delivered, per sink.", ["sink"], registry=r
        )
        self.alerts_failed = PromCounter(
            "wirewatch_alerts_failed", "Alerts failed permanently, per sink.", ["sink"], registry=r
        )
        self.alerts_pending = Gauge(
            "wirewatch_alerts_pending", "Alerts queued (pending or sending), per sink.", ["sink"],
            registry=r,
        )  # fmt: skip
        self.oldest_pending = Gauge(
            "wirewatch_oldest_pending_alert_seconds",
            "Age of the oldest queued alert (0 when none).",
            registry=r,
        )
        self.feeds_overdue = Gauge(
            "wirewatch_feeds_overdue", "Enabled feeds due for longer than the grace.", registry=r
        )
        self.tick_lag = Gauge(
            "wirewatch_tick_lag_seconds",
            "How late the last scheduler tick ran after its scheduled time.",
            registry=r,
        )
        self.publish_to_seen = Histogram(
            "wirewatch_publish_to_seen_seconds",
            "From an entry's publication time to when it was stored.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.seen_to_alerted = Histogram(
            "wirewatch_seen_to_alerted_seconds",
            "From an alert being queued (its entry stored) to its delivery.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.publish_to_alerted = Histogram(
            "wirewatch_publish_to_alerted_seconds",
            "From an entry's publication time to its alert's delivery.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.catch_up_seconds = Histogram(
            "wirewatch_catch_up_seconds",
            "Reading what other nodes stored into this node's story index, per ingest "
            "batch (PostgreSQL), lock wait included.",
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.catch_up_entries = PromCounter(
            "wirewatch_catch_up_entries", "Entries other nodes stored, read by catch-up.",
            registry=r,
        )  # fmt: skip
        self._batch = _Batch()

    # -- ingest: staged per transaction, counted at commit --------------------------
    def begin_batch(self) -> None:
        self._batch = _Batch()

    def stage(
        self,
        *,
        entries: int,
        new_stories: int,
        matched: Iterable[str],
        published: Iterable[datetime | None],
        now: datetime,
    ) -> None:
        b = self._batch
        b.entries += entries
        b.new_stories += new_stories
        b.joined += entries - new_stories
        b.matches.update(matched)
        b.publish_to_seen.extend(
            max(0.0, (now - p).total_seconds()) for p in published if p is not None
        )

    def commit_batch(self) -> None:
        b, self._batch = self._batch, _Batch()
        if b.entries:
            self.entries.inc(b.entries)
        if b.new_stories:
            self.stories.labels("new").inc(b.new_stories)
        if b.joined:
            self.stories.labels("joined").inc(b.joined)
        for watchlist, n in b.matches.items():
            self.matches.labels(watchlist).inc(n)
        for seconds in b.publish_to_seen:
            self.publish_to_seen.observe(seconds)

    # -- polls and deliveries --------------------------------------------------------
    def poll(self, *, error_kind: str | None, not_modified: bool) -> None:
        if error_kind is not None:
            self.polls.labels("error").inc()
            self.fetch_errors.labels(error_kind).inc()
        else:
            self.polls.labels("not_modified" if not_modified else "ok").inc()

    def delivered(
        self, sink: str, *, queued: datetime, published: datetime | None, now: datetime
    ) -> None:
        self.alerts_sent.labels(sink).inc()
        self.seen_to_alerted.observe(max(0.0, (now - queued).total_seconds()))
        if published is not None:
            self.publish_to_alerted.observe(max(0.0, (now - published).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
