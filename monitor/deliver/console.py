"""Readable terminal alerts. Every piece of feed text is sanitised first: escape sequences,
control characters and bidi overrides are removed, so a hostile feed title can neither
recolour the terminal, move the cursor, set the window title nor reorder the line."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

from monitor.deliver.base import DeliveryResult
from monitor.deliver.diff import describe_change
from monitor.deliver.slack import when
from monitor.models import AlertKind, AlertMessage, SourceRef
from monitor.normalize import clean, truncate

__all__ = ["ConsoleNotifier", "render_console"]

_MARK = {"high": "[HIGH] ", "critical": "[CRITICAL] "}


def _t(value: str, limit: int = 300) -> str:
    return truncate(clean(value), limit)


def _link(url: str) -> str:
    # URLs are printed, not followed: sanitised like any other text and kept on one line.
    return _t(url, 500).replace(" ", "%20")


def _alert(msg: AlertMessage) -> str:
    words = [w for w in msg.matched_words if w and w not in msg.matched_terms]
    matched = ", ".join(_t(t, 100) for t in msg.matched_terms) or "-"
    if words:
        matched += " (as " + ", ".join(f'"{_t(w, 100)}"' for w in words) + ")"
    outlets = []
    for ref in msg.sources:
        name = _t(ref.source, 80)
        if name and name not in outlets:
            outlets.append(name)
    outlet = _t(msg.source, 100) or "-"
    others = [o for o in outlets if o != outlet]
    if others:
        outlet += f" (also: {', '.join(others[:10])}{', ...' if len(others) > 10 else ''})"
    lines = [
        f"{_MARK.get(msg.severity, '')}{_t(msg.title, 300) or '(untitled)'}",
        f"  outlet:    {outlet}",
        f"  published: {when(msg.published)}",
        f"  watchlist: {_t(msg.watchlist, 100)}",
        f"  matched:   {matched}",
        f"  link:      {_link(msg.link)}",
    ]
    summary = _t(msg.summary, 300)
    if summary:
        lines.append(f"  summary:   {summary}")
    if msg.entry_id is not None:  # (what `wirewatch explain --entry ID` takes)
        lines.append(f"  entry:     {msg.entry_id}")
    return "\n".join(lines)


def render_console(msg: AlertMessage) -> str:
    """The text ``ConsoleNotifier`` prints for ``msg`` (ends with a newline)."""
    if msg.digest:
        head = f"Digest: {len(msg.digest)} alerts"
        items = [
            f"  - {_t(m.title, 200)} | {_t(m.source, 80)} | {when(m.published)} | "
            f"{_t(m.watchlist, 60)}: {', '.join(_t(t, 60) for t in m.matched_terms) or '-'} | "
            f"{_link(m.link)}"
            for m in msg.digest
        ]
        return "\n".join([head, *items]) + "\n\n"
    if msg.kind == AlertKind.UPDATE:
        old, new = msg.change or (msg.parent_title, msg.title)
        line = f"  ↻ update from {_t(msg.source, 100) or 'an outlet'}: "
        line += _t(describe_change(old, new), 400)
        story = f"\n    (story: {_t(msg.parent_title, 200)})" if msg.parent_title else ""
        return f"{line} {_link(msg.link)}{story}\n"
    if msg.kind == AlertKind.ESCALATION:
        return f"!! ESCALATED ({_t(msg.rule, 100)}) " + _alert(msg).lstrip() + "\n\n"
    if msg.kind == AlertKind.FOLLOWUP:
        # a console has no threads: each copy gets a line, and the story they belong to
        # (the parent alert may have scrolled away hours ago) is named under them
        batched = len(msg.sources) > 1  # several copies folded into one reply
        refs = msg.sources if batched else [SourceRef(msg.source, msg.link, msg.title)]
        lines = [
            f"  ↳ also reported by {_t(r.source, 100) or 'another outlet'}: "
            + " ".join(part for part in (_t(r.title, 200), _link(r.link)) if part)
            for r in refs
        ]
        if msg.parent_title:
            lines.append(f"    (story: {_t(msg.parent_title, 200)})")
        return "\n".join(lines) + "\n"
    return _alert(msg) + "\n\n"


class ConsoleNotifier:
    """Prints alerts to a text stream (the default sink when no Slack is configured)."""

    name = "console"
    paced = False  # a terminal needs neither pacing nor digests (see outbox._paced)

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    async def send(self, msg: AlertMessage) -> DeliveryResult:
        try:
            self.stream.write(render_console(msg))
            self.stream.flush()
        except (OSError, ValueError) as exc:  # closed pipe / closed file
            return DeliveryResult(ok=False, error=f"console: {exc}"[:200])
        return DeliveryResult(ok=True)

    async def update(self, msg: AlertMessage, ts: str, part: int = 0) -> DeliveryResult:
        return DeliveryResult(ok=True)

    async def find_sent(self, msg: AlertMessage, since: datetime) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
