"""SQLModel tables. Datetimes are aware UTC (sqlmodel's UTCDateTime stores them as UTC on
every backend and returns aware values)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class FeedRow(SQLModel, table=True):
    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    url: str = Field(sa_column=Column(Text, nullable=False))  # polled (redirects move it)
    config_url: str | None = Field(default=None, sa_column=Column(Text))  # as last configured
    source: str = Field(default="", max_length=200)
    tags: str = Field(default="", max_length=1000)  # comma-separated
    enabled: bool = Field(default=True)
    interval_s: float | None = Field(default=None)  # configured fixed interval
    etag: str | None = Field(default=None, sa_column=Column(Text))
    last_modified: str | None = Field(default=None, max_length=100)
    next_due: datetime | None = Field(default=None, index=True)
    lease_until: datetime | None = Field(default=None)
    lease_owner: str | None = Field(default=None, max_length=100)
    last_polled: datetime | None = Field(default=None)
    last_success: datetime | None = Field(default=None)
    last_new_entry: datetime | None = Field(default=None)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_kind: str | None = Field(default=None, max_length=40)
    last_error_at: datetime | None = Field(default=None)
    consecutive_failures: int = Field(default=0)
    last_status: int | None = Field(default=None)
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    entries_seen: int = Field(default=0)
    current_interval_s: float | None = Field(default=None)
    # what the last full body said about polling (kept across 304s, which have no body)
    ttl_minutes: int | None = Field(default=None)
    update_period_minutes: float | None = Field(default=None)
    cadence_s: float | None = Field(default=None)  # learned median gap between entries
    created_at: datetime = Field()


class StoryRow(SQLModel, table=True):
    __tablename__ = "stories"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    link: str = Field(sa_column=Column(Text, nullable=False, default=""))
    source: str = Field(default="", max_length=200)
    source_count: int = Field(default=1)
    created_at: datetime = Field(index=True)
    updated_at: datetime = Field(index=True)  # (the retention prune reads by it)


class EntryRow(SQLModel, table=True):
    __tablename__ = "entries"
    __table_args__ = (
        UniqueConstraint("feed_id", "guid", name="uq_entries_feed_guid"),
        Index("ix_entries_feed_link", "feed_id", "link"),
        Index("ix_entries_seen_at", "seen_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feeds.id")
    guid: str = Field(sa_column=Column(Text, nullable=False))
    link: str = Field(sa_column=Column(Text, nullable=False, default=""))
    title: str = Field(sa_column=Column(Text, nullable=False, default=""))
    summary: str = Field(sa_column=Column(Text, nullable=False, default=""))
    content: str = Field(sa_column=Column(Text, nullable=False, default=""))
    author: str = Field(sa_column=Column(Text, nullable=False, default=""))
    categories: str = Field(sa_column=Column(Text, nullable=False, default=""))
    source: str = Field(default="", max_length=200)
    published: datetime | None = Field(default=None)
    seen_at: datetime = Field()
    story_id: int | None = Field(default=None, foreign_key="stories.id", index=True)
    updates: int = Field(default=0)  # material title changes seen after first sight


class MatchRow(SQLModel, table=True):
    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("story_id", "watchlist", name="uq_matches_story_watchlist"),)

    id: int | None = Field(default=None, primary_key=True)
    story_id: int = Field(foreign_key="stories.id")
    # (indexed: deleting an entry checks this foreign key; unindexed, the retention
    # prune scanned the whole table once per entry it deleted)
    entry_id: int = Field(foreign_key="entries.id", index=True)
    watchlist: str = Field(max_length=200)
    terms: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    words: str = Field(sa_column=Column(Text, nullable=False, default="[]"))  # JSON list
    alerted: bool = Field(default=False)  # False while waiting for min_sources
    created_at: datetime = Field()


class AlertRow(SQLModel, table=True):
    """The outbox. States: pending → sending → sent | failed."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_state_next", "state", "next_attempt_at"),
        Index("ix_alerts_story_watchlist", "story_id", "watchlist"),
        Index("ix_alerts_channel_sent", "sink", "channel", "state", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    story_id: int = Field(foreign_key="stories.id")
    entry_id: int = Field(foreign_key="entries.id", index=True)  # (see MatchRow.entry_id)
    watchlist: str = Field(max_length=200)
    sink: str = Field(default="console", max_length=40)
    channel: str = Field(default="", max_length=200)
    kind: str = Field(default="new", max_length=20)  # new | followup
    parent_id: int | None = Field(default=None)
    state: str = Field(default="pending", max_length=20)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    next_attempt_at: datetime = Field()
    created_at: datetime = Field()
    sending_at: datetime | None = Field(default=None)
    sent_at: datetime | None = Field(default=None)
    ts: str | None = Field(default=None, max_length=64)
    terms: str = Field(sa_column=Column(Text, nullable=False, default="[]"))
    words: str = Field(sa_column=Column(Text, nullable=False, default="[]"))
    # reconciliation lookups Slack answered with an error (a missing scope, a channel
    # gone): after a few the row turns failed instead of staying "sending" for good
    check_failures: int = Field(default=0)
    # an update reply's headline before and after, an escalation's rule (JSON)
    detail: str | None = Field(default=None, sa_column=Column(Text))
    acked_by: str | None = Field(default=None, max_length=200)  # who acknowledged the card
    acked_at: datetime | None = Field(default=None)


class NodeRow(SQLModel, table=True):
    """A daemon sharing the database: written at every scheduler tick (``wirewatch
    status`` lists the nodes alive and the last tick)."""

    __tablename__ = "nodes"

    owner: str = Field(primary_key=True, max_length=100)  # host:pid, as on feed leases
    version: str = Field(default="", max_length=40)
    http: str = Field(default="", max_length=200)  # where its /metrics is served, if it is
    started_at: datetime = Field()
    last_tick: datetime = Field()
    stopped_at: datetime | None = Field(default=None)


class FeedHealthRow(SQLModel, table=True):
    """A feed's health state as last judged (ok, failing, silent, disabled, moved) and
    the state last announced to the ops channel: the two differ while a message is due.
    ``claim_*``: the node sending that message (one message per change, whatever the
    number of nodes)."""

    __tablename__ = "feed_health"

    feed: str = Field(primary_key=True, max_length=200)
    state: str = Field(default="ok", max_length=20)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    since: datetime = Field()
    announced: str = Field(default="ok", max_length=20)
    announced_at: datetime | None = Field(default=None)
    claim_owner: str | None = Field(default=None, max_length=100)
    claim_until: datetime | None = Field(default=None)


class MessageRow(SQLModel, table=True):
    """One message Wirewatch posted (Slack: its ``ts``). A message is a view over the
    alerts it shows (``message_alerts``): every edit re-renders it from that set.
    ``kind``: ``card`` (one story), ``digest-part`` (part ``part`` of ``parts`` of the
    digest whose first part is ``group_ts``) or ``thread-reply`` (under ``parent_ts``)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("sink", "channel", "ts", name="uq_messages_channel_ts"),
        Index("ix_messages_group", "sink", "channel", "group_ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    sink: str = Field(max_length=40)
    channel: str = Field(max_length=200)  # as configured (name or id)
    channel_id: str | None = Field(default=None, max_length=64)  # as Slack reported it
    ts: str = Field(max_length=64)
    kind: str = Field(max_length=20)  # card | digest-part | thread-reply
    parent_ts: str | None = Field(default=None, max_length=64)  # thread replies
    group_ts: str | None = Field(default=None, max_length=64)  # digest parts: part 0's ts
    part: int = Field(default=0)
    parts: int = Field(default=1)
    rendered_hash: str = Field(default="", max_length=64)  # of the text and blocks shown
    created_at: datetime = Field()
    updated_at: datetime = Field()


class MessageAlertRow(SQLModel, table=True):
    """Which alerts a message shows, in order. ``role``: ``item`` (a card's story, a
    digest line, a reply's copy) or ``copy`` (a copy counted on its story's card or line:
    queued before the story went out, so the post itself lists its outlet)."""

    __tablename__ = "message_alerts"

    message_id: int = Field(foreign_key="messages.id", primary_key=True)
    alert_id: int = Field(foreign_key="alerts.id", primary_key=True, index=True)
    position: int = Field(default=0)
    role: str = Field(default="item", max_length=10)


class MuteRow(SQLModel, table=True):
    """A story (``kind`` "story") or a watchlist term ("term") silenced until
    ``expires_at`` (never, when None)."""

    __tablename__ = "mutes"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    story_id: int | None = Field(default=None)
    watchlist: str | None = Field(default=None, max_length=200)
    term: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str = Field(max_length=200)
    created_at: datetime = Field()
    expires_at: datetime | None = Field(default=None, index=True)
