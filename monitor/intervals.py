"""When to poll a feed next. Pure: every input, including the clock and the RNG, is passed in.

Policy (all values in seconds):

* **Success.** The base is the feed's learned cadence when there are at least
  ``MIN_SAMPLES`` recent publish times (for an undated feed the pipeline passes the
  times its items were first seen instead): half the median gap between consecutive entries
  (polling twice per typical gap keeps the expected delay to about a quarter of it);
  otherwise ``default_s``. Publisher hints are *floors* — ``<ttl>``, ``sy:updatePeriod`` /
  ``sy:updateFrequency``, ``Cache-Control: max-age`` and ``Expires`` all say "nothing new
  before then" — so the interval is the largest of the base and the hints. The result is
  clamped to ``[min_s, max_s]`` (a one-year ``max-age`` cannot park a feed for a year).
* **Pinned.** A feed with its own ``interval:`` in the YAML (``pinned_s``) is polled at
  that interval after every success: the user chose it, so neither the cadence nor the
  publisher's hints move it. Failures still back off from it and Retry-After still holds.
* **Failure.** ``consecutive_failures = n`` gives ``default_s * 2**(n-1)`` (1st failure:
  normal interval, then doubling), capped at ``max(max_s, FAILURE_CAP_S)`` = at least 4 h,
  so a feed that is down for days is tried a few times a day, not every minute.
* **Retry-After** (429/503) is honoured even above ``max_s``, up to ``RETRY_AFTER_CAP_S``
  (24 h): the next poll is never earlier than what the server asked for.
* **Jitter**: ×U(0.9, 1.1) to spread feeds that share a host or a start time, but never
  below ``min_s`` nor below Retry-After.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from statistics import median

MIN_SAMPLES = 3  # publish times needed before the cadence is trusted
MAX_SAMPLES = 20  # only the most recent entries describe the current cadence
FAILURE_CAP_S = 4 * 3600.0
RETRY_AFTER_CAP_S = 24 * 3600.0
JITTER = 0.10


def learned_cadence(entry_times: Sequence[datetime], now: datetime) -> float | None:
    """Median gap in seconds between the most recent distinct publish times, or None."""
    skew = now + timedelta(minutes=5)
    times = sorted(
        {_aware(t) for t in entry_times if t is not None and _aware(t) <= skew}, reverse=True
    )[:MAX_SAMPLES]
    if len(times) < MIN_SAMPLES:
        return None
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
    gap = median(gaps)
    return gap if gap > 0 else None


def next_interval(
    *,
    min_s: float,
    max_s: float,
    default_s: float,
    ttl_minutes: int | None,
    update_period_minutes: float | None,
    cache_max_age: float | None,
    expires_in: float | None,
    retry_after: float | None,
    cadence_s: float | None,
    consecutive_failures: int,
    now: datetime,
    rng: random.Random,
    pinned_s: float | None = None,
) -> float:
    """Seconds until the next poll of a feed (see the module docstring for the policy).
    ``cadence_s``: the feed's publishing cadence (``learned_cadence``), None when unknown;
    ``pinned_s``: the feed's own configured interval, None when it has none."""
    min_s = max(0.0, min_s)
    max_s = max(min_s, max_s)
    default_s = min(max(default_s, min_s), max_s)
    floor = min_s
    if consecutive_failures > 0:
        cap = max(max_s, FAILURE_CAP_S)
        exponent = min(consecutive_failures - 1, 32)
        interval = min(default_s * 2.0**exponent, cap)
    elif pinned_s is not None and pinned_s > 0:
        interval = pinned_s
    else:
        interval = cadence_s / 2 if cadence_s is not None else default_s
        hints = [
            ttl_minutes * 60.0 if ttl_minutes else None,
            update_period_minutes * 60.0 if update_period_minutes else None,
            cache_max_age,
            expires_in,
        ]
        interval = max([interval, *(h for h in hints if h is not None and h > 0)])
        interval = min(max(interval, min_s), max_s)
    interval *= rng.uniform(1.0 - JITTER, 1.0 + JITTER)
    if retry_after is not None and retry_after > 0:
        wait = min(retry_after, RETRY_AFTER_CAP_S)
        floor = max(floor, wait)
        if interval < wait:
            interval = wait * rng.uniform(1.0, 1.0 + JITTER)
    return max(interval, floor)


def parse_cache_headers(
    headers: Mapping[str, str], now: datetime
) -> tuple[float | None, float | None]:
    """``(max_age, expires_in)`` in seconds from ``Cache-Control``/``Age`` and ``Expires``.

    ``no-cache``/``no-store`` give ``max_age = 0``; ``Expires`` counts only without a
    ``max-age``/``no-cache``/``no-store`` (RFC 9111 §5.3); a past or invalid one gives 0;
    ``Expires`` is measured against the response's ``Date`` header when present (immune to
    clock skew between us and the server), else ``now``. Absent headers give ``None``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    max_age: float | None = None
    cache_control = lower.get("cache-control", "")
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            max_age = 0.0
            break
        if name == "max-age":
            try:
                max_age = max(0.0, float(value.strip().strip('"')))
            except ValueError:
                max_age = None
    if max_age:
        with contextlib.suppress(ValueError):
            max_age = max(0.0, max_age - float(lower.get("age", "0").strip() or 0))
    expires_in: float | None = None
    if "expires" in lower and max_age is None:  # RFC 9111 5.3: max-age overrides Expires
        expires = _http_date(lower["expires"])
        if expires is None:
            expires_in = 0.0  # RFC 9111: an invalid Expires means "already expired"
        else:
            reference = _http_date(lower.get("date", "")) or _aware(now)
            expires_in = max(0.0, (expires - reference).total_seconds())
    return max_age, expires_in


def _http_date(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return _aware(parsed)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
