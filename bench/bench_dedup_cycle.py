"""Dedupe cost on the poll-cycle corpus (issue 5), without HTTP or a database.

``bench_cycle.py --feeds 1000`` showed ``StoryIndex.find`` taking a large share of the
cold cycle. This replays the same corpus (``common.build_feed_bodies``: N feeds x M
items of spliced real headlines, a fifth of them wire copies carried by several feeds)
straight into one ``StoryIndex``: each body is parsed with ElementTree (title,
description, canonical link, pubDate, the feed's outlet name, as the pipeline's
``StoryItem`` gets them), then every item goes through ``find`` + ``add`` in feed order,
as ``monitor.pipeline.fold`` does. CPU time (``time.process_time``) is taken per entry.

Prints mean, median, p90, p99 and max CPU per entry, and per 10k-entry slice (the cost
grows with the window), the number of stories and how many items merged by each reason.
``--prepared`` first computes, outside the timing, what the parse workers hand the index
(``dedupe.prepare(..., features=True)``: title key, cleaned summary, compact guard
features), so the figures are the main process's share of dedupe in a poll cycle.
``--dump FILE`` writes one line per entry (story number, reason, score) so two versions of
the code can be checked for identical decisions (``cmp``).

    .venv/bin/python bench/bench_dedup_cycle.py [--feeds 1000] [--items 50] [--repeat 1]
        [--prepared] [--dump FILE] [--profile [--profile-cum]]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import build_feed_bodies

from monitor.dedupe import DedupeConfig, Prepared, StoryIndex, StoryItem, prepare
from monitor.dedupe.embed import available as embed_available
from monitor.dedupe.embed import embed
from monitor.normalize import canonical_url

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def load(n_feeds: int, n_items: int) -> list[StoryItem]:
    items: list[StoryItem] = []
    for f, body in enumerate(build_feed_bodies(n_feeds, n_items, now=NOW)):
        root = ET.fromstring(body)
        for el in root.iter("item"):
            when = el.findtext("pubDate")
            items.append(
                StoryItem(
                    key=f"{f + 1}:{el.findtext('guid') or ''}",
                    title=el.findtext("title") or "",
                    summary=el.findtext("description") or "",
                    published=parsedate_to_datetime(when) if when else None,
                    source=f"Outlet {f}",
                    url=canonical_url(el.findtext("link") or ""),
                )
            )
    return items


Result = tuple[list[float], list[tuple[str, float]], list[int]]


def run(items: list[StoryItem], ready: list[Prepared] | None = None) -> Result:
    """CPU seconds per entry (find + add), (reason, score) per entry and story numbers.

    The garbage collector runs as usual (its full collections are part of the cost), but
    what the bench itself holds is kept out of it: the items are frozen (``gc.freeze``)
    and decisions are kept as plain tuples."""
    index = StoryIndex(DedupeConfig())
    times: list[float] = []
    decisions: list[tuple[str, float]] = []
    stories: list[int] = []
    n_stories = 0
    clock = time.process_time
    gc.collect()
    gc.freeze()
    for i, item in enumerate(items):
        t = clock()
        d = index.find(item, NOW, ready[i] if ready is not None else None)
        if d.story_id is None:
            story = n_stories
            n_stories += 1
        else:
            story = d.story_id
        index.add(item, story)
        times.append(clock() - t)
        decisions.append((d.reason, d.score))
        stories.append(story)
    gc.unfreeze()
    return times, decisions, stories


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1, help="runs; the lowest mean is kept")
    ap.add_argument("--prepared", action="store_true", help="as the parse workers prepare")
    ap.add_argument("--dump", type=Path, help="write story/reason/score per entry here")
    ap.add_argument("--profile", action="store_true", help="cProfile one run")
    ap.add_argument("--profile-cum", action="store_true", help="with --profile: cumulative")
    args = ap.parse_args()
    t0 = time.perf_counter()
    items = load(args.feeds, args.items)
    print(
        f"{len(items):,} entries from {args.feeds} feeds built in {time.perf_counter() - t0:.1f} s"
    )
    ready = None
    if args.prepared:
        chars = DedupeConfig().summary_chars
        # the workers have the embedding model loaded (it loads on their start): so
        # that their titles carry their vectors here too, load it before preparing
        if embed_available():
            embed("warm up")
        ready = [prepare(i.title, i.summary, i.source, chars, features=True) for i in items]
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run, items, ready)
        sort = "cumulative" if args.profile_cum else "tottime"
        pstats.Stats(prof).sort_stats(sort).print_stats(35)
        return
    best: Result | None = None
    for _ in range(args.repeat):
        res = run(items, ready)
        if best is None or sum(res[0]) < sum(best[0]):
            best = res
    assert best is not None
    times, decisions, stories = best
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as fh:
            for (reason, score), s in zip(decisions, stories, strict=True):
                fh.write(f"{s}\t{reason}\t{score!r}\n")
    reasons = Counter(reason for reason, _ in decisions)
    ms = [t * 1000 for t in times]
    srt = sorted(ms)
    n = len(srt)
    print(
        f"stories {len(set(stories)):,}; decisions: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items()))
    )
    print(f"CPU total {sum(times):.2f} s (best of {args.repeat})")
    print("| entries | mean | median | p90 | p99 | max |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {n:,} | {statistics.mean(ms):.3f} ms | {statistics.median(ms):.3f} ms "
        f"| {srt[int(n * 0.9)]:.3f} ms | {srt[int(n * 0.99)]:.3f} ms | {srt[-1]:.2f} ms |"
    )
    step = 10_000 if n >= 20_000 else max(1, n // 5)
    print("\nper slice (window grows):")
    print("| entries | mean | median |")
    print("|---|---:|---:|")
    for i in range(0, n, step):
        part = ms[i : i + step]
        print(
            f"| {i:,}-{i + len(part):,} | {statistics.mean(part):.3f} ms "
            f"| {statistics.median(part):.3f} ms |"
        )


if __name__ == "__main__":
    main()
