"""``status``: what is running and whether it keeps up, for a person or (``--json``) a
monitoring script: the nodes alive, feeds due and overdue, the outbox's depth and the
age of its oldest alert, the last scheduler tick. Read-only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from monitor import __version__
from monitor.cli.app import (
    AsJson,
    ConfigDir,
    Database,
    FeedsFile,
    WatchFile,
    ago,
    app,
    dur,
    load,
    open_session,
    require_database,
    run_coro,
)
from monitor.normalize import clean

if TYPE_CHECKING:
    from monitor.config import AppConfig


@app.command(short_help="Nodes alive, feeds due and overdue, outbox, last tick.")
def status(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """What is running and whether it keeps up: the nodes alive (ticking, or holding
    feed leases), feeds due and overdue, the outbox's depth and its oldest alert's age,
    the last scheduler tick, the database and the version. Read-only."""
    cfg = load(config, feeds, watchlists, database)
    require_database(cfg)
    report = run_coro(_status(cfg), cfg.settings.database_url)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"wirewatch {report['version']}; database {report['database']}")
    now = datetime.now(UTC)
    alive = [n for n in report["nodes"] if n["alive"]]
    typer.echo(f"nodes alive: {len(alive)}")
    for n in alive:
        tick = n["last_tick"]
        ticked = ago(datetime.fromisoformat(tick), now) if tick else "no tick recorded"
        leases = f"{n['leases']} feed{'' if n['leases'] == 1 else 's'} leased"
        extra = f"  {n['http']}/metrics" if n["http"] else ""
        typer.echo(f"  {clean(n['owner'])}: last tick {ticked}, {leases}{extra}")
    f = report["feeds"]
    typer.echo(
        f"feeds: {f['enabled']} enabled, {f['due']} due, {f['overdue']} overdue "
        f"(due more than {dur(f['overdue_after_s'])} ago)"
    )
    o = report["outbox"]
    sinks = ", ".join(f"{k} {v}" for k, v in sorted(o["by_sink"].items()))
    oldest = "" if o["oldest_age_s"] is None else f", oldest {dur(o['oldest_age_s'])}"
    typer.echo(
        f"outbox: {o['queued']} queued{f' ({sinks})' if sinks else ''}{oldest}; "
        f"{o['failed']} failed"
    )
    last = report["last_tick"]
    typer.echo(f"last tick: {ago(datetime.fromisoformat(last), now) if last else 'never'}")


async def _status(cfg: AppConfig) -> dict[str, Any]:
    from monitor.health import overdue_after
    from monitor.store.db import display_url
    from monitor.store.feeds import held_leases
    from monitor.store.ops import nodes, queue, schedule, schema_revision

    now = datetime.now(UTC)
    tick = cfg.settings.poll.tick
    grace = overdue_after(tick)  # as /metrics counts them
    async with open_session(cfg) as session:
        revision = await schema_revision(session)
        rows = await nodes(session)
        leases = {owner: n for owner, n, _ in await held_leases(session, now)}
        sched = await schedule(session, now=now, grace=grace)
        q = await queue(session)
    alive_after = now - timedelta(seconds=max(3 * tick, 15.0))
    out_nodes: list[dict[str, Any]] = []
    for n in rows:
        ticked = n.last_tick if n.last_tick.tzinfo else n.last_tick.replace(tzinfo=UTC)
        out_nodes.append(
            {
                "owner": n.owner,
                "alive": n.stopped_at is None and (ticked >= alive_after or n.owner in leases),
                "last_tick": ticked.isoformat(),
                "started_at": n.started_at.isoformat(),
                "stopped_at": n.stopped_at.isoformat() if n.stopped_at else None,
                "leases": leases.get(n.owner, 0),
                "version": n.version,
                "http": n.http,
            }
        )
    for owner, n_leases in leases.items():  # holding leases with no tick recorded
        if owner not in {n.owner for n in rows}:
            out_nodes.append(
                {
                    "owner": owner,
                    "alive": True,
                    "last_tick": None,
                    "started_at": None,
                    "stopped_at": None,
                    "leases": n_leases,
                    "version": "",
                    "http": "",
                }
            )
    oldest = q.oldest
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    ticks = [n["last_tick"] for n in out_nodes if n["last_tick"]]
    return {
        "version": __version__,
        "database": display_url(cfg.settings.database_url),
        "schema": revision,
        "nodes": out_nodes,
        "feeds": {
            "enabled": sched.enabled,
            "due": sched.due,
            "overdue": sched.overdue,
            "overdue_after_s": grace,
        },
        "outbox": {
            "queued": q.depth,
            "by_sink": q.pending,
            "oldest_age_s": None
            if oldest is None
            else round(max(0.0, (now - oldest).total_seconds()), 1),
            "failed": q.failed,
        },
        "last_tick": max(ticks) if ticks else None,
    }
