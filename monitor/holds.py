"""When a watchlist's alert may go out: its quiet hours and its digest schedule. Pure:
the clock is passed in; every time is an aware UTC ``datetime`` in and out.

Local times (``at``, quiet ``from``/``to``) are read in the watchlist's ``tz`` with
zoneinfo, so they follow daylight saving: a time in the spring gap happens an hour
later by the wall clock (``fold=0``: the offset before the change), a time that
happens twice in autumn happens the first time. ``every`` counts from 00:00 UTC on
1 January 1970, so a restart keeps the schedule (``every: 1h`` is on the hour).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.match.schema import Digest, Quiet, Watchlist
from monitor.models import AlertKind

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_S = 86400.0


def _at(day: date, when: time, tz: ZoneInfo) -> datetime:
    """Local time ``when`` on ``day`` in ``tz``, as a UTC instant."""
    return datetime.combine(day, when, tzinfo=tz).astimezone(UTC)


def quiet_end(quiet: Quiet, now: datetime) -> datetime | None:
    """When the quiet hours ``now`` falls in end; None when ``now`` is outside them. The
    window runs from ``from`` (included) to ``to`` (excluded), local time, and crosses
    midnight when ``to`` comes before ``from`` (22:00 to 07:00)."""
    tz = ZoneInfo(quiet.tz)
    today = now.astimezone(tz).date()
    crosses = quiet.to < quiet.from_
    for start_day in (today - timedelta(days=1), today):
        start = _at(start_day, quiet.from_, tz)
        end = _at(start_day + timedelta(days=1 if crosses else 0), quiet.to, tz)
        if start <= now < end:
            return end
    return None


def next_digest(digest: Digest, now: datetime) -> datetime:
    """The first digest time after ``now`` (strictly: a card queued at 08:00:00 goes in
    the next digest, the one of 08:00 may be out already)."""
    if digest.every is not None:
        every = timedelta(seconds=digest.every)
        return _EPOCH + ((now - _EPOCH) // every + 1) * every
    assert digest.at is not None  # (the schema asks for exactly one of every and at)
    tz = ZoneInfo(digest.tz)
    today = now.astimezone(tz).date()
    for offset in range(3):  # (a day's time may be before now, the next day's is not)
        when = _at(today + timedelta(days=offset), digest.at, tz)
        if when > now:
            return when
    raise AssertionError("unreachable: a local time comes round within two days")


def hold_until(wl: Watchlist, kind: AlertKind, now: datetime) -> datetime:
    """When an alert of ``wl`` queued at ``now`` may go out (``now``: at once). A card
    of a watchlist with a digest waits for the next digest time; anything but an
    escalation queued in quiet hours (or a digest falling in them) waits for their end.
    Replies are not held by a digest (they thread under the digest's line; one whose
    card is still held waits with it, see ``monitor.pipeline.fold``)."""
    if kind == AlertKind.ESCALATION:
        return now
    when = now
    if kind == AlertKind.NEW and wl.digest is not None:
        when = next_digest(wl.digest, now)
    if wl.quiet is not None:
        when = quiet_end(wl.quiet, when) or when
    return when


def longest_hold(wl: Watchlist) -> float:
    """The longest a watchlist may hold an alert, in seconds (a digest's period, then
    the quiet hours a digest time falls in): due times further ahead than any delay
    Wirewatch sets are taken for a clock that was ahead (``clamp_schedule``)."""
    hold = 0.0
    if wl.digest is not None:
        hold += wl.digest.every if wl.digest.every is not None else DAY_S
    if wl.quiet is not None:
        hold += DAY_S  # (a window's length; a day at most, DST included, with margin)
    return hold


def rehold(
    held: list[tuple[int, str, str, datetime]], watchlists: Mapping[str, Watchlist], now: datetime
) -> dict[int, datetime]:
    """After a reload: held alerts ``(id, watchlist, kind, due)`` whose watchlist now
    lets them out sooner (quiet hours shortened or removed, a digest made more frequent
    or dropped), with their new due time. A hold is only ever shortened: an alert queued
    before new quiet hours were written keeps the time it was given, and an alert of a
    watchlist that is gone keeps its time too."""
    out: dict[int, datetime] = {}
    for alert_id, watchlist, kind, due in held:
        wl = watchlists.get(watchlist)
        if wl is None:
            continue
        when = hold_until(wl, AlertKind(kind), now)
        if when < due:
            out[alert_id] = when
    return out
