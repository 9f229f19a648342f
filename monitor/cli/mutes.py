"""``mutes``: the stories and watchlist terms silenced from Slack (the card's *Mute
story* and *Mute term 24h* buttons), with who muted them and until when; ``mutes rm
ID`` lifts one before it expires."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.app import (
    AsJson,
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
    from monitor.config import AppConfig
    from monitor.store.tables import MuteRow

mutes_app = typer.Typer(help="Muted stories and terms.", invoke_without_command=True)
app.add_typer(mutes_app, name="mutes")


@mutes_app.callback()
def mutes_list(
    ctx: typer.Context,
    as_json: AsJson = False,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """List the mutes in force: what, who muted it, when, and until when."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = load(config, feeds, watchlists, database)
    require_database(cfg)
    rows = run_coro(_mutes(cfg), cfg.settings.database_url)
    if as_json:
        payload = {"mutes": [_as_dict(m) for m, _ in rows]}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not rows:
        typer.echo("no mutes in force")
        return
    typer.echo(f"{'id':>5} {'kind':<5} {'until':<17} {'by':<14} what")
    for m, title in rows:
        until = f"{m.expires_at:%Y-%m-%d %H:%M}Z" if m.expires_at else "never"
        what = (
            f"story {m.story_id}: {clip(title or '', 70)}"
            if m.kind == "story"
            else f"term {clip(m.term or '', 40)!r} of watchlist {clip(m.watchlist or '', 30)}"
        )
        typer.echo(f"{m.id:>5} {m.kind:<5} {until:<17} {clip(m.created_by, 14):<14} {what}")


@mutes_app.command("rm", short_help="Lift a mute.")
def mutes_rm(
    mute_id: Annotated[int, typer.Argument(metavar="ID", help="The mute's id (see `mutes`).")],
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Lift mute ID: the story or term alerts again from now on."""
    cfg = load(config, feeds, watchlists, database)
    require_database(cfg)
    if not run_coro(_remove(cfg, mute_id), cfg.settings.database_url):
        typer.echo(f"error: no mute {mute_id} (see `wirewatch mutes`)", err=True)
        raise typer.Exit(1)
    typer.echo(f"mute {mute_id} lifted")


def _as_dict(m: MuteRow) -> dict[str, object]:
    return {
        "id": m.id,
        "kind": m.kind,
        "story_id": m.story_id,
        "watchlist": m.watchlist,
        "term": m.term,
        "created_by": m.created_by,
        "created_at": m.created_at.isoformat(),
        "expires_at": m.expires_at.isoformat() if m.expires_at else None,
    }


async def _mutes(cfg: AppConfig) -> list[tuple[MuteRow, str | None]]:
    from monitor.store.mutes import list_mutes
    from monitor.store.stories import stories_by_id

    async with open_session(cfg) as session:
        rows = await list_mutes(session, datetime.now(UTC))
        stories = await stories_by_id(session, [m.story_id for m in rows if m.story_id])
    return [(m, clean(stories[m.story_id].title) if m.story_id in stories else None) for m in rows]


async def _remove(cfg: AppConfig, mute_id: int) -> bool:
    from monitor.store.mutes import remove_mute

    async with open_session(cfg) as session:
        gone = await remove_mute(session, mute_id)
        await session.commit()
    return gone
