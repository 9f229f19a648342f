"""Feed bytes + response headers → normalised ``Entry`` list. Pure; CPU-bound.

``parse_feed`` is what runs in a worker process; ``parse_in_pool`` and ``ParsePool`` run it
off the event loop with a hard timeout.

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

import asyncio
import calendar
import codecs
import collections
import contextlib
import copy
import functools
import hashlib
import json
import multiprocessing
import operator
import os
import re
import signal
import threading
import time
import weakref
import xml.sax
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from monitor.dedupe import Prepared, prepare
from monitor.dedupe.embed import load_in_background
from monitor.discover import discover_feed_links
from monitor.match import Hit, Matcher, compile_watchlists
from monitor.models import Entry
from monitor.normalize import canonical_url, clean, html_to_text, truncate
from monitor.watchlist import Watchlist

AUTHOR_FIELD_CHARS = 512
_TITLE_CHARS = 1_000
_SMALL_CHARS = 200
_MAX_CATEGORIES = 50


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
        # entries travel back from the worker as plain tuples: half the pickling cost
        rows = tuple(_entry_tuple(entry) for entry in self.entries)
        return (
            _rebuild_result,
            (rows, self.meta, self.error, self.is_html, self.hits, self.generation, self.prepared),
        )


def _failed(error: str, *, is_html: bool = False, meta: FeedMeta | None = None) -> ParseResult:
    return ParseResult(entries=[], meta=meta or FeedMeta(), error=error, is_html=is_html)


# --------------------------------------------------------------------------- feedparser speed-ups
#
# feedparser stays the parser of every feed; these make the same feedparser cheaper without
# changing one field of its output (tests/test_parse.py compares raw feedparser results with
# and without them over feedparser's own fixture corpus and the captured news feeds):
#
# * a fast date handler, registered at the front of feedparser's list through its public
#   ``registerDateHandler``: the common RFC 822 and W3C-DTF/ISO 8601 shapes, computed exactly
#   as feedparser's own handlers compute them; anything else returns ``None`` and falls
#   through to feedparser's handlers unchanged;
# * ``FeedParserDict.get`` / ``__getitem__`` / ``__contains__`` skip the alias table for keys
#   that have no alias (every key feedparser itself looks up while parsing), and a
#   ``__deepcopy__`` does what ``copy._reconstruct`` does without the generic machinery;
# * feedparser's ``_urljoin`` returns at once when there is no base URI (we never send
#   Content-Location): ``urllib.parse.urljoin("", uri)`` is ``uri``.
#
# They are installed once per process by ``parse_feed`` (and in each ``ParsePool`` worker at
# start), and only for the feedparser versions they were checked against.

_SPEEDUP_VERSIONS = ("6.0.",)
_RFC822_ZONES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "adt": -3, "ast": -4, "at": -4, "edt": -4, "est": -5, "et": -5,
    "cdt": -5, "cst": -6, "ct": -6, "mdt": -6, "mst": -7, "mt": -7,
    "pdt": -7, "pst": -8, "pt": -8, "a": -1, "n": 1, "m": -12, "y": 12,
    "met": 1, "mest": 2,
}  # fmt: skip
_MONTH_NUM = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_RFC822 = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?[ \t]+)?"
    r"([0-9]{1,2})[ \t]+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[ \t]+([0-9]{4})"
    r"[ \t]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?"
    r"[ \t]+(?:([+-])([0-9]{2}):?([0-9]{2})|([a-z]{1,4}))",
    re.ASCII | re.IGNORECASE,
)
_W3DTF = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[tT ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?"
    r"(?:([zZ])|([+-])([0-9]{2}):([0-9]{2}))?)?",
    re.ASCII,
)


def _utc_tuple(
    year: int, month: int, day: int, hour: int, minute: int, second: int, offset_min: int
) -> time.struct_time | None:
    try:
        stamp = datetime(year, month, day, hour, minute, second)
        return (stamp - timedelta(minutes=offset_min)).utctimetuple()
    except (ValueError, OverflowError):
        return None  # feedparser's handlers get their turn


def fast_date(value: str) -> time.struct_time | None:
    """A date handler for feedparser: RFC 822 (``Tue, 27 May 2025 10:00:00 GMT``, named
    zones, numeric offsets, missing seconds) and W3C-DTF/ISO 8601 (``2025-05-27T10:00:00Z``,
    ``±hh:mm`` offsets, fractions, space separator, date only). Returns exactly what
    feedparser's own handlers return for those strings, and ``None`` for anything else so
    that feedparser's handlers are tried."""
    m = _W3DTF.fullmatch(value)
    if m:
        y, mo, d, h, mi, s, _z, sign, oh, om = m.groups()
        offset = 0
        if sign:
            offset = int(oh) * 60 + int(om)
            offset = -offset if sign == "-" else offset
        return _utc_tuple(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), offset)
    m = _RFC822.fullmatch(value)
    if m:
        d, mon, y, h, mi, s, sign, oh, om, zone = m.groups()
        if sign:
            offset = int(oh) * 60 + int(om)
            offset = -offset if sign == "-" else offset
        else:
            hours = _RFC822_ZONES.get(zone.lower())
            if hours is None:
                return None
            offset = hours * 60
        month = _MONTH_NUM[mon.lower()]
        return _utc_tuple(int(y), month, int(d), int(h), int(mi), int(s or 0), offset)
    return None


_ALIASED: frozenset[str] = frozenset()
_ORIGINALS: dict[str, Any] = {}


def _fpd_get(self: dict[str, Any], key: str, default: Any = None) -> Any:
    if key in _ALIASED:
        return _ORIGINALS["get"](self, key, default)
    return dict.get(self, key, default)


def _fpd_getitem(self: dict[str, Any], key: str) -> Any:
    if key in _ALIASED:
        return _ORIGINALS["__getitem__"](self, key)
    return dict.__getitem__(self, key)


def _fpd_contains(self: dict[str, Any], key: object) -> bool:
    if key in _ALIASED:
        return bool(_ORIGINALS["__contains__"](self, key))
    return dict.__contains__(self, key)


_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _fpd_deepcopy(self: dict[str, Any], memo: dict[int, Any]) -> Any:
    """What ``copy.deepcopy`` does for a FeedParserDict (``copy._reconstruct`` with the
    state and dict items of ``__reduce_ex__(4)``), minus the generic machinery."""
    cls = type(self)
    new = cls.__new__(cls)
    memo[id(self)] = new
    state = getattr(self, "__dict__", None)
    if state:
        new.__dict__.update(copy.deepcopy(state, memo))
    for key, value in dict.items(self):
        if type(value) not in _ATOMIC:
            value = copy.deepcopy(value, memo)
        new[key if type(key) in _ATOMIC else copy.deepcopy(key, memo)] = value
    return new


def _make_fast_urljoin(original: Any) -> Any:
    def _urljoin(base: Any, uri: Any) -> Any:
        if base == "" and type(uri) is str and "://" not in uri:
            return uri  # urljoin("", uri) is uri, and feedparser's fix-up needs a "://"
        return original(base, uri)

    return _urljoin


def install_speedups() -> bool:
    """Make feedparser cheaper in this process (see above); idempotent. Returns whether the
    speed-ups are active (False for a feedparser version they were not checked against)."""
    global _ALIASED
    if _ORIGINALS:
        return True
    if not str(getattr(feedparser, "__version__", "")).startswith(_SPEEDUP_VERSIONS):
        return False
    from feedparser import mixin
    from feedparser.util import FeedParserDict

    _ALIASED = frozenset(FeedParserDict.keymap) | {
        "category", "enclosures", "license", "updated", "updated_parsed"
    }  # fmt: skip
    for name in ("get", "__getitem__", "__contains__"):
        _ORIGINALS[name] = FeedParserDict.__dict__[name]
    _ORIGINALS["_urljoin"] = mixin._urljoin
    FeedParserDict.get = _fpd_get
    FeedParserDict.__getitem__ = _fpd_getitem
    FeedParserDict.__contains__ = _fpd_contains
    FeedParserDict.__deepcopy__ = _fpd_deepcopy
    mixin._urljoin = _make_fast_urljoin(_ORIGINALS["_urljoin"])
    feedparser.registerDateHandler(fast_date)
    return True


def remove_speedups() -> None:
    """Undo ``install_speedups`` (for comparisons and tests)."""
    if not _ORIGINALS:
        return
    from feedparser import datetimes, mixin
    from feedparser.util import FeedParserDict

    for name in ("get", "__getitem__", "__contains__"):
        setattr(FeedParserDict, name, _ORIGINALS.pop(name))
    del FeedParserDict.__deepcopy__
    mixin._urljoin = _ORIGINALS.pop("_urljoin")
    handlers = datetimes._date_handlers
    while fast_date in handlers:
        handlers.remove(fast_date)


# --------------------------------------------------------------------------- pre-scan

_AUTHOR_RUN = re.compile(
    rb"(<(?:[A-Za-z_][\w.-]*:)?(?:author|creator|contributor|publisher|managingEditor|webMaster"
    rb"|name|email|owner)\b[^<>]*>(?:<!\[CDATA\[)?)([^<>\]]{%d,})" % (AUTHOR_FIELD_CHARS + 1)
)
_TAIL = 32


def _utf8_floor(data: bytes, end: int) -> int:
    """Largest index <= end that is not inside a UTF-8 multi-byte sequence."""
    i = end
    while i > 0 and i > end - 4 and 0x80 <= data[i] <= 0xBF:
        i -= 1
    return i


def _cut(run: bytes, keep: int, tail: int) -> bytes:
    head_end = _utf8_floor(run, keep)
    amp = run.rfind(b"&", max(0, head_end - 12), head_end)
    if amp != -1 and b";" not in run[amp:head_end]:
        head_end = amp  # do not cut inside an entity reference
    if tail:
        tail_start = len(run) - tail
        while tail_start < len(run) and 0x80 <= run[tail_start] <= 0xBF:
            tail_start += 1
        return run[:head_end] + b"..." + run[tail_start:]
    return run[:head_end] + b"..."


def cap_field_lengths(body: bytes, max_field_chars: int) -> bytes:
    """Cut overlong runs of text (see the module docstring). Linear in ``len(body)``."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]:
        return body  # UTF-16/32: byte-level cutting would break code units
    if len(body) > max_field_chars:
        # the look-behind anchors each attempt at the start of a run: without it the
        # engine retries from every position inside a long-but-not-too-long run (quadratic)
        long_run = re.compile(rb"(?<![^<>])[^<>]{%d,}" % (max_field_chars + _TAIL + 4))
        body = long_run.sub(lambda m: _cut(m.group(0), max_field_chars, _TAIL), body)
    return _AUTHOR_RUN.sub(lambda m: m.group(1) + _cut(m.group(2), AUTHOR_FIELD_CHARS, 0), body)


# --------------------------------------------------------------------------- sniffing

_PROLOG = re.compile(
    rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!(?![dD][oO][cC][tT][yY][pP][eE]\s+html)[^>]*>)", re.S
)
_FIRST_TAG = re.compile(rb"\s*<(!doctype\s+html|[a-z][\w:.-]*)", re.I)
_HTML_ROOTS = frozenset({b"html", b"head", b"body", b"!doctype html"})


def _strip_bom(body: bytes) -> bytes:
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if body.startswith(bom):
            return body[len(bom) :]
    return body


def _head_ascii(body: bytes, n: int = 4096) -> bytes:
    head = _strip_bom(body[: n * 2])
    if b"\x00" in head[:8]:
        head = head.replace(b"\x00", b"")  # UTF-16/32: good enough for tag sniffing
    return head[:n]


def looks_like_html(body: bytes) -> bool:
    head = _head_ascii(body)
    pos = 0
    while True:
        m = _PROLOG.match(head, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    first = _FIRST_TAG.match(head, pos)
    if not first:
        return False
    name = re.sub(rb"\s+", b" ", first.group(1).lower())
    return name in _HTML_ROOTS


def _looks_like_json(body: bytes, content_type: str) -> bool:
    lead = _head_ascii(body, 64).lstrip()
    if lead.startswith(b"{"):
        return True
    return "json" in content_type and not lead.startswith(b"<")


# --------------------------------------------------------------------------- charsets

_SINGLE_BYTE = ("us-ascii", "ascii", "latin", "iso8859", "iso-8859", "cp125", "windows-125")


def _charset_of(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            value = value.strip().strip("\"'").strip()
            return value or None
    return None


def effective_headers(headers: Mapping[str, str], body: bytes, url: str) -> dict[str, str]:
    """Headers to give feedparser: see "Charsets" in the module docstring."""
    lower = {k.lower(): v for k, v in headers.items()}
    charset = _charset_of(lower.get("content-type", ""))
    chosen: str | None = None
    has_bom = body.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if charset and not has_bom:
        try:
            name = codecs.lookup(charset).name
        except LookupError:
            name = ""
        if name:
            try:
                body.decode(name)
            except UnicodeDecodeError:
                name = ""  # the header lies; let the document and sniffing decide
        if name and name != "utf-8" and name.startswith(_SINGLE_BYTE) and not body.isascii():
            try:
                body.decode("utf-8")
                name = "utf-8"  # valid non-ASCII UTF-8 is almost never latin-1 text
            except UnicodeDecodeError:
                pass
        chosen = name or None
    # no Content-Location: feedparser would resolve every URI against it (a third of its
    # time on a typical feed); entry links are resolved against the feed URL in ``_link``
    out = {"content-type": "application/xml" + (f"; charset={chosen}" if chosen else "")}
    if "content-language" in lower:
        out["content-language"] = lower["content-language"]
    return out


# --------------------------------------------------------------------------- helpers


# an HTML tag: <p>, </p>, <br/>, <a href="...">; not "a < b" or "<3"
_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s+[^<>]*)?/?>")


def _text(value: Any, detail: Any = None) -> str:
    """Plain text of a feedparser field. A field marked ``text/plain`` is taken as it is,
    unless it holds HTML tags: feeds mark HTML descriptions text/plain (feedparser
    trusts the label), and their <p> would reach Slack and the terminal as text."""
    if not isinstance(value, str) or not value:
        return ""
    kind = detail.get("type", "") if isinstance(detail, Mapping) else ""
    if kind == "text/plain" and not _MARKUP.search(value):
        return clean(value)
    return html_to_text(value)


def _struct_to_dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _reference_time(headers: Mapping[str, str], now: datetime | None) -> datetime | None:
    if now is not None:
        return now if now.tzinfo else now.replace(tzinfo=UTC)
    date = next((v for k, v in headers.items() if k.lower() == "date"), None)
    if not date:
        return None
    try:
        ref = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    return ref if ref.tzinfo else ref.replace(tzinfo=UTC)


def _clamp_future(value: datetime | None, ref: datetime | None) -> datetime | None:
    if value is not None and ref is not None and value > ref + timedelta(days=1):
        return None
    return value


def _guid(raw_id: Any, link: str, title: str, summary: str) -> str:
    guid = raw_id.strip() if isinstance(raw_id, str) else ""
    if not guid:
        guid = link
    if not guid:
        digest = hashlib.sha1(f"{title}\n{summary}".encode(), usedforsecurity=False)
        return "sha1:" + digest.hexdigest()
    if len(guid) > 500:
        return "sha1:" + hashlib.sha1(guid.encode(), usedforsecurity=False).hexdigest()
    return guid


# an absolute http(s) URL that ``urljoin`` would hand back unchanged up to what
# ``canonical_url`` normalises anyway (no ";" params, IPv6 brackets or non-ASCII netloc tricks)
_PLAIN_ABSOLUTE = re.compile(r"https?://[^/?#\[\];\s]", re.ASCII)


def _link(raw: Any, base: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        return ""
    href = raw.strip()
    if href.startswith("feed://"):
        href = "http://" + href[len("feed://") :]
    if (
        _PLAIN_ABSOLUTE.match(href)
        and href.isascii()
        and ";" not in href
        and "[" not in href
        and _valid_base(base)
    ):
        return canonical_url(href)  # skip urljoin: same result, a third of the cost
    try:
        absolute = urljoin(base, href)
    except ValueError:
        return ""
    if not absolute.lower().startswith(("http://", "https://")):
        return ""
    return canonical_url(absolute)


@functools.lru_cache(maxsize=64)
def _valid_base(base: str) -> bool:
    """Whether ``urljoin(base, …)`` can parse ``base`` (else every link becomes "")."""
    try:
        urljoin(base, "x")
    except ValueError:
        return False
    return True


def _categories(values: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        term = truncate(clean(html_to_text(value)), _SMALL_CHARS)
        if term and term not in seen:
            seen[term] = None
        if len(seen) >= _MAX_CATEGORIES:
            break
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class _Ctx:
    url: str
    feed: str
    source: str
    feed_tags: tuple[str, ...]
    max_field_chars: int
    ref: datetime | None


def _make_entry(
    ctx: _Ctx,
    *,
    raw_id: Any,
    link: str,
    title: str,
    summary: str,
    content: str,
    published: datetime | None,
    author: str,
    categories: Sequence[str],
) -> Entry | None:
    summary = truncate(summary, ctx.max_field_chars)
    content = truncate(content, ctx.max_field_chars)
    if not summary and content:
        summary = truncate(content, 1_000)
    if not title and summary:
        title = truncate(summary, 140)
    title = truncate(title, _TITLE_CHARS)
    if not (title or link or summary):
        return None
    return Entry(
        feed=ctx.feed,
        source=ctx.source,
        guid=_guid(raw_id, link, title, summary),
        link=link,
        title=title,
        summary=summary,
        published=_clamp_future(published, ctx.ref),
        content=content,
        author=truncate(author, _SMALL_CHARS),
        categories=_categories(categories),
        feed_tags=ctx.feed_tags,
    )


def _dedupe(entries: list[Entry]) -> list[Entry]:
    seen: set[str] = set()
    out: list[Entry] = []
    for entry in entries:
        if entry.guid not in seen:
            seen.add(entry.guid)
            out.append(entry)
    return out


# --------------------------------------------------------------------------- feedparser

_PERIOD_MINUTES = {"hourly": 60, "daily": 1440, "weekly": 10080, "monthly": 43200, "yearly": 525600}


def _update_period(feed: Mapping[str, Any]) -> float | None:
    period = str(feed.get("sy_updateperiod") or "").strip().lower()
    if period not in _PERIOD_MINUTES:
        return None
    try:
        frequency = float(str(feed.get("sy_updatefrequency") or "1").strip())
    except ValueError:
        frequency = 1.0
    if frequency <= 0:
        frequency = 1.0
    return _PERIOD_MINUTES[period] / frequency


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def bozo_reason(exc: BaseException | None) -> str:
    if exc is None:
        return "malformed feed"
    if isinstance(exc, xml.sax.SAXParseException):
        return (
            f"malformed XML: {exc.getMessage()} "
            f"(line {exc.getLineNumber()}, column {exc.getColumnNumber()})"
        )
    name = type(exc).__name__
    text = str(exc)
    if name in ("CharacterEncodingOverride", "CharacterEncodingUnknown", "NonXMLContentType"):
        return text
    return f"{name}: {text}" if text else name


def _parse_xml(body: bytes, headers: Mapping[str, str], ctx: _Ctx) -> ParseResult:
    capped = cap_field_lengths(body, ctx.max_field_chars)
    parsed = feedparser.parse(
        capped,
        response_headers=effective_headers(headers, body, ctx.url),
        # markup is reduced to plain text below (script/style dropped), so feedparser's
        # HTML sanitizer and relative-URI rewriting inside content are wasted work
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    feed = parsed.get("feed", {})
    version = str(parsed.get("version") or "")
    meta = FeedMeta(
        title=truncate(_text(feed.get("title"), feed.get("title_detail")), _TITLE_CHARS),
        link=_link(feed.get("link"), ctx.url),
        ttl_minutes=_int_or_none(feed.get("ttl")),
        update_period_minutes=_update_period(feed),
        version=version,
    )
    entries: list[Entry] = []
    raw_entries = parsed.get("entries", [])
    for item in raw_entries:
        contents = item.get("content") or []
        content = ""
        if contents and isinstance(contents[0], Mapping):
            content = _text(contents[0].get("value"), contents[0])
        entry = _make_entry(
            ctx,
            raw_id=item.get("id"),
            link=_link(item.get("link"), ctx.url),
            title=_text(item.get("title"), item.get("title_detail")),
            summary=_text(item.get("summary"), item.get("summary_detail")),
            content=content,
            published=_struct_to_dt(item.get("published_parsed") or item.get("updated_parsed")),
            author=_text(item.get("author"), {"type": "text/html"}),
            categories=[
                t.get("term") or t.get("label") or ""
                for t in item.get("tags") or []
                if isinstance(t, Mapping)
            ],
        )
        if entry is not None:
            entries.append(entry)
    error: str | None = None
    if parsed.get("bozo"):
        error = bozo_reason(parsed.get("bozo_exception"))
    if not entries and raw_entries and not error:
        error = f"{len(raw_entries)} item(s) without a title, link or text"
    if not version and (raw_entries or meta.title or meta.link):
        meta = replace(meta, version="unknown")  # e.g. CDF: feedparser gives no version
    if not entries and not meta.version:
        error = f"not a feed: {error}" if error else "not a feed (no RSS or Atom elements found)"
    return ParseResult(entries=_dedupe(entries), meta=meta, error=error, is_html=False)


# --------------------------------------------------------------------------- JSON Feed


def _json_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _json_author(item: Mapping[str, Any]) -> str:
    authors = item.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], Mapping):
        return clean(str(authors[0].get("name") or ""))
    author = item.get("author")
    if isinstance(author, Mapping):
        return clean(str(author.get("name") or ""))
    return ""


def _parse_json(body: bytes, ctx: _Ctx) -> ParseResult:
    try:
        doc = json.loads(_strip_bom(body) if body.startswith(codecs.BOM_UTF8) else body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _failed(f"not a feed: invalid JSON ({exc})")
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return _failed('not a feed: JSON document without an "items" list')
    version = str(doc.get("version") or "")
    meta = FeedMeta(
        title=truncate(clean(str(doc.get("title") or "")), _TITLE_CHARS),
        link=_link(doc.get("home_page_url"), ctx.url),
        version="json1" if version.startswith("https://jsonfeed.org/version/1") else "json",
    )
    entries: list[Entry] = []
    base = str(doc.get("feed_url") or ctx.url)
    for item in doc["items"]:
        if not isinstance(item, Mapping):
            continue
        html_body = item.get("content_html")
        content = (
            html_to_text(cap_text(html_body, ctx.max_field_chars * 4))
            if isinstance(html_body, str)
            else clean(cap_text(item.get("content_text"), ctx.max_field_chars))
        )
        summary = clean(cap_text(item.get("summary"), ctx.max_field_chars))
        raw_id = item.get("id")
        entry = _make_entry(
            ctx,
            raw_id=str(raw_id) if isinstance(raw_id, str | int) else None,
            link=_link(item.get("url") or item.get("external_url"), base),
            title=clean(cap_text(item.get("title"), _TITLE_CHARS * 2)),
            summary=summary,
            content=content,
            published=_json_date(item.get("date_published") or item.get("date_modified")),
            author=_json_author(item),
            categories=[t for t in item.get("tags") or [] if isinstance(t, str)],
        )
        if entry is not None:
            entries.append(entry)
    return ParseResult(entries=_dedupe(entries), meta=meta, error=None)


def cap_text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


# --------------------------------------------------------------------------- entry points


def body_digest(body: bytes) -> str:
    """Fingerprint of a response body (32 hex digits). A poll whose body has the digest of
    the last body that parsed successfully can skip parsing: same bytes, same entries."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    *,
    url: str,
    feed: str,
    source: str,
    feed_tags: tuple[str, ...] = (),
    max_field_chars: int = 20_000,
    now: datetime | None = None,
    speedups: bool = True,
) -> ParseResult:
    """Parse one response body. Pure; never raises (problems go to ``error``).

    ``speedups`` installs the feedparser speed-ups in this process on first use (they change
    no result; ``False`` leaves feedparser as it is, e.g. to compare)."""
    if speedups and not _ORIGINALS:
        install_speedups()
    ctx = _Ctx(url, feed, source, tuple(feed_tags), max_field_chars, _reference_time(headers, now))
    if not body or not body.strip():
        return _failed("empty response body")
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    try:
        if looks_like_html(body):
            links = discover_feed_links(body, url)
            hint = f"; the page links to {', '.join(links[:3])}" if links else ""
            return _failed(f"not a feed (HTML page){hint}", is_html=True)
        if _looks_like_json(body, content_type.lower()):
            return _parse_json(body, ctx)
        return _parse_xml(body, headers, ctx)
    except Exception as exc:  # a parser bug must not take the poll down
        return _failed(f"parser error: {type(exc).__name__}: {exc}"[:500])


async def _run(
    executor: Executor, limit_s: float, call: functools.partial[ParseResult]
) -> tuple[ParseResult, str]:
    """Submit ``call`` to ``executor`` and answer within ``limit_s`` (time queued in the
    executor included)."""
    loop = asyncio.get_running_loop()
    try:
        future = executor.submit(call)
    except (BrokenProcessPool, RuntimeError) as exc:  # broken, or shut down
        return _failed(f"parser pool unavailable: {exc}"), "broken"
    done: asyncio.Future[None] = loop.create_future()
    future.add_done_callback(lambda _f: _wake(loop, done))
    return await _outcome(future, done, limit_s)


async def _outcome(
    future: Future[ParseResult], done: asyncio.Future[None], limit_s: float
) -> tuple[ParseResult, str]:
    """The answer for a parse handed to an executor: ``future``'s result, or why there
    is none. ``done`` completes when ``future`` does; the timeout counts from now."""
    try:
        async with asyncio.timeout(limit_s):
            await done
    except TimeoutError:
        future.cancel()  # (stops it only if it has not started)
        return _failed(f"parse timed out after {limit_s:g}s"), "timeout"
    try:
        return future.result(), "ok"
    except BrokenProcessPool:
        return _failed("parser pool broken (a worker process died)"), "broken"
    except CancelledError:  # cancelled by a shutdown
        return _failed("parser pool unavailable: shut down"), "broken"
    except RuntimeError as exc:
        return _failed(f"parser pool unavailable: {exc}"), "broken"


def _wake(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    """Complete ``done`` on its loop (from any thread); nothing if the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, done, None)


async def parse_in_pool(
    executor: Executor,
    body: bytes,
    headers: Mapping[str, str],
    *,
    url: str,
    feed: str,
    source: str,
    feed_tags: tuple[str, ...] = (),
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the worker, not for the caller
) -> ParseResult:
    """Run ``parse_feed`` in ``executor`` with a hard timeout (which includes time queued
    behind other parses). Never raises for parser problems.

    On timeout the awaiting coroutine returns at once with ``error="parse timed out after
    Ns"``; the worker itself keeps running the parse until it finishes, because an executor
    cannot interrupt a task. To reclaim it, call ``terminate_workers(executor)`` and create
    a new pool, or use ``ParsePool``, which does exactly that.
    """
    call = functools.partial(
        parse_feed,
        body,
        dict(headers),
        url=url,
        feed=feed,
        source=source,
        feed_tags=tuple(feed_tags),
    )
    result, _status = await _run(executor, timeout, call)
    return result


# each ParsePool executor's process table (filled as workers start), kept so that a pool
# already shut down by a watchlist reload can still have a runaway worker killed
_POOL_PROCESSES: weakref.WeakKeyDictionary[ProcessPoolExecutor, dict[int, Any]] = (
    weakref.WeakKeyDictionary()
)


def terminate_workers(executor: ProcessPoolExecutor) -> None:
    """Kill the worker processes of ``executor`` (Python 3.11 has no public API for it) and
    shut it down; futures still running in it fail with ``BrokenProcessPool``."""
    # (shutdown() drops the executor's own reference: the one kept at creation remains)
    processes = dict(getattr(executor, "_processes", None) or _POOL_PROCESSES.get(executor) or {})
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        process.join(timeout=5)


# the worker's compiled watchlists and the pool generation they belong to
_WORKER_MATCHER: tuple[int, Matcher] | None = None


def _process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        return state in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _exit_with(owner: int, every: float = 1.0) -> None:
    """Watch the process that owns the pool; when it is gone (killed with SIGKILL, or
    by the OOM killer: nothing of it ran to shut the pool down) end this worker too.
    A worker waits for its next task forever otherwise, and with it the forkserver:
    about 200 MB left under PID 1 by every killed run."""

    def watch() -> None:
        while not _process_gone(owner):
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def _warm_up(
    watchlists: tuple[Watchlist, ...] | None = None, generation: int = 0, owner: int = 0
) -> None:
    """Runs in each worker at start: import and compile costs are paid once, not per
    parse. ``owner``: the pid of the process using the pool; the worker ends with it."""
    global _WORKER_MATCHER
    if owner:
        _exit_with(owner)
    # Ctrl-C in a terminal reaches the whole process group: the daemon handles it and
    # shuts the pool down; workers must not die mid-parse with a traceback of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_speedups()
    feedparser.parse(b"<rss version='2.0'><channel><title>x</title></channel></rss>")
    # prepare computes each title's vector once the model (tens of MB) is in memory: it
    # loads beside the first parses instead of holding up the pool's start
    load_in_background()
    if watchlists is not None:
        _WORKER_MATCHER = (generation, compile_watchlists(watchlists))


def _ready() -> None:
    """A no-op task: returns once a worker has started (and run ``_warm_up``)."""


def _parse_and_match(
    body: bytes, headers: dict[str, str], prepare_chars: int | None = None, **kwargs: Any
) -> ParseResult:
    """``parse_feed``, then, here in the worker, the watchlists matched against each entry
    and the first step of story dedupe (``monitor.dedupe.prepare``: title key, summary cut
    to ``prepare_chars``, compact guard features): both are pure functions of the entry,
    and doing them beside the
    parse takes them off the single process that dedupes and stores."""
    result = parse_feed(body, headers, **kwargs)
    if not result.entries:
        return result
    if prepare_chars is not None:
        prepared = tuple(
            prepare(e.title, e.summary, e.source, prepare_chars, features=True)
            for e in result.entries
        )
        result = replace(result, prepared=prepared)
    worker = _WORKER_MATCHER
    if worker is None:
        return result
    generation, matcher = worker
    hits = tuple(tuple(matcher.match_entry(e)) for e in result.entries)
    return replace(result, hits=hits, generation=generation)


class _Refused(Exception):
    """An executor refused a parse (its pool is broken or shut down)."""

    def __init__(self, executor: ProcessPoolExecutor, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.executor = executor
        self.cause = cause


class _Task:
    """One parse waiting for, or running in, a worker (``ParsePool``)."""

    __slots__ = ("abandoned", "call", "done", "loop", "started")

    def __init__(self, call: functools.partial[ParseResult], loop: asyncio.AbstractEventLoop):
        self.call = call
        self.loop = loop
        # set (from the dispatching thread) when handed to a worker: (executor, future)
        self.started: asyncio.Future[tuple[ProcessPoolExecutor, Future[ParseResult]]] = (
            loop.create_future()
        )
        self.done: asyncio.Future[None] = loop.create_future()
        self.abandoned = False  # the caller gave up before a worker took it


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    """Set an asyncio future's result or exception unless it is already settled (on its
    loop, via ``call_soon_threadsafe``)."""
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class ParsePool:
    """A process pool for parsing, with a hard timeout per parse that does not count time
    spent waiting for a free worker. A parse that overruns is answered with an error and
    its pool is killed and replaced, so a pathological feed cannot pin a worker; parses
    that were running in the killed pool are retried once in the new one.

    At most ``workers`` parses are handed to the executor at once (so each starts at once
    and its timeout measures the parse, not a queue). The next waiting parse is handed
    over from the executor's own thread the moment one finishes, not when the event loop
    gets round to it: a loop busy storing a batch would otherwise leave workers idle."""

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = 30.0,
        max_field_chars: int = 20_000,
        start_method: str = "forkserver",
        watchlists: Sequence[Watchlist] | None = None,
        prepare_chars: int | None = None,
    ) -> None:
        self.workers = workers
        self.prepare_chars = prepare_chars
        self.timeout = timeout
        self.max_field_chars = max_field_chars
        self.restarts = 0
        # results carry the generation of the watchlists they were matched with; it
        # changes with every set_watchlists, so a caller can tell stale hits apart
        self.generation = 1
        self._watchlists = tuple(watchlists) if watchlists is not None else None
        self._context = multiprocessing.get_context(start_method)
        self._executor = self._new_executor()
        # (re-entrant: a future that is already done runs its callback, _finished, at once)
        self._lock = threading.RLock()
        self._closed = False
        self._waiting: collections.deque[_Task] = collections.deque()
        self._running = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_warm_up,
            initargs=(self._watchlists, self.generation, os.getpid()),
        )
        processes = getattr(executor, "_processes", None)
        if isinstance(processes, dict):
            _POOL_PROCESSES[executor] = processes
        return executor

    def start(self) -> None:
        """Start the workers now and wait until they are ready (blocking; call once at
        start-up), so the first parses' timeouts do not include process start-up."""
        futures = [self._executor.submit(_ready) for _ in range(self.workers)]
        for future in futures:
            future.result()

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        """Match with these watchlists from now on (hot reload): new workers compile them;
        parses already running finish in the old workers, their results marked with the
        old generation."""
        with self._lock:  # (no hand-over in between: it reads self._executor)
            self._watchlists = tuple(watchlists)
            self.generation += 1
            old = self._executor
            self._executor = self._new_executor()
        old.shutdown(wait=False)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Kill the workers of ``broken`` (a parse overran there, or it broke), and start
        a new pool if it is the current one. An older pool (replaced by a watchlist
        reload) is killed too: its runaway parse would otherwise keep a worker slot."""
        with self._lock:
            current = self._executor is broken
            if current:
                self._executor = self._new_executor()
                self.restarts += 1
        terminate_workers(broken)

    async def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        url: str,
        feed: str,
        source: str,
        feed_tags: tuple[str, ...] = (),
        now: datetime | None = None,
    ) -> ParseResult:
        call = functools.partial(
            _parse_and_match,
            body,
            dict(headers),
            prepare_chars=self.prepare_chars,
            url=url,
            feed=feed,
            source=source,
            feed_tags=tuple(feed_tags),
            max_field_chars=self.max_field_chars,
            now=now,
        )
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            task = _Task(call, loop)
            with self._lock:
                if self._running < self.workers:
                    self._hand_over(task)
                else:
                    self._waiting.append(task)
            try:
                executor, future = await task.started
            except asyncio.CancelledError:
                task.abandoned = True
                raise
            except _Refused as exc:  # the executor would not take it: broken or shut
                if self._closed or attempt:
                    return _failed(f"parser pool unavailable: {exc.cause}")
                self._replace(exc.executor)  # (that one: a newer pool may be fine)
                continue
            result, status = await _outcome(future, task.done, self.timeout)
            if status == "timeout":
                self._replace(executor)
                return result
            if status == "broken" and attempt == 0 and not self._closed:
                self._replace(executor)
                continue
            return result
        return result  # pragma: no cover - the loop always returns

    def _hand_over(self, task: _Task) -> None:
        """Submit ``task`` to the current executor (``self._lock`` held)."""
        executor = self._executor
        try:
            future = executor.submit(task.call)
        except (BrokenProcessPool, RuntimeError) as exc:
            with contextlib.suppress(RuntimeError):  # (the caller's loop is closed)
                task.loop.call_soon_threadsafe(_settle, task.started, _Refused(executor, exc))
            return
        self._running += 1
        with contextlib.suppress(RuntimeError):
            task.loop.call_soon_threadsafe(_settle, task.started, (executor, future))
        future.add_done_callback(lambda _f: self._finished(task))

    def _finished(self, task: _Task) -> None:
        """A parse ended (in the executor's thread): hand the next waiting one over."""
        with self._lock:
            self._running -= 1
            while self._waiting:
                nxt = self._waiting.popleft()
                if not nxt.abandoned:
                    self._hand_over(nxt)
                    break
        _wake(task.loop, task.done)

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: let running parses finish (``wait=True``) or kill them.
        Parses still waiting for a worker are answered with an error."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for task in waiting:
            with contextlib.suppress(RuntimeError):
                gone = _Refused(self._executor, RuntimeError("the parser pool was closed"))
                task.loop.call_soon_threadsafe(_settle, task.started, gone)
        if wait:
            self._executor.shutdown(wait=True, cancel_futures=True)
        else:
            terminate_workers(self._executor)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
