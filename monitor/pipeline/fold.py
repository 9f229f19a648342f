"""New entries into stories: each finds its story in the index (or starts one), is
stored, and queues the alerts its matches call for. A batch runs as five named phases
over one :class:`Batch`, with a handful of batched statements in all (never several
round trips per entry)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.dedupe import StoryItem, is_development
from monitor.holds import hold_until
from monitor.match import Hit
from monitor.match.escalation import check
from monitor.match.schema import Escalation, Watchlist
from monitor.models import AlertKind, Entry, came_out
from monitor.pipeline.runtime import Runtime, alert_channel, slack_sink
from monitor.store.alerts import (
    held_until,
    insert_alerts,
    queue_followups,
    release_held,
    story_alerts,
)
from monitor.store.entries import insert_entries, outlets_of_stories
from monitor.store.matches import StoredMatch, matches_of_stories, save_matches
from monitor.store.messages import entries_by_id
from monitor.store.mutes import muted_stories, muted_terms
from monitor.store.stories import insert_stories, stories_by_id
from monitor.store.tables import StoryRow

if TYPE_CHECKING:
    from monitor.pipeline.ingest import Job

log = logging.getLogger("wirewatch.pipeline")

YIELD_EVERY = 64  # entries deduped and matched between two yields to the event loop


@dataclass
class Pending:
    """A new entry on its way in."""

    entry: Entry
    row: dict[str, Any]  # the entries row, inserted with plain Core
    story_id: int
    hits: list[Hit]
    entry_id: int = 0
    new_outlet: bool = False
    outlets: int = 0  # outlets carrying the story once this entry is in


@dataclass(slots=True)
class Parent:
    """A story's first alert on one sink: follow-ups thread under it."""

    id: int | None  # None while it is queued in this batch and not inserted yet
    channel: str
    # when it is due, while its watchlist holds it (quiet hours, a digest): its replies
    # wait as long (they fold into it when it goes out)
    held: datetime | None = None


@dataclass
class Batch:
    """One transaction's new entries, and what each phase learns about them."""

    rt: Runtime
    session: AsyncSession
    now: datetime
    pending: list[Pending] = field(default_factory=list)
    # stories this batch starts (rows to insert) and the known ones it touches
    new_stories: dict[int, dict[str, Any]] = field(default_factory=dict)
    stories: dict[int, StoryRow] = field(default_factory=dict)
    # each story's outlets, with when the outlet's first copy came out
    outlets: dict[int, dict[str, datetime]] = field(default_factory=dict)
    matches: dict[int, dict[str, StoredMatch]] = field(default_factory=dict)
    parents: dict[tuple[int, str, str], Parent] = field(default_factory=dict)
    # the headline each alerted story last announced (its card, or its last update)
    headlines: dict[int, str] = field(default_factory=dict)
    escalated: set[tuple[int, str]] = field(default_factory=set)  # (story, watchlist)
    # held parents a story's escalation releases (it breaks through quiet hours, digests)
    release: list[Parent] = field(default_factory=list)
    muted: set[int] = field(default_factory=set)  # stories muted from Slack
    muted_terms: set[tuple[str, str]] = field(default_factory=set)  # (watchlist, term)
    # alerts rows to insert, a follow-up with the parent it threads under
    alerts: list[tuple[dict[str, Any], Parent | None]] = field(default_factory=list)
    queued: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # per feed id
    spare_ids: list[int] = field(default_factory=list)

    async def story_id(self, e: Entry, left: int) -> int:
        """An id for a story ``e`` starts (ids are reserved a few at a time)."""
        if not self.spare_ids:
            self.spare_ids = await self.rt.ingest.story_ids.take(self.session, max(8, left))
        sid = self.spare_ids.pop(0)
        self.new_stories[sid] = _story_values(sid, e, self.now)
        return sid


async def store_new_entries(
    rt: Runtime,
    session: AsyncSession,
    fresh: list[tuple[Job, Entry]],
    now: datetime,
    stored: list[int],
) -> dict[int, int]:
    """Store new entries (of one or several polls), fold them into stories and queue
    alerts. Returns the alerts queued per feed id; the new entries' ids are added to
    ``stored``. Entries that matched but were older than max_age (not alerted) are
    counted on their poll's report (``too_old``; reset with the rest if the batch is
    retried)."""
    batch = Batch(rt, session, now, muted_terms=await muted_terms(session, now))
    await assign_stories(batch, fresh)
    await load_story_context(batch)
    await count_outlets(batch)
    stored.extend(await write_entries(batch))
    await queue_alerts(batch)
    return batch.queued


async def assign_stories(batch: Batch, fresh: list[tuple[Job, Entry]]) -> None:
    """Each entry's story from the index (or a new one), and its watchlist hits."""
    rt, now = batch.rt, batch.now
    for i, (job, e) in enumerate(fresh):
        feed_id = job.feed.id or 0
        if i and i % YIELD_EVERY == 0:
            # let the loop hand finished parses back and start new ones: the parse
            # workers would otherwise sit idle through a long batch
            await asyncio.sleep(0)
        item = StoryItem(
            key=f"{feed_id}:{e.guid}",
            title=e.title,
            summary=e.summary,
            published=e.published or now,
            source=e.source,
            url=e.link,
        )
        ready = job.prepared.get(e.guid) if job.prepared is not None else None
        story_id = rt.ingest.index.find(item, now, ready).story_id
        if story_id is None:
            story_id = await batch.story_id(e, len(fresh) - i)
        rt.ingest.index.add(item, story_id)
        hits = _unmuted(batch, _hits(rt, job, e, now))
        batch.pending.append(Pending(e, _entry_values(feed_id, e, now, story_id), story_id, hits))


def _hits(rt: Runtime, job: Job, e: Entry, now: datetime) -> list[Hit]:
    """The watchlists ``e`` matches (from the parse worker when it matched), none when
    it is older than max_age (counted on its poll: stored, not alerted)."""
    if job.hits is not None and e.guid in job.hits:
        hits: list[Hit] = list(job.hits[e.guid])
    else:
        hits = rt.matcher.match_entry(e)
    max_age = rt.max_age
    if max_age is None or e.published is None:
        return hits
    if e.published < now - timedelta(seconds=max_age):
        if hits:
            job.report.too_old += 1
        return []
    return hits


def _unmuted(batch: Batch, hits: list[Hit]) -> list[Hit]:
    """Hits whose terms are not all muted (a term muted from Slack stops alerting)."""
    if not batch.muted_terms:
        return hits
    return [h for h in hits if any((h.watchlist, t) not in batch.muted_terms for t in h.terms)]


async def load_story_context(batch: Batch) -> None:
    """What the database knows about the existing stories the batch touches: their
    rows, outlets, matches, first alerts (which replies thread under), the headline
    each last announced, their escalations and mutes."""
    session = batch.session
    old_ids = sorted({p.story_id for p in batch.pending} - set(batch.new_stories))
    batch.stories = await stories_by_id(session, old_ids)
    batch.outlets = await outlets_of_stories(session, old_ids)
    batch.matches = await matches_of_stories(session, old_ids)
    batch.muted = await muted_stories(session, old_ids, batch.now)
    announced: dict[int, tuple[int, str | None]] = {}  # story -> (entry, new headline)
    for aid, story, entry, watchlist, sink, channel, kind, detail in await story_alerts(
        session, old_ids
    ):
        if kind == AlertKind.NEW:
            batch.parents.setdefault((story, watchlist, sink), Parent(aid, channel))
            announced[story] = (entry, None)
        elif kind == AlertKind.UPDATE:
            announced[story] = (entry, json.loads(detail or "{}").get("new"))
        elif kind == AlertKind.ESCALATION:
            batch.escalated.add((story, watchlist))
    if _holds(batch.rt) and batch.parents:
        held = await held_until(session, [p.id or 0 for p in batch.parents.values()], batch.now)
        for parent in batch.parents.values():
            parent.held = held.get(parent.id or 0)
    titles = await entries_by_id(session, [e for e, new in announced.values() if new is None])
    for story, (entry, new) in announced.items():
        row = titles.get(entry)
        headline = new if new is not None else row.title if row is not None else None
        if headline:
            batch.headlines[story] = headline


async def count_outlets(batch: Batch) -> None:
    """Outlets per story, in arrival order: which entry brings a new outlet, and how
    many carry its story once it is in."""
    counts: dict[int, int] = {sid: st.source_count for sid, st in batch.stories.items()}
    for p in batch.pending:
        if p.story_id not in batch.stories and p.story_id not in batch.new_stories:
            # the index knew a story the database no longer has: start it again
            sid = (await batch.rt.ingest.story_ids.take(batch.session, 1))[0]
            batch.new_stories[sid] = _story_values(sid, p.entry, batch.now)
            p.story_id = p.row["story_id"] = sid
        outlets = batch.outlets.setdefault(p.story_id, {})
        p.new_outlet = p.entry.source not in outlets
        if p.new_outlet:
            outlets[p.entry.source] = came_out(p.entry.published, batch.now)
            counts[p.story_id] = counts.get(p.story_id, 0) + 1
        p.outlets = counts[p.story_id]
    for sid, st in batch.stories.items():
        st.source_count, st.updated_at = counts[sid], batch.now
        batch.session.add(st)
    for sid, values in batch.new_stories.items():
        values["source_count"] = counts[sid]


async def write_entries(batch: Batch) -> list[int]:
    """Insert the new stories and entries; the entries' new ids."""
    await insert_stories(batch.session, list(batch.new_stories.values()))
    ids = await insert_entries(batch.session, [p.row for p in batch.pending])
    for p in batch.pending:
        p.entry_id = ids[(p.row["feed_id"], p.row["guid"])]
    return list(ids.values())


async def queue_alerts(batch: Batch) -> None:
    """Matches and alerts: one alert per story per watchlist and sink when the story
    reaches the watchlist's ``min_sources``, then a follow-up per new outlet."""
    titles = {p.entry_id: p.entry.title for p in batch.pending}
    for p in batch.pending:
        matches = batch.matches.setdefault(p.story_id, {})
        change = _development(batch, p)
        if p.hits or ((p.new_outlet or change) and matches):
            batch.queued[p.row["feed_id"]] += _alerts_for(batch, p, matches, change, titles)
    new = await save_matches(
        batch.session, [m for ms in batch.matches.values() for m in ms.values()]
    )
    batch.rt.metrics.stage(
        entries=len(batch.pending),
        new_stories=len(batch.new_stories),
        matched=(m.watchlist for m in new),
        published=(p.entry.published for p in batch.pending),
        now=batch.now,
    )
    # the batch's new parents first (their ids are needed), then follow-ups
    made = await insert_alerts(
        batch.session, [row for row, parent in batch.alerts if parent is None]
    )
    for aid, story, watchlist, sink in made:
        parent = batch.parents.get((story, watchlist, sink))
        if parent is not None and parent.id is None:
            parent.id = aid
    follow = [{**row, "parent_id": parent.id} for row, parent in batch.alerts if parent is not None]
    # (an escalation of a story alerted in this batch links the alert inserted above)
    await queue_followups(batch.session, follow)
    await release_held(batch.session, [p.id for p in batch.release if p.id], batch.now)


def _holds(rt: Runtime) -> bool:
    """Whether any watchlist holds alerts (quiet hours, a digest)."""
    return any(w.quiet is not None or w.digest is not None for w in rt.matcher.watchlists.values())


def _due(wl: Watchlist, kind: AlertKind, now: datetime, parent: Parent | None = None) -> datetime:
    """When an alert of ``wl`` queued now is due: at once, or when its watchlist's
    quiet hours end or its digest goes out; a reply not before its held card."""
    when = hold_until(wl, kind, now)
    if parent is not None and parent.held is not None and kind.threaded:
        when = max(when, parent.held)
    return when


def _development(batch: Batch, p: Pending) -> tuple[str, str] | None:
    """(headline, new headline) when ``p`` is a copy that reports a development of its
    alerted story (new figures, a higher UPDATE n); the story's headline moves on."""
    headline = batch.headlines.get(p.story_id)
    if headline is None or p.story_id in batch.muted:
        return None
    # an "UPDATE n" counts from an outlet already carrying the story (its numbering)
    if not is_development(headline, p.entry.title, update_numbers=not p.new_outlet):
        return None
    batch.headlines[p.story_id] = p.entry.title
    return headline, p.entry.title


def _alerts_for(
    batch: Batch,
    p: Pending,
    matches: dict[str, StoredMatch],
    change: tuple[str, str] | None,
    titles: dict[int, str],
) -> int:
    """Record ``p``'s hits on its story's matches, and queue the alerts they call for:
    the first when the story reaches the watchlist's ``min_sources`` (``p.outlets``
    carry it now); then, in its thread, an update when ``p`` develops the story
    (``change``) or a follow-up for each new outlet; and an escalation when the story
    crosses the watchlist's ``escalate`` rule. A muted story gets neither replies nor
    escalations."""
    rt, now, story_id = batch.rt, batch.now, p.story_id
    for hit in p.hits:
        m = matches.get(hit.watchlist)
        if m is None:
            matches[hit.watchlist] = StoredMatch(
                None, story_id, p.entry_id, hit.watchlist, list(hit.terms), list(hit.words),
                False, created_at=now,
            )  # fmt: skip
        else:
            terms, words = _union(m.terms, hit.terms), _union(m.words, hit.words)
            if terms != m.terms or words != m.words:
                m.terms, m.words, m.dirty = terms, words, True
    queued = 0
    for name, m in matches.items():
        wl = rt.matcher.watchlists.get(name)
        if wl is None:
            continue
        sinks = _routes(rt, wl.sinks)
        if not m.alerted:
            if p.outlets >= max(1, wl.min_sources):
                m.alerted = m.dirty = True
                for sink in sinks:
                    made = Parent(None, alert_channel(rt.config, wl.channel, sink))
                    row = _alert_values(m, m.entry_id, sink, made.channel, AlertKind.NEW, now)
                    row["next_attempt_at"] = _due(wl, AlertKind.NEW, now)
                    if row["next_attempt_at"] > now:
                        # held: when the hold ends it goes out with the channel's
                        # other held cards, as one digest (monitor.outbox)
                        made.held = row["next_attempt_at"]
                        row["detail"] = json.dumps({"held": True})
                    batch.alerts.append((row, None))
                    batch.parents[(story_id, name, sink)] = made
                    queued += 1
                headline = titles.get(m.entry_id, p.entry.title)
                batch.headlines.setdefault(story_id, headline)
        elif story_id in batch.muted:
            continue
        elif (p.new_outlet or change) and wl.followups == "thread":
            kind = AlertKind.UPDATE if change else AlertKind.FOLLOWUP
            for sink in sinks:
                parent = batch.parents.get((story_id, name, sink))
                if parent is not None:
                    row = _alert_values(m, p.entry_id, sink, parent.channel, kind, now)
                    row["next_attempt_at"] = _due(wl, kind, now, parent)
                    if change:
                        row["detail"] = json.dumps({"old": change[0], "new": change[1]})
                    batch.alerts.append((row, parent))
                    queued += 1
        if wl.escalate is not None and m.alerted and p.new_outlet:
            queued += _escalate(batch, p, m, wl, wl.escalate, sinks)
    return queued


def _escalate(
    batch: Batch,
    p: Pending,
    m: StoredMatch,
    wl: Watchlist,
    rule: Escalation,
    sinks: list[str],
) -> int:
    """Queue the story's escalation (once per watchlist) when a new outlet makes
    ``rule.outlets`` outlets whose first copies came out within ``rule.within``."""
    key = (p.story_id, wl.name)
    if key in batch.escalated or p.story_id in batch.muted:
        return 0
    found = check(list(batch.outlets.get(p.story_id, {}).values()), rule)
    if not found.crossed:
        return 0
    batch.escalated.add(key)
    detail = json.dumps(
        {"rule": found.rule, "outlets": found.outlets, "span": found.span, "mention": rule.mention}
    )
    for sink in sinks:
        channel = alert_channel(batch.rt.config, rule.channel, sink)
        row = _alert_values(m, p.entry_id, sink, channel, AlertKind.ESCALATION, batch.now)
        row["detail"] = detail
        parent = batch.parents.get((p.story_id, wl.name, sink))
        batch.alerts.append((row, parent) if parent is not None else (row, None))
        if parent is not None and parent.held is not None:
            # a story that escalates is breaking: its held card goes out with the
            # escalation (which links its thread), quiet hours or digest
            parent.held = None
            batch.release.append(parent)
    return len(sinks)


def _entry_values(feed_id: int, e: Entry, now: datetime, story_id: int) -> dict[str, Any]:
    """The entries row of a new entry."""
    return {
        "feed_id": feed_id,
        "guid": e.guid,
        "link": e.link,
        "title": e.title,
        "summary": e.summary,
        "content": e.content,
        "author": e.author,
        "categories": "\n".join(e.categories),
        "source": e.source,
        "published": e.published,
        "seen_at": now,
        "story_id": story_id,
        "updates": 0,
    }


def _story_values(story_id: int, e: Entry, now: datetime) -> dict[str, Any]:
    """The stories row of a story that ``e`` starts (its outlet count is set later)."""
    return {
        "id": story_id,
        "title": e.title,
        "link": e.link,
        "source": e.source,
        "source_count": 0,
        "created_at": now,
        "updated_at": now,
    }


def _alert_values(
    m: StoredMatch, entry_id: int, sink: str, channel: str, kind: AlertKind, now: datetime
) -> dict[str, Any]:
    """An alerts row (outbox) for match ``m``."""
    return {
        "story_id": m.story_id,
        "entry_id": entry_id,
        "watchlist": m.watchlist,
        "sink": sink,
        "channel": channel,
        "kind": str(kind),
        "parent_id": None,
        "next_attempt_at": now,
        "created_at": now,
        "terms": json.dumps(m.terms),
        "words": json.dumps(m.words),
        "detail": None,
    }


def _union(old: list[str], new: Sequence[str]) -> list[str]:
    out = list(old)
    for v in new:
        if v not in out:
            out.append(v)
    return out


def _routes(rt: Runtime, wanted: Sequence[str]) -> list[str]:
    """Sinks for a watchlist: the configured ones it names (``slack`` covers the bot and
    the incoming webhook), or every configured sink. A watchlist that names only sinks
    that are not configured still alerts, on every configured sink, rather than lose it."""
    configured = list(rt.notifiers) or [slack_sink(rt.config) or "console"]
    if not wanted:
        return configured
    chosen = [s for s in configured if s.split("-")[0] in wanted]
    if not chosen:
        log.warning(
            "watchlist routes to %s, which is not configured; using %s",
            ", ".join(wanted),
            ", ".join(configured),
        )
    return chosen or configured


async def queue_retitles(
    rt: Runtime, session: AsyncSession, retitled: list[tuple[int, int, str, str]], now: datetime
) -> dict[int, int]:
    """Updates for stored copies their outlets retitled materially ((entry id, story id,
    old title, new title)): a reply in the thread of each message announcing the story,
    showing old → new. The retitle of the copy a card announced is also sent to the
    channel (``broadcast``): an edit in place would only show "(edited)". Returns the
    updates queued per entry id."""
    stories = sorted({story for _, story, _, _ in retitled})
    muted = await muted_stories(session, stories, now)
    parents: dict[int, list[tuple[int, int, str, str, str]]] = {}
    for aid, story, entry, watchlist, sink, channel, kind, _ in await story_alerts(
        session, stories
    ):
        if kind == AlertKind.NEW:
            parents.setdefault(story, []).append((aid, entry, watchlist, sink, channel))
    held: dict[int, datetime] = {}
    if _holds(rt):
        ids = [aid for ps in parents.values() for aid, *_ in ps]
        held = await held_until(session, ids, now)
    rows: list[dict[str, Any]] = []
    queued: dict[int, int] = defaultdict(int)
    for entry_id, story, old, new in retitled:
        if story in muted:
            continue
        for parent_id, parent_entry, watchlist, sink, channel in parents.get(story, ()):
            wl = rt.matcher.watchlists.get(watchlist)
            if wl is None or wl.followups != "thread":
                continue
            detail = {"old": old, "new": new, "broadcast": parent_entry == entry_id}
            parent = Parent(parent_id, channel, held.get(parent_id))
            m = StoredMatch(None, story, entry_id, watchlist, [], [], True)
            row = _alert_values(m, entry_id, sink, channel, AlertKind.UPDATE, now)
            row["parent_id"] = parent_id
            row["next_attempt_at"] = _due(wl, AlertKind.UPDATE, now, parent)
            row["detail"] = json.dumps(detail)
            rows.append(row)
            queued[entry_id] += 1
    await queue_followups(session, rows)
    return queued
