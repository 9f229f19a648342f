"""``wirewatch check``: validate the configuration without touching the database, the
network or Slack (what a deploy script runs before a restart)."""

from __future__ import annotations

from pathlib import Path

import typer

from monitor.cli.app import ConfigDir, Database, FeedsFile, WatchFile, app, load


@app.command(short_help="Validate the configuration.")
def check(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Validate the configuration: prints a summary, or every error (file:line) and exits 2.
    A valid configuration that probably does not do what was meant (no feeds, no
    watchlists, an interval under the minimum, alerts going to a channel nobody chose)
    gets a warning each."""
    cfg = load(config, feeds, watchlists, database)
    for warning in cfg.warnings():
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(cfg.summary())
