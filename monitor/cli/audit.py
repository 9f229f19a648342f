"""``audit``: read the Slack channels back and compare what they show with what the
outbox says it delivered (the comparison is in :mod:`monitor.cli.channel_audit`, which
is imported only when the command runs: it needs slack-sdk and the database).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.cli.app import (
    ConfigDir,
    Database,
    FeedsFile,
    WatchFile,
    app,
    load,
    require_database,
    run_coro,
)


@app.command(short_help="Compare what the Slack channels show with the outbox.")
def audit(
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="How far back: e.g. 24h, 7d.")
    ] = "24h",
    channel: Annotated[
        str | None, typer.Option("--channel", metavar="C", help="Only this channel.")
    ] = None,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Read each channel back (conversations.history and .replies) and list every story
    the outbox says is shown but the channel does not show, every story shown twice at
    top level, and every message whose metadata names alerts it does not show. Exits 1
    on any discrepancy (for cron), 2 when a channel cannot be read."""
    from monitor.cli.channel_audit import format_audit, run_audit
    from monitor.config import parse_duration
    from monitor.pipeline.runtime import open_runtime

    cfg = load(config, feeds, watchlists, database)
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        typer.echo(f"error: --since: {exc}", err=True)
        raise typer.Exit(2) from None
    require_database(cfg)
    start = datetime.now(UTC) - timedelta(seconds=3650 * 86400.0 if seconds is None else seconds)

    async def go() -> Any:
        async with open_runtime(cfg, start_pool=False) as rt:
            return await run_audit(rt, since=start, channel=channel)

    report = run_coro(go(), cfg.settings.database_url)
    typer.echo(format_audit(report))
    if report.errors:
        raise typer.Exit(2)
    if report.problems:
        raise typer.Exit(1)
