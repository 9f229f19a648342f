"""Restart cost: rebuild the story index from a SQLite database of 100,000 stored entries.

Builds (once, cached by size) a SQLite database with the project's schema (Alembic
migrations) holding N entries whose titles and summaries are spliced from the real
captures (``bench/common.py: news_items``; about a fifth are wire copies with prefixes and
outlet suffixes), all seen within the dedupe window, then times:

* ``load_index``: the real ``monitor.pipeline.load_index`` (DB stream + ``StoryIndex.add``
  for every row) — the number issue 3 asks for (< 5 s for 100,000 entries);
* the DB read alone (same query, rows discarded);
* ``StoryIndex.add`` alone over the same rows held in memory.

    .venv/bin/python bench/bench_dedup_restart.py [--entries 100000] [--db PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, news_items
from sqlalchemy import create_engine as sync_engine
from sqlalchemy import func, select

from monitor.config import AppConfig, Settings
from monitor.dedupe import DedupeConfig, StoryIndex, StoryItem
from monitor.pipeline import load_index
from monitor.store.db import create_engine, migrate, sessionmaker
from monitor.store.tables import EntryRow, FeedRow, StoryRow

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SOURCES = ["Reuters", "AP", "AFP", "BBC", "CNN", "Al Jazeera", "CNA", "DW", "NHK", "SMH"]


async def build(path: Path, n: int) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await migrate(engine)
    await engine.dispose()
    items = news_items(n, seed=7)
    eng = sync_engine(f"sqlite:///{path}")
    step = timedelta(hours=40) / n
    t0 = NOW - timedelta(hours=41)
    with eng.begin() as conn:
        conn.execute(
            FeedRow.__table__.insert(),  # type: ignore[attr-defined]
            [
                {"id": i + 1, "name": s, "url": f"https://{i}.example/rss", "source": s,
                 "tags": "", "enabled": True, "title": s, "entries_seen": 0,
                 "consecutive_failures": 0, "created_at": t0}
                for i, s in enumerate(SOURCES)
            ],
        )  # fmt: skip
        conn.execute(
            StoryRow.__table__.insert(),  # type: ignore[attr-defined]
            [
                {"id": i + 1, "title": it.title, "link": "", "source": "", "source_count": 1,
                 "created_at": t0 + step * i, "updated_at": t0 + step * i}
                for i, it in enumerate(items)
            ],
        )  # fmt: skip
        rows: list[dict[str, Any]] = []
        for i, it in enumerate(items):
            src = i % len(SOURCES)
            when = t0 + step * i
            rows.append(
                {"id": i + 1, "feed_id": src + 1, "guid": f"g{i}",
                 "link": f"https://{SOURCES[src].lower().replace(' ', '')}.example/n/{i}",
                 "title": it.title, "summary": it.description, "content": "", "author": "",
                 "categories": "", "source": SOURCES[src], "published": when, "seen_at": when,
                 "story_id": i + 1, "updates": 0}
            )  # fmt: skip
        conn.execute(EntryRow.__table__.insert(), rows)  # type: ignore[attr-defined]
    eng.dispose()


async def time_restart(path: Path) -> tuple[float, float, float, int]:
    config = AppConfig(settings=Settings(), feeds=[], watchlists=[])
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    rt = SimpleNamespace(
        config=config,
        sessions=sessionmaker(engine),
        index=StoryIndex(DedupeConfig()),
        clock=lambda: NOW,
        index_loaded=False,
    )
    # DB read alone: the same rows load_index streams, discarded
    gc.collect()
    t = time.process_time()
    rows: list[StoryItem] = []
    async with rt.sessions() as session:
        result = await session.stream(
            select(
                EntryRow.id, EntryRow.title, EntryRow.summary, EntryRow.published,  # type: ignore[arg-type]
                EntryRow.seen_at, EntryRow.source, EntryRow.link, EntryRow.story_id,  # type: ignore[arg-type]
            )
            .where(EntryRow.seen_at >= NOW - timedelta(hours=48))  # type: ignore[arg-type]
            .order_by(EntryRow.id)  # type: ignore[arg-type]
            .execution_options(yield_per=5000)
        )  # fmt: skip
        async for eid, title, summary, published, seen_at, source, link, _sid in result:
            rows.append(StoryItem(str(eid), title, summary, published or seen_at, source, link))
    read = time.process_time() - t
    # add() alone
    gc.collect()
    index = StoryIndex(DedupeConfig())
    t = time.process_time()
    for i, item in enumerate(rows):
        index.add(item, i)
    adds = time.process_time() - t
    del rows, index
    gc.collect()
    # the real thing
    t, c = time.perf_counter(), time.process_time()
    count = await load_index(rt)  # type: ignore[arg-type]
    full, cpu = time.perf_counter() - t, time.process_time() - c
    assert len(rt.index) == count
    await engine.dispose()
    return full, cpu, read, adds, count


async def run(path: Path, entries: int, repeat: int, exists: bool) -> None:
    if not exists:
        t = time.perf_counter()
        await build(path, entries)
        print(f"built {path} in {time.perf_counter() - t:.1f} s")
    else:
        eng = sync_engine(f"sqlite:///{path}")
        with eng.connect() as conn:
            have = conn.execute(select(func.count()).select_from(EntryRow)).scalar_one()  # type: ignore[arg-type]
        eng.dispose()
        print(f"reusing {path} ({have} entries)")
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes inflate wall time)")
    print(
        "\n| run | load_index wall | load_index CPU | DB read only (CPU) | add() only (CPU) "
        "| add() per entry |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in range(repeat):
        full, cpu, read, adds, count = await time_restart(path)
        print(
            f"| {r + 1} | {full:.2f} s | {cpu:.2f} s | {read:.2f} s | {adds:.2f} s "
            f"| {adds / count * 1e6:.1f} µs |"
        )
    print(f"\nentries loaded: {count:,}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--db", default="")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = Path(args.db or f"/tmp/wirewatch-restart-{args.entries}.db")
    asyncio.run(run(path, args.entries, args.repeat, path.exists()))


if __name__ == "__main__":
    main()
