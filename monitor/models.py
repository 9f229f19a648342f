"""Plain typed data passed between stages. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AlertState(StrEnum):
    """Where an outbox row is: ``PENDING`` (queued, or waiting out a retry) →
    ``SENDING`` (claimed by a worker; a restart reconciles it against the channel) →
    ``SENT`` or ``FAILED`` (permanently refused, or reconciliation kept failing). The
    values are what the database stores and what ``wirewatch outbox`` prints."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class AlertKind(StrEnum):
    """``NEW``: a story's first alert on a sink (a card, or a line of a digest);
    ``FOLLOWUP``: a further outlet carrying it (a thread reply under the first);
    ``UPDATE``: the story developed (a copy retitled materially, or a copy with new
    figures): a thread reply showing what changed; ``ESCALATION``: the story crossed its
    watchlist's ``escalate`` rule: one post to the escalation channel."""

    NEW = "new"
    FOLLOWUP = "followup"
    UPDATE = "update"
    ESCALATION = "escalation"

    @property
    def threaded(self) -> bool:
        """Posted as a reply in the story's thread."""
        return self in (AlertKind.FOLLOWUP, AlertKind.UPDATE)


def came_out(published: datetime | None, seen: datetime) -> datetime:
    """When a copy came out: its publication time, never later than when it was seen
    (a feed's clock may run ahead), or when it was seen when it has no date."""
    return min(published, seen) if published is not None else seen


@dataclass(frozen=True, slots=True)
class Entry:
    """One normalised feed item, as the parser hands it to the rest of the pipeline.

    Text fields are plain text (HTML stripped, entities decoded); ``link`` is the
    canonical URL; ``published`` is timezone-aware UTC or ``None`` when the feed gave none.
    """

    feed: str  # feed name from config (unique key)
    source: str  # outlet display name
    guid: str
    link: str
    title: str
    summary: str
    published: datetime | None
    content: str = ""
    author: str = ""
    categories: tuple[str, ...] = ()
    feed_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One outlet carrying a story."""

    source: str
    link: str
    title: str = ""
    when: datetime | None = None  # when the outlet's first copy was published (or seen)


@dataclass(slots=True)
class AlertMessage:
    """Everything a notifier needs to render and send one alert; built by the pipeline."""

    alert_id: int
    story_id: int
    watchlist: str
    channel: str
    severity: str  # "info" | "high" | "critical"
    title: str
    link: str
    source: str
    published: datetime | None
    summary: str
    matched_terms: tuple[str, ...]
    matched_words: tuple[str, ...] = ()
    sources: list[SourceRef] = field(default_factory=list)
    kind: AlertKind = AlertKind.NEW  # a parent message, or a thread reply (also reported by)
    thread_ts: str | None = None  # parent message ts for follow-ups
    parent_title: str = ""  # follow-ups: the story's headline as its parent alert gave it
    parent_in_digest: bool = False  # follow-ups: the parent is a line of a digest message
    digest: list[AlertMessage] = field(default_factory=list)  # non-empty: a digest of these
    entry_id: int | None = None  # the stored entry (`wirewatch explain --entry ID`)
    # updates: the headline before and after; broadcast: also shown in the channel
    change: tuple[str, str] | None = None
    broadcast: bool = False
    # escalations: the rule crossed ("5 outlets within 15m"), who to notify, and where the
    # story's own message is (its channel id, for a link to its thread)
    rule: str = ""
    mention: str = ""
    parent_channel: str | None = None
    acked_by: str | None = None  # who acknowledged the story from Slack, and when
    acked_at: datetime | None = None
    # a card carries the desk's buttons (Mute story, Mute term 24h, Acknowledge): only
    # when Socket Mode is configured (SLACK_APP_TOKEN), since nothing else hears a click
    actions: bool = False

    def __post_init__(self) -> None:
        self.kind = AlertKind(self.kind)  # (a plain "followup" is accepted too)


class DeskActionKind(StrEnum):
    """The buttons on a card (Slack Socket Mode)."""

    MUTE_STORY = "mute_story"
    MUTE_TERM = "mute_term"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class DeskAction:
    """One button pressed in Slack: who pressed it and what it names (from the JSON
    value the renderer put on the button)."""

    kind: DeskActionKind
    user: str  # the Slack user id (U...)
    alert_id: int | None = None
    story_id: int | None = None
    watchlist: str | None = None
    term: str | None = None
    channel: str | None = None  # where the card is (its channel id and ts)
    message_ts: str | None = None
