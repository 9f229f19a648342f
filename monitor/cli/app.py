"""The plumbing every command shares: the typer app, the options most commands take,
loading the configuration (exit 2 with every problem), running a coroutine (a database
or OS failure is one line and exit 1, never a traceback), opening the database for a
one-shot command (never creating one), the short text forms of times and durations,
and ``main``.

Only the standard library and typer are imported here: ``wirewatch --help`` and
``check`` must not pay for SQLAlchemy, Alembic, aiohttp and slack-sdk, so what needs
them is imported inside the function that uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from monitor import __version__
from monitor.normalize import clean

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

    from monitor.config import AppConfig

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

MaxAge = Annotated[
    str | None,
    typer.Option(
        "--max-age",
        metavar="DURATION",
        help="Alert only on items newer than this (24h), or none for any age.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def load(
    config: Path, feeds: Path | None, watchlists: Path | None, database: str | None = None
) -> AppConfig:
    """The configuration; on any problem, every one of them (file:line) and exit 2."""
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


def no_moved_database(cfg: AppConfig) -> None:
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


def run_coro(coro: Coroutine[Any, Any, T], database_url: str | None = None) -> T:
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


def database_exists(cfg: AppConfig) -> bool:
    """A server database always "exists" (it is checked by connecting); a SQLite one
    when its file does."""
    from monitor.store.db import sqlite_path

    path = sqlite_path(cfg.settings.database_url)
    return path is None or path.exists()


def require_database(cfg: AppConfig) -> None:
    """Read-only commands never create a database: looking at an empty one made by
    mistake (a relative path from another directory, a typo) would report every feed
    new and the outbox empty. Exit 1 naming the path instead."""
    from monitor.store.db import sqlite_path

    no_moved_database(cfg)
    path = sqlite_path(cfg.settings.database_url)
    if path is not None and not path.exists():
        typer.echo(
            f"error: no database at {path} (`wirewatch once` or `wirewatch run` with this "
            "config creates it; --database URL names another)",
            err=True,
        )
        raise typer.Exit(1)


@asynccontextmanager
async def open_session(cfg: AppConfig) -> AsyncIterator[AsyncSession]:
    """A session on the configured database (migrated first) for one-shot commands,
    which never create a database (see ``require_database``)."""
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


def clip(value: str, width: int) -> str:
    value = clean(value)
    return value if len(value) <= width else value[: width - 1] + "…"


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    return (
        dur((now - when).total_seconds()) + " ago"
        if (now - when).total_seconds() < 1e7
        else "long ago"
    )


def dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


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
