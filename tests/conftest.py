"""Shared fixtures: a real local feed server, a real local Slack Web API server, and
database URLs for every storage backend (SQLite always; PostgreSQL when
``WIREWATCH_TEST_POSTGRES_DSN`` is set, as ``.ci/run`` does)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer

PG_ENV = "WIREWATCH_TEST_POSTGRES_DSN"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def _reset_postgres(dsn: str) -> None:
    import asyncpg

    async def reset() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "DROP TABLE IF EXISTS message_alerts, messages, alerts, matches, entries, "
                "stories, feeds, nodes, feed_health, mutes, alembic_version CASCADE"
            )
        finally:
            await conn.close()

    asyncio.run(reset())


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage backend: the same test runs on each."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'wirewatch.db'}"
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    _reset_postgres(dsn)
    return dsn


@pytest.fixture
def pg_url() -> str:
    """PostgreSQL only (a test of several processes sharing one database)."""
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    _reset_postgres(dsn)
    return dsn


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'wirewatch.db'}"
