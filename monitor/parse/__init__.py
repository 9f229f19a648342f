"""The parse stage: feed bytes + response headers → a ``ParseResult`` (normalised
``Entry`` list, feed metadata, the error recorded on the feed). Pure; CPU-bound.

``parse_feed`` (``dispatch``) is what runs in a worker process; ``parse_in_pool`` and
``ParsePool`` (``pool``) run it off the event loop with a hard timeout. The modules:
``sniff`` looks at the raw bytes (field caps, HTML, JSON, charsets), ``xmlfeed`` and
``jsonfeed`` parse, ``entries`` builds each ``Entry``, ``speedups`` makes feedparser
faster with identical results, ``result`` holds what comes back.

How hostile or broken input is handled:

* **Only bytes go to feedparser**, with ``response_headers=`` (a ``str`` would be treated
  as a URL or a file path and fetched).
* **Overlong fields are cut before feedparser sees them** (``cap_field_lengths``): the raw
  bytes are scanned once with a linear regex for runs of characters containing no ``<`` or
  ``>``; a run longer than ``max_field_chars`` keeps its first ``max_field_chars`` bytes
  and its last 32 (so closing quotes, ``]]`` and ``--`` survive) with ``...`` between.
  Text directly inside author-like elements (``author``, ``dc:creator``, ``name``,
  ``email``, ``managingEditor`` …) is cut to 512 bytes, because feedparser runs a
  quadratic e-mail regex over author values (20,000 characters take ~3 s). UTF-16/32
  bodies are left alone (the pool timeout still bounds them).
* **Charsets**: RFC 3023 makes ``text/xml`` without a charset mean US-ASCII and lets a
  wrong header charset override the document; real feeds get both wrong all the time.
  We hand feedparser ``application/xml`` (so the XML declaration and BOM count) plus the
  header's charset only when the bytes actually decode with it, and UTF-8 when the header
  names a single-byte charset but the bytes are valid non-ASCII UTF-8.
* **HTML pages** (first element ``<html>``/``<!DOCTYPE html>``) give ``is_html=True`` and
  an error naming the feed links the page advertises, if any.
* **JSON Feed** (https://jsonfeed.org/version/1.1) is detected by content type or a
  leading ``{`` and parsed with ``json``.
* **Malformed feeds** (feedparser's ``bozo``) keep every entry feedparser recovered; the
  reason is returned in ``error`` so it can be recorded on the feed.
* **Dates** become aware UTC datetimes. A date more than a day after the reference time
  (``now=`` if given, else the response's ``Date`` header) is treated as bogus and becomes
  ``None``; without either no clamping is done (no clock is read here).
"""

from __future__ import annotations

from monitor.parse.dispatch import body_digest, parse_feed
from monitor.parse.entries import entry_link, text_of
from monitor.parse.pool import ParsePool, parse_in_pool, terminate_workers
from monitor.parse.result import FeedMeta, ParseResult
from monitor.parse.sniff import cap_field_lengths, effective_headers, looks_like_html
from monitor.parse.speedups import fast_date, install_speedups, remove_speedups

__all__ = [
    "FeedMeta",
    "ParsePool",
    "ParseResult",
    "body_digest",
    "cap_field_lengths",
    "effective_headers",
    "entry_link",
    "fast_date",
    "install_speedups",
    "looks_like_html",
    "parse_feed",
    "parse_in_pool",
    "remove_speedups",
    "terminate_workers",
    "text_of",
]
