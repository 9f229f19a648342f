"""Dedupe cost per item on real headlines: ``find`` + ``add`` over the gesab001 captures.

Every item of ``../shared/data/captures/gesab001/*/*.xml`` (feedparser, then
``html_to_text`` on title and summary, as the pipeline does) goes through one
``StoryIndex`` in file order, all at the same instant, so the window grows to the whole
capture set (about 5.5k items) and every item is a candidate for every later one. Links
are made unique so that the fuzzy path, not the URL key, decides. Prints mean, median
and p99 time per item and the number of stories.

    .venv/bin/python bench/bench_dedup_speed.py [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import feedparser

from monitor.dedupe import DedupeConfig, StoryIndex, StoryItem
from monitor.normalize import html_to_text

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "captures"
CAPTURES = CAPTURES / "gesab001"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def load() -> list[StoryItem]:
    items = []
    for path in sorted(CAPTURES.glob("*/*.xml")):
        parsed = feedparser.parse(path.read_bytes())
        for e in parsed.entries:
            items.append(
                StoryItem(
                    key=str(len(items)),
                    title=html_to_text(e.get("title", "")),
                    summary=html_to_text(e.get("summary", ""))[:500],
                    published=NOW,
                    source=path.name,
                    url=e.get("link", "") + f"#{len(items)}",
                )
            )
    return items


def run(items: list[StoryItem]) -> tuple[list[float], int, float]:
    """Per-item seconds (find + add), stories, total CPU seconds."""
    index = StoryIndex(DedupeConfig())
    times = []
    stories = 0
    cpu = time.process_time()
    for item in items:
        t = time.perf_counter()
        d = index.find(item, NOW)
        if d.story_id is None:
            stories += 1
            story = stories
        else:
            story = d.story_id
        index.add(item, story, NOW)
        times.append(time.perf_counter() - t)
    return times, stories, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best mean is kept")
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    args = parser.parse_args()
    if not CAPTURES.exists():
        sys.exit(f"missing {CAPTURES}")
    items = load()
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run, items)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        return
    best: tuple[list[float], int, float] | None = None
    for _ in range(args.repeat):
        res = run(items)
        if best is None or statistics.mean(res[0]) < statistics.mean(best[0]):
            best = res
    assert best is not None
    times, stories, cpu = best
    times.sort()
    print(f"{len(items):,} items, {stories:,} stories, CPU {cpu:.2f} s (best of {args.repeat})")
    print("| items | mean | median | p99 | max |")
    print("|---:|---:|---:|---:|---:|")
    print(
        f"| {len(items):,} | {statistics.mean(times) * 1000:.3f} ms "
        f"| {statistics.median(times) * 1000:.3f} ms "
        f"| {times[int(len(times) * 0.99)] * 1000:.3f} ms | {times[-1] * 1000:.2f} ms |"
    )


if __name__ == "__main__":
    main()
