"""Issue 5: CPU per entry of each stage a parse worker runs, on the bench_cycle corpus.

Run by hand:  .venv/bin/python bench/bench_parse_stages.py [--feeds 200] [--items 50]

Builds the same feed bodies ``bench_cycle.py`` serves (real headlines spliced, a fifth
wire copies), then times each stage alone in this one process with
``time.process_time`` (no server, no pool): ``feedparser.parse`` as the workers call it;
``parse_feed`` (feedparser plus turning its result into entries); dedupe's first step
(``dedupe.prepare`` with the guard features, as the workers call it); watchlist matching
(the bench's 33 terms). Each stage runs once over every entry, caches as in a fresh
worker. Prints µs per entry and the CPU-s that 50,000 entries would take.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import feedparser
from common import WATCHLISTS, build_feed_bodies, machine, table

from monitor.dedupe import DedupeConfig, prepare
from monitor.match import compile_watchlists
from monitor.match.schema import WatchlistFile
from monitor.parse import install_speedups, parse_feed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--items", type=int, default=50)
    args = ap.parse_args()
    bodies = build_feed_bodies(args.feeds, args.items, now=datetime.now(UTC))
    headers = {"content-type": "application/rss+xml"}
    install_speedups()
    matcher = compile_watchlists(
        WatchlistFile.model_validate({"watchlists": WATCHLISTS}).watchlists
    )
    chars = DedupeConfig().summary_chars

    t = time.process_time()
    for body in bodies:
        feedparser.parse(
            body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    fp = time.process_time() - t

    t = time.process_time()
    results = [
        parse_feed(body, headers, url="https://example.org/feed", feed="f", source="s")
        for body in bodies
    ]
    pf = time.process_time() - t
    entries = [e for r in results for e in r.entries]

    t = time.process_time()
    for e in entries:
        prepare(e.title, e.summary, e.source, chars, features=True)
    pr = time.process_time() - t

    t = time.process_time()
    for e in entries:
        matcher.match_entry(e)
    mt = time.process_time() - t

    n = len(entries)
    rows = [
        ("`feedparser.parse` as the workers call it", fp),
        ("`parse_feed` (feedparser + entries)", pf),
        ("  of which turning feedparser's result into entries", pf - fp),
        ("dedupe's first step (`prepare`, with guard features)", pr),
        ("watchlist matching (33 terms)", mt),
    ]
    print(f"Machine: {machine()}. {len(bodies)} feeds, {n} entries.")
    print()
    print(
        table(
            ["stage", "µs per entry", "CPU-s per 50,000 entries"],
            [(name, f"{cpu / n * 1e6:.0f}", f"{cpu / n * 50_000:.1f}") for name, cpu in rows],
        )
    )


if __name__ == "__main__":
    main()
