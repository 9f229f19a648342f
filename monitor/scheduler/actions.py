"""What the buttons on a card do (the clicks arrive over Slack Socket Mode,
``monitor.deliver.socket``):

* *Mute story*: a ``mutes`` row (kind ``story``) until the story's dedupe window has
  passed (``dedupe.window``, 48 h by default, from the click): no more thread replies
  and no escalation for it. Replies and escalations already queued in the outbox but
  not yet claimed by a worker are withdrawn in the same transaction (the log says how
  many). After the window a new copy starts a new story anyway.
* *Mute term 24h*: a ``mutes`` row (kind ``term``: the watchlist and the term) for 24
  hours: a story matched only by muted terms does not alert.
* *Acknowledge*: the card's alert records who and when (the first acknowledgement
  stands), and the card is re-rendered (``chat.update``) to show it.

A second click on a mute in force adds nothing. Each click is logged with the Slack
user who made it. Mutes are rows in the database: they survive a restart, and ingest
(``monitor.pipeline.fold``) honours them until they expire.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from monitor.models import DeskAction, DeskActionKind
from monitor.outbox import rerender_card
from monitor.pipeline.runtime import Runtime
from monitor.store.alerts import acknowledge, alerts_by_id, withdraw_queued_replies
from monitor.store.mutes import STORY, TERM, active_mute, add_mute
from monitor.store.tables import MuteRow

log = logging.getLogger("wirewatch.actions")

TERM_MUTE = timedelta(hours=24)


def _ids(action: DeskAction, **more: object) -> dict[str, object]:
    """The ids a log line about one click carries (``--log-format json``)."""
    return {
        "slack_user": action.user,
        "alert_id": action.alert_id,
        "story_id": action.story_id,
        **more,
    }


async def apply_action(rt: Runtime, action: DeskAction) -> None:
    """Carry out one click; the ack to Slack has already gone."""
    if action.kind == DeskActionKind.ACK:
        await _acknowledge(rt, action)
    else:
        await _mute(rt, action)


async def _mute(rt: Runtime, action: DeskAction) -> None:
    now = rt.clock()
    async with rt.sessions() as session:
        alert = None
        if action.alert_id is not None:
            alert = next(iter(await alerts_by_id(session, [action.alert_id])), None)
        if action.kind == DeskActionKind.MUTE_STORY:
            story_id = action.story_id or (alert.story_id if alert else None)
            if story_id is None:
                log.warning("Mute story from %s names no story; ignored", action.user)
                return
            kind, watchlist, term = STORY, None, None
            until = now + timedelta(seconds=rt.config.settings.dedupe.window)
            found = await active_mute(session, now, story_id=story_id)
            what = f"story {story_id}"
        else:
            story_id = action.story_id
            watchlist = action.watchlist or (alert.watchlist if alert else None)
            term = action.term
            if not watchlist or not term:
                log.warning("Mute term from %s names no watchlist term; ignored", action.user)
                return
            kind, until = TERM, now + TERM_MUTE
            found = await active_mute(session, now, watchlist=watchlist, term=term)
            what = f"term {term!r} of watchlist {watchlist!r}"
        if found is not None:
            log.info(
                "%s asked to mute %s: already muted (mute %s) until %s",
                action.user,
                what,
                found.id,
                found.expires_at,
                extra=_ids(action, mute_id=found.id),
            )
            return
        row = await add_mute(
            session,
            MuteRow(
                kind=kind,
                story_id=story_id,
                watchlist=watchlist,
                term=term,
                created_by=action.user,
                created_at=now,
                expires_at=until,
            ),
        )
        withdrawn = 0
        if kind == STORY and story_id is not None:
            # what fold queued before the click would still reach the channel otherwise
            withdrawn = await withdraw_queued_replies(session, story_id)
        await session.commit()
    log.info(
        "%s muted %s until %s (mute %s)%s",
        action.user,
        what,
        until.strftime("%Y-%m-%d %H:%M UTC"),
        row.id,
        f"; {withdrawn} queued replies or escalations withdrawn" if withdrawn else "",
        extra=_ids(action, mute_id=row.id),
    )


async def _acknowledge(rt: Runtime, action: DeskAction) -> None:
    if action.alert_id is None:
        log.warning("Acknowledge from %s names no alert; ignored", action.user)
        return
    async with rt.sessions() as session:
        row, changed = await acknowledge(session, action.alert_id, action.user, rt.clock())
        await session.commit()
    if row is None:
        log.warning(
            "Acknowledge from %s: no card for alert %s", action.user, action.alert_id,
            extra=_ids(action),
        )  # fmt: skip
        return
    if not changed:
        log.info(
            "%s acknowledged alert %s, already acknowledged by %s",
            action.user,
            action.alert_id,
            row.acked_by,
            extra=_ids(action, story_id=row.story_id),
        )
        return
    log.info(
        "%s acknowledged alert %s (story %s)",
        action.user,
        row.id,
        row.story_id,
        extra=_ids(action, story_id=row.story_id),
    )
    await rerender_card(rt, row.id or 0, row.sink)
