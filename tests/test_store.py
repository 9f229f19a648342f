"""Storage behaviour, the same suite on every backend (SQLite always, PostgreSQL when
WIREWATCH_TEST_POSTGRES_DSN is set)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from monitor.config import FeedConfig
from monitor.store.db import create_engine, migrate, sessionmaker
from monitor.store.feeds import claim_due_feeds, release_leases, sync_feeds
from monitor.store.tables import EntryRow, FeedRow

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
T = TypeVar("T")


def _feeds(n: int) -> list[FeedConfig]:
    return [FeedConfig(name=f"f{i}", url=f"http://127.0.0.1:9/{i}.xml") for i in range(n)]


def test_migrations_apply_twice_and_datetimes_stay_utc(db_url: str) -> None:
    async def go() -> FeedRow:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            await migrate(engine)  # idempotent: a restart re-runs it
            async with sessionmaker(engine)() as s:
                await sync_feeds(s, _feeds(1), NOW)
                await s.commit()
            async with sessionmaker(engine)() as s:
                return (await s.exec(select(FeedRow))).one()
        finally:
            await engine.dispose()

    row = asyncio.run(go())
    assert row.next_due == NOW and row.next_due.tzinfo is not None


def test_the_migrations_build_exactly_the_models_schema(db_url: str) -> None:
    """A column or index added to the models without a migration (or the other way
    round) would exist in a fresh test database but not in a user's upgraded one."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    async def go() -> list[object]:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(go()) == []


def test_entry_unique_per_feed_and_guid(db_url: str) -> None:
    async def go() -> None:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            async with sessionmaker(engine)() as s:
                await sync_feeds(s, _feeds(2), NOW)
                await s.commit()
                f0, f1 = (await s.exec(select(FeedRow).order_by(FeedRow.name))).all()
                for fid in (f0.id, f1.id):  # same guid in two feeds is fine
                    s.add(EntryRow(feed_id=fid or 0, guid="g", seen_at=NOW, title="t"))
                await s.commit()
                s.add(EntryRow(feed_id=f0.id or 0, guid="g", seen_at=NOW, title="t2"))
                with pytest.raises(IntegrityError):
                    await s.commit()
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_leases_keep_two_workers_off_the_same_feed_and_due_times_persist(db_url: str) -> None:
    async def go() -> None:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            sm = sessionmaker(engine)
            async with sm() as s:
                await sync_feeds(s, _feeds(5), NOW)
                await s.commit()
            async with sm() as a, sm() as b:
                got_a = await claim_due_feeds(a, now=NOW, owner="a", lease_s=60, limit=3)
                got_b = await claim_due_feeds(b, now=NOW, owner="b", lease_s=60, limit=10)
            assert len(got_a) == 3 and len(got_b) == 2
            assert not {f.name for f in got_a} & {f.name for f in got_b}
            async with sm() as s:  # everything leased: nothing more to claim
                assert await claim_due_feeds(s, now=NOW, owner="c", lease_s=60, limit=10) == []
            # a lease expires; a feed whose due time is in the future is not claimed
            async with sm() as s:
                row = (await s.exec(select(FeedRow).where(FeedRow.name == "f0"))).one()
                row.next_due = NOW + timedelta(hours=1)
                s.add(row)
                await s.commit()
            later = NOW + timedelta(seconds=61)
            async with sm() as s:
                names = {
                    f.name
                    for f in await claim_due_feeds(s, now=later, owner="c", lease_s=60, limit=10)
                }
            assert names == {"f1", "f2", "f3", "f4"}
            async with sm() as s:
                await release_leases(s, "c")
                rows = (await s.exec(select(FeedRow))).all()
            assert all(r.lease_owner != "c" for r in rows)
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_sync_feeds_disables_removed_feeds_and_resets_validators_on_url_change(
    db_url: str,
) -> None:
    async def go() -> dict[str, FeedRow]:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            sm = sessionmaker(engine)
            async with sm() as s:
                await sync_feeds(s, _feeds(2), NOW)
                await s.commit()
                for r in (await s.exec(select(FeedRow))).all():
                    r.etag = '"x"'
                    s.add(r)
                await s.commit()
            moved = [FeedConfig(name="f0", url="http://127.0.0.1:9/new.xml")]
            async with sm() as s:
                await sync_feeds(s, moved, NOW)
                await s.commit()
            async with sm() as s:
                return {r.name: r for r in (await s.exec(select(FeedRow))).all()}
        finally:
            await engine.dispose()

    rows = asyncio.run(go())
    assert rows["f0"].url.endswith("/new.xml") and rows["f0"].etag is None
    assert rows["f1"].enabled is False and rows["f1"].etag == '"x"'


async def _store_stories(s: Any, feed_id: int, first: int, times: list[datetime]) -> None:
    """One story and its one entry per time in ``times``, ids from ``first`` on."""
    from sqlalchemy import insert

    from monitor.store.tables import StoryRow

    for i, t in enumerate(times, start=first):
        story = {"id": i, "title": "t", "created_at": t, "updated_at": t}
        await s.exec(insert(StoryRow).values(story))
        entry = {
            "feed_id": feed_id, "guid": f"g{i}", "title": f"t{i}", "source": "s",
            "published": t, "seen_at": t, "story_id": i,
        }  # fmt: skip
        await s.exec(insert(EntryRow).values(entry))
    await s.commit()


def _with_one_feed(db_url: str, body: Callable[[Any, int], Awaitable[T]]) -> T:
    """Run ``body(sessionmaker, feed id)`` on a migrated database with one feed."""

    async def go() -> T:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            sm = sessionmaker(engine)
            async with sm() as s:
                await sync_feeds(s, _feeds(1), NOW)
                await s.commit()
                feed_id = (await s.exec(select(FeedRow.id))).one()
            return await body(sm, feed_id or 0)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_a_feed_silent_longer_than_retention_stays_silent_after_a_prune(db_url: str) -> None:
    """A prune keeps each feed's newest entries (emptied): a feed that published nothing
    for 40 days is still reported silent, not "recovered" because its history was
    deleted."""
    from monitor.health import silence
    from monitor.store.history import feed_history
    from monitor.store.retention import prune

    async def body(sm: Any, feed_id: int) -> tuple[object, object, int]:
        async with sm() as s:
            await s.exec(update(FeedRow).values(entries_seen=10))
            times = [NOW - timedelta(days=40, hours=6 * i) for i in range(10)]
            await _store_stories(s, feed_id, 1, times)

        async def silent() -> object:
            async with sm() as s:
                feeds = list((await s.exec(select(FeedRow))).all())
                history = await feed_history(s, feeds, NOW)
            return silence(history[feed_id], NOW)

        before = await silent()
        async with sm() as s:
            done = await prune(s, before=NOW - timedelta(days=30))
        return before, await silent(), done.stories

    before, after, pruned = _with_one_feed(db_url, body)
    assert pruned == 9  # (the newest story holds the newest ids: kept)
    assert before is not None and after == before


def test_entries_kept_emptied_go_once_their_feed_has_newer_ones(db_url: str) -> None:
    """The entries a prune keeps (emptied) as its feed's newest are deleted by a later
    prune once 50 newer entries have come: the table stays bounded for slow feeds too."""
    from sqlalchemy import func

    from monitor.store.retention import prune

    async def body(sm: Any, feed_id: int) -> tuple[int, int, int]:
        async with sm() as s:

            async def pruned() -> int:
                await prune(s, before=NOW - timedelta(days=30))
                return int((await s.exec(select(func.count()).select_from(EntryRow))).one())

            # a slow feed: ten items forty days ago; later sixty more, pruned in turn
            await _store_stories(s, feed_id, 1, [NOW - timedelta(days=40)] * 10)
            kept = await pruned()
            await _store_stories(s, feed_id, 100, [NOW - timedelta(days=35)] * 60)
            return kept, await pruned(), await pruned()

    kept, after, again = _with_one_feed(db_url, body)
    assert kept == 10  # all among the feed's newest 50: kept, emptied
    assert after == again == 50  # the first ten and ten of the sixty are gone now
