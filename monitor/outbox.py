"""Delivery of queued alerts: the outbox worker.

Rows go pending → sending → sent | failed. Each (sink, channel) is drained in id
order by its own task, so one failing channel never holds up another, and order is
kept per channel: a row waiting for a retry blocks the rows behind it in its channel.
A row its watchlist holds (quiet hours, a digest's schedule: due later and never
tried) blocks nothing: the channel's other rows go out past it, and when the hold
ends the cards it held go out together as one digest (see ``_held_together``).
A row found in ``sending`` (the process died mid-send) is reconciled against the
sink (Slack: ``conversations.history`` + message metadata) before it is sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.deliver.base import DeliveryResult, LookupFailed, Notifier
from monitor.deliver.slack import (
    DIGEST_ITEMS_PER_MESSAGE,
    error_hint,
    render_slack,
    render_slack_digest,
    render_update,
    rendered_hash,
)
from monitor.intervals import RETRY_AFTER_CAP_S
from monitor.models import AlertKind, AlertMessage, AlertState, SourceRef
from monitor.pipeline.runtime import Runtime
from monitor.store.alerts import (
    alerts_by_id,
    claim_alerts,
    count_sent_new,
    due_channels,
    mark_shown_in_parent,
    next_pending_at,
    parent_headlines,
    pending_by_other_sinks,
    pending_in_channel,
    release_held,
    stuck_sending,
)
from monitor.store.matches import first_matches
from monitor.store.messages import (
    NewMessage,
    alerts_in_order,
    digest_items,
    entries_by_id,
    record_messages,
    set_rendered,
    showing,
)
from monitor.store.stories import stories_sources
from monitor.store.tables import AlertRow

log = logging.getLogger("wirewatch.outbox")

RECONCILE_AFTER = 30.0  # seconds a row may sit in "sending" before it is presumed orphaned


@dataclass
class DeliveryReport:
    sent: int = 0  # alert rows delivered, ``folded`` included
    folded: int = 0  # of those, copies listed in their story's parent, not sent on their own
    failed: int = 0
    retried: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)


async def build_message(session: AsyncSession, rt: Runtime, alert: AlertRow) -> AlertMessage:
    """Everything a notifier needs for one alert, read fresh from the store."""
    return (await build_messages(session, rt, [alert]))[0]


async def build_messages(
    session: AsyncSession, rt: Runtime, alerts: Sequence[AlertRow]
) -> list[AlertMessage]:
    """``build_message`` for several alerts (a digest, follow-ups folded into one reply)
    with a handful of queries in all, not four per alert."""
    story_ids = sorted({a.story_id for a in alerts})
    parent_ids = sorted({a.parent_id for a in alerts if a.parent_id is not None})
    entries = await entries_by_id(session, [a.entry_id for a in alerts])
    matches = await first_matches(session, story_ids)
    sources = await stories_sources(session, story_ids)
    parents: dict[int, tuple[str | None, str]] = {}  # parent alert id -> (ts, headline)
    in_digest: set[int] = set()  # parents shown as a digest line
    parent_channels: dict[int, str] = {}  # (an escalation links its story's thread)
    if parent_ids:
        parents.update(await parent_headlines(session, parent_ids))
        # the message that shows the parent is where its copies thread (for a digest,
        # the part listing it)
        for pid, where in (await showing(session, parent_ids)).items():
            parents[pid] = (where.ts, parents.get(pid, (None, ""))[1])
            parent_channels[pid] = where.channel_id or where.channel
            if where.kind == "digest-part":
                in_digest.add(pid)
    out: list[AlertMessage] = []
    for alert in alerts:
        assert alert.id is not None
        entry = entries.get(alert.entry_id)
        if entry is None:
            raise LookupError(f"alert {alert.id}: entry {alert.entry_id} missing")
        match = matches.get((alert.story_id, alert.watchlist))
        parent_ts, parent_title = (
            parents.get(alert.parent_id, (None, "")) if alert.parent_id is not None else (None, "")
        )
        wl = rt.matcher.watchlists.get(alert.watchlist)
        detail = json.loads(alert.detail or "{}")
        change = (str(detail["old"]), str(detail["new"])) if "old" in detail else None
        out.append(
            AlertMessage(
                alert_id=alert.id,
                story_id=alert.story_id,
                watchlist=alert.watchlist,
                channel=alert.channel,
                severity=wl.severity if wl is not None else "info",
                title=entry.title,
                link=entry.link,
                source=entry.source,
                published=entry.published,
                summary=entry.summary,
                entry_id=alert.entry_id,
                matched_terms=tuple(json.loads(match.terms if match else alert.terms)),
                matched_words=tuple(json.loads(match.words if match else alert.words)),
                # a parent lists every outlet carrying its story; a follow-up is the one
                # new copy (folding several into one reply lists theirs, see _send)
                sources=[SourceRef(entry.source, entry.link, entry.title)]
                if alert.kind == AlertKind.FOLLOWUP
                else [
                    SourceRef(source=s, link=link, title=title, when=when)
                    for s, link, title, when in sources.get(alert.story_id, [])
                ],
                kind=AlertKind(alert.kind),
                thread_ts=parent_ts,
                parent_title=parent_title,
                parent_in_digest=alert.parent_id in in_digest,
                change=change,
                broadcast=bool(detail.get("broadcast")),
                rule=str(detail.get("rule") or ""),
                mention=str(detail.get("mention") or ""),
                parent_channel=parent_channels.get(alert.parent_id or 0),
                acked_by=alert.acked_by,
                acked_at=alert.acked_at,
                # the desk's buttons, on the bot's cards, when Socket Mode hears them
                actions=bool(rt.config.settings.slack.app_token) and alert.sink == "slack",
            )
        )
    return out


def _backoff(rt: Runtime, attempts: int, retry_after: float | None) -> float:
    if retry_after is not None:  # (a day at most: beyond that it is a bogus header)
        return min(max(0.0, retry_after), RETRY_AFTER_CAP_S)
    base = min(rt.config.settings.delivery.max_backoff, 2.0 ** min(attempts, 20))
    return float(base * rt.rng.uniform(0.5, 1.0))


async def reconcile(rt: Runtime, *, older_than: float = 0.0) -> int:
    """Resolve rows left in ``sending``: if the sink already shows the message
    (Slack: metadata with the alert id), mark it sent; otherwise queue it again."""
    now = rt.clock()
    fixed = 0
    async with rt.sessions() as session:
        for row in await stuck_sending(session, now - timedelta(seconds=older_than)):
            notifier = rt.notifiers.get(row.sink)
            ts = None
            if notifier is not None:
                msg = await build_message(session, rt, row)
                since = (row.sending_at or now) - timedelta(seconds=60)
                try:
                    ts = await notifier.find_sent(msg, since)
                except LookupFailed as exc:
                    if exc.permanent:
                        _check_failed(row, str(exc), now)
                        session.add(row)
                        fixed += 1
                    else:  # Slack unreachable or busy: ask again later, for as long
                        log.warning("alert %s: could not check the channel: %s", row.id, exc)
                    continue
                except Exception as exc:  # reconciliation must not stop delivery
                    log.warning("alert %s: could not check the channel history: %s", row.id, exc)
                    continue
            if ts:
                row.state, row.ts, row.sent_at = AlertState.SENT, ts, now
                rt.metrics.delivered(row.sink, queued=row.created_at, published=None, now=now)
                log.info(
                    "alert %s was already delivered before a restart (ts %s)",
                    row.id,
                    ts,
                    extra=_ids(row),
                )
            else:
                row.state, row.next_attempt_at = AlertState.PENDING, now
            session.add(row)
            fixed += 1
        await session.commit()
    return fixed


CHECK_TRIES = 3  # answered lookups that failed before a row in "sending" turns failed


def _check_failed(row: AlertRow, why: str, now: datetime) -> None:
    """A lookup Slack refused (a missing scope, an unknown method): resending blind
    could post the alert twice, so the row waits for the next check; after
    ``CHECK_TRIES`` it is failed with the reason and what to do, never left in
    ``sending`` for good."""
    row.check_failures += 1
    row.sending_at = now  # (the next check comes RECONCILE_AFTER from now)
    if row.check_failures < CHECK_TRIES:
        row.last_error = f"could not check whether the channel shows it: {why}"
        log.warning(
            "alert %s to %s %s: could not check whether the channel shows it (%d of %d): %s",
            row.id,
            row.sink,
            row.channel,
            row.check_failures,
            CHECK_TRIES,
            why,
        )
        return
    row.state = AlertState.FAILED
    row.last_error = (
        f"{why}; could not check {row.check_failures} times whether the channel shows it: "
        "fix that, look in the channel, then `wirewatch outbox retry` to send it (a second "
        "copy if it did arrive)"
    )
    log.error("alert %s to %s %s failed: %s", row.id, row.sink, row.channel, row.last_error)


async def _due_keys(rt: Runtime) -> list[tuple[str, str]]:
    now = rt.clock()
    async with rt.sessions() as session:
        return await due_channels(session, now, list(rt.notifiers))  # (see stranded())


def kick(rt: Runtime, keys: list[tuple[str, str]], report: DeliveryReport) -> None:
    """Make sure a drain task runs for each channel; never two for one channel in a
    process (two would send the same row twice)."""
    for key in keys:
        task = rt.delivery.channel_tasks.get(key)
        if task is None or task.done():
            task = asyncio.create_task(_channel_loop(rt, key, report), name=f"deliver {key}")
            rt.delivery.channel_tasks[key] = task


async def deliver_pending(rt: Runtime) -> DeliveryReport:
    """Send every alert that is due now, each channel by its own task, and wait until
    they are done (``wirewatch once``, tests). The daemon uses :func:`delivery_loop`."""
    report = DeliveryReport()
    await reconcile(rt, older_than=RECONCILE_AFTER)
    stalled: set[tuple[str, str]] = set()
    while True:
        # a channel whose drain finished must not wait for the slowest other channel:
        # look for newly due rows each time any drain ends; a channel that could not
        # move (its head waits for a retry or a parent) is not restarted in this call
        keys = [k for k in await _due_keys(rt) if k not in stalled]
        kick(rt, keys, report)
        running = {k: t for k, t in rt.delivery.channel_tasks.items() if not t.done()}
        if not running:
            return report
        done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
        for key, task in running.items():
            ended = task in done and not task.cancelled() and task.exception() is None
            if ended and not task.result():
                stalled.add(key)


async def delivery_loop(rt: Runtime, stop: asyncio.Event) -> None:
    """The daemon's delivery worker: wakes when ingest queues alerts (``rt.delivery.wakeup``)
    or at least every second for retries, and starts a drain per channel with due rows.
    Channels drain independently, so one slow or failing channel never delays another."""
    report = DeliveryReport()
    last_reconcile = 0.0
    loop = asyncio.get_running_loop()
    logged = (0, 0, 0)  # (sent, folded, failed) as last logged
    while not stop.is_set():
        if (report.sent, report.folded, report.failed) != logged:
            # what reached people, beside the "alerts queued" of the polls
            log.info(
                "delivered %d alerts (%d listed in their story's first alert), %d failed, "
                "since start",
                report.sent,
                report.folded,
                report.failed,
            )
            logged = (report.sent, report.folded, report.failed)
        try:
            if loop.time() - last_reconcile > 5:
                await reconcile(rt, older_than=RECONCILE_AFTER)
                last_reconcile = loop.time()
            kick(rt, await _due_keys(rt), report)
        except Exception:
            log.exception("delivery worker: will retry")
        report.errors.clear()  # (logged as they happen; kept, they would grow for months)
        rt.delivery.wakeup.clear()
        waiter = asyncio.ensure_future(rt.delivery.wakeup.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
    running = [t for t in rt.delivery.channel_tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=30)


async def _channel_loop(rt: Runtime, key: tuple[str, str], report: DeliveryReport) -> bool:
    """Drain one channel until nothing in it is due. False when it stopped without
    having worked through its queue (the head waits for a retry or a parent)."""
    while True:
        async with rt.sessions() as session:
            queue = await pending_in_channel(session, *key)
        now = rt.clock()
        live = [q for q in queue if not _held(q, now)]
        if not live:
            return True  # (what is held is due later: due_channels lists it then)
        if live[0].next_attempt_at > now:
            report.waiting += len(live)
            return False
        if not await _drain(rt, key, queue, rt.clock(), report):
            return False


def _paced(notifier: Notifier) -> bool:
    """Whether a sink is paced and its bursts digested (Slack's rate limits, a channel's
    readers). A terminal needs neither: ``paced = False`` on the notifier."""
    return bool(getattr(notifier, "paced", True))


async def _pace(rt: Runtime, key: tuple[str, str]) -> None:
    interval = rt.config.settings.delivery.per_channel_interval
    loop = asyncio.get_running_loop()
    last = rt.delivery.last_sent.get(key)
    if last is not None:
        delay = last + interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    rt.delivery.last_sent[key] = loop.time()


async def _recent_sent(rt: Runtime, key: tuple[str, str], now: datetime) -> int:
    window = timedelta(seconds=rt.config.settings.delivery.burst_window)
    async with rt.sessions() as session:
        return await count_sent_new(session, key[0], key[1], now - window)


async def _drain(
    rt: Runtime,
    key: tuple[str, str],
    queue: list[AlertRow],
    now: datetime,
    report: DeliveryReport,
) -> bool:
    """Send the channel's due rows in order. True when the queue was worked through
    (look again for newer rows); False when it must stop for now (a row waits for
    its retry or its parent, or the sink is not configured)."""
    notifier = rt.notifiers.get(key[0])
    if notifier is None:
        report.waiting += len(queue)
        return False
    delivery = rt.config.settings.delivery
    recent = await _recent_sent(rt, key, now)
    # follow-ups by parent, in queue order: finding what a parent folds in must not
    # scan the whole queue at every send (thousands of rows on a first run)
    by_parent: dict[int | None, list[AlertRow]] = defaultdict(list)
    for q in queue:
        if q.kind == AlertKind.FOLLOWUP:
            by_parent[q.parent_id].append(q)
    i = 0
    behind_held = False  # a due row skipped: it waits for its story's held card
    while i < len(queue):
        row = queue[i]
        if _held(row, rt.clock()):
            i += 1  # held for later by its watchlist: the rows behind it go on
            continue
        if row.next_attempt_at > rt.clock():
            report.waiting += len(queue) - i
            return False  # keep order: nothing behind a row that waits for its retry
        batch = [row]
        kind = AlertKind(row.kind)
        if kind != AlertKind.NEW and row.parent_id is not None:
            # a reply waits for its story's message; an escalation too (it links it)
            parent = await _parent(rt, row)
            parent_state = AlertState(parent.state) if parent is not None else None
            if parent is not None and _held(parent, rt.clock()):
                if kind == AlertKind.ESCALATION:
                    # escalations are never held: the story's card goes out now too
                    await _release(rt, parent)
                else:  # a reply of a held card waits with it (it folds into the card)
                    behind_held = True
                    i += 1
                    continue
            if parent_state in (AlertState.PENDING, AlertState.SENDING):
                report.waiting += len(queue) - i
                return False
            if parent_state == AlertState.FAILED and kind.threaded:
                await _finish(
                    rt,
                    [row],
                    DeliveryResult(ok=False, error="parent alert failed", permanent=True),
                    report,
                )
                i += 1
                continue
            while (
                kind == AlertKind.FOLLOWUP
                and i + len(batch) < len(queue)
                and queue[i + len(batch)].kind == AlertKind.FOLLOWUP
                and queue[i + len(batch)].parent_id == row.parent_id
                and not _held(queue[i + len(batch)], rt.clock())
                and len(batch) < 20
            ):
                batch.append(queue[i + len(batch)])
        elif kind == AlertKind.NEW and (together := _held_together(rt, row, queue[i + 1 :])):
            batch.extend(together)
        elif kind == AlertKind.NEW and recent >= delivery.burst_max and _paced(notifier):
            while (
                i + len(batch) < len(queue)
                and queue[i + len(batch)].kind == AlertKind.NEW
                and queue[i + len(batch)].next_attempt_at <= rt.clock()
                and len(batch) < 200
            ):
                batch.append(queue[i + len(batch)])
        # copies from other outlets queued before the parent went out are shown in
        # the parent itself (it lists every outlet carrying the story), not as replies
        # (a parent's follow-ups all come after it, so after the batch of new rows)
        folded = [q for b in batch if b.kind == AlertKind.NEW for q in by_parent.pop(b.id, ())]
        folded.sort(key=lambda q: q.id or 0)  # queue order: rows are loaded by id
        # (a batch of held cards is not always a run of the queue; _send may drop rows
        # another worker claimed: none of them is looked at again in this pass)
        gone = {q.id for q in batch} | {q.id for q in folded}
        ok = await _send(rt, notifier, key, batch, report, folded)
        if not ok:
            return False
        queue = queue[:i] + [q for q in queue[i:] if q.id not in gone]
        if row.kind == AlertKind.NEW:
            recent += len(batch)
    return not behind_held


def _held(row: AlertRow, now: datetime) -> bool:
    """Held by its watchlist (quiet hours, a digest's schedule) and not due yet: queued
    for later and never tried. A retry (attempts made) is not held: it keeps its
    channel's order."""
    return row.attempts == 0 and row.next_attempt_at > now


def _released(row: AlertRow, now: datetime) -> bool:
    """A card its watchlist held (``detail`` says so, see ``monitor.pipeline.fold``)
    that is due now."""
    if row.kind != AlertKind.NEW or row.next_attempt_at > now or not row.detail:
        return False
    return bool(json.loads(row.detail).get("held"))


HELD_DIGEST_MAX = 200  # cards one digest of held cards gathers (it posts in parts)


def _held_together(rt: Runtime, row: AlertRow, rest: list[AlertRow]) -> list[AlertRow]:
    """The cards that go out in one digest with card ``row`` (none: it goes alone or as
    the burst rule says). A watchlist with a ``digest`` schedule: every card of it due in
    the channel (its scheduled digest, or one a restart or a retry left behind). Cards
    held by quiet hours: the other held cards of the channel due now (those of
    watchlists without a digest), whichever watchlist held them. A digest of one card
    is that card."""
    now = rt.clock()
    wl = rt.matcher.watchlists.get(row.watchlist)
    if wl is not None and wl.digest is not None:
        same = [
            q
            for q in rest
            if q.kind == AlertKind.NEW and q.watchlist == row.watchlist and q.next_attempt_at <= now
        ]
        return same[: HELD_DIGEST_MAX - 1]
    if not _released(row, now):
        return []
    out = []
    for q in rest:
        other = rt.matcher.watchlists.get(q.watchlist)
        if _released(q, now) and (other is None or other.digest is None):
            out.append(q)
    return out[: HELD_DIGEST_MAX - 1]


async def _parent(rt: Runtime, row: AlertRow) -> AlertRow | None:
    if row.parent_id is None:
        return None
    async with rt.sessions() as session:
        found = await alerts_by_id(session, [row.parent_id])
    return found[0] if found else None


async def _release(rt: Runtime, row: AlertRow) -> None:
    """Make a held card due now (its story escalated; see ``monitor.pipeline.fold``)."""
    async with rt.sessions() as session:
        await release_held(session, [row.id or 0], rt.clock())
        await session.commit()
    row.next_attempt_at = rt.clock()


async def _send(
    rt: Runtime,
    notifier: Notifier,
    key: tuple[str, str],
    batch: list[AlertRow],
    report: DeliveryReport,
    folded: list[AlertRow] | None = None,
) -> bool:
    """Send one message for ``batch`` (one alert, a digest of several, or several
    follow-ups to one parent). Returns False when the channel must stop for now."""
    now = rt.clock()
    async with rt.sessions() as session:
        # claim the rows with one conditional UPDATE: only the caller that moves a row
        # from pending to sending may send it (no double send, even across processes)
        claimed_ids = await claim_alerts(session, [r.id or 0 for r in batch], now)
        await session.commit()
        claimed = [r for r in batch if r.id in claimed_ids]
        if not claimed:
            # someone else took them. ``batch`` is left whole: the caller moves past
            # its rows by its length (emptied, the caller would claim the same row
            # again and again, for ever)
            return True
        batch[:] = claimed
        msgs = await build_messages(session, rt, batch)
    msg = msgs[0]
    if len(msgs) > 1 and msg.kind == AlertKind.FOLLOWUP:
        msg.sources = [SourceRef(m.source, m.link, m.title) for m in msgs]
    elif len(msgs) > 1:
        msg.digest = msgs
    if _paced(notifier):
        await _pace(rt, key)
    try:
        result = await notifier.send(msg)
    except Exception as exc:  # a notifier bug must not lose the alert
        log.exception("notifier %s raised", notifier.name)
        result = DeliveryResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    views = _views(key, msg, batch, result)
    shown = {aid: view for view in views for aid in view.items}
    if result.ok or not shown:
        marked = await _finish(rt, batch, result, report, shown)
        _count(rt, [r for r in batch if r.id in marked], msgs, result)
    else:  # a digest that went out in part: its posted parts are shown, the rest is not
        posted = [r for r in batch if r.id in shown]
        marked = await _finish(rt, posted, _OK, report, shown)
        _count(rt, [r for r in posted if r.id in marked], msgs, _OK)
        rest = [r for r in batch if r.id not in shown]
        marked = await _finish(rt, rest, result, report)
        _count(rt, [r for r in rest if r.id in marked], msgs, result)
    # copies queued before their story went out are counted on its card or line (a
    # sink without message ids shows the whole batch when it reports ok)
    out = set(shown) if views else {r.id for r in batch} if result.ok else set()
    copies = [q for q in folded or () if q.parent_id in out]
    if views:
        views = [
            replace(v, copies=[q.id or 0 for q in copies if q.parent_id in v.items]) for v in views
        ]
        async with rt.sessions() as session:
            await record_messages(session, views, now)
            await session.commit()
    if copies:
        await _mark_folded(rt, copies, {a: v.ts for a, v in shown.items()}, report)
    if result.ok and msg.kind.threaded and batch[0].parent_id is not None:
        await _update_parent(rt, notifier, batch[0].parent_id)
    return result.ok or result.permanent


def _ids(row: AlertRow) -> dict[str, object]:
    """The ids a log line about one alert carries (``--log-format json``)."""
    return {"alert_id": row.id, "story_id": row.story_id, "entry_id": row.entry_id}


def _count(
    rt: Runtime, batch: list[AlertRow], msgs: list[AlertMessage], result: DeliveryResult
) -> None:
    """The outcome of one send in the metrics (``_finish`` has written it)."""
    if result.ok:
        now = rt.clock()
        published = {m.alert_id: m.published for m in msgs}
        for row in batch:
            queued, when = row.created_at, published.get(row.id or 0)
            rt.metrics.delivered(row.sink, queued=queued, published=when, now=now)
    elif result.permanent and not result.uncertain:
        for row in batch:
            rt.metrics.alerts_failed.labels(row.sink).inc()


_OK = DeliveryResult(ok=True)


def _views(
    key: tuple[str, str], msg: AlertMessage, batch: list[AlertRow], result: DeliveryResult
) -> list[NewMessage]:
    """The messages a send posted (``result.parts``: a sink with message ids) and the
    alerts each shows: a card, each part of a digest, or a thread reply."""
    if not result.parts:
        return []
    ids = [r.id or 0 for r in batch]
    common = NewMessage(key[0], key[1], result.channel, ts="", kind="", items=())
    if not msg.digest:  # a card, or a reply in its story's thread
        reply = msg.kind.threaded
        shape = "escalation" if msg.kind == AlertKind.ESCALATION else "card"
        return [
            replace(
                common,
                ts=result.parts[0],
                kind="thread-reply" if reply else shape,
                items=ids,
                parent_ts=msg.thread_ts if reply else None,
                rendered_hash=rendered_hash(*render_slack(msg)),
            )
        ]
    rendered = render_slack_digest(msg.digest)
    per = DIGEST_ITEMS_PER_MESSAGE
    order = [m.alert_id for m in msg.digest]
    return [
        replace(
            common,
            ts=ts,
            kind="digest-part",
            items=order[i * per : (i + 1) * per],
            group_ts=result.parts[0],
            part=i,
            parts=len(rendered),
            rendered_hash=rendered_hash(*rendered[i]),
        )
        for i, ts in enumerate(result.parts[: len(rendered)])
    ]


async def _finish(
    rt: Runtime,
    batch: list[AlertRow],
    result: DeliveryResult,
    report: DeliveryReport,
    shown: dict[int, NewMessage] | None = None,
) -> set[int]:
    """Write the outcome of one send; returns the ids it changed (not those another
    process settled meanwhile: a reconciliation that found the message already sent).
    ``shown``: the message showing each alert, whose ts the alert keeps."""
    if not batch:
        return set()
    now = rt.clock()
    marked: set[int] = set()
    async with rt.sessions() as session:
        for row in await alerts_by_id(session, [r.id or 0 for r in batch]):
            if row.state == AlertState.SENT:  # (reconciled by another node while this one sent it)
                continue
            marked.add(row.id or 0)
            if result.ok:
                # each alert keeps the ts of the message showing it (a digest's part)
                where = (shown or {}).get(row.id or 0)
                ts = where.ts if where is not None else result.ts
                row.state, row.ts, row.sent_at, row.last_error = AlertState.SENT, ts, now, None
                report.sent += 1
            elif result.uncertain:
                # the request may have reached Slack: reconcile against the channel
                # history before sending again (see reconcile())
                row.state, row.sending_at, row.last_error = AlertState.SENDING, now, result.error
                report.retried += 1
                log.warning(
                    "alert %s to %s %s: %s; outcome unknown, will check the channel before "
                    "resending",
                    row.id,
                    row.sink,
                    row.channel,
                    result.error,
                    extra=_ids(row),
                )
            elif result.permanent:
                row.state, row.last_error = AlertState.FAILED, result.error
                report.failed += 1
                why = error_hint(result.error or "")
                report.errors.append(f"alert {row.id} ({row.sink} {row.channel}): {why}")
                log.error(
                    "alert %s to %s %s failed permanently: %s (see `wirewatch outbox`)",
                    row.id,
                    row.sink,
                    row.channel or "",
                    why,
                    extra=_ids(row),
                )
            else:
                delay = _backoff(rt, row.attempts, result.retry_after)
                row.state, row.last_error = AlertState.PENDING, result.error
                row.next_attempt_at = now + timedelta(seconds=delay)
                report.retried += 1
                log.warning(
                    "alert %s to %s %s: %s; retry in %.0fs",
                    row.id,
                    row.sink,
                    row.channel,
                    result.error,
                    delay,
                    extra=_ids(row),
                )
            session.add(row)
        await session.commit()
    return marked


_FOLDED = "shown in the parent message (queued before it was sent)"


async def _mark_folded(
    rt: Runtime, rows: list[AlertRow], ts_of: dict[int, str], report: DeliveryReport
) -> None:
    """Copies counted on their story's message: sent, with that message's ts."""
    now = rt.clock()
    by_ts: dict[str | None, list[int]] = defaultdict(list)
    for r in rows:
        by_ts[ts_of.get(r.parent_id or 0)].append(r.id or 0)
    async with rt.sessions() as session:
        for ts, ids in by_ts.items():
            n = await mark_shown_in_parent(session, ids, ts, now, _FOLDED)
            report.sent += n
            report.folded += n
            if n:
                rt.metrics.alerts_sent.labels(rows[0].sink).inc(n)
        await session.commit()


async def _update_parent(rt: Runtime, notifier: Notifier, parent_id: int) -> None:
    """Re-render the message showing alert ``parent_id`` from everything it shows (a
    new copy changed its outlet count): a card stays a card, a digest part keeps every
    line. A message Wirewatch has no record of is left alone."""
    async with rt.sessions() as session:
        where = (await showing(session, [parent_id])).get(parent_id)
        if where is None or where.id is None:
            return  # posted before messages were recorded, or forgotten: never guess
        if where.kind == "card":
            rows = await alerts_in_order(session, [parent_id])
            msgs = await build_messages(session, rt, rows)
        else:
            items = await digest_items(session, where)
            rows = await alerts_in_order(session, [aid for _, aid in items])
            if len(rows) != len(items):
                return  # a line's alert is gone: re-rendering would drop it
            msgs = await build_messages(session, rt, rows)
    if not msgs:
        return
    msg = replace(msgs[0], digest=msgs if where.kind == "digest-part" else [])
    msg.channel = where.channel_id or where.channel
    try:
        result = await notifier.update(msg, where.ts, where.part)
    except Exception as exc:
        log.warning("could not update the message showing alert %s: %s", parent_id, exc)
        return
    if not result.ok:
        log.warning("could not update the message showing alert %s: %s", parent_id, result.error)
        return
    if msg.digest:
        text, blocks = render_slack_digest(msg.digest)[where.part]
    else:
        text, blocks = render_update(msg)
    async with rt.sessions() as session:
        await set_rendered(session, where.id, rendered_hash(text, blocks), rt.clock())
        await session.commit()


async def rerender_card(rt: Runtime, alert_id: int, sink: str) -> bool:
    """Re-render the message showing alert ``alert_id`` on ``sink`` (it was
    acknowledged: the card shows who and when), through the same path a new copy takes:
    a card stays a card, a digest a digest. False when the sink is not configured now."""
    notifier = rt.notifiers.get(sink)
    if notifier is None:
        return False
    await _update_parent(rt, notifier, alert_id)
    return True


async def stranded(rt: Runtime) -> dict[str, int]:
    """Pending alerts per sink that is not configured now (Slack credentials removed or
    switched from a webhook to a bot token): they wait, kept, until it is again."""
    async with rt.sessions() as session:
        return await pending_by_other_sinks(session, list(rt.notifiers))


async def next_due_in(rt: Runtime) -> float | None:
    """Seconds until the next pending alert of a configured sink is due (None when
    nothing is pending there but alerts held for later: quiet hours, a digest)."""
    async with rt.sessions() as session:
        when = await next_pending_at(session, list(rt.notifiers), held_after=rt.clock())
    if when is None:
        return None
    return max(0.0, (when - rt.clock()).total_seconds())
