"""Retention: how long the hourly prune takes on a database that has run for two months.

Run by hand:  .venv/bin/python bench/bench_retention.py [--entries 400000] [--database-url URL]

Builds a database through the real tables (schema by the Alembic migrations, rows by
SQLAlchemy Core ``executemany``): 200 feeds, ``--entries`` entries seen evenly over the
last 60 days, two entries a story, one alert per story (sent; a story in 50 still has
its alert pending, as with Slack down), a tenth of the entries undated. Then, in the
same process on a fresh runtime:

* ``retain`` with the default ``retention: 30d``: the first prune, which deletes about
  half of everything (what an upgrade to a retention-aware version does once);
* ``retain`` again at once: the steady hourly run with nothing to delete;
* the rows left, to check what was kept (queued alerts' stories, undated entries).

SQLite by default (a temp file); ``--database-url postgresql://…`` for a server (its
tables are dropped first: use a scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from common import feed_rows, machine, self_cpu, table

N_FEEDS = 200
DAYS = 60


def write_config(root: Path, url: str) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    feeds = [{"name": f"f{i}", "url": f"http://127.0.0.1:9/{i}.xml"} for i in range(N_FEEDS)]
    (cfg / "settings.yaml").write_text(yaml.safe_dump({"database_url": url}), "utf-8")
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}), "utf-8")
    (cfg / "watchlists.yaml").write_text(
        yaml.safe_dump({"watchlists": [{"name": "w", "terms": ["Kim Jong Un"]}]}), "utf-8"
    )
    return cfg


async def build(url: str, n: int, now: datetime) -> None:
    from sqlalchemy import insert, text

    from monitor.store.db import create_engine, migrate
    from monitor.store.tables import AlertRow, EntryRow, FeedRow, StoryRow

    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "DROP TABLE IF EXISTS alerts, matches, entries, stories, feeds, "
                    "alembic_version CASCADE"
                )
            )
    await migrate(engine)
    feeds = feed_rows(N_FEEDS, now, name="f{}", source="F{}", age=timedelta(days=DAYS))
    stories: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for i in range(n):
        seen = now - timedelta(seconds=DAYS * 86400 * (n - i) / n)
        sid = i // 2 + 1
        if i % 2 == 0:
            stories.append(
                {
                    "id": sid,
                    "title": f"Story {sid}",
                    "link": "",
                    "source": "F",
                    "source_count": 2,
                    "created_at": seen,
                    "updated_at": seen + timedelta(minutes=5),
                }
            )
            alerts.append(
                {
                    "story_id": sid,
                    "entry_id": i + 1,
                    "watchlist": "w",
                    "sink": "slack",
                    "channel": "#c",
                    "kind": "new",
                    "state": "pending" if sid % 50 == 0 else "sent",
                    "attempts": 1,
                    "next_attempt_at": seen,
                    "created_at": seen,
                    "sent_at": None if sid % 50 == 0 else seen,
                    "terms": "[]",
                    "words": "[]",
                }
            )
        entries.append(
            {
                "id": i + 1,
                "feed_id": i % N_FEEDS + 1,
                "guid": f"g-{i}",
                "link": f"https://f{i % N_FEEDS}.example/{i}",
                "title": f"Kim Jong Un story {sid} copy {i % 2}",
                "summary": "A summary of about the usual length for a wire story. " * 4,
                "content": "",
                "author": "",
                "categories": "",
                "source": f"F{i % N_FEEDS}",
                "published": None if i % 10 == 9 else seen - timedelta(minutes=5),
                "seen_at": seen,
                "story_id": sid,
                "updates": 0,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(insert(FeedRow.__table__), feeds)  # type: ignore[attr-defined]
        for rows, tbl in ((stories, StoryRow), (entries, EntryRow), (alerts, AlertRow)):
            for i in range(0, len(rows), 20000):
                await conn.execute(insert(tbl.__table__), rows[i : i + 20000])  # type: ignore[attr-defined]
    await engine.dispose()


async def count(rt: Any) -> dict[str, int]:
    from sqlalchemy import func
    from sqlmodel import select

    from monitor.store.tables import AlertRow, EntryRow, StoryRow

    out = {}
    async with rt.sessions() as s:
        for name, tbl in (("stories", StoryRow), ("entries", EntryRow), ("alerts", AlertRow)):
            out[name] = int((await s.exec(select(func.count()).select_from(tbl))).one())
    return out


async def run(cfg_dir: Path) -> list[list[str]]:
    from monitor.config import load_config
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import retain

    rows = []
    async with open_runtime(load_config(cfg_dir, env={}), notifiers={}, start_pool=False) as rt:
        before = await count(rt)
        for label in ("first prune (deletes what is older than 30d)", "next hourly prune"):
            c0, t0 = self_cpu(), time.perf_counter()
            done = await retain(rt)
            wall, cpu = time.perf_counter() - t0, self_cpu() - c0
            rows.append(
                [
                    label,
                    f"{wall:.2f}",
                    f"{cpu:.2f}",
                    f"{done.stories}",
                    f"{done.entries}",
                    f"{done.kept}",
                    f"{done.alerts}",
                ]
            )
        after = await count(rt)
    print(f"rows before: {before}; after: {after}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=400_000)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'data' / 'wirewatch.db'}"
        cfg = write_config(Path(tmp), url)
        t0 = time.perf_counter()
        asyncio.run(build(url, args.entries, datetime.now(UTC)))
        print(f"built {args.entries} entries in {time.perf_counter() - t0:.1f} s")
        rows = asyncio.run(run(cfg))
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n### Retention prune: {args.entries} entries over {DAYS} days ({backend})\n")
    print(f"Machine: {machine()}.\n")
    print(
        table(
            [
                "run",
                "wall s",
                "CPU s",
                "stories deleted",
                "entries deleted",
                "entries kept emptied",
                "alerts deleted",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
