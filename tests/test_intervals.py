"""Poll-interval policy: hints, learned cadence, backoff, Retry-After, jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.intervals import learned_cadence, next_interval, parse_cache_headers

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIN, MAX, DEFAULT = 60.0, 3600.0, 600.0


def interval(**overrides: Any) -> float:
    args: dict[str, Any] = {
        "min_s": MIN,
        "max_s": MAX,
        "default_s": DEFAULT,
        "ttl_minutes": None,
        "update_period_minutes": None,
        "cache_max_age": None,
        "expires_in": None,
        "retry_after": None,
        "cadence_s": None,
        "consecutive_failures": 0,
        "now": NOW,
        "rng": random.Random(1),
    }
    if "entry_times" in overrides:  # the cadence the pipeline learns from these
        overrides = dict(overrides)
        args["cadence_s"] = learned_cadence(overrides.pop("entry_times"), NOW)
    args.update(overrides)
    return next_interval(**args)


def every(minutes: float, n: int = 10) -> list[datetime]:
    return [NOW - timedelta(minutes=minutes * i) for i in range(n)]


@pytest.mark.parametrize(
    ("overrides", "low", "high"),
    [
        ({}, DEFAULT * 0.9, DEFAULT * 1.1),  # no information: default
        ({"ttl_minutes": 30}, 1800 * 0.9, 1800 * 1.1),  # <ttl> is a floor
        ({"update_period_minutes": 20.0}, 1200 * 0.9, 1200 * 1.1),  # sy:updatePeriod
        ({"cache_max_age": 900.0}, 900 * 0.9, 900 * 1.1),
        ({"expires_in": 1500.0}, 1500 * 0.9, 1500 * 1.1),
        ({"cache_max_age": 0.0}, DEFAULT * 0.9, DEFAULT * 1.1),  # no-cache: no hint
        ({"ttl_minutes": 60 * 24 * 365}, MAX * 0.9, MAX * 1.1),  # clamped to max
        ({"cache_max_age": 5.0}, DEFAULT * 0.9, DEFAULT * 1.1),  # hints never shorten
        ({"entry_times": every(1)}, MIN, MIN * 1.1),  # busy feed: fast, not below min
        ({"entry_times": every(30)}, 900 * 0.9, 900 * 1.1),  # half the median gap
        ({"entry_times": every(30), "ttl_minutes": 60}, 3600 * 0.9, MAX * 1.1),
        ({"entry_times": every(60 * 12)}, MAX * 0.9, MAX * 1.1),  # slow feed: max
        ({"entry_times": every(30, n=2)}, DEFAULT * 0.9, DEFAULT * 1.1),  # too few samples
        # a pinned interval wins over the cadence and every publisher hint
        ({"pinned_s": 120.0, "entry_times": every(30), "ttl_minutes": 60}, 108, 132),
        ({"pinned_s": 1800.0, "entry_times": every(1)}, 1620, 1980),
        # ... but a failing pinned feed still backs off, and Retry-After still holds
        ({"pinned_s": 120.0, "consecutive_failures": 3}, DEFAULT * 4 * 0.9, DEFAULT * 4.4),
        ({"pinned_s": 120.0, "retry_after": 900.0}, 900, 990),
    ],
)
def test_success_intervals(overrides: dict[str, Any], low: float, high: float) -> None:
    value = interval(**overrides)
    assert low <= value <= high


def test_backoff_doubles_per_failure_up_to_four_hours() -> None:
    values = [interval(consecutive_failures=n, rng=random.Random(0)) for n in range(1, 12)]
    bases = [v / random.Random(0).uniform(0.9, 1.1) for v in values]
    assert bases[:5] == pytest.approx([600, 1200, 2400, 4800, 9600])
    assert bases[-1] == pytest.approx(4 * 3600)
    assert max(values) <= 4 * 3600 * 1.1


def test_backoff_cap_grows_with_a_larger_max() -> None:
    value = interval(consecutive_failures=30, max_s=12 * 3600.0)
    assert 12 * 3600 * 0.9 <= value <= 12 * 3600 * 1.1


def test_retry_after_is_respected_even_above_max_up_to_a_day() -> None:
    assert interval(retry_after=7200.0, consecutive_failures=1) >= 7200
    assert interval(retry_after=7200.0, consecutive_failures=1) <= 7200 * 1.1
    assert interval(retry_after=10 * 86400.0, consecutive_failures=1) <= 86400 * 1.1
    assert interval(retry_after=10 * 86400.0, consecutive_failures=1) >= 86400
    # a short Retry-After does not make a backed-off feed poll sooner than its backoff
    assert interval(retry_after=5.0, consecutive_failures=4) >= 4800 * 0.9


def test_jitter_spreads_feeds() -> None:
    rng = random.Random(42)
    values = {round(interval(rng=rng), 3) for _ in range(50)}
    assert len(values) > 40
    assert min(values) >= DEFAULT * 0.9 and max(values) <= DEFAULT * 1.1


def test_future_and_duplicate_times_do_not_skew_the_cadence() -> None:
    times = [*every(30), NOW + timedelta(days=300), *every(30)]
    assert learned_cadence(times, NOW) == pytest.approx(1800)
    assert learned_cadence([NOW, NOW, NOW], NOW) is None


@given(
    min_s=st.floats(0, 600),
    span=st.floats(0, 86400),
    default_s=st.floats(1, 10000),
    failures=st.integers(0, 100),
    ttl=st.none() | st.integers(1, 10**6),
    max_age=st.none() | st.floats(0, 10**7),
    retry=st.none() | st.floats(0, 10**7),
    gap=st.floats(0, 10**5),
    seed=st.integers(0, 1000),
)
def test_always_within_bounds(
    min_s: float,
    span: float,
    default_s: float,
    failures: int,
    ttl: int | None,
    max_age: float | None,
    retry: float | None,
    gap: float,
    seed: int,
) -> None:
    max_s = min_s + span
    value = next_interval(
        min_s=min_s,
        max_s=max_s,
        default_s=default_s,
        ttl_minutes=ttl,
        update_period_minutes=None,
        cache_max_age=max_age,
        expires_in=None,
        retry_after=retry,
        cadence_s=learned_cadence([NOW - timedelta(seconds=gap * i) for i in range(5)], NOW),
        consecutive_failures=failures,
        now=NOW,
        rng=random.Random(seed),
    )
    assert value >= min_s
    upper = max(max_s, 4 * 3600.0) if failures else max_s
    if retry:
        upper = max(upper, min(retry, 86400.0))
        assert value >= min(retry, 86400.0)
    assert value <= upper * 1.1 + 1e-6


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (None, None)),
        ({"Cache-Control": "public, max-age=300"}, (300.0, None)),
        ({"cache-control": "max-age=300", "Age": "100"}, (200.0, None)),
        ({"Cache-Control": "no-cache, max-age=300"}, (0.0, None)),
        ({"Cache-Control": "max-age=oops"}, (None, None)),
        ({"Expires": "Wed, 01 May 2024 12:10:00 GMT"}, (None, 600.0)),
        (
            {"Expires": "Wed, 01 May 2024 12:10:00 GMT", "Date": "Wed, 01 May 2024 12:05:00 GMT"},
            (None, 300.0),
        ),
        ({"Expires": "0"}, (None, 0.0)),
        # max-age and no-cache override Expires (RFC 9111 5.3)
        ({"Cache-Control": "max-age=60", "Expires": "Thu, 02 May 2024 12:00:00 GMT"}, (60.0, None)),
        ({"Cache-Control": "no-cache", "Expires": "Thu, 02 May 2024 12:00:00 GMT"}, (0.0, None)),
        ({"Cache-Control": "public", "Expires": "Wed, 01 May 2024 12:10:00 GMT"}, (None, 600.0)),
        ({"Expires": "Wed, 01 May 2024 11:00:00 GMT"}, (None, 0.0)),
    ],
)
def test_parse_cache_headers(
    headers: dict[str, str], expected: tuple[float | None, float | None]
) -> None:
    assert parse_cache_headers(headers, NOW) == expected
