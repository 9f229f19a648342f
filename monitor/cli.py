"""The ``wirewatch`` command line. The only place (with :mod:`monitor.pipeline.runtime`) that
builds the engine, the HTTP client and the notifiers.

Exit codes: 0 ok; 1 could not run (database unreachable, internal error);
2 invalid configuration or usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from monitor import __version__
from monitor.normalize import clean, strip_unsafe

# the rest is imported by the commands that use it: `wirewatch --help` and `check` do not
# pay for SQLAlchemy, Alembic, aiohttp and slack-sdk
if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from monitor.config import AppConfig
    from monitor.deliver.base import Notifier
    from monitor.health import History
    from monitor.models import Entry

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Wirewatch: watch news feeds, fold wire copies into stories, alert Slack once per story.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

ConfigDir = Annotated[
    Path,
    typer.Option(
        "--config", metavar="DIR", help="Config directory (settings/feeds/watchlists YAML)."
    ),
]
FeedsFile = Annotated[
    Path | None,
    typer.Option(
        "--feeds", metavar="FILE", help="Feeds file: feeds YAML, OPML, or a plain list of URLs."
    ),
]
WatchFile = Annotated[
    Path | None, typer.Option("--watchlists", metavar="FILE", help="Watchlists YAML file.")
]
LogLevel = Annotated[
    str | None,
    typer.Option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR."),
]
LogFormat = Annotated[
    str,
    typer.Option(
        "--log-format", metavar="FORMAT", help="text, or json (one object per line, with ids)."
    ),
]
Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help="Database URL, over the settings and WIREWATCH_DATABASE_URL (a relative "
        "sqlite:///PATH is relative to the current directory).",
    ),
]

log = logging.getLogger("wirewatch")


class _SafeFormatter(logging.Formatter):
    """Log lines may quote feed-supplied text (titles, server reason phrases): strip
    escape sequences and control characters so nothing reaches the terminal raw."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_unsafe(super().format(record)).replace("\r", "")


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _LocalTimeFormatter(_SafeFormatter):
    """Log times as ISO 8601 with their UTC offset: a log read in another time zone, or
    beside Slack's times, is not an hour off."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        return when.isoformat(timespec="milliseconds")


# (a database URL's password; Slack tokens and webhook URLs wherever they appear)
_SECRET_SHAPES = re.compile(
    r"(?<=://)([^/:@\s]*):[^@/\s]+(?=@)|xox[abposr]-[0-9A-Za-z-]+"
    r"|https://hooks\.slack\.com/[^\s\"']+"
)


class _Redactor:
    """Secrets never reach the log: the configured ones by value, and anything shaped
    like a Slack token, a Slack webhook URL or a password in a URL."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len))[::-1]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _SECRET_SHAPES.sub(
            lambda m: f"{m.group(1)}:[redacted]" if m.group(1) is not None else "[redacted]", text
        )


class _JsonFormatter(logging.Formatter):
    """``--log-format json``: one object per line (``time`` with its UTC offset, ``level``,
    ``logger``, ``message``, and ``feed``, ``story_id``, ``alert_id``, ``entry_id`` where
    the line is about one)."""

    IDS = ("feed", "story_id", "alert_id", "entry_id")

    def __init__(self, redact: _Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        obj: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(strip_unsafe(record.getMessage())),
        }
        for key in self.IDS:
            value = getattr(record, key, None)
            if value is not None:
                obj[key] = value
        if record.exc_info:
            obj["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(obj, ensure_ascii=False, default=str)


class _TextFormatter(_LocalTimeFormatter):
    def __init__(self, redact: _Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


_LOG_FORMATS = ("text", "json")


def _secrets(cfg: AppConfig) -> tuple[str, ...]:
    s = cfg.settings
    return tuple(
        v for v in (s.slack.bot_token, s.slack.webhook_url, s.webhook.url, s.webhook.secret) if v
    )


def _setup_logging(level: str, fmt: str = "text", secrets: tuple[str, ...] = ()) -> None:
    if level.upper() not in _LEVELS:
        typer.echo(f"error: --log-level: {level!r} is not one of {', '.join(_LEVELS)}", err=True)
        raise typer.Exit(2)
    if fmt not in _LOG_FORMATS:
        typer.echo(f"error: --log-format: {fmt!r} is not one of text, json", err=True)
        raise typer.Exit(2)
    handler = logging.StreamHandler(sys.stderr)
    redact = _Redactor(secrets)
    handler.setFormatter(_JsonFormatter(redact) if fmt == "json" else _TextFormatter(redact))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # (slack_sdk logs each of its own HTTP retries at INFO; the outbox's warning says it)
    for noisy in ("apscheduler", "aiosqlite", "asyncio", "alembic", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(
    config: Path, feeds: Path | None, watchlists: Path | None, database: str | None = None
) -> AppConfig:
    from monitor.config import ConfigError, load_config

    try:
        return load_config(
            config, feeds_file=feeds, watchlists_file=watchlists, database_url=database
        )
    except ConfigError as exc:
        typer.echo("configuration errors:", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(2) from None


def _no_moved_database(cfg: AppConfig) -> None:
    """A relative SQLite path is relative to the config directory now; it was relative to
    the current directory. A database found where the old rule put it, and none where
    the new one does, is an install from before: starting on a new, empty database
    would alert again on everything. Exit 1 saying what to move where."""
    from monitor.store.db import sqlite_path

    if cfg.old_database is None:
        return
    typer.echo(
        f"error: no database at {sqlite_path(cfg.settings.database_url)}, but one at "
        f"{cfg.old_database}: a relative SQLite path is now relative to the config "
        "directory, not to the current one. Move the database (with its -wal and -shm "
        "files), or give an absolute path (sqlite:////PATH) in database_url",
        err=True,
    )
    raise typer.Exit(1)


def _run(coro: Coroutine[Any, Any, T], database_url: str | None = None) -> T:
    """Run ``coro``; a database or operating-system failure is one line naming what
    failed (never SQL or a traceback) and exit 1."""
    try:
        return asyncio.run(coro)
    except Exception as exc:
        from monitor.store.db import describe_error

        problem = describe_error(exc, database_url)
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from None


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


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(f"wirewatch {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


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
    cfg = _load(config, feeds, watchlists, database)
    for warning in cfg.warnings():
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(cfg.summary())


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
        cfg = _load(config, feeds, watchlists, database)
        _setup_logging(log_level or cfg.settings.log_level, log_format, _secrets(cfg))
        age = _max_age(max_age, cfg)
        address = _http_address(http, cfg)
        _no_moved_database(cfg)
        with _sole_user(cfg.settings.database_url, "wirewatch run") as exclusive:
            code = _run(
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
        cfg = _load(config, feeds, watchlists, database)
        _setup_logging(log_level or "WARNING", log_format, _secrets(cfg))
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
            code = _run(_once(cfg, age, dry_run, deliver_timeout, True), url)
        else:
            _no_moved_database(cfg)
            with _sole_user(cfg.settings.database_url, "wirewatch once") as exclusive:
                code = _run(
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
    from monitor.pipeline.runtime import open_runtime
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
            from sqlalchemy import update

            from monitor.store.tables import AlertRow

            async with rt.sessions() as session:
                await session.exec(update(AlertRow).values(sink="console"))
                await session.commit()
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


@app.command(short_help="Cluster entries into stories as the daemon does.")
def cluster(
    items: Annotated[
        Path,
        typer.Argument(
            metavar="ITEMS.jsonl", help="JSONL: id, title, summary, published, source, url"
        ),
    ],
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Cluster entries into stories with exactly the daemon's dedupe; prints id<TAB>story_id."""
    from monitor.cluster import cluster_lines
    from monitor.pipeline.runtime import dedupe_config

    cfg = _load_lenient(config, feeds, watchlists)
    dcfg = dedupe_config(cfg)
    try:
        stream = sys.stdin if str(items) == "-" else items.open(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: {items}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    out = sys.stdout
    try:
        for item_id, story_id in cluster_lines(stream, dcfg):
            # both columns are ids from the input file (a story is named by its first
            # item): cleaned alike, so no escape sequence or tab gets through and the
            # columns still join
            out.write(f"{clean(item_id)}\t{clean(story_id)}\n")
    except ValueError as exc:
        typer.echo(f"error: {items}: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _load_lenient(config: Path, feeds: Path | None, watchlists: Path | None) -> AppConfig:
    """Commands that need only settings work without feeds/watchlists files."""
    if not config.is_dir() and feeds is None and watchlists is None:
        from monitor.config import AppConfig, Settings

        return AppConfig(settings=Settings(), feeds=[], watchlists=[])
    return _load(config, feeds, watchlists)


@app.command(short_help="Show whether a text or stored entry matches, and why.")
def explain(
    text: Annotated[
        str | None, typer.Option("--text", metavar="TEXT", help="Text to test (as a title).")
    ] = None,
    entry: Annotated[
        int | None,
        typer.Option("--entry", metavar="ID", help="A stored entry's id (--text lists them)."),
    ] = None,
    summary: Annotated[
        str,
        typer.Option(
            "--summary", metavar="TEXT", help="Summary text; --text is then the title only."
        ),
    ] = "",
    feed: Annotated[
        str, typer.Option("--feed", metavar="NAME", help="Feed name for scope checks.")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Show, per watchlist, whether a text or stored entry matches and why. With --text,
    stored entries with that title are listed with their ids."""
    from monitor.match import compile_watchlists, explain_json, format_explanations

    if (text is None) == (entry is None):
        typer.echo("error: give exactly one of --text or --entry", err=True)
        raise typer.Exit(2)
    cfg = _load(config, feeds, watchlists, database)
    if feed and all(f.name != feed for f in cfg.feeds):
        typer.echo(f"error: --feed {feed!r}: no such feed in the config", err=True)
        raise typer.Exit(2)
    matcher = compile_watchlists(cfg.watchlists)
    head: list[str] = []
    about: dict[str, Any] = {}
    if text is not None:
        # the text stands for both title and summary unless a summary is given
        fields = {"title": text, "summary": summary or text, "feed": feed}
        tags = next((f.tags for f in cfg.feeds if f.name == feed), ())
        expls = matcher.explain(fields, feed=feed, feed_tags=tags)
        if _database_exists(cfg):
            found = _run(_entries_titled(cfg, text), cfg.settings.database_url)
            if found:
                head.append(
                    "stored with this title: "
                    + ", ".join(f"entry {i} ({clean(name)})" for i, name in found)
                    + " (wirewatch explain --entry ID)"
                )
    else:
        assert entry is not None
        _require_database(cfg)
        stored = _run(_stored(cfg, entry), cfg.settings.database_url)
        if stored is None:
            typer.echo(f"error: no entry with id {entry}", err=True)
            raise typer.Exit(2)
        outlet = f", {stored.source}" if stored.source and stored.source != stored.feed else ""
        head.append(f'entry {entry}: "{stored.title}" (feed {stored.feed}{outlet})')
        about = {"entry": {"id": entry, "title": stored.title, "feed": stored.feed}}
        expls = matcher.explain_entry(stored)
    if as_json:
        payload = {**about, **explain_json(expls)}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:  # what was found quotes the entry (or --text) as it is: made safe to print
        typer.echo(strip_unsafe("\n".join([*head, format_explanations(expls)])))


async def _stored(cfg: AppConfig, entry_id: int) -> Entry | None:
    from monitor.pipeline import stored_entry
    from monitor.store.tables import EntryRow, FeedRow

    async with _session(cfg) as session:
        row = await session.get(EntryRow, entry_id)
        if row is None:
            return None
        return stored_entry(row, await session.get(FeedRow, row.feed_id))


async def _entries_titled(cfg: AppConfig, title: str) -> list[tuple[int, str]]:
    """(id, feed name) of the stored entries titled ``title`` (newest first, at most 10)."""
    from sqlmodel import col, select

    from monitor.store.tables import EntryRow, FeedRow

    async with _session(cfg) as session:
        rows = await session.exec(
            select(EntryRow.id, FeedRow.name)
            .join(FeedRow, col(FeedRow.id) == col(EntryRow.feed_id))
            .where(col(EntryRow.title) == title.strip())
            .order_by(col(EntryRow.id).desc())
            .limit(10)
        )
        return [(int(i or 0), name) for i, name in rows.all()]


@app.command(short_help="Nodes alive, feeds due and overdue, outbox, last tick.")
def status(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What is running and whether it keeps up: the nodes alive (ticking, or holding
    feed leases), feeds due and overdue, the outbox's depth and its oldest alert's age,
    the last scheduler tick, the database and the version. Read-only."""
    cfg = _load(config, feeds, watchlists, database)
    _require_database(cfg)
    report = _run(_status(cfg), cfg.settings.database_url)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"wirewatch {report['version']}; database {report['database']}")
    now = datetime.now(UTC)
    alive = [n for n in report["nodes"] if n["alive"]]
    typer.echo(f"nodes alive: {len(alive)}")
    for n in alive:
        tick = n["last_tick"]
        ticked = _ago(datetime.fromisoformat(tick), now) if tick else "no tick recorded"
        leases = f"{n['leases']} feed{'' if n['leases'] == 1 else 's'} leased"
        extra = f"  {n['http']}/metrics" if n["http"] else ""
        typer.echo(f"  {clean(n['owner'])}: last tick {ticked}, {leases}{extra}")
    f = report["feeds"]
    typer.echo(
        f"feeds: {f['enabled']} enabled, {f['due']} due, {f['overdue']} overdue "
        f"(due more than {_dur(f['overdue_after_s'])} ago)"
    )
    o = report["outbox"]
    sinks = ", ".join(f"{k} {v}" for k, v in sorted(o["by_sink"].items()))
    oldest = "" if o["oldest_age_s"] is None else f", oldest {_dur(o['oldest_age_s'])}"
    typer.echo(
        f"outbox: {o['queued']} queued{f' ({sinks})' if sinks else ''}{oldest}; "
        f"{o['failed']} failed"
    )
    last = report["last_tick"]
    typer.echo(f"last tick: {_ago(datetime.fromisoformat(last), now) if last else 'never'}")


async def _status(cfg: AppConfig) -> dict[str, Any]:
    from monitor.health import overdue_after
    from monitor.store.db import display_url
    from monitor.store.feeds import held_leases
    from monitor.store.ops import nodes, queue, schedule, schema_revision

    now = datetime.now(UTC)
    tick = cfg.settings.poll.tick
    grace = overdue_after(tick)  # as /metrics counts them
    async with _session(cfg) as session:
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


feeds_app = typer.Typer(
    help="Feed health; add feeds; OPML import/export.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(feeds_app, name="feeds")


@feeds_app.callback()
def feeds_health(
    ctx: typer.Context,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Print the health of every feed: last success, last error, failures, interval.

    States: ok, retrying (failed fewer than health.failures times in a row), failing
    (that many or more), silent (far longer than its usual cadence without a new item),
    moved (a 301 took it to a URL the feeds file does not give yet), disabled (in the
    config, or by a 410 Gone), new (never polled yet), removed (no longer in the config;
    its history stays). The daemon tells the ops channel when a feed turns failing,
    silent, disabled or moved, and when it recovers. Read-only: the config given is compared
    with the database, not written into it."""
    if ctx.invoked_subcommand is not None:
        return
    from monitor.health import feed_state, per_day, silent

    cfg = _load(config, feeds, watchlists, database)
    _require_database(cfg)
    rows, history, leases = _run(_feed_rows(cfg), cfg.settings.database_url)
    now = datetime.now(UTC)
    configured = {f.name: f for f in cfg.feeds}
    header = (
        f"{'feed':<24} {'state':<9} {'last ok':>9} {'fails':>5} {'every':>7} {'entries':>7}"
        f" {'/day':>6}  last error"
    )
    typer.echo(header)
    for r in rows:
        h = history.get(r.id) if r.id is not None else None
        f = configured.get(r.name)
        quiet = h is not None and silent(h, now)
        state = feed_state(r, f, quiet, cfg.settings.health.failures)
        state = "disabled" if state == "off" else state
        every = r.current_interval_s or (f.interval if f is not None else None)
        typer.echo(
            f"{_clip(r.name, 24):<24} {state:<9} {_ago(r.last_success, now):>9} "
            f"{r.consecutive_failures:>5} {_dur(every):>7} {r.entries_seen:>7} "
            f"{per_day(r, h, now):>6}  "
            f"{_clip(r.disabled_reason or r.last_error or '', 80)}"
        )
    from monitor.scheduler import lease_note

    for owner, n, until in leases:  # what no other process may poll before then
        typer.echo(clean(lease_note(owner, n, until)))


async def _feed_rows(
    cfg: AppConfig,
) -> tuple[list[Any], dict[int, History], list[tuple[str, int, datetime]]]:
    """Every feed of the config (a configured feed the database has not seen yet as a
    row of its own, never stored) and every stored feed the config no longer has, by
    name; with their recent history; and the leases held now (owner, feeds, until)."""
    from sqlmodel import select

    from monitor.store.feeds import held_leases
    from monitor.store.history import feed_history
    from monitor.store.tables import FeedRow

    now = datetime.now(UTC)
    async with _session(cfg) as session:
        stored = {r.name: r for r in (await session.exec(select(FeedRow))).all()}
        history = await feed_history(session, list(stored.values()), now)
        leases = await held_leases(session, now)
    rows = dict(stored)
    for f in cfg.feeds:
        if f.name not in rows:
            rows[f.name] = FeedRow(
                name=f.name, url=f.url, source=f.outlet, interval_s=f.interval, created_at=now
            )
    return [rows[name] for name in sorted(rows)], history, leases


def _setting(seconds: float) -> str:
    """A duration as a setting is written: ``24h`` (not ``1d``), ``7d``, ``90m``, ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds >= 3 * size):
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"


def _clip(value: str, width: int) -> str:
    value = clean(value)
    return value if len(value) <= width else value[: width - 1] + "…"


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    return (
        _dur((now - when).total_seconds()) + " ago"
        if (now - when).total_seconds() < 1e7
        else "long ago"
    )


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


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
    cfg = _load(config, feeds, watchlists, database)
    _require_database(cfg)
    rows = _run(_outbox_rows(cfg), cfg.settings.database_url)
    if not rows:
        typer.echo("outbox empty: nothing pending or failed")
        return
    from monitor.deliver.slack import error_hint

    typer.echo(
        f"{'id':>6} {'state':<8} {'kind':<5} {'tries':>5} {'sink':<13} {'channel':<16} "
        f"{'watchlist':<14} reason / title"
    )
    for alert, title in rows:
        # kind: "new" is a story's alert, "reply" another outlet's copy in its thread
        kind = "reply" if alert.kind == "followup" else "new"
        typer.echo(
            f"{alert.id:>6} {alert.state:<8} {kind:<5} {alert.attempts:>5} {alert.sink:<13} "
            f"{_clip(alert.channel, 16):<16} {_clip(alert.watchlist, 14):<14} "
            f"{_clip(error_hint(alert.last_error or ''), 70)} | {_clip(title, 60)}"
        )


async def _outbox_rows(cfg: AppConfig) -> list[tuple[Any, str]]:
    from sqlmodel import col, select

    from monitor.store.tables import AlertRow, EntryRow

    async with _session(cfg) as session:
        rows = await session.exec(
            select(AlertRow, EntryRow.title)
            .join(EntryRow, col(EntryRow.id) == col(AlertRow.entry_id))
            .where(col(AlertRow.state).in_(["pending", "sending", "failed"]))
            .order_by(col(AlertRow.id))
        )
        return [(a, t) for a, t in rows.all()]


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
    cfg = _load(config, feeds, watchlists, database)
    _require_database(cfg)
    requeued, state = _run(_requeue(cfg, alert_id), cfg.settings.database_url)
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
    from sqlalchemy import func, update
    from sqlmodel import col

    from monitor.deliver.slack import REQUEUED
    from monitor.store.tables import AlertRow

    async with _session(cfg) as session:
        state = None
        if alert_id is not None:
            row = await session.get(AlertRow, alert_id)
            state = row.state if row is not None else None
        # the reason stays visible, marked as the one before the retry was asked for
        stmt = update(AlertRow).values(
            state="pending",
            next_attempt_at=datetime.now(UTC),
            attempts=0,
            check_failures=0,
            last_error=func.substr(
                REQUEUED + func.replace(func.coalesce(col(AlertRow.last_error), "-"), REQUEUED, ""),
                1,
                500,
            ),
        )
        if alert_id is not None:
            stmt = stmt.where(col(AlertRow.id) == alert_id).where(
                col(AlertRow.state).in_(["failed", "pending"])
            )
        else:
            stmt = stmt.where(col(AlertRow.state) == "failed")
        ids = list((await session.exec(stmt.returning(col(AlertRow.id)))).scalars())
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
    from sqlmodel import col, select

    from monitor.store.tables import AlertRow

    own = {w.name: w.channel for w in cfg.watchlists}
    rows = (await session.exec(select(AlertRow).where(col(AlertRow.id).in_(ids)))).all()
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
            parent = await session.get(AlertRow, row.parent_id) if row.parent_id else None
            if parent is not None:
                channel = parent.channel
        out.append((row.id or 0, row.sink, row.channel, channel))
        if channel != row.channel:
            row.channel = channel
            session.add(row)
    return sorted(out)


@app.command(short_help="Dry-run a watchlist change over stored entries.")
def replay(
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="How far back: e.g. 7d, 48h.")
    ] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Run a watchlists file over stored entries: per watchlist, how many stories would
    alert, with samples, and the difference from the live config. Sends nothing."""
    from monitor.config import parse_duration
    from monitor.match import compile_watchlists
    from monitor.replay import format_replay
    from monitor.replay import replay as run_replay

    candidate_cfg = _load(config, feeds, watchlists, database)
    live_cfg = _load(config, feeds, None, database) if watchlists is not None else candidate_cfg
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        typer.echo(f"error: --since: {exc}", err=True)
        raise typer.Exit(2) from None
    if seconds is None:
        seconds = 3650 * 86400.0
    _require_database(candidate_cfg)
    entries = _run(_stored_entries(candidate_cfg, seconds), candidate_cfg.settings.database_url)
    report = run_replay(
        entries,
        compile_watchlists(candidate_cfg.watchlists),
        compile_watchlists(live_cfg.watchlists),
    )
    if as_json:
        payload = {"entries": len(entries), "watchlists": [r.to_dict() for r in report]}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        typer.echo(format_replay(report, seconds / 86400, len(entries)))


async def _stored_entries(cfg: AppConfig, seconds: float) -> list[Any]:
    from sqlmodel import col, select

    from monitor.pipeline import stored_entry
    from monitor.replay import StoredEntry
    from monitor.store.tables import EntryRow, FeedRow

    since = datetime.now(UTC) - timedelta(seconds=seconds)
    async with _session(cfg) as session:
        feeds = {f.id: f for f in (await session.exec(select(FeedRow))).all()}
        rows = await session.exec(
            select(EntryRow)
            .where(col(EntryRow.seen_at) >= since)
            .where(col(EntryRow.story_id).is_not(None))
            .order_by(col(EntryRow.id))
        )
        return [
            StoredEntry(row.story_id or 0, stored_entry(row, feeds.get(row.feed_id)))
            for row in rows.all()
        ]


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
    from monitor.audit import format_audit, run_audit
    from monitor.config import parse_duration
    from monitor.pipeline.runtime import open_runtime

    cfg = _load(config, feeds, watchlists, database)
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        typer.echo(f"error: --since: {exc}", err=True)
        raise typer.Exit(2) from None
    _require_database(cfg)
    start = datetime.now(UTC) - timedelta(seconds=3650 * 86400.0 if seconds is None else seconds)

    async def go() -> Any:
        async with open_runtime(cfg, start_pool=False) as rt:
            return await run_audit(rt, since=start, channel=channel)

    report = _run(go(), cfg.settings.database_url)
    typer.echo(format_audit(report))
    if report.errors:
        raise typer.Exit(2)
    if report.problems:
        raise typer.Exit(1)


@feeds_app.command("add", short_help="Discover, validate and add a feed.")
def feeds_add(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="A feed URL, or a web page that links to its feed."),
    ],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Feed name (unique).")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Tag (repeatable).")
    ] = None,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Discover (via <link rel=alternate> on HTML pages) and validate a feed, then append
    it to the feeds YAML."""
    from monitor.config import free_name

    cfg = _load(config, feeds, watchlists)
    target = _yaml_feeds_target(cfg, config, feeds)
    if name is not None and any(f.name == name for f in cfg.feeds):
        typer.echo(f"error: a feed is already named {name!r}; choose another --name", err=True)
        raise typer.Exit(2)
    found = _run(_discover(url, cfg))
    if isinstance(found, str):
        typer.echo(f"error: {found}", err=True)
        raise typer.Exit(1)
    feed_url, title, count = found
    if any(f.url == feed_url for f in cfg.feeds):
        typer.echo(f"already configured: {feed_url}")
        return

    base = name or re.sub(r"[^a-z0-9]+", "-", (title or feed_url).lower()).strip("-")[:60]
    feed_name = free_name(base or "feed", {f.name for f in cfg.feeds})
    entry: dict[str, object] = {"name": feed_name, "url": feed_url}
    if title:
        entry["source"] = title[:100]
    if tags:
        entry["tags"] = list(tags)
    _append_feeds(target, [entry], config, feeds, watchlists)
    typer.echo(f"added {feed_name}: {feed_url} ({count} entries now) to {target}")
    if not count:
        typer.echo("note: the feed is valid but has no items yet", err=True)


@feeds_app.command("import", short_help="Add the feeds of an OPML file or URL list.")
def feeds_import(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="An OPML file (or a newsboat-style urls file) to import."
        ),
    ],
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Append the feeds of an OPML export (Miniflux, FreshRSS, Feedly, newsboat, ...) to
    the feeds YAML: names, outlets, categories as tags, intervals and disabled feeds are
    kept; URLs already configured are skipped; a name already taken gets a suffix. The
    result is validated before it is kept. Nothing is fetched."""
    from monitor.config import free_name, load_feeds_file

    cfg = _load(config, feeds, watchlists)
    target = _yaml_feeds_target(cfg, config, feeds)
    errors: list[str] = []
    incoming = load_feeds_file(source, errors)
    if errors:
        typer.echo("\n".join(f"error: {e}" for e in errors), err=True)
        raise typer.Exit(2)
    urls = {f.url for f in cfg.feeds}
    names = {f.name for f in cfg.feeds}
    entries: list[dict[str, object]] = []
    skipped = 0
    for f in incoming:
        if f.url in urls:
            skipped += 1
            continue
        urls.add(f.url)
        name = free_name(f.name, names)
        names.add(name)
        if name != f.name:
            typer.echo(f"renamed {f.name!r} to {name!r}: the name is taken", err=True)
        entry: dict[str, object] = {"name": name, "url": f.url}
        if f.source:
            entry["source"] = f.source
        if f.tags:
            entry["tags"] = list(f.tags)
        if f.interval:
            seconds = int(f.interval) if f.interval.is_integer() else f.interval
            entry["interval"] = f"{seconds}s"
        if not f.enabled:
            entry["enabled"] = False
        entries.append(entry)
    if entries:
        _append_feeds(target, entries, config, feeds, watchlists)
    typer.echo(
        f"imported {len(entries)} feeds into {target}"
        + (f" ({skipped} already configured, skipped)" if skipped else "")
    )


def _yaml_feeds_target(cfg: AppConfig, config: Path, feeds: Path | None) -> Path:
    """The file the feeds were read from (``--feeds``, or the one found in the config
    directory), which is where new feeds go; ``feeds.yaml`` when there was none. Only a
    YAML file is written to (exit 2 otherwise)."""
    target = feeds if feeds is not None else cfg.feeds_file or config / "feeds.yaml"
    if target.suffix.lower() not in {".yaml", ".yml"}:
        typer.echo(f"error: {target} is not a YAML feeds file; add feeds to it by hand", err=True)
        raise typer.Exit(2)
    return target


def _append_feeds(
    target: Path,
    entries: list[dict[str, object]],
    config: Path,
    feeds: Path | None,
    watchlists: Path | None,
) -> None:
    """Append ``entries`` to the feeds YAML ``target`` as block-list items (the file's
    comments and layout kept), then load the whole config again; if it does not
    validate, the file is put back as it was and the command fails."""
    from monitor.config import ConfigError, load_config

    original = target.read_text(encoding="utf-8") if target.exists() else None
    text = original or ""
    # an empty flow list ("feeds: []", what a fresh file often says) becomes a block list
    text = re.sub(r"^feeds:[ \t]*\[[ \t]*\][ \t]*(#.*)?$", "feeds:", text, flags=re.MULTILINE)
    if re.search(r"^feeds:[ \t]*\[", text, re.MULTILINE):
        typer.echo(f"error: {target} lists its feeds in [flow] style; add it by hand", err=True)
        raise typer.Exit(2)
    if re.match(r"(\s*(#.*|---[ \t]*)\n)*\s*- ", text):  # a bare list, as the loader takes
        pass
    elif not re.search(r"^feeds:", text, re.MULTILINE):
        text = text + ("" if not text or text.endswith("\n") else "\n") + "feeds:\n"
    m = re.search(r"^( *)- ", text, re.MULTILINE)  # follow the file's own list indent
    ind = m.group(1) if m else "  "
    blocks = []
    for entry in entries:
        lines = [
            f"{ind}{'- ' if i == 0 else '  '}{key}: {json.dumps(value, ensure_ascii=False)}"
            for i, (key, value) in enumerate(entry.items())
        ]
        blocks.append("\n".join(lines) + "\n")
    if not text.endswith("\n"):
        text += "\n"
    target.write_text(text + "".join(blocks), encoding="utf-8")
    try:
        load_config(config, feeds_file=feeds, watchlists_file=watchlists)
    except ConfigError as exc:  # never leave a broken file behind: put back what was there
        if original is None:
            target.unlink()
        else:
            target.write_text(original, encoding="utf-8")
        typer.echo("error: the new entries did not validate: " + "; ".join(exc.problems), err=True)
        raise typer.Exit(2) from None


async def _discover(url: str, cfg: AppConfig) -> tuple[str, str, int] | str:
    """The feed at ``url``, or the first that works of the (up to 5) feeds an HTML page
    at ``url`` links to: (feed URL, title, entries now), or why none would do. A valid
    feed with no items yet is accepted (a new feed often starts empty)."""
    from concurrent.futures import ThreadPoolExecutor

    from monitor.discover import discover_feed_links
    from monitor.fetch import FetchLimits, fetch, make_session
    from monitor.parse import parse_in_pool

    limits = FetchLimits()
    problems: list[str] = []
    async with make_session(limits) as session:
        with ThreadPoolExecutor(1) as pool:
            candidates = [url]
            page = True  # the first candidate is what the user gave; the rest it links to
            while candidates:
                current = candidates.pop(0)
                res = await fetch(session, current, limits=limits)
                if res.error or res.body is None:
                    problems.append(f"{current}: {res.error or 'no body'}")
                    page = False
                    continue
                parsed = await parse_in_pool(
                    pool, res.body, res.headers, url=res.final_url, feed="new", source="new"
                )
                found = res.permanent_redirect or current
                if parsed.entries or (parsed.error is None and parsed.meta.version):
                    return found, parsed.meta.title, len(parsed.entries)
                if parsed.is_html and page:
                    links = discover_feed_links(res.body, res.final_url)
                    if not links:
                        return f"{url}: an HTML page with no <link rel=alternate> feed"
                    candidates.extend(links[:5])
                else:
                    problems.append(f"{current}: {parsed.error or 'no entries'}")
                page = False
    return "; ".join(problems) or f"{url}: no feed found"


@feeds_app.command("export", short_help="Print the feeds as OPML.")
def feeds_export(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Print the configured feeds as OPML 2.0, one flat outline per feed.

    text/title carry the outlet (what other readers show), name the Wirewatch name
    (watchlists refer to it), category the tags (comma-separated, as in OPML 2.0),
    interval a pinned poll interval in seconds and enabled="false" a disabled feed.
    --feeds FILE.opml reads all of them back: the round trip is exact.
    """
    from xml.sax.saxutils import quoteattr

    cfg = _load(config, feeds, watchlists)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head><title>Wirewatch feeds</title></head>",
        "  <body>",
    ]
    for f in cfg.feeds:
        attrs = [
            ("type", "rss"),
            ("text", f.outlet),
            ("title", f.outlet),
            ("name", f.name),
            ("xmlUrl", f.url),
        ]
        if f.tags:
            attrs.append(("category", ",".join(f.tags)))
        if f.interval is not None:
            attrs.append(("interval", f"{f.interval:.3f}".rstrip("0").rstrip(".")))
        if not f.enabled:
            attrs.append(("enabled", "false"))
        out.append("    <outline " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs) + "/>")
    out += ["  </body>", "</opml>"]
    typer.echo("\n".join(out))


def _database_exists(cfg: AppConfig) -> bool:
    """A server database always "exists" (it is checked by connecting); a SQLite one
    when its file does."""
    from monitor.store.db import sqlite_path

    path = sqlite_path(cfg.settings.database_url)
    return path is None or path.exists()


def _require_database(cfg: AppConfig) -> None:
    """Read-only commands never create a database: looking at an empty one made by
    mistake (a relative path from another directory, a typo) would report every feed
    new and the outbox empty. Exit 1 naming the path instead."""
    from monitor.store.db import sqlite_path

    _no_moved_database(cfg)
    path = sqlite_path(cfg.settings.database_url)
    if path is not None and not path.exists():
        typer.echo(
            f"error: no database at {path} (`wirewatch once` or `wirewatch run` with this "
            "config creates it; --database URL names another)",
            err=True,
        )
        raise typer.Exit(1)


@asynccontextmanager
async def _session(cfg: AppConfig) -> AsyncIterator[AsyncSession]:
    """A session on the configured database (migrated first) for one-shot commands,
    which never create a database (see ``_require_database``)."""
    from monitor.store.db import create_engine, display_url, has_schema, migrate, sessionmaker

    engine = create_engine(cfg.settings.database_url, create=False)
    try:
        if not await has_schema(engine):  # (a server database: tables are not made here)
            typer.echo(
                f"error: no Wirewatch database at {display_url(cfg.settings.database_url)} "
                "(it has no Wirewatch tables: `wirewatch once` or `wirewatch run` with this "
                "config makes them)",
                err=True,
            )
            raise typer.Exit(1)
        await migrate(engine)
        async with sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def _plain_arguments(command: Any) -> None:
    """Typer shows arguments as ``{URL}`` and ``URL <str>``: a Python type in a user's
    help, which options avoid by their metavar. Arguments are shown the way options and
    every other Unix tool show them: ``URL`` (required) or ``[ID]``, with no type."""
    from typer.core import TyperArgument

    class PlainArgument(TyperArgument):
        def display_type_rich(self, ctx: Any) -> str | None:
            return None

        def _usage_display_name(self) -> str:
            name = self.metavar or (self.name or "").upper()
            return name if self.required or name.startswith("[") else f"[{name}]"

    for param in getattr(command, "params", []):
        if type(param) is TyperArgument:
            param.__class__ = PlainArgument
    for sub in getattr(command, "commands", {}).values():
        _plain_arguments(sub)


def main() -> None:
    command = typer.main.get_command(app)
    _plain_arguments(command)
    command(prog_name="wirewatch")
