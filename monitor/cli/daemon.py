"""``run``, the daemon, and what it shares with ``once``: both poll feeds and deliver
alerts, so both own their database while they run (a SQLite file is locked for one
process: each keeps story ids and the story index in memory), end through their
clean-up on SIGTERM/SIGINT (workers shut down, leases released) rather than mid-way,
print first where alerts go and which database is used (the first thing to check when
nothing arrives), and ask Slack whether it takes the bot token before sending anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
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
    MaxAge,
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


def max_age_of(value: str | None, cfg: AppConfig) -> float | None:
    from monitor.config import parse_duration

    if value is None:
        return cfg.settings.max_age
    try:
        return parse_duration(value)
    except ValueError as exc:
        typer.echo(f"error: --max-age: {exc}", err=True)
        raise typer.Exit(2) from None


class Stopped(BaseException):
    """SIGTERM/SIGINT before the event loop took the signals over (while importing and
    loading): the command ends as if it had been stopped a moment later."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop_on_signals() -> None:
    """From the first line of ``run`` and ``once``: SIGTERM (cron's ``timeout``, systemd,
    docker stop) and SIGINT end the command through its clean-up, never mid-way with its
    worker processes left behind (Python's default for SIGTERM is to die at once)."""

    def handler(signum: int, _frame: object) -> None:
        raise Stopped(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.command(short_help="Run the daemon: poll, alert, reload on change.")
def run(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    max_age: MaxAge = None,
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
    stop_on_signals()
    try:
        cfg = load(config, feeds, watchlists, database)
        setup_logging(log_level or cfg.settings.log_level, log_format, secrets_of(cfg))
        age = max_age_of(max_age, cfg)
        address = _http_address(http, cfg)
        no_moved_database(cfg)
        with sole_user(cfg.settings.database_url, "wirewatch run") as exclusive:
            code = run_coro(
                _daemon(
                    cfg, config, feeds, watchlists, database, age, exclusive, heartbeat, address
                ),
                cfg.settings.database_url,
            )
    except Stopped:  # stopped before the event loop took over the signals
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
    from monitor.pipeline.runtime import open_runtime
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
        daemon_log.info("%s", start_line(rt))
        problem = await slack_token_problem(rt)
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


def start_line(rt: Any) -> str:
    """Where alerts go and which database is used, in one line: the first thing to check
    when nothing arrives (``alerts → slack #alerts, #desk; db sqlite:////srv/ww.db``)."""
    from monitor.pipeline.runtime import alert_channel
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


async def slack_token_problem(rt: Any) -> str | None:
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
def sole_user(database_url: str, command: str) -> Iterator[bool]:
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
