"""Issue 3 (restart): rebuild the story window from 100,000 stored entries.

Run by hand:  .venv/bin/python bench/bench_restart.py [--entries 100000] [--repeat 3]

Builds an SQLite database through the real tables (schema by the Alembic migration,
rows by SQLAlchemy Core ``executemany`` on ``EntryRow``/``StoryRow``/``FeedRow``): 200
feeds, ``--entries`` entries spread over the last 47 h (inside the default 48 h window),
realistic headlines spliced from ../shared/data/captures, a fifth of them wire copies
(copies with the same title share a story). Then, each in a fresh process so nothing is warm:

* ``scan``: the ``load_index`` query alone, rows read in the same batches and dropped
  (database floor);
* ``load_index``: ``monitor.pipeline.load_index(rt)`` on a fresh runtime (target < 5 s),
  RSS before/after and per entry;
* ``startup``: ``monitor.scheduler.startup(rt)`` total (sync feeds + load_index +
  reconcile), and ``open_runtime`` (engine, migration check, pools) before it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from common import feed_rows, machine, news_items, news_pool, rss_mb, self_cpu, table

TARGET = 5.0
N_FEEDS = 200


def write_config(root: Path) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    settings = {"database_url": f"sqlite:///{root / 'data' / 'wirewatch.db'}"}
    feeds = [
        {"name": f"outlet-{i}", "source": f"Outlet {i}", "url": f"http://127.0.0.1:9/{i}.xml"}
        for i in range(N_FEEDS)
    ]
    (cfg / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    (cfg / "watchlists.yaml").write_text(
        yaml.safe_dump({"watchlists": [{"name": "w", "terms": ["Kim Jong Un"]}]}), "utf-8"
    )
    return cfg


async def build(cfg_dir: Path, n: int) -> float:
    from sqlalchemy import insert

    from monitor.config import load_config
    from monitor.store.db import create_engine, migrate
    from monitor.store.tables import EntryRow, FeedRow, StoryRow

    cfg = load_config(cfg_dir, env={})
    items = news_items(n, seed=3)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    engine = create_engine(cfg.settings.database_url)
    await migrate(engine)
    feeds = feed_rows(N_FEEDS, now, name="outlet-{}", source="Outlet {}", age=timedelta(days=3))
    stories: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    story_of_title: dict[str, int] = {}
    for i, it in enumerate(items):
        seen = now - timedelta(seconds=47 * 3600 * (n - i) / n)
        key = it.title.lower()
        sid = story_of_title.get(key)
        if sid is None:
            sid = len(stories) + 1
            story_of_title[key] = sid
            stories.append(
                {
                    "id": sid,
                    "title": it.title,
                    "link": f"https://outlet{i % N_FEEDS}.example/{i}",
                    "source": f"Outlet {i % N_FEEDS}",
                    "source_count": 1,
                    "created_at": seen,
                    "updated_at": seen,
                }
            )
        entries.append(
            {
                "id": i + 1,
                "feed_id": i % N_FEEDS + 1,
                "guid": f"g-{i}",
                "link": f"https://outlet{i % N_FEEDS}.example/news/{i}",
                "title": it.title,
                "summary": it.description,
                "content": "",
                "author": "",
                "categories": "",
                "source": f"Outlet {i % N_FEEDS}",
                "published": seen - timedelta(minutes=5),
                "seen_at": seen,
                "story_id": sid,
                "updates": 0,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(insert(FeedRow.__table__), feeds)  # type: ignore[attr-defined]
        for i in range(0, len(stories), 20000):
            await conn.execute(insert(StoryRow.__table__), stories[i : i + 20000])  # type: ignore[attr-defined]
        for i in range(0, len(entries), 20000):
            await conn.execute(insert(EntryRow.__table__), entries[i : i + 20000])  # type: ignore[attr-defined]
    await engine.dispose()
    return time.perf_counter() - t0, len(stories)  # type: ignore[return-value]


async def measure(cfg_dir: Path, what: str) -> dict[str, Any]:

    from monitor.config import load_config
    from monitor.pipeline import load_index
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import startup
    from monitor.store.entries import stream_window

    cfg = load_config(cfg_dir, env={})
    out: dict[str, Any] = {}
    rss0 = rss_mb()
    t0 = time.perf_counter()
    async with open_runtime(cfg, notifiers={}) as rt:
        out["open_runtime"] = time.perf_counter() - t0
        rss1 = rss_mb()
        cpu0, t0 = self_cpu(), time.perf_counter()
        if what == "scan":
            since = rt.clock() - timedelta(seconds=cfg.settings.dedupe.window)
            n = 0
            async with rt.sessions() as s:
                async for part in stream_window(s, since, summary_chars=900):  # as load_index
                    n += len(part)
        elif what == "load_index":
            n = await load_index(rt)
        else:
            n = await startup(rt)
        out["seconds"] = time.perf_counter() - t0
        out["cpu"] = self_cpu() - cpu0
        out["entries"] = n
        out["index_len"] = len(rt.ingest.index)
        out["rss_before"] = rss1
        out["rss_after"] = rss_mb()
        out["rss_start"] = rss0
    return out


def run_child(cfg_dir: Path, what: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", what, "--config", str(cfg_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--measure", choices=["scan", "load_index", "startup"])
    ap.add_argument("--config", type=Path)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.config, args.measure))))
        return

    _, source = news_pool()
    with tempfile.TemporaryDirectory(prefix="ww-bench-restart-") as tmp:
        cfg = write_config(Path(tmp))
        print(f"building {args.entries} entries ...", flush=True)
        build_s, n_stories = asyncio.run(build(cfg, args.entries))
        db = Path(tmp) / "data" / "wirewatch.db"
        size = sum(p.stat().st_size for p in db.parent.iterdir()) / 2**20
        results: dict[str, list[dict[str, Any]]] = {}
        for what in ("scan", "load_index", "startup"):
            results[what] = []
            for _ in range(args.repeat):
                print(f"{what} ...", flush=True)
                results[what].append(run_child(cfg, what))

    def med(what: str, key: str) -> float:
        return statistics.median(r[key] for r in results[what])

    li = results["load_index"]
    n = li[0]["entries"]
    growth = med("load_index", "rss_after") - med("load_index", "rss_before")
    print()
    print(f"### Restart: story window rebuilt from {n:,} stored entries")
    print()
    print(
        f"Machine: {machine()}. SQLite (WAL) file of {size:.0f} MB: {args.entries:,} entries "
        f"in {n_stories:,} stories, {N_FEEDS} feeds, all inside the 48 h window (bulk-built "
        f"through the real tables in {build_s:.1f} s). Text: {source}. Each run in a fresh "
        f"process; median of {args.repeat} (min-max shown)."
    )
    print()
    rows = []
    for what, label in (
        ("scan", "the `load_index` query alone (rows read in batches, dropped)"),
        ("load_index", "**`load_index(rt)`** on a fresh runtime"),
        ("startup", "`startup(rt)` total (sync feeds + load_index + reconcile)"),
    ):
        secs = [r["seconds"] for r in results[what]]
        rows.append(
            (
                label,
                f"{statistics.median(secs):.2f} ({min(secs):.2f}-{max(secs):.2f})",
                med(what, "cpu"),
                f"{med(what, 'rss_before'):.0f} -> {med(what, 'rss_after'):.0f}",
                results[what][0]["entries"],
            )
        )
    print(table(["step", "wall s", "CPU s", "RSS MB before -> after", "entries"], rows))
    print()
    print(
        f"`open_runtime` before it (engine, migration check, HTTP session, pool): "
        f"{med('startup', 'open_runtime'):.2f} s. RSS growth from the index: {growth:.0f} MB "
        f"= {1024 * growth / max(1, n):.2f} KB per window entry "
        f"({li[0]['index_len']:,} entries in the index)."
    )
    t = med("load_index", "seconds")
    print()
    print(f"Target load_index < {TARGET:g} s: {'met' if t < TARGET else 'MISSED'} ({t:.2f} s).")


if __name__ == "__main__":
    main()
