"""``once``: one poll cycle for cron. Poll every feed, deliver what was queued (waiting
up to ``--deliver-timeout`` for retries), apply the daemon's retention, print what
happened on stderr and exit with a code a cron job can act on.

``--dry-run`` works on a copy of the SQLite state (so it does not alert again on what
was sent) and prints the alerts instead of sending them.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.app import (
    ConfigDir,
    Database,
    FeedsFile,
    LogFormat,
    LogLevel,
    MaxAge,
    WatchFile,
    app,
    load,
    no_moved_database,
    run_coro,
)
from monitor.cli.daemon import (
    Stopped,
    max_age_of,
    slack_token_problem,
    sole_user,
    start_line,
    stop_on_signals,
)
from monitor.cli.logs import secrets_of, setup_logging
from monitor.normalize import clean

if TYPE_CHECKING:
    from monitor.config import AppConfig
    from monitor.deliver.base import Notifier
    from monitor.outbox import DeliveryReport
    from monitor.pipeline import CycleReport


@app.command(short_help="Poll every feed once, deliver, exit.")
def once(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    max_age: MaxAge = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print alerts instead of sending; state untouched.")
    ] = False,
    deliver_timeout: Annotated[
        float,
        typer.Option(
            "--deliver-timeout",
            metavar="SECONDS",
            min=0,
            help="How long to keep retrying delivery before leaving alerts queued.",
        ),
    ] = 30.0,
    log_level: LogLevel = None,
    database: Database = None,
    log_format: LogFormat = "text",
) -> None:
    """Poll every feed once, deliver the alerts, exit. Exit 0 when the cycle ran, even if
    some feeds failed (they are listed); 1 when it could not run, or alerts were queued
    and none could be delivered; 2 on invalid configuration or a token Slack rejects;
    130/143 when stopped by SIGINT/SIGTERM (after cleaning up)."""
    stop_on_signals()
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        cfg = load(config, feeds, watchlists, database)
        setup_logging(log_level or "WARNING", log_format, secrets_of(cfg))
        age = max_age_of(max_age, cfg)
        from monitor.store.db import sqlite_path

        if dry_run:
            if sqlite_path(cfg.settings.database_url) is None:
                # a server database is not copied: say so, rather than let the dry run
                # look as if every alert it prints were new
                typer.echo(
                    "dry run: the state in this database is not copied (only a SQLite file "
                    "is); the dry run starts from an empty one, so it also shows alerts "
                    "already sent",
                    err=True,
                )
            tmp = tempfile.TemporaryDirectory(prefix="wirewatch-dry-")
            url = _dry_run_db(cfg.settings.database_url, Path(tmp.name))
            cfg = replace(cfg, settings=cfg.settings.model_copy(update={"database_url": url}))
            code = run_coro(_once(cfg, age, dry_run, deliver_timeout, True), url)
        else:
            no_moved_database(cfg)
            with sole_user(cfg.settings.database_url, "wirewatch once") as exclusive:
                code = run_coro(
                    _once(cfg, age, dry_run, deliver_timeout, exclusive),
                    cfg.settings.database_url,
                )
    except Stopped as stopped:  # before the event loop took the signals over
        raise typer.Exit(128 + stopped.signum) from None
    finally:
        if tmp is not None:
            tmp.cleanup()
    raise typer.Exit(code)


def _dry_run_db(url: str, tmpdir: Path) -> str:
    """A dry run works on a copy of the SQLite state (so it does not re-alert what was
    sent), or on an empty temporary database for other backends."""
    from monitor.store.db import sqlite_path

    target = tmpdir / "dry-run.db"
    src = sqlite_path(url)
    if src is not None and src.exists():
        shutil.copy2(src, target)
        for suffix in ("-wal", "-shm"):
            side = src.with_name(src.name + suffix)
            if side.exists():
                shutil.copy2(side, target.with_name(target.name + suffix))
    return f"sqlite:///{target}"


async def _once(
    cfg: AppConfig, age: float | None, dry_run: bool, deliver_timeout: float, exclusive: bool
) -> int:
    """``_once_cycle``, stopped cleanly by SIGTERM/SIGINT: the cycle is cancelled, which
    ends the polls in flight, writes back what finished, releases the leases and shuts
    the parse workers down; exit 128 + the signal's number."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stopped: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopped:
            stopped.append(signum)
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await _once_cycle(cfg, age, dry_run, deliver_timeout, exclusive)
    except asyncio.CancelledError:
        if not stopped:
            raise
        main.uncancel()
        typer.echo(
            f"stopped by {signal.Signals(stopped[0]).name}: what was stored is kept, alerts "
            "not delivered yet stay queued, feeds not polled are polled by the next run",
            err=True,
        )
        return 128 + stopped[0]


async def _once_cycle(
    cfg: AppConfig, age: float | None, dry_run: bool, deliver_timeout: float, exclusive: bool
) -> int:
    from monitor.deliver.console import ConsoleNotifier
    from monitor.outbox import deliver_pending, next_due_in
    from monitor.pipeline import poll_cycle
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import retain, startup

    notifiers: dict[str, Notifier] | None = (
        {"console": ConsoleNotifier(sys.stdout)} if dry_run else None
    )
    # lazy: parse workers and the story window are only set up once a feed has news
    async with open_runtime(cfg, max_age=age, notifiers=notifiers, start_pool=False) as rt:
        rt.exclusive = exclusive
        typer.echo(start_line(rt) + (" (a dry run, on a copy)" if dry_run else ""), err=True)
        problem = await slack_token_problem(rt)
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
            return 2
        if dry_run:
            # re-route everything queued in the copy to the console
            from monitor.store.alerts import redirect_all_alerts

            async with rt.sessions() as session:
                await redirect_all_alerts(session, "console")
        await startup(rt, lazy_index=True)
        report = await poll_cycle(rt, all_feeds=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deliver_timeout
        delivered = await deliver_pending(rt)
        while True:
            wait = await next_due_in(rt)
            if wait is None or loop.time() + wait > deadline:
                break
            await asyncio.sleep(wait + 0.05)
            more = await deliver_pending(rt)
            delivered.sent += more.sent
            delivered.folded += more.folded
            delivered.failed += more.failed
            delivered.errors += more.errors
        pending = await next_due_in(rt)
        if not dry_run:  # (cron users of once get the daemon's retention too)
            await retain(rt)
    return _print_outcome(report, delivered, pending, age, dry_run)


def _print_outcome(
    report: CycleReport,
    delivered: DeliveryReport,
    pending: float | None,
    age: float | None,
    dry_run: bool,
) -> int:
    """What the cycle did, on stderr: every feed that failed, was malformed, waits or was
    disabled, every alert that failed, then one summary line. Exit 1 when alerts were
    queued and not one of them could be delivered (a cron job must not look fine)."""
    for p in report.failed:
        typer.echo(f"feed failed: {p.feed} ({clean(p.url)}): {clean(p.error or '')}", err=True)
    for p in report.polls:
        if p.parse_error and not p.error:
            typer.echo(
                f"feed malformed (entries recovered): {p.feed}: {clean(p.parse_error)}", err=True
            )
    for name, due, error in report.waiting:
        typer.echo(
            f"feed waiting until {due:%Y-%m-%d %H:%M}Z (backoff or Retry-After): {name}: "
            f"{clean(error)}",
            err=True,
        )
    for name, why in report.gone:
        typer.echo(
            f"feed disabled: {name}: {clean(why.removesuffix(': disabled'))} "
            "(a new url for it in the config enables it again)",
            err=True,
        )
    for err in delivered.errors:
        typer.echo(f"alert failed: {clean(err)}", err=True)
    if report.too_old and age is not None:
        n = report.too_old
        typer.echo(
            f"{n} matching {'entry was' if n == 1 else 'entries were'} older than max_age "
            f"{_setting(age)} and not alerted (`--max-age none` to include them)"
            + ("" if dry_run else "; stored now, `wirewatch replay` shows what they match"),
            err=True,
        )
    typer.echo(
        f"polled {len(report.polls)} feeds ({len(report.failed)} failed"
        + (f", {len(report.waiting)} waiting" if report.waiting else "")
        + (f", {len(report.gone)} disabled" if report.gone else "")
        + f"): {report.new} new entries, {report.alerts} alerts queued, "
        f"{delivered.sent} delivered"
        + (f" ({delivered.folded} listed in their story's first alert)" if delivered.folded else "")
        + (", some alerts still queued for retry" if pending is not None else ""),
        err=True,
    )
    if delivered.sent == 0 and (pending is not None or delivered.failed):
        # queued alerts and not one of them out: a cron job must not look fine
        typer.echo(
            "error: no alert could be delivered"
            + (" (see `wirewatch outbox`)" if delivered.failed else "; they stay queued"),
            err=True,
        )
        return 1
    return 0


def _setting(seconds: float) -> str:
    """A duration as a setting is written: ``24h`` (not ``1d``), ``7d``, ``90m``, ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds >= 3 * size):
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"
