"""Dedupe cost at window sizes of 10k, 100k and 1M entries.

Synthetic entries recombine real headline words (from the STS headlines file): each title
takes a real headline and swaps about half of its words for random vocabulary words, adds
a number now and then, and gets a 20-30 word summary from the same vocabulary. Window
timestamps are spread over 48 h so nothing is pruned.

For each size: time to build the window with ``add`` (the restart path), mean, median and
p99 time per new item (``find`` + ``add``) over 2,000 new items, and resident memory per
window entry (RSS growth while building / entries). An entry that has been scored as a
candidate also keeps the compact form of its title's features (``_Profile.encode``) and
its title's quantized embedding (256 bytes): their mean sizes (over 2,000 sampled entries,
and over the entries that hold a vector) are added for the "all scored" figure. The
embedding model's own resident size is measured once (RSS before and after loading it).

    .venv/bin/python bench/bench_dedup_scale.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import csv
import gc
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.dedupe import DedupeConfig, StoryIndex, StoryItem

STS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dedup"
STS = STS / "sts-headlines-dev.tsv"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def headlines() -> list[str]:
    out = []
    with STS.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            out += [row[4], row[5]]
    return out


class Gen:
    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.heads = headlines()
        vocab = {w.strip(".,:;'\"") for h in self.heads for w in h.split()}
        self.vocab = sorted(w for w in vocab if w.isalpha() and len(w) > 2)
        self.n = 0

    def item(self, ts: datetime) -> StoryItem:
        rng = self.rng
        words = rng.choice(self.heads).split()
        for i in range(len(words)):
            if rng.random() < 0.5:
                words[i] = rng.choice(self.vocab)
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), str(rng.randrange(1, 500)))
        summary = " ".join(rng.choice(self.vocab) for _ in range(rng.randrange(20, 30)))
        self.n += 1
        return StoryItem(
            key=f"e{self.n}",
            title=" ".join(words),
            summary=summary,
            published=ts,
            source=f"outlet{rng.randrange(40)}",
            url=f"https://example{rng.randrange(40)}.com/news/{self.n}",
        )


def run(size: int, probes: int = 2000) -> dict[str, float]:
    gen = Gen(seed=size)
    cfg = DedupeConfig()
    step = timedelta(hours=47) / size
    items = [gen.item(T0 + step * i) for i in range(size)]
    gc.collect()
    before = rss_bytes()
    index = StoryIndex(cfg)
    t = time.perf_counter()
    for i, it in enumerate(items):
        index.add(it, i)
    build = time.perf_counter() - t
    del items
    gc.collect()
    mem = (rss_bytes() - before) / size
    now = T0 + timedelta(hours=47)
    new = [gen.item(now) for _ in range(probes)]
    times = []
    merged = 0
    for j, it in enumerate(new):
        t = time.perf_counter()
        d = index.find(it, now)
        index.add(it, d.story_id if d.story_id is not None else size + j)
        times.append(time.perf_counter() - t)
        merged += d.story_id is not None
    times.sort()
    sample = random.Random(size).sample(sorted(index._recs), min(2000, len(index._recs)))
    compact = statistics.mean(
        sys.getsizeof(index._profile(rec[2], rec[3], None).feat)
        for rec in (index._recs[slot] for slot in sample)
    )
    vectors = [rec[9] for rec in index._recs.values() if rec[9] is not None]
    vec_b = statistics.mean(map(sys.getsizeof, vectors)) if vectors else 0.0
    return {
        "vector_b": vec_b,
        "size": size,
        "build_s": build,
        "build_per_100k_s": build / size * 100_000,
        "mean_ms": statistics.mean(times) * 1000,
        "median_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "mem_per_entry_b": mem,
        "compact_b": compact,
        "merged": merged,
    }


def model_rss() -> float:
    from monitor.dedupe.embed import embed

    gc.collect()
    before = rss_bytes()
    embed("warm up the model")
    return (rss_bytes() - before) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    if not STS.exists():
        sys.exit(f"missing {STS}")
    print(f"embedding model resident size: {model_rss():.1f} MB")
    rows = [run(int(s)) for s in args.sizes.split(",")]
    print(
        "| window entries | build (add) | per 100k | mean find+add | median | p99 | RSS/entry "
        "| all scored |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['build_s']:.1f} s | {r['build_per_100k_s']:.2f} s "
            f"| {r['mean_ms']:.3f} ms | {r['median_ms']:.3f} ms | {r['p99_ms']:.3f} ms "
            f"| {r['mem_per_entry_b']:.0f} B "
            f"| {r['mem_per_entry_b'] + r['compact_b'] + r['vector_b']:.0f} B |"
        )
    if len(rows) > 1:
        print(
            f"\nmedian ratio largest/smallest: {rows[-1]['median_ms'] / rows[0]['median_ms']:.2f}"
        )


if __name__ == "__main__":
    main()
