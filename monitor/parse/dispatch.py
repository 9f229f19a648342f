"""``parse_feed``: one response body to a ``ParseResult``, by what the body is (HTML page,
JSON Feed or XML). Pure; never raises."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from monitor.discover import discover_feed_links
from monitor.parse.entries import Context, reference_time
from monitor.parse.jsonfeed import parse_json
from monitor.parse.result import ParseResult, failed
from monitor.parse.sniff import looks_like_html, looks_like_json
from monitor.parse.speedups import install_speedups
from monitor.parse.xmlfeed import parse_xml


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
    if speedups:
        install_speedups()  # idempotent: returns at once when already installed
    ctx = Context(
        url, feed, source, tuple(feed_tags), max_field_chars, reference_time(headers, now)
    )
    if not body or not body.strip():
        return failed("empty response body")
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    try:
        if looks_like_html(body):
            links = discover_feed_links(body, url)
            hint = f"; the page links to {', '.join(links[:3])}" if links else ""
            return failed(f"not a feed (HTML page){hint}", is_html=True)
        if looks_like_json(body, content_type.lower()):
            return parse_json(body, ctx)
        return parse_xml(body, headers, ctx)
    except Exception as exc:  # a parser bug must not take the poll down
        return failed(f"parser error: {type(exc).__name__}: {exc}"[:500])
