"""Feed health: how often each feed publishes, and whether it has gone silent.

Pure over the history it is given (``monitor.store.history.feed_history`` reads it);
the health table (``wirewatch feeds``) and the daemon's hourly silence check both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Any

# Silence detection. Each stored entry is dated by its publication time (never later than
# when it was first seen; first-seen when the feed gives no date), so a first-poll backlog
# shows the feed's real cadence rather than one burst. A feed's usual gap is the median
# gap between consecutive entries among its newest CADENCE_ENTRIES. It is judged only
# with at least SILENT_MIN_ENTRIES entries spread over SILENT_MIN_SPREAD or more, and is
# silent when its newest entry is older than the largest of the three terms below. (The
# age counts from the latest first-seen time of those entries instead, when later and
# they did not all arrive in one poll: a feed whose dates run hours behind stays live
# while new items keep turning up; a one-poll backlog has only its dates to go by.)
#   SILENT_FACTOR x the usual gap: five usual gaps in a row rarely pass by chance;
#   SILENT_LONGEST x the longest gap among those entries and the two weeks before the
#     newest: a feed that routinely pauses overnight or over weekends is not flagged
#     every pause;
#   SILENT_FLOOR: a very busy feed is not flagged for a short lull.
# An hourly feed is silent after 5 h. The history comes from one windowed query over the
# last two weeks of entries plus one per 500 feeds with too few entries in them.
CADENCE_ENTRIES = 50
CADENCE_SPAN = 14 * 86400.0
SILENT_FACTOR = 5.0
SILENT_LONGEST = 1.5
SILENT_FLOOR = 3 * 3600.0
SILENT_MIN_ENTRIES = 5
SILENT_MIN_SPREAD = 3 * 3600.0


@dataclass
class History:
    """A feed's recent entries as the health table needs them (times in epoch seconds)."""

    newest: float
    oldest: float
    gaps: list[float]  # between consecutive entries among the newest CADENCE_ENTRIES
    longest: float  # longest gap in the CADENCE_SPAN before the newest entry
    arrived: float | None  # when the last of them was first seen, unless all came at once
    last_week: int  # entries dated in the last 7 days
    count: int  # entries looked at, at most CADENCE_ENTRIES


def per_day(row: Any, h: History | None, now: datetime) -> str:
    """Entries dated in the last week per day (over less when the feed is younger, but
    at least one day): a first-poll backlog counts on the days it was published, not
    all on the day it was fetched."""
    if h is None:
        return "0.0"
    start = min(h.oldest, row.created_at.timestamp())
    days = min(7.0, max(1.0, (now.timestamp() - start) / 86400))
    return f"{h.last_week / days:.1f}"


def silence(h: History, now: datetime) -> tuple[float, float] | None:
    """``(seconds since its last item, its usual gap)`` for a feed with enough history
    whose newest entry is far older than its cadence (see the comment above
    CADENCE_ENTRIES); None when it is not silent."""
    if h.count < SILENT_MIN_ENTRIES or h.newest - h.oldest < SILENT_MIN_SPREAD:
        return None
    usual = median(h.gaps) if h.gaps else 0.0
    limit = max(SILENT_FACTOR * usual, SILENT_LONGEST * h.longest, SILENT_FLOOR)
    age = now.timestamp() - max(h.newest, h.arrived or h.newest)
    return (age, usual) if age > limit else None


def silent(h: History, now: datetime) -> bool:
    return silence(h, now) is not None


def span(seconds: float) -> str:
    """A time span for people: ``12 min`` under an hour, ``7.0 h`` under two days,
    ``3.5 d`` beyond ("every 0.0 h" said nothing)."""
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# -- feed states, as `wirewatch feeds` shows them and the ops channel is told ---------

# states the ops channel is told about; every other state counts as "ok" there
ANNOUNCED = ("failing", "silent", "disabled", "moved")


def feed_state(row: Any, configured: Any | None, is_silent: bool, failing_after: int) -> str:
    """A feed's state from its stored row (``FeedRow``), its config (None: removed) and
    whether it has gone silent. ``retrying``: failed fewer than ``failing_after`` times
    in a row; ``moved``: a permanent redirect took it away from its configured URL;
    ``off``: disabled in the config."""
    if configured is None:
        return "removed"
    if row.disabled_reason:
        return "disabled"
    if not configured.enabled:
        return "off"
    if row.consecutive_failures >= failing_after:
        return "failing"
    if row.consecutive_failures:
        return "retrying"
    if row.last_success is None and row.last_error is None:
        return "new"
    if is_silent:
        return "silent"
    if row.config_url and row.url != row.config_url:
        return "moved"
    return "ok"


def overdue_after(tick: float) -> float:
    """How long past its due time a feed may wait before it counts as overdue: a few
    scheduler ticks (it is claimed at the first tick after it falls due), at least a
    minute. ``/metrics`` and ``wirewatch status`` count by it."""
    return max(3 * tick, 60.0)


def announced_state(state: str) -> str:
    """The state as the ops channel knows it: a bad one, or ``ok``."""
    return state if state in ANNOUNCED else "ok"


def state_detail(state: str, row: Any, quiet: tuple[float, float] | None, now: datetime) -> str:
    """One line saying why a feed is in ``state`` (kept with the state, sent with it)."""
    if state == "failing":
        return (
            f"{row.consecutive_failures} failures in a row"
            f"{_since(row.last_success, now)}; last error: {row.last_error or '?'}"
        )
    if state == "disabled":
        return f"{row.disabled_reason} (a new URL in the feeds file enables it again)"
    if state == "moved":
        return (
            f"moved permanently from {row.config_url} to {row.url}; polled at the new "
            "address (put it in the feeds file)"
        )
    if state == "silent" and quiet is not None:
        return f"no new item for {span(quiet[0])} (it usually publishes every {span(quiet[1])})"
    return ""


def _since(when: datetime | None, now: datetime) -> str:
    return "" if when is None else f", last success {span((now - when).total_seconds())} ago"


def health_message(feed: str, state: str, detail: str, before: str) -> str:
    """The ops channel's text for a change of ``feed`` from ``before`` to ``state``."""
    if state == "ok":
        return f"feed {feed} recovered: healthy again (was {before})"
    what = {
        "failing": "is failing",
        "silent": "has gone silent",
        "disabled": "was disabled",
        "moved": "has moved",
    }.get(state, state)
    return f"feed {feed} {what}: {detail}" if detail else f"feed {feed} {what}"
