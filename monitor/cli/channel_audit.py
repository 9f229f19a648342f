"""``wirewatch audit``: read a Slack channel back and compare it with the outbox.

The outbox saying ``sent`` is not the product; what the channel shows is. ``audit``
reads the channel (``conversations.history`` and ``conversations.replies``) and lists:

* ``missing``: a story the outbox says is visible that no top-level message shows;
* ``twice``: a story shown by more than one top-level message;
* ``mislabelled``: a message whose metadata names an alert it does not show;
* ``failed-visible``: an alert marked failed that the channel does show;
* ``copy-missing``: another outlet's copy, sent as a thread reply, not in its thread.

A message "shows" an alert when its metadata names the alert and its text or blocks
link the alert's entry (``<url|``), or, for an entry without a usable link, hold its
escaped title. :func:`compare` is the pure comparison; :func:`run_audit` reads the
store and the channel.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.deliver.base import LookupFailed
from monitor.deliver.slack import EVENT_TYPE, SlackBotNotifier, escape, safe_url
from monitor.pipeline.runtime import Runtime
from monitor.store.messages import alerts_in_order, entries_by_id, sent_alerts
from monitor.store.tables import AlertRow

FOLDED = "shown in the parent message"  # (outbox._mark_folded's mark)
# alerts shown by a top-level message of their own: a story's card or digest line, and
# an escalation (in the escalation channel); the others are replies in a story's thread
TOP_LEVEL = ("new", "escalation")


@dataclass(frozen=True, slots=True)
class Expected:
    """One alert as the outbox has it."""

    alert_id: int
    story_id: int
    watchlist: str
    kind: str  # new | followup | update | escalation
    state: str  # sent | failed
    title: str
    link: str
    source: str = ""
    parent_id: int | None = None
    folded: bool = False  # a copy counted on its story's message, not a reply of its own
    ts: str | None = None
    thread_ts: str | None = None  # a copy: the message showing its story


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: str  # missing | twice | mislabelled | failed-visible | copy-missing
    channel: str
    alert_id: int
    detail: str

    def line(self) -> str:
        return f"{self.kind:<14} {self.channel}  alert {self.alert_id}: {self.detail}"


@dataclass
class AuditReport:
    channels: dict[str, int] = field(default_factory=dict)  # channel -> messages read
    stories: int = 0
    copies: int = 0
    problems: list[Discrepancy] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # channels that could not be read


def marker(link: str, title: str) -> str:
    """What a rendered message holds when it shows an entry (see the module doc)."""
    url = safe_url(link)
    return f"<{url}|" if url else escape(title)


def _content(m: dict[str, Any]) -> str:
    return (m.get("text") or "") + json.dumps(m.get("blocks") or [], ensure_ascii=False)


_LINKS = re.compile(r"<([^|<>]+)\|")


def _ours(m: dict[str, Any]) -> bool:
    return (m.get("metadata") or {}).get("event_type") == EVENT_TYPE


def _named(m: dict[str, Any]) -> list[int]:
    """The alerts a message's metadata names (ours only)."""
    md = m.get("metadata") or {}
    if md.get("event_type") != EVENT_TYPE:
        return []
    payload = md.get("event_payload") or {}
    # a digest part names the alerts of its lines (its ``alert_id`` is the digest's)
    ids = payload.get("alert_ids") or [payload.get("alert_id")]
    out: list[int] = []
    for v in ids:
        try:
            n = int(v)
        except (TypeError, ValueError):
            continue
        if n not in out:
            out.append(n)
    return out


def compare(
    channel: str, shown: Sequence[dict[str, Any]], expected: Iterable[Expected]
) -> list[Discrepancy]:
    """Discrepancies between ``shown`` (top-level messages as Slack lists them, each with
    its ``replies``; ``older`` ones only hold replies) and the outbox's ``expected``."""
    alerts = {e.alert_id: e for e in expected}
    top_hits = _top_hits(shown, alerts)
    reply_hits = _reply_hits(shown, alerts)
    out = _mislabelled(channel, shown, alerts)
    for e in alerts.values():
        out.extend(_verdict(channel, e, top_hits.get(e.alert_id, []), reply_hits))
    return sorted(out, key=lambda d: (d.alert_id, d.kind))


def _top_hits(shown: Sequence[dict[str, Any]], alerts: dict[int, Expected]) -> dict[int, list[str]]:
    """The top-level messages (ts) showing each top-level alert. A story is shown
    wherever a message of ours links it, whatever the metadata says (except as another
    watchlist's alert of the same story, named so)."""
    by_marker: dict[str, list[Expected]] = defaultdict(list)
    for e in alerts.values():
        if e.kind in TOP_LEVEL:
            by_marker[marker(e.link, e.title)].append(e)
    plain = [m for m in by_marker if not m.startswith("<")]  # (entries without a link)
    hits: dict[int, list[str]] = defaultdict(list)
    for m in shown:
        # (a reply also sent to the channel is listed there too: it is a reply, shown in
        # its thread, not a second top-level message of its story)
        if m.get("older") or m.get("subtype") == "thread_broadcast":
            continue
        content = _content(m)
        named = _named(m)
        others = {(alerts[n].story_id, alerts[n].watchlist) for n in named if n in alerts}
        found = {f"<{u}|" for u in _LINKS.findall(content)}
        found.update(p for p in plain if p in content)
        if not (named or _ours(m)):
            continue
        for mk in found:
            for e in by_marker.get(mk, ()):
                rival = any(s == e.story_id and w != e.watchlist for s, w in others)
                if not rival or e.alert_id in named:
                    hits[e.alert_id].append(str(m.get("ts")))
    return hits


def _mislabelled(
    channel: str, shown: Sequence[dict[str, Any]], alerts: dict[int, Expected]
) -> list[Discrepancy]:
    """Messages and replies whose metadata names an alert they do not show."""
    out: list[Discrepancy] = []
    for m in shown:
        for msg, thread in [(m, None)] + [(r, str(m.get("ts"))) for r in m.get("replies") or []]:
            if msg is m and m.get("older"):
                continue
            content = _content(msg)
            for aid in _named(msg):
                claimed = alerts.get(aid)
                if claimed is None or marker(claimed.link, claimed.title) in content:
                    continue  # outside the window (not ours to check), or shown
                where = "a reply" if thread else "a message"
                out.append(
                    Discrepancy(
                        "mislabelled",
                        channel,
                        aid,
                        f"{where} (ts {msg.get('ts')}) names it in its metadata but does "
                        f"not show {claimed.title[:80]!r}",
                    )
                )
    return out


def _reply_hits(shown: Sequence[dict[str, Any]], alerts: dict[int, Expected]) -> set[int]:
    """The replies (copies, updates) found in their story's thread: a reply there links
    them (a reply may list several)."""
    threads = {
        str(m.get("ts")): " ".join(_content(r) for r in m.get("replies") or []) for m in shown
    }
    return {
        e.alert_id
        for e in alerts.values()
        if e.kind not in TOP_LEVEL
        and e.thread_ts
        and marker(e.link, e.title) in threads.get(e.thread_ts, "")
    }


def _verdict(channel: str, e: Expected, hits: list[str], in_thread: set[int]) -> list[Discrepancy]:
    """What is wrong with how the channel shows alert ``e``, if anything."""
    out: list[Discrepancy] = []
    if e.kind in TOP_LEVEL:
        if e.state == "sent" and not hits:
            out.append(
                Discrepancy(
                    "missing",
                    channel,
                    e.alert_id,
                    f"the outbox says {e.title[:80]!r} (story {e.story_id}, {e.watchlist}) "
                    f"is shown (ts {e.ts}); no message in the channel shows it",
                )
            )
        if len(hits) > 1:
            out.append(
                Discrepancy(
                    "twice",
                    channel,
                    e.alert_id,
                    f"{e.title[:80]!r} is shown at top level {len(hits)} times "
                    f"(ts {', '.join(hits)})",
                )
            )
    elif e.state == "sent" and not e.folded and e.alert_id not in in_thread:
        out.append(
            Discrepancy(
                "copy-missing",
                channel,
                e.alert_id,
                f"the copy from {e.source or 'another outlet'} ({e.title[:80]!r}) is not "
                f"in its story's thread (ts {e.ts})",
            )
        )
    if e.state == "failed" and (hits or e.alert_id in in_thread):
        out.append(
            Discrepancy(
                "failed-visible",
                channel,
                e.alert_id,
                f"marked failed, yet the channel shows {e.title[:80]!r}",
            )
        )
    return out


async def run_audit(rt: Runtime, *, since: datetime, channel: str | None = None) -> AuditReport:
    """Compare every Slack channel the outbox delivered to since ``since`` (or only
    ``channel``) with what it shows."""
    report = AuditReport()
    notifier = rt.notifiers.get("slack")
    if not isinstance(notifier, SlackBotNotifier):
        report.errors.append(
            "audit reads the channel back with the Slack bot token: set SLACK_BOT_TOKEN "
            "(an incoming webhook cannot read a channel)"
        )
        return report
    async with rt.sessions() as session:
        rows = await sent_alerts(session, sink="slack", since=since, channel=None)
        entry_ids = sorted({r.entry_id for r in rows})
        entries = await entries_by_id(session, entry_ids)
    wanted = None if channel is None else channel.lstrip("#")
    by_channel: dict[str, list[AlertRow]] = defaultdict(list)
    for r in rows:
        name = r.channel or notifier.default_channel
        if wanted is None or name.lstrip("#") == wanted:
            by_channel[name].append(r)
    parents = {r.id: r for r in rows if r.kind == "new"}
    older = {r.parent_id for r in rows if r.parent_id is not None and r.parent_id not in parents}
    if older:
        async with rt.sessions() as session:
            parents.update({r.id: r for r in await alerts_in_order(session, sorted(older))})
    for name, alerts in sorted(by_channel.items()):
        expected = []
        threads: set[str] = set()
        for a in alerts:
            e = entries.get(a.entry_id)
            if e is None or a.id is None:
                continue
            parent = parents.get(a.parent_id) if a.parent_id is not None else None
            folded = a.kind == "followup" and (a.last_error or "").startswith(FOLDED)
            expected.append(
                Expected(
                    alert_id=a.id,
                    story_id=a.story_id,
                    watchlist=a.watchlist,
                    kind=a.kind,
                    state=a.state,
                    title=e.title,
                    link=e.link,
                    source=e.source,
                    parent_id=a.parent_id,
                    folded=folded,
                    ts=a.ts,
                    thread_ts=parent.ts if parent is not None and a.kind not in TOP_LEVEL else None,
                )
            )
            if a.kind not in TOP_LEVEL and parent is not None and parent.ts:
                threads.add(parent.ts)  # (its story's message may be older than the window)
        try:
            shown = await notifier.read_channel(
                name, since - timedelta(minutes=5), threads=sorted(threads)
            )
        except LookupFailed as exc:
            report.errors.append(f"{name}: could not read the channel: {exc}")
            continue
        report.channels[name] = len(shown)
        report.stories += sum(1 for e in expected if e.kind in TOP_LEVEL)
        report.copies += sum(1 for e in expected if e.kind not in TOP_LEVEL)
        report.problems.extend(compare(name, shown, expected))
    return report


def format_audit(report: AuditReport) -> str:
    """What ``wirewatch audit`` prints: one line per discrepancy, then a summary."""
    lines = [d.line() for d in report.problems]
    lines += [f"error          {e}" for e in report.errors]
    read = ", ".join(f"{c} ({n} messages)" for c, n in sorted(report.channels.items()))
    checked = (
        f"{report.stories} stories and {report.copies} copies checked in "
        f"{len(report.channels)} channels" + (f": {read}" if read else "")
    )
    if report.problems:
        lines.append(f"audit: {len(report.problems)} discrepancies; {checked}")
    elif not report.errors:
        lines.append(f"audit: the channels show what the outbox says; {checked}")
    return "\n".join(lines)
