"""RSS, Atom and CDF bodies, through feedparser."""

from __future__ import annotations

import xml.sax
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import feedparser

from monitor.models import Entry
from monitor.normalize import truncate
from monitor.parse.entries import (
    TITLE_CHARS,
    Context,
    entry_link,
    make_entry,
    struct_to_datetime,
    text_of,
    unique_entries,
)
from monitor.parse.result import FeedMeta, ParseResult
from monitor.parse.sniff import cap_field_lengths, effective_headers

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


def parse_xml(body: bytes, headers: Mapping[str, str], ctx: Context) -> ParseResult:
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
        title=truncate(text_of(feed.get("title"), feed.get("title_detail")), TITLE_CHARS),
        link=entry_link(feed.get("link"), ctx.url),
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
            content = text_of(contents[0].get("value"), contents[0])
        entry = make_entry(
            ctx,
            raw_id=item.get("id"),
            link=entry_link(item.get("link"), ctx.url),
            title=text_of(item.get("title"), item.get("title_detail")),
            summary=text_of(item.get("summary"), item.get("summary_detail")),
            content=content,
            published=struct_to_datetime(
                item.get("published_parsed") or item.get("updated_parsed")
            ),
            author=text_of(item.get("author"), {"type": "text/html"}),
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
    return ParseResult(entries=unique_entries(entries), meta=meta, error=error, is_html=False)
