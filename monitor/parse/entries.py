"""Building one ``Entry`` from a parser's item: text, dates clamped to the reference time,
guids, absolute links, categories."""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from monitor.models import Entry
from monitor.normalize import canonical_url, clean, html_to_text, truncate

AUTHOR_FIELD_CHARS = 512
TITLE_CHARS = 1_000
_SMALL_CHARS = 200
_MAX_CATEGORIES = 50


# an HTML tag: <p>, </p>, <br/>, <a href="...">; not "a < b" or "<3"
_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s+[^<>]*)?/?>")


def text_of(value: Any, detail: Any = None) -> str:
    """Plain text of a feedparser field. A field marked ``text/plain`` is taken as it is,
    unless it holds HTML tags: feeds mark HTML descriptions text/plain (feedparser
    trusts the label), and their <p> would reach Slack and the terminal as text."""
    if not isinstance(value, str) or not value:
        return ""
    kind = detail.get("type", "") if isinstance(detail, Mapping) else ""
    if kind == "text/plain" and not _MARKUP.search(value):
        return clean(value)
    return html_to_text(value)


def struct_to_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def reference_time(headers: Mapping[str, str], now: datetime | None) -> datetime | None:
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


def entry_link(raw: Any, base: str) -> str:
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
        return canonical_url(href)  # skip urljoin: same result, cheaper
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
class Context:
    url: str
    feed: str
    source: str
    feed_tags: tuple[str, ...]
    max_field_chars: int
    ref: datetime | None


def make_entry(
    ctx: Context,
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
    title = truncate(title, TITLE_CHARS)
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


def unique_entries(entries: list[Entry]) -> list[Entry]:
    seen: set[str] = set()
    out: list[Entry] = []
    for entry in entries:
        if entry.guid not in seen:
            seen.add(entry.guid)
            out.append(entry)
    return out
