"""Dry run of a watchlist change: which stored stories a candidate watchlist file would
alert on, compared with the live one. Pure: takes entries and matchers, returns a report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from monitor.match import Matcher
from monitor.match.escalation import EscalationCheck, check
from monitor.models import Entry, came_out
from monitor.normalize import clean


@dataclass(frozen=True, slots=True)
class StoredEntry:
    story_id: int
    entry: Entry
    seen_at: datetime | None = None  # when it was stored (caps its publication time)


@dataclass
class WatchlistReplay:
    name: str
    candidate: set[int] = field(default_factory=set)
    live: set[int] = field(default_factory=set)
    titles: dict[int, str] = field(default_factory=dict)
    # the candidate's escalate rule applied to each story it would alert on
    escalations: dict[int, EscalationCheck] = field(default_factory=dict)

    @property
    def escalated(self) -> list[int]:
        return sorted(s for s, c in self.escalations.items() if c.crossed)

    @property
    def added(self) -> list[int]:
        return sorted(self.candidate - self.live)

    @property
    def removed(self) -> list[int]:
        return sorted(self.live - self.candidate)

    def to_dict(self, samples: int = 5) -> dict[str, object]:
        return {
            "watchlist": self.name,
            "stories": len(self.candidate),
            "live_stories": len(self.live),
            "added": len(self.added),
            "removed": len(self.removed),
            "samples": [self.titles[s] for s in sorted(self.candidate)[:samples]],
            "added_samples": [self.titles[s] for s in self.added[:samples]],
            "removed_samples": [self.titles[s] for s in self.removed[:samples]],
            "escalated": len(self.escalated),
            "escalations": [
                {
                    "title": self.titles[s],
                    "at": c.at.isoformat() if c.at else None,
                    "outlets": c.best,
                    "span_s": c.span,
                    "why": c.describe(),
                }
                for s in self.escalated[:samples]
                if (c := self.escalations[s])
            ],
        }


def _alerting(
    matcher: Matcher, entries: list[StoredEntry], sources: Mapping[int, set[str]]
) -> dict[str, set[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for e in entries:
        for hit in matcher.match_entry(e.entry):
            wl = matcher.watchlists.get(hit.watchlist)
            need = max(1, wl.min_sources) if wl is not None else 1
            if len(sources.get(e.story_id, ())) >= need:
                out[hit.watchlist].add(e.story_id)
    return out


def replay(
    entries: Iterable[StoredEntry], candidate: Matcher, live: Matcher
) -> list[WatchlistReplay]:
    """Per watchlist (of either config): stories that would alert under the candidate
    and under the live config, one alert per story as the daemon sends them."""
    items = list(entries)
    sources: dict[int, set[str]] = defaultdict(set)
    titles: dict[int, str] = {}
    first: dict[int, dict[str, datetime]] = defaultdict(dict)  # story -> outlet -> time
    for e in items:
        sources[e.story_id].add(e.entry.source)
        titles.setdefault(e.story_id, e.entry.title)
        when = _time_of(e)
        if when is not None:
            seen = first[e.story_id]
            seen[e.entry.source] = min(seen.get(e.entry.source, when), when)
    cand = _alerting(candidate, items, sources)
    cur = _alerting(live, items, sources)
    names = list(candidate.watchlists) + [
        n for n in live.watchlists if n not in candidate.watchlists
    ]
    report = []
    for name in names:
        r = WatchlistReplay(name, cand.get(name, set()), cur.get(name, set()))
        r.titles = {s: titles[s] for s in r.candidate | r.live}
        wl = candidate.watchlists.get(name)
        if wl is not None and wl.escalate is not None:
            rule = wl.escalate
            r.escalations = {s: check(list(first[s].values()), rule) for s in r.candidate}
        report.append(r)
    return report


def _time_of(e: StoredEntry) -> datetime | None:
    """When a copy came out: published, never later than stored (as ingest judges it)."""
    if e.seen_at is None:
        return e.entry.published
    return came_out(e.entry.published, e.seen_at)


def format_replay(report: list[WatchlistReplay], days: float, entries: int) -> str:
    lines = [f"replayed {entries} entries stored in the last {days:g} days"]
    for r in report:
        d = r.to_dict()
        lines.append(
            f"\n{r.name}: {d['stories']} stories would alert "
            f"(live config: {d['live_stories']}; +{d['added']} / -{d['removed']})"
        )
        for title in d["samples"]:  # type: ignore[attr-defined]
            lines.append(f"    e.g. {clean(title)}")
        for title in d["added_samples"]:  # type: ignore[attr-defined]
            lines.append(f"  + new: {clean(title)}")
        for title in d["removed_samples"]:  # type: ignore[attr-defined]
            lines.append(f"  - no longer: {clean(title)}")
        if r.escalations:
            lines.append(f"  escalations: {len(r.escalated)} stories would escalate")
            for s in r.escalated[:5]:
                lines.append(f"  ! {clean(r.titles[s])}: {r.escalations[s].describe()}")
    return "\n".join(lines)
