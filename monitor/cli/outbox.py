"""``outbox``: the alerts not delivered (pending, or failed with their reason), and
``outbox retry``, which puts one alert, or every failed one, back in the queue for the
running daemon (or the next ``once``) to send.

A retry sends an alert where the configuration sends it now, so that a channel
mistyped in the YAML, fixed and reloaded, does not fail the retry again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli.app import (
    ConfigDir,
    Database,
    FeedsFile,
    WatchFile,
    app,
    clip,
    load,
    open_session,
    require_database,
    run_coro,
)
from monitor.normalize import clean

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from monitor.config import AppConfig


outbox_app = typer.Typer(help="Pending and failed alerts.", invoke_without_command=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """List pending and failed alerts with their reasons."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = load(config, feeds, watchlists, database)
    require_database(cfg)
    rows = run_coro(_outbox_rows(cfg), cfg.settings.database_url)
    if not rows:
        typer.echo("outbox empty: nothing pending or failed")
        return
    from monitor.deliver.slack import error_hint

    typer.echo(
        f"{'id':>6} {'state':<8} {'kind':<6} {'tries':>5} {'sink':<13} {'channel':<16} "
        f"{'watchlist':<14} reason / title"
    )
    for alert, title in rows:
        # kind: "new" is a story's alert, "reply" another outlet's copy in its thread,
        # "update" a development in its thread, "escal" an escalation post
        kind = _KINDS.get(alert.kind, "new")
        typer.echo(
            f"{alert.id:>6} {alert.state:<8} {kind:<6} {alert.attempts:>5} {alert.sink:<13} "
            f"{clip(alert.channel, 16):<16} {clip(alert.watchlist, 14):<14} "
            f"{clip(error_hint(alert.last_error or ''), 70)} | {clip(title, 60)}"
        )


_KINDS = {"followup": "reply", "update": "update", "escalation": "escal"}


async def _outbox_rows(cfg: AppConfig) -> list[tuple[Any, str]]:
    from monitor.store.alerts import list_alerts_with_titles

    async with open_session(cfg) as session:
        return await list_alerts_with_titles(session, ["pending", "sending", "failed"])


@outbox_app.command("retry", short_help="Re-queue one alert, or every failed one.")
def outbox_retry(
    alert_id: Annotated[
        int | None, typer.Argument(metavar="[ID]", help="Alert id to re-queue.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Re-queue every failed alert.")] = False,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Re-queue one alert, or every failed alert; the running daemon sends them."""
    if (alert_id is None) == (not failed):
        which = "not both" if failed else "one of them"
        typer.echo(f"error: give either an alert ID or --failed, {which}", err=True)
        raise typer.Exit(2)
    cfg = load(config, feeds, watchlists, database)
    require_database(cfg)
    requeued, state = run_coro(_requeue(cfg, alert_id), cfg.settings.database_url)
    if alert_id is not None and not requeued:
        why = "there is no such alert" if state is None else f"it is {state}, not failed"
        typer.echo(f"error: alert {alert_id} not re-queued: {why}", err=True)
        raise typer.Exit(2)
    if not requeued:
        typer.echo("no failed alerts to re-queue")
        return
    then = "the running daemon, or the next `wirewatch once`, sends"
    if len(requeued) == 1:
        rid, sink, old, new = requeued[0]
        typer.echo(f"re-queued alert {rid} for {_where(sink, new, old)}; {then} it")
        return
    typer.echo(f"re-queued {len(requeued)} alerts; {then} them:")
    for (sink, old, new), n in sorted(Counter((k, o, w) for _, k, o, w in requeued).items()):
        typer.echo(f"  {n} for {_where(sink, new, old)}")


def _where(sink: str, channel: str, before: str) -> str:
    """Where a re-queued alert goes, in words: ``#alerts``, ``#news (moved from #typo)``
    or, for sinks without channels, the sink."""
    if not sink.startswith("slack"):
        return f"the {sink}"
    where = clean(channel) or "the webhook's channel"
    return where + (f" (moved from {clean(before)})" if before and before != channel else "")


async def _requeue(
    cfg: AppConfig, alert_id: int | None
) -> tuple[list[tuple[int, str, str, str]], str | None]:
    """(each alert re-queued as (id, sink, channel before, channel now); the state alert
    ``alert_id`` had before, None if it does not exist)."""
    from monitor.deliver.slack import REQUEUED
    from monitor.store.alerts import alert_by_id, requeue_alerts

    async with open_session(cfg) as session:
        state = None
        if alert_id is not None:
            row = await alert_by_id(session, alert_id)
            state = row.state if row is not None else None
        # the reason stays visible, marked as the one before the retry was asked for
        ids = await requeue_alerts(session, alert_id=alert_id, now=datetime.now(UTC), mark=REQUEUED)
        requeued = await _reroute(session, cfg, ids)
        await session.commit()
        return requeued, state


async def _reroute(
    session: AsyncSession, cfg: AppConfig, ids: list[int]
) -> list[tuple[int, str, str, str]]:
    """Send re-queued alerts where the config sends them now: a channel mistyped in the
    YAML (channel_not_found), fixed and reloaded, must not fail the retry again. A
    story's alert takes its watchlist's current channel; a reply, its parent's.

    An alert whose watchlist names no channel takes SLACK_CHANNEL when it is set where
    this command runs (a mistyped one, fixed); otherwise it keeps the channel it had,
    which came from the daemon's environment: a shell without it would have sent the
    alert to the default, or to no channel at all. Returns (id, sink, channel before,
    channel now) for each alert."""
    from monitor.store.alerts import alert_by_id, set_alert_channel
    from monitor.store.messages import alerts_in_order

    own = {w.name: w.channel for w in cfg.watchlists}
    rows = await alerts_in_order(session, ids)
    out: list[tuple[int, str, str, str]] = []
    for row in sorted(rows, key=lambda r: r.kind != "new"):  # parents first
        channel = row.channel
        if not row.sink.startswith("slack"):
            pass
        elif row.kind == "new":
            if own.get(row.watchlist):
                channel = own[row.watchlist] or channel
            elif row.watchlist in own and cfg.channel_from_env:
                channel = cfg.settings.slack.channel
        else:
            parent = await alert_by_id(session, row.parent_id) if row.parent_id else None
            if parent is not None:
                channel = parent.channel
        out.append((row.id or 0, row.sink, row.channel, channel))
        if channel != row.channel:
            set_alert_channel(session, row, channel)
    return sorted(out)
