"""The process's live objects (engine, HTTP session, parse pool, notifiers, matcher)
and the state ingest and delivery own, built by :func:`open_runtime` and torn down
with it.

The CLI opens one runtime per command; tests open one directly with their own clock.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.config import AppConfig
from monitor.dedupe import DedupeConfig, StoryIndex
from monitor.deliver.base import Notifier
from monitor.deliver.console import ConsoleNotifier
from monitor.deliver.slack import SlackBotNotifier, SlackWebhookNotifier
from monitor.deliver.webhook import WebhookNotifier
from monitor.fetch import FetchLimits, make_session
from monitor.match import Matcher, compile_watchlists
from monitor.metrics import Metrics
from monitor.parse import ParsePool
from monitor.store.db import create_engine, migrate, sessionmaker
from monitor.store.stories import StoryIds

log = logging.getLogger("wirewatch")


def utcnow() -> datetime:
    return datetime.now(UTC)


def dedupe_config(config: AppConfig) -> DedupeConfig:
    return DedupeConfig(window_hours=config.settings.dedupe.window / 3600.0)


def fetch_limits(config: AppConfig) -> FetchLimits:
    f = config.settings.fetch
    return FetchLimits(
        connect_timeout=f.connect_timeout,
        read_timeout=f.read_timeout,
        total_timeout=f.total_timeout,
        max_bytes=f.max_bytes,
        max_redirects=f.max_redirects,
    )


def slack_sink(config: AppConfig) -> str | None:
    """Which Slack transport is configured: ``"slack"`` (bot token), ``"slack-webhook"``
    (incoming webhook) or ``None``."""
    slack = config.settings.slack
    if slack.bot_token:
        return "slack"
    if slack.webhook_url:
        return "slack-webhook"
    return None


def alert_channel(config: AppConfig, own: str | None, sink: str) -> str:
    """The channel a story's alert goes to on ``sink``: the watchlist's ``own`` channel,
    else ``SLACK_CHANNEL``; sinks without channels (console, webhook) have none."""
    if not sink.startswith("slack"):
        return ""
    return own or config.settings.slack.channel


def build_notifiers(config: AppConfig, *, console: TextIO | None = None) -> dict[str, Notifier]:
    """Sinks by name. Slack when configured, otherwise the console; the generic
    webhook in addition when ``WIREWATCH_WEBHOOK_URL`` is set."""
    s = config.settings
    out: dict[str, Notifier] = {}
    sink = slack_sink(config)
    if sink == "slack" and s.slack.bot_token:
        out["slack"] = SlackBotNotifier(
            s.slack.bot_token,
            default_channel=s.slack.channel,
            base_url=s.slack.api_url,
        )
    elif sink == "slack-webhook" and s.slack.webhook_url:
        out["slack-webhook"] = SlackWebhookNotifier(s.slack.webhook_url)
    else:
        out["console"] = ConsoleNotifier(console or sys.stdout)
    if s.webhook.url:
        out["webhook"] = WebhookNotifier(s.webhook.url, secret=s.webhook.secret)
    return out


@dataclass
class IngestState:
    """What ingest owns and changes while the process runs: the in-memory story index,
    how far it has read the database, and the queue of polls waiting to be stored."""

    index: StoryIndex
    # whether ``index`` holds the stored window yet (ingest loads it first if not)
    loaded: bool = False
    # PostgreSQL (shared by processes): the highest entry id the story index has read
    # (pipeline.index.catch_up); None on SQLite, which is for one process
    seen_entry_id: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # polls waiting to be stored: whoever holds ``lock`` stores all of them in one
    # transaction (group commit, see pipeline.ingest)
    queue: list[Any] = field(default_factory=list)
    story_ids: StoryIds = field(default_factory=StoryIds)


@dataclass
class DeliveryState:
    """What the outbox worker owns and changes: one drain task per (sink, channel), when
    each channel was last sent to (pacing), and the event ingest sets after it commits
    alerts, so the worker sends them at once instead of at its next tick."""

    channel_tasks: dict[tuple[str, str], asyncio.Task[bool]] = field(default_factory=dict)
    last_sent: dict[tuple[str, str], float] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Runtime:
    """The process's services, fixed while it runs (a reload swaps ``config`` and
    ``matcher`` together), and the two objects that own changing state: ``ingest`` and
    ``delivery``."""

    config: AppConfig
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    pool: ParsePool
    notifiers: dict[str, Notifier]
    matcher: Matcher
    ingest: IngestState
    delivery: DeliveryState = field(default_factory=DeliveryState)
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    max_age: float | None = None
    # this process is the database's only user (the CLI holds a SQLite file's lock): a
    # lease found at start belongs to a process that is gone, and is taken over
    exclusive: bool = False
    # Prometheus counters of this process (served on /metrics when --http is given)
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def limits(self) -> FetchLimits:
        return fetch_limits(self.config)

    def swap_config(self, config: AppConfig) -> None:
        """Hot reload: new matcher and settings; the story index and queues stay."""
        self.matcher = compile_watchlists(config.watchlists)
        self.pool.set_watchlists(config.watchlists)
        self.config = config


@asynccontextmanager
async def open_runtime(
    config: AppConfig,
    *,
    clock: Callable[[], datetime] = utcnow,
    console: TextIO | None = None,
    notifiers: dict[str, Notifier] | None = None,
    max_age: float | str | None = "config",
    start_pool: bool = True,
) -> AsyncIterator[Runtime]:
    """Everything a poll needs. ``start_pool=False`` starts the parse workers on the first
    parse instead of now (``wirewatch once``: a run where every feed answers 304 never
    starts them)."""
    engine = create_engine(config.settings.database_url)
    # Python's default collector runs a young-generation pass every 700 allocations; an
    # ingest batch allocates millions of short-lived objects next to a large long-lived
    # heap (the story window, SQLAlchemy's caches), and those passes (and the full ones
    # they trigger) cost a sizeable share of a cold cycle (bench/RESULTS.md). Collect
    # less often while this
    # runtime is open; the previous setting is restored on exit.
    gc_before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        await migrate(engine)
        limits = fetch_limits(config)
        http = make_session(
            limits,
            limit=config.settings.poll.concurrency,
            limit_per_host=config.settings.poll.per_host,
        )
        pool = ParsePool(
            config.settings.poll.parse_workers,
            timeout=config.settings.poll.parse_timeout,
            watchlists=config.watchlists,  # the workers match entries as they parse them
            prepare_chars=dedupe_config(config).summary_chars,  # and prepare them for dedupe
        )
        if start_pool:
            pool.start()
        sinks = notifiers if notifiers is not None else build_notifiers(config, console=console)
        rt = Runtime(
            config=config,
            engine=engine,
            sessions=sessionmaker(engine),
            http=http,
            pool=pool,
            notifiers=sinks,
            matcher=compile_watchlists(config.watchlists),
            ingest=IngestState(StoryIndex(dedupe_config(config))),
            clock=clock,
            max_age=config.settings.max_age if max_age == "config" else max_age,  # type: ignore[arg-type]
        )
        try:
            yield rt
        finally:
            await http.close()
            for n in sinks.values():
                await n.aclose()
            pool.close(wait=False)
    finally:
        await engine.dispose()
        gc.set_threshold(*gc_before)
