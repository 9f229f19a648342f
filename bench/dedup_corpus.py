"""The dedup evaluation corpus: real captures as `wirewatch cluster` JSONL streams, in splits.

Splits (fixed before any tuning, never changed after; see ``bench/DEDUP_LABELLING.md``):

* ``tune``: gesab001 days 2020-04-28, 2020-05-18, 2020-06-02 (the only capture data any
  threshold or weight may be chosen on, besides the STS *train* split);
* ``heldout``: gesab001 days 2020-07-08 and 2020-08-21, and both ``captures/blazzzeee``
  days (2025, other outlets, some not in English). Reported, never tuned on.

Each day is one stream: the day's two captures in capture order, each outlet's items in
feed order. An item the second capture repeats (same outlet, same link and title) is the
same entry to a poller and is left out; a retitle on the same link stays (the daemon
would see an update of one entry, ``cluster`` sees two lines and merges them by link).

Items are named by a stable key, ``sha1(outlet, title, link)[:12]``, so the labels file
(``bench/dedup_labels.tsv``) holds no third-party text: the titles are read from
``../shared/data`` whenever they are needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT.parent / "shared" / "data" / "captures"

TUNE_DAYS = ("2020-04-28", "2020-05-18", "2020-06-02")
HELDOUT_DAYS = ("2020-07-08", "2020-08-21")
BLAZZZEEE = ("news_data_14b7c28.json", "news_data_HEAD.json")


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    stream: str  # the day/stream it belongs to
    title: str
    summary: str
    published: str  # ISO-8601 or ""
    source: str
    url: str

    def jsonl(self) -> str:
        return json.dumps(
            {
                "id": self.key,
                "title": self.title,
                "summary": self.summary,
                "published": self.published,
                "source": self.source,
                "url": self.url,
            },
            ensure_ascii=False,
        )


def available() -> bool:
    return (CAPTURES / "gesab001").is_dir() and (CAPTURES / "blazzzeee").is_dir()


def item_key(source: str, title: str, url: str) -> str:
    return hashlib.sha1(f"{source}\n{title}\n{url}".encode()).hexdigest()[:12]


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _gesab_day(day: str) -> list[Item]:
    import feedparser

    from monitor.normalize import html_to_text

    out: list[Item] = []
    seen: set[str] = set()
    for capture in sorted((CAPTURES / "gesab001").glob(f"{day}T*")):
        for xml in sorted(capture.glob("*.xml")):
            parsed = feedparser.parse(xml.read_bytes())
            for entry in parsed.entries:
                title = html_to_text(entry.get("title", "")).strip()
                if not title:
                    continue
                url = entry.get("link", "") or ""
                key = item_key(xml.stem, title, url)
                if key in seen:
                    continue
                seen.add(key)
                st = entry.get("published_parsed") or entry.get("updated_parsed")
                when = datetime(*st[:6], tzinfo=UTC) if st else None
                out.append(
                    Item(
                        key=key,
                        stream=day,
                        title=title,
                        summary=html_to_text(entry.get("summary", "") or ""),
                        published=_iso(when),
                        source=xml.stem,
                        url=url,
                    )
                )
    return out


def _blazzzeee(name: str) -> list[Item]:
    from monitor.normalize import html_to_text

    rows = json.loads((CAPTURES / "blazzzeee" / name).read_text(encoding="utf-8"))
    out: list[Item] = []
    seen: set[str] = set()
    for row in rows:
        title = html_to_text(row.get("title") or "").strip()
        if not title:
            continue
        source = row.get("source") or ""
        url = row.get("link") or ""
        key = item_key(source, title, url)
        if key in seen:
            continue
        seen.add(key)
        when = None
        if row.get("pubDate"):
            try:
                when = parsedate_to_datetime(row["pubDate"])
            except (TypeError, ValueError):
                when = None
        out.append(
            Item(
                key=key,
                stream=name.removesuffix(".json"),
                title=title,
                summary=html_to_text(row.get("description") or ""),
                published=_iso(when),
                source=source,
                url=url,
            )
        )
    return out


def streams(split: str) -> Iterator[tuple[str, list[Item]]]:
    """(stream name, items in stream order) for ``split``: "tune" or "heldout"."""
    if split == "tune":
        for day in TUNE_DAYS:
            yield day, _gesab_day(day)
    elif split == "heldout":
        for day in HELDOUT_DAYS:
            yield day, _gesab_day(day)
        for name in BLAZZZEEE:
            items = _blazzzeee(name)
            yield items[0].stream if items else name, items
    else:
        raise ValueError(f"unknown split {split!r}")


SPLITS = ("tune", "heldout")
