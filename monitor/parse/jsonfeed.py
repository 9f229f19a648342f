"""JSON Feed bodies (https://jsonfeed.org/version/1.1), through ``json``."""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from monitor.models import Entry
from monitor.normalize import clean, html_to_text, truncate
from monitor.parse.entries import TITLE_CHARS, Context, entry_link, make_entry, unique_entries
from monitor.parse.result import FeedMeta, ParseResult, failed
from monitor.parse.sniff import strip_bom


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


def parse_json(body: bytes, ctx: Context) -> ParseResult:
    try:
        doc = json.loads(strip_bom(body) if body.startswith(codecs.BOM_UTF8) else body)
    except (ValueError, UnicodeDecodeError) as exc:
        return failed(f"not a feed: invalid JSON ({exc})")
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return failed('not a feed: JSON document without an "items" list')
    version = str(doc.get("version") or "")
    meta = FeedMeta(
        title=truncate(clean(str(doc.get("title") or "")), TITLE_CHARS),
        link=entry_link(doc.get("home_page_url"), ctx.url),
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
        entry = make_entry(
            ctx,
            raw_id=str(raw_id) if isinstance(raw_id, str | int) else None,
            link=entry_link(item.get("url") or item.get("external_url"), base),
            title=clean(cap_text(item.get("title"), TITLE_CHARS * 2)),
            summary=summary,
            content=content,
            published=_json_date(item.get("date_published") or item.get("date_modified")),
            author=_json_author(item),
            categories=[t for t in item.get("tags") or [] if isinstance(t, str)],
        )
        if entry is not None:
            entries.append(entry)
    return ParseResult(entries=unique_entries(entries), meta=meta, error=None)


def cap_text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""
