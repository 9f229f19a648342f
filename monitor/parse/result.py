"""What parsing returns: ``ParseResult`` (entries, feed metadata, the error recorded on
the feed) and ``FeedMeta``."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import Any

from monitor.dedupe import Prepared
from monitor.match import Hit
from monitor.models import Entry


@dataclass(frozen=True, slots=True)
class FeedMeta:
    title: str = ""
    link: str = ""
    ttl_minutes: int | None = None
    update_period_minutes: float | None = None  # from sy:updatePeriod / sy:updateFrequency
    version: str = ""  # feedparser's version ("rss20", "atom10", …) or "json1"; "" = not a feed


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
_entry_tuple = operator.attrgetter(*_ENTRY_FIELDS)


def _rebuild_result(
    rows: tuple[tuple[Any, ...], ...],
    meta: FeedMeta,
    error: str | None,
    is_html: bool,
    hits: tuple[tuple[Hit, ...], ...] | None = None,
    generation: int = 0,
    prepared: tuple[Prepared, ...] | None = None,
) -> ParseResult:
    entries = [Entry(*row) for row in rows]
    return ParseResult(entries, meta, error, is_html, hits, generation, prepared)


@dataclass(frozen=True, slots=True)
class ParseResult:
    entries: list[Entry]
    meta: FeedMeta
    error: str | None  # recorded on the feed even when entries were recovered
    is_html: bool = False
    # watchlist hits per entry, when a ParsePool worker matched them with the watchlists
    # of pool generation ``generation`` (None: not matched here, the caller matches)
    hits: tuple[tuple[Hit, ...], ...] | None = None
    generation: int = 0
    # per entry, what story dedupe computes first (``monitor.dedupe.prepare``), when a
    # ParsePool worker did it beside the parse
    prepared: tuple[Prepared, ...] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # entries travel back from the worker as plain tuples: cheaper to pickle
        rows = tuple(_entry_tuple(entry) for entry in self.entries)
        return (
            _rebuild_result,
            (rows, self.meta, self.error, self.is_html, self.hits, self.generation, self.prepared),
        )


def failed(error: str, *, is_html: bool = False, meta: FeedMeta | None = None) -> ParseResult:
    return ParseResult(entries=[], meta=meta or FeedMeta(), error=error, is_html=is_html)
