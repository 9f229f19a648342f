"""The `wirewatch cluster ITEMS.jsonl` code path: the daemon's StoryIndex over a file.

Each line is one JSON object: ``id`` (int or str), ``title``, ``summary``, ``published``
(ISO-8601), ``source``, ``url``; all but ``id`` may be missing. Lines are processed in
file order (the file is expected in time order). For each line one ``(id, story_id)`` is
yielded, where ``story_id`` is the id of the story's first item.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from monitor.dedupe import DedupeConfig, StoryIndex, StoryItem
from monitor.normalize import canonical_url, html_to_text


def _text(obj: dict[str, object], field: str, lineno: int) -> str:
    value = obj.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"line {lineno}: field {field!r} must be a string")
    return value


def _published(obj: dict[str, object], lineno: int) -> datetime | None:
    raw = obj.get("published")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ValueError(f"line {lineno}: field 'published' must be an ISO-8601 string")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"line {lineno}: bad 'published' {raw!r}: {exc}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_line(line: str, lineno: int) -> StoryItem:
    """One JSONL line as a StoryItem; ``ValueError`` naming the line when it is bad."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"line {lineno}: expected a JSON object")
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)) or raw_id == "":
        raise ValueError(f"line {lineno}: missing or invalid 'id'")
    return StoryItem(
        key=str(raw_id),
        title=html_to_text(_text(obj, "title", lineno)),
        summary=html_to_text(_text(obj, "summary", lineno)),
        published=_published(obj, lineno),
        source=_text(obj, "source", lineno),
        url=canonical_url(_text(obj, "url", lineno)),
    )


def cluster_lines(
    lines: Iterable[str], config: DedupeConfig, index: StoryIndex | None = None
) -> Iterator[tuple[str, str]]:
    """Cluster JSONL entries in file order; yields ``(id, story_id)`` per non-blank line.

    Entries without ``published`` take the stream's time, the latest ``published`` seen so
    far in file order (in the daemon an undated entry takes the time it was first seen),
    or the first dated entry's time when none came before.
    """
    if index is None:
        index = StoryIndex(config)
    story_keys: list[str] = []  # story number -> id of its first item
    last: datetime | None = None
    pending: list[tuple[int, str]] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        pending.append((lineno, line))
    first_dated: datetime | None = None
    items: list[StoryItem] = []
    for lineno, line in pending:
        item = parse_line(line, lineno)
        if first_dated is None and item.published is not None:
            first_dated = item.published
        items.append(item)
    fallback = first_dated or datetime(2000, 1, 1, tzinfo=UTC)
    for item in items:
        # an undated item takes the stream's time: the latest time seen so far
        if item.published is not None and (last is None or item.published > last):
            last = item.published
        now = item.published or last or fallback
        decision = index.find(item, now=now)
        if decision.story_id is None:
            story = len(story_keys)
            story_keys.append(item.key)
        else:
            story = decision.story_id
        index.add(item, story, now=now)
        yield item.key, story_keys[story]
