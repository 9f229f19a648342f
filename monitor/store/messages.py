"""What each posted message shows: ``messages`` and ``message_alerts``.

A message (a card, a digest part, a thread reply) is a view over the alerts it carries;
the outbox records the set when it posts and reads it back to re-render the whole
message for an edit, and ``wirewatch audit`` compares it with what the channel shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from monitor.store.tables import AlertRow, EntryRow, MessageAlertRow, MessageRow

TOP_LEVEL = ("card", "digest-part")


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message just posted, with the alerts it shows: ``items`` in order, and
    ``copies``, copies of those stories counted on it rather than shown on their own."""

    sink: str
    channel: str
    channel_id: str | None
    ts: str
    kind: str  # card | digest-part | thread-reply
    items: Sequence[int]
    copies: Sequence[int] = ()
    parent_ts: str | None = None
    group_ts: str | None = None
    part: int = 0
    parts: int = 1
    rendered_hash: str = ""


async def record_messages(
    session: AsyncSession, messages: Sequence[NewMessage], now: datetime
) -> None:
    """Store posted messages and what each shows (the caller commits). A message already
    recorded (same channel and ts: reconciliation found it again) gains the alerts."""
    for m in messages:
        row = (
            await session.exec(
                select(MessageRow).where(
                    MessageRow.sink == m.sink,
                    MessageRow.channel == m.channel,
                    MessageRow.ts == m.ts,
                )
            )
        ).first()
        if row is None:
            row = MessageRow(
                sink=m.sink,
                channel=m.channel,
                channel_id=m.channel_id,
                ts=m.ts,
                kind=m.kind,
                parent_ts=m.parent_ts,
                group_ts=m.group_ts,
                part=m.part,
                parts=m.parts,
                rendered_hash=m.rendered_hash,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
        assert row.id is not None
        have = set(
            (
                await session.exec(
                    select(MessageAlertRow.alert_id).where(MessageAlertRow.message_id == row.id)
                )
            ).all()
        )
        position = len(have)
        for role, ids in (("item", m.items), ("copy", m.copies)):
            for aid in ids:
                if aid in have:
                    continue
                have.add(aid)
                session.add(
                    MessageAlertRow(message_id=row.id, alert_id=aid, position=position, role=role)
                )
                position += 1


async def record_copies(session: AsyncSession, message_id: int, alert_ids: Sequence[int]) -> None:
    """Count copies on the message showing their story (the caller commits)."""
    have = set(
        (
            await session.exec(
                select(MessageAlertRow.alert_id).where(MessageAlertRow.message_id == message_id)
            )
        ).all()
    )
    position = len(have)
    for aid in alert_ids:
        if aid not in have:
            have.add(aid)
            session.add(
                MessageAlertRow(message_id=message_id, alert_id=aid, position=position, role="copy")
            )
            position += 1


async def showing(session: AsyncSession, alert_ids: Sequence[int]) -> dict[int, MessageRow]:
    """The top-level message (card or digest part) showing each of ``alert_ids`` as an
    item, for those that have one."""
    out: dict[int, MessageRow] = {}
    ids = sorted(set(alert_ids))
    for start in range(0, len(ids), 500):
        rows = await session.exec(
            select(MessageAlertRow.alert_id, MessageRow)
            .join(MessageRow, col(MessageRow.id) == col(MessageAlertRow.message_id))
            .where(col(MessageAlertRow.alert_id).in_(ids[start : start + 500]))
            .where(col(MessageAlertRow.role) == "item")
            .where(col(MessageRow.kind).in_(TOP_LEVEL))
        )
        for aid, msg in rows.all():
            out.setdefault(aid, msg)
    return out


async def digest_items(session: AsyncSession, head: MessageRow) -> list[tuple[int, int]]:
    """(part, alert id) of every line of the digest ``head`` belongs to, in order."""
    rows = await session.exec(
        select(MessageRow.part, MessageAlertRow.alert_id)
        .join(MessageAlertRow, col(MessageAlertRow.message_id) == col(MessageRow.id))
        .where(MessageRow.sink == head.sink, MessageRow.channel == head.channel)
        .where(MessageRow.group_ts == (head.group_ts or head.ts))
        .where(col(MessageAlertRow.role) == "item")
        .order_by(col(MessageRow.part), col(MessageAlertRow.position))
    )
    return [(part, aid) for part, aid in rows.all()]


async def set_rendered(
    session: AsyncSession, message_id: int, rendered_hash: str, now: datetime
) -> None:
    """After an edit: what the message shows now (the caller commits)."""
    await session.exec(
        update(MessageRow)
        .where(col(MessageRow.id) == message_id)
        .values(rendered_hash=rendered_hash, updated_at=now)
    )


async def forget_messages_of(session: AsyncSession, alert_ids: Sequence[int]) -> None:
    """Before alerts are deleted (retention): forget every message showing any of them,
    whole digests included, so that no later edit re-renders a message from a partial
    set (which would erase the lines of the deleted alerts from the channel)."""
    ids = sorted(set(alert_ids))
    for start in range(0, len(ids), 500):
        rows = (
            await session.exec(
                select(MessageRow.id, MessageRow.sink, MessageRow.channel, MessageRow.group_ts)
                .join(MessageAlertRow, col(MessageAlertRow.message_id) == col(MessageRow.id))
                .where(col(MessageAlertRow.alert_id).in_(ids[start : start + 500]))
            )
        ).all()
        gone = {mid for mid, _, _, _ in rows if mid is not None}
        for _, sink, channel, group in {(0, s, c, g) for _, s, c, g in rows if g}:
            more = await session.exec(
                select(MessageRow.id).where(
                    MessageRow.sink == sink,
                    MessageRow.channel == channel,
                    MessageRow.group_ts == group,
                )
            )
            gone.update(mid for mid in more.all() if mid is not None)
        if gone:
            await session.exec(
                delete(MessageAlertRow).where(col(MessageAlertRow.message_id).in_(sorted(gone)))
            )
            await session.exec(delete(MessageRow).where(col(MessageRow.id).in_(sorted(gone))))


async def sent_alerts(
    session: AsyncSession, *, sink: str, since: datetime, channel: str | None = None
) -> list[AlertRow]:
    """Alerts of ``sink`` (in ``channel``) delivered or failed since ``since``, for the
    audit: what the outbox says a channel shows, and what it says it gave up on."""
    query = (
        select(AlertRow)
        .where(AlertRow.sink == sink)
        .where(col(AlertRow.state).in_(["sent", "failed"]))
        .where(col(AlertRow.created_at) >= since)
        .order_by(col(AlertRow.id))
    )
    if channel is not None:
        query = query.where(AlertRow.channel == channel)
    return list((await session.exec(query)).all())


async def alerts_in_order(session: AsyncSession, alert_ids: Sequence[int]) -> list[AlertRow]:
    """The alerts rows of ``alert_ids``, in that order (those that still exist)."""
    found: dict[int, AlertRow] = {}
    ids = list(alert_ids)
    for start in range(0, len(ids), 500):
        rows = await session.exec(
            select(AlertRow).where(col(AlertRow.id).in_(ids[start : start + 500]))
        )
        found.update({r.id: r for r in rows.all() if r.id is not None})
    return [found[a] for a in ids if a in found]


async def entries_by_id(session: AsyncSession, entry_ids: Sequence[int]) -> dict[int, EntryRow]:
    """Entries by id (those that still exist)."""
    out: dict[int, EntryRow] = {}
    ids = sorted(set(entry_ids))
    for start in range(0, len(ids), 500):
        rows = await session.exec(
            select(EntryRow).where(col(EntryRow.id).in_(ids[start : start + 500]))
        )
        out.update({e.id: e for e in rows.all() if e.id is not None})
    return out
