"""Engine creation and schema migration (Alembic, applied automatically at start)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS = Path(__file__).with_name("migrations")
COMMAND_TIMEOUT_S = 60.0  # PostgreSQL: see create_engine


def async_url(url: str) -> str:
    """Map user-facing URLs to async drivers: ``sqlite:///x.db`` → aiosqlite,
    ``postgresql://`` / ``postgres://`` → asyncpg."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def create_engine(url: str, *, create: bool = True) -> AsyncEngine:
    """Async engine; for SQLite WAL mode is enabled, and with ``create`` the data
    directory is created (read-only commands pass ``create=False`` and check first
    that the file exists: they must never make an empty database)."""
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if path is not None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        # a statement that gets no answer for this long fails instead of waiting for
        # ever (the task fails, and its worker starts it again). Long enough for the
        # longest legitimate wait: another node's ingest batch holding the ingest lock.
        kwargs["connect_args"] = {"command_timeout": COMMAND_TIMEOUT_S}
    engine = create_async_engine(async_url(url), **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def has_schema(engine: AsyncEngine) -> bool:
    """Whether the database holds Wirewatch's tables (any revision of them)."""

    def check(connection: Connection) -> bool:
        return bool(inspect(connection).has_table("alembic_version"))

    async with engine.connect() as conn:
        return await conn.run_sync(check)


# (any constant: the PostgreSQL advisory lock several nodes starting at once take)
MIGRATION_LOCK = 0x5757_0001


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent). On PostgreSQL, nodes that
    start together (a compose file, a Deployment's replicas) migrate one at a time: the
    first creates the tables, the others find them made."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await conn.run_sync(_upgrade)


def display_url(url: str) -> str:
    """``url`` as it may be shown in a log or on a terminal: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def sqlite_problem(path: Path) -> str | None:
    """Why the SQLite database ``path`` cannot be written (created if missing), in one
    line naming the path and the cause, or None. Checked before start-up: SQLite would
    otherwise say it at the first write, as an error with SQL in it."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"cannot use the database {path}: {_first_file(parent)} is a file, not a directory"
    except OSError as exc:
        return f"cannot create the directory {parent} for the database {path}: {exc.strerror}"
    if not parent.is_dir():
        return f"cannot use the database {path}: {parent} is not a directory"
    # SQLite writes the database and, beside it, its -wal and -shm files
    for target in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if target.is_dir():
            return f"cannot use the database {path}: {target} is a directory"
        if target.exists():
            try:
                with target.open("r+b"):
                    pass
            except OSError as exc:
                return f"cannot write the database {target}: {exc.strerror}"
    probe = parent / f".{path.name}.write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        return f"cannot write in {parent}, where the database {path} lives: {exc.strerror}"
    return None


def _first_file(path: Path) -> Path:
    """The first of ``path`` and its ancestors that exists (the file in the way)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def describe_error(exc: BaseException, url: str | None) -> str | None:
    """One line for a failure to open or write the database (or another OS error), or
    None for anything else. SQLAlchemy's messages carry the SQL and a link: only the
    driver's own reason is kept, with the database it concerns."""
    where = display_url(url) if url else "the database"
    module = type(exc).__module__
    if module.startswith(("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite")):
        orig = getattr(exc, "orig", None) or exc
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return f"database {where}: {reason}"
    if isinstance(exc, OSError):
        target = f" {exc.filename}" if exc.filename else ""
        return f"cannot run:{target} {exc.strerror or exc}".replace(":  ", ": ")
    return None
