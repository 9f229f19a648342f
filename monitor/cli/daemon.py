"""``run`` (the daemon) and ``once`` (one poll cycle, for cron): the two commands that
poll feeds and deliver alerts.

Both own their database while they run: a SQLite file is locked for one process (each
keeps story ids and the story index in memory), and SIGTERM/SIGINT end them through
their clean-up (workers shut down, leases released), never mid-way. Both print where
alerts go and which database is used first, the first thing to check when nothing
arrives, and ask Slack whether it takes the bot token before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli.app import (
    ConfigDir,
    Database,
    FeedsFile,
    LogFormat,
    LogLevel,
    WatchFile,
    app,
    load,
    no_moved_database,
    run_coro,
)
from monitor.cli.logs import secrets_of, setup_logging
from monitor.normalize import clean

if TYPE_CHECKING:
    from monitor.config import AppConfig
    from monitor.deliver.base import Notifier

log = logging.getLogger("wirewatch")


def _http_address(value: str | None, cfg: AppConfig) -> str:
    """``--http`` over settings ``http:``; empty: no endpoints."""
    from monitor.config import parse_http_address

    address = cfg.settings.http if value is None else value.strip()
    if address:
        try:
            parse_http_address(address)
        except ValueError as exc:
            typer.echo(f"error: --http: {exc}", err=True)
            raise typer.Exit(2) from None
    return address


def _max_age(value: str | None, cfg: AppConfig) -> float | None:
    from monitor.config import parse_duration

    if value is None:
        return cfg.settings.max_age
    try:
        return parse_duration(value)
    except ValueError as exc:
        typer.echo(f"error: --max-age: {exc}", err=True)
        raise typer.Exit(2) from None


class _Stopped(BaseException):
    """SIGTERM/SIGINT before the event loop took the signals over (while importing and
    loading): the command ends as if it had been stopped a moment later."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    """From the first line of ``run`` and ``once``: SIGTERM (cron's ``timeout``, systemd,
    docker stop) and SIGINT end the command through its clean-up, never mid-way with its
    worker processes left behind (Python's default for SIGTERM is to die at once)."""

    def handler(signum: int, _frame: object) -> None:
        raise _Stopped(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.command(short_help="Run the daemon: poll, alert, reload on change.")
def run(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="DURATION",
            help="Alert only on items newer than this (24h), or none for any age.",
        ),
    ] = None,
    log_level: LogLevel = None,
    database: Database = None,
    heartbeat: Annotated[
        Path | None,
        typer.Option(
            "--heartbeat",
            metavar="FILE",
            help="Touch FILE at every scheduler tick (for a container health check).",
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            help="Serve /healthz, /readyz and /metrics here (e.g. 127.0.0.1:9108).",
        ),
    ] = None,
    log_format: LogFormat = "text",
) -> None:
    """Run the daemon: poll feeds on schedule, deliver alerts, reload config on change or
    SIGHUP. SIGINT/SIGTERM finish what is in flight and exit 0."""
    _stop_on_signals()
    try:
        cfg = load(config, feeds, watchlists, database)
        setup_logging(log_level or cfg.settings.log_level, log_format, secrets_of(cfg))
        age = _max_age(max_age, cfg)
        address = _http_address(http, cfg)
        no_moved_database(cfg)
        with _sole_user(cfg.settings.database_url, "wirewatch run") as exclusive:
            code = run_coro(
                _daemon(
                    cfg, config, feeds, watchlists, database, age, exclusive, heartbeat, address
                ),
                cfg.settings.database_url,
            )
    except _Stopped:  # stopped before the event loop took over the signals
        raise typer.Exit(0) from None
    raise typer.Exit(code)


async def _daemon(
    cfg: AppConfig,
    config: Path,
    feeds: Path | None,
    watchlists: Path | None,
    database: str | None,
    age: float | None,
    exclusive: bool,
    heartbeat: Path | None = None,
    http: str = "",
) -> int:
    from monitor.config import load_config
    from monitor.runtime import open_runtime
    from monitor.scheduler import Daemon, Reloader

    # the signals are ours before the parse workers and the database exist: a stop asked
    # for while starting up ends the start-up cleanly (workers shut down, leases released)
    # instead of killing the process and leaving its workers running
    loop = asyncio.get_running_loop()
    stop, reload = asyncio.Event(), asyncio.Event()
    daemon: Daemon | None = None

    def on_stop() -> None:
        stop.set()
        if daemon is not None:
            daemon.request_stop()

    def on_reload() -> None:
        reload.set()
        if daemon is not None:
            daemon.request_reload()

    loop.add_signal_handler(signal.SIGINT, on_stop)
    loop.add_signal_handler(signal.SIGTERM, on_stop)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    daemon_log = logging.getLogger("wirewatch.daemon")
    async with open_runtime(cfg, max_age=age) as rt:
        rt.exclusive = exclusive
        if stop.is_set():
            daemon_log.info("stopped while starting up")
            return 0
        daemon_log.info("%s", _start_line(rt))
        problem = await _slack_token_problem(rt)
        if problem is not None:
            daemon_log.error("%s", problem)
            return 2
        reloader = Reloader(
            load=lambda: load_config(
                config, feeds_file=feeds, watchlists_file=watchlists, database_url=database
            ),
            files=list(cfg.files),
        )
        daemon = Daemon(rt, reloader, heartbeat, http=http)
        if reload.is_set():
            daemon.request_reload()
        await daemon.run()
    return 0


def _start_line(rt: Any) -> str:
    """Where alerts go and which database is used, in one line: the first thing to check
    when nothing arrives (``alerts → slack #alerts, #desk; db sqlite:////srv/ww.db``)."""
    from monitor.runtime import alert_channel
    from monitor.store.db import display_url

    cfg: AppConfig = rt.config
    sinks = []
    for name in rt.notifiers:
        if name != "slack":  # (an incoming webhook posts to its own fixed channel)
            sinks.append(name)
            continue
        channels = sorted(
            {
                alert_channel(cfg, w.channel, name)
                for w in cfg.watchlists
                if not w.sinks or "slack" in w.sinks
            }
            - {""}
        )
        sinks.append(" ".join([name, ", ".join(clean(c) for c in channels)]).strip())
    return f"alerts → {'; '.join(sinks) or 'nowhere'}; db {display_url(cfg.settings.database_url)}"


async def _slack_token_problem(rt: Any) -> str | None:
    """Ask Slack whether it takes the bot token (``auth.test``) before anything is sent:
    a wrong token would otherwise fail every alert, one a second. Slack unreachable is
    not a reason to stop (alerts queue until it answers)."""
    from monitor.deliver.slack import SlackBotNotifier

    for notifier in rt.notifiers.values():
        if not isinstance(notifier, SlackBotNotifier):
            continue
        result = await notifier.check_token()
        if result.permanent:
            return (
                f"Slack rejected the token ({clean(result.error or '?')}): check "
                "SLACK_BOT_TOKEN (alerts stay queued until it is fixed)"
            )
        if not result.ok:
            log.warning("could not reach Slack to check the token: %s", clean(result.error or ""))
    return None


@contextmanager
def _sole_user(database_url: str, command: str) -> Iterator[bool]:
    """SQLite is for one process: ``run`` and ``once`` each keep story ids and the story
    index in memory, so a second one on the same file would fold stories wrongly and
    could reuse story ids. While one runs it holds an exclusive lock on ``<db>.lock``
    (released by the OS however the process ends); another exits 1 saying who holds it.
    Read-only commands (feeds, outbox, explain, replay) take no lock.

    Yields whether this process is the database's only user (a SQLite file, locked):
    then leases a dead process left behind are its to take over."""
    from monitor.store.db import sqlite_path, sqlite_problem

    path = sqlite_path(database_url)
    if path is None:  # PostgreSQL: made for several processes
        yield False
        return
    import fcntl

    problem = sqlite_problem(path)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = lock_path.open("a+", encoding="utf-8")
    except OSError as exc:
        typer.echo(
            f"error: cannot use the database {path}: cannot write its lock file {lock_path}: "
            f"{exc.strerror}",
            err=True,
        )
        raise typer.Exit(1) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = clean(handle.read(200)) or "another process"
            typer.echo(
                f"error: {path} is in use by {holder}. A SQLite database is for one "
                "wirewatch process: stop that one first, or use PostgreSQL to run several.",
                err=True,
            )
            raise typer.Exit(1) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M}Z)\n")
        handle.flush()
        yield True


@app.command(short_help="Poll every feed once, deliver, exit.")
def once(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="DURATION",
            help="Alert only on items newer than this (24h), or none for any age.",
        ),
    ] = None,
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
    _stop_on_signals()
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        cfg = load(config, feeds, watchlists, database)
        setup_logging(log_level or "WARNING", log_format, secrets_of(cfg))
        age = _max_age(max_age, cfg)
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
            with _sole_user(cfg.settings.database_url, "wirewatch once") as exclusive:
                code = run_coro(
                    _once(cfg, age, dry_run, deliver_timeout, exclusive),
                    cfg.settings.database_url,
                )
    except _Stopped as stopped:  # before the event loop took the signals over
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
    from monitor.runtime import open_runtime
    from monitor.scheduler import retain, startup

    notifiers: dict[str, Notifier] | None = (
        {"console": ConsoleNotifier(sys.stdout)} if dry_run else None
    )
    # lazy: parse workers and the story window are only set up once a feed has news
    async with open_runtime(cfg, max_age=age, notifiers=notifiers, start_pool=False) as rt:
        rt.exclusive = exclusive
        typer.echo(_start_line(rt) + (" (a dry run, on a copy)" if dry_run else ""), err=True)
        problem = await _slack_token_problem(rt)
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
    from monitor.normalize import clean as safe

    for p in report.failed:
        typer.echo(f"feed failed: {p.feed} ({safe(p.url)}): {safe(p.error or '')}", err=True)
    for p in report.polls:
        if p.parse_error and not p.error:
            typer.echo(
                f"feed malformed (entries recovered): {p.feed}: {safe(p.parse_error)}", err=True
            )
    for name, due, error in report.waiting:
        typer.echo(
            f"feed waiting until {due:%Y-%m-%d %H:%M}Z (backoff or Retry-After): {name}: "
            f"{safe(error)}",
            err=True,
        )
    for name, why in report.gone:
        typer.echo(
            f"feed disabled: {name}: {safe(why.removesuffix(': disabled'))} "
            "(a new url for it in the config enables it again)",
            err=True,
        )
    for err in delivered.errors:
        typer.echo(f"alert failed: {safe(err)}", err=True)
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
