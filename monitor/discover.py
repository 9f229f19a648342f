"""Find the feeds an HTML page advertises with ``<link rel="alternate">``. Pure."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/rdf+xml",
        "application/json+feed",
    }
)


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"].strip()
        elif tag == "link":
            rels = values.get("rel", "").lower().split()
            kind = values.get("type", "").split(";")[0].strip().lower()
            href = values.get("href", "").strip()
            if "alternate" in rels and kind in FEED_TYPES and href:
                self.hrefs.append(href)

    handle_startendtag = handle_starttag


def discover_feed_links(html: bytes | str, base_url: str) -> list[str]:
    """Absolute URLs of the RSS/Atom/JSON feeds a page links to, in page order, without
    duplicates. Honours ``<base href>``; ``feed://`` becomes ``http://``; only http(s)."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    collector = _LinkCollector()
    try:
        collector.feed(text)
        collector.close()
    except Exception:  # HTMLParser is lenient; never let a page break discovery
        pass
    base = base_url
    if collector.base:
        try:
            base = urljoin(base_url, collector.base)
        except ValueError:
            base = base_url
    out: list[str] = []
    for href in collector.hrefs:
        if href.lower().startswith("feed://"):
            href = "http://" + href[len("feed://") :]
        try:
            absolute = urljoin(base, href)
        except ValueError:
            continue
        if absolute.lower().startswith(("http://", "https://")) and absolute not in out:
            out.append(absolute)
    return out
