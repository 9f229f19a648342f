"""Dedup quality on real captures, tune split beside held-out split.

Runs each stream of ``bench/dedup_corpus.py`` through ``cluster_lines`` (the
`wirewatch cluster` code path, the daemon's decisions) and scores the merges against the
labelled pairs of ``bench/dedup_labels.tsv`` (protocol: ``bench/DEDUP_LABELLING.md``):

* precision = merged near / (merged near + merged different); event pairs count neither way;
* near recall = merged near / near; event recall = merged event / event.

Baselines on the same pairs: ``identical title`` (FreshRSS's rule: the same title after
case and whitespace folding) and ``embedding only`` (one cosine threshold on the titles'
static embeddings, the threshold chosen on the tune split for precision >= 0.97... or the
best it reaches). A merged pair that is not labelled is counted and listed: label it
(``bench/dedup_candidates.py``) before reporting a figure.

    .venv/bin/python bench/bench_dedup_captures.py [--errors heldout|tune] [--baselines]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_candidates import Pair, cluster_pairs, exact_pairs, load_labels, norm_pair
from dedup_corpus import SPLITS, Item, available, streams

from monitor.cluster import cluster_lines
from monitor.dedupe import DedupeConfig


def merged_pairs(items: list[Item], config: DedupeConfig) -> set[Pair]:
    return cluster_pairs(items, config)


Counts = Counter[str]


def score(merged: set[Pair], labels: dict[Pair, str], pairs_in: set[Pair]) -> Counts:
    c: Counts = Counter()
    for pair in pairs_in:
        lab = labels[pair]
        c[lab] += 1
        if pair in merged:
            c["merged_" + lab] += 1
    c["unlabelled"] = len(merged - pairs_in)
    return c


def figures(c: Counts) -> tuple[float, float, float]:
    mn, md, me = c["merged_near"], c["merged_different"], c["merged_event"]
    p = mn / (mn + md) if mn + md else 1.0
    r = mn / c["near"] if c["near"] else 0.0
    e = me / c["event"] if c["event"] else 0.0
    return p, r, e


def split_data(split: str) -> list[tuple[str, list[Item], set[Pair]]]:
    labels = load_labels()
    out = []
    for stream, items in streams(split):
        keys = {it.key for it in items}
        pairs_in = {p for p in labels if p[0] in keys and p[1] in keys}
        out.append((stream, items, pairs_in))
    return out


def embed_merges(items: list[Item], threshold: float) -> set[Pair]:
    from dedup_candidates import embed_pairs

    return embed_pairs(items, threshold)


def _miss_kind(a: Item, b: Item, config: DedupeConfig, weighed: set[Pair]) -> str:
    """Why a near pair was left apart, in the index's own terms."""
    from datetime import datetime

    from monitor.dedupe.scoring import veto
    from monitor.dedupe.textkey import features

    if a.published and b.published:
        gap = abs(datetime.fromisoformat(a.published) - datetime.fromisoformat(b.published))
        if gap.total_seconds() > config.window_hours * 3600:
            return "outside the window (dates further apart)"
    if norm_pair(a.key, b.key) in weighed:
        return "weighed, below the merge threshold"
    fa, fb = features(a.title, a.source), features(b.title, b.source)
    if fa.series or fb.series:
        return "series title (merges on the same link only)"
    why = veto(fa, fb)
    if why:
        return f"vetoed: {why}"
    return "never weighed (few shared words: not a candidate, or below the lexical floor)"


def kinds(split: str, config: DedupeConfig) -> None:
    """Held-out false merges by the decision that made them, misses by why."""
    from tune_dedup import traced

    labels = load_labels()
    merges: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    for _stream, items, pairs_in in split_data(split):
        by_key = {it.key: it for it in items}
        weighed = set(traced([it.jsonl() for it in items], config))
        stories: dict[str, list[str]] = defaultdict(list)
        story_of = {}
        for key, story in cluster_lines((it.jsonl() for it in items), config):
            stories[story].append(key)
            story_of[key] = story
        for pair in pairs_in:
            lab = labels[pair]
            a, b = by_key[pair[0]], by_key[pair[1]]
            same = story_of[pair[0]] == story_of[pair[1]]
            if lab == "different" and same:
                direct = pair in weighed
                if a.url and a.url == b.url:
                    merges["same link"] += 1
                elif direct:
                    merges["merge model (titles weighed against each other)"] += 1
                else:
                    merges["through a third item (each merged with it)"] += 1
            elif lab == "near" and not same:
                misses[_miss_kind(a, b, config, weighed)] += 1
    print(f"\n{split} false merges by cause (labelled pairs):")
    for k, n in merges.most_common():
        print(f"  {n:4d}  {k}")
    print(f"{split} missed near pairs by cause:")
    for k, n in misses.most_common():
        print(f"  {n:4d}  {k}")


def run(split: str, config: DedupeConfig, errors: bool) -> Counts:
    labels = load_labels()
    total: Counts = Counter()
    by_key: dict[str, Item] = {}
    wrong: list[tuple[str, Item, Item]] = []
    for _stream, items, pairs_in in split_data(split):
        by_key.update({it.key: it for it in items})
        merged = merged_pairs(items, config)
        total += score(merged, labels, pairs_in)
        if errors:
            for pair in sorted(merged - pairs_in):
                wrong.append(("UNLABELLED", by_key[pair[0]], by_key[pair[1]]))
            for pair in sorted(pairs_in):
                lab = labels[pair]
                if lab == "different" and pair in merged:
                    wrong.append(("FALSE MERGE", by_key[pair[0]], by_key[pair[1]]))
                elif lab == "near" and pair not in merged:
                    wrong.append(("MISS", by_key[pair[0]], by_key[pair[1]]))
    for kind, a, b in wrong:
        print(f"{kind}\t{a.source}\t{a.title}\t{b.source}\t{b.title}")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--errors", choices=SPLITS, help="list the false merges and misses")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("--kinds", choices=SPLITS, help="false merges and misses by cause")
    args = ap.parse_args()
    if not available():
        sys.exit("../shared/data/captures is not there")
    config = DedupeConfig()
    rows = []
    for split in SPLITS:
        c = run(split, config, args.errors == split)
        p, r, e = figures(c)
        rows.append((split, "wirewatch", c, p, r, e))
        if args.baselines:
            labels = load_labels()
            for name, fn in (("identical title", exact_pairs),):
                bc: Counts = Counter()
                for _s, items, pairs_in in split_data(split):
                    bc += score(fn(items), labels, pairs_in)
                rows.append((split, name, bc, *figures(bc)))
            for t in (0.80, 0.85, 0.90):
                bc = Counter()
                for _s, items, pairs_in in split_data(split):
                    bc += score(embed_merges(items, t), labels, pairs_in)
                rows.append((split, f"embedding cosine >= {t:.2f}", bc, *figures(bc)))
    print("| split | method | pairs (near/event/different) | P | near R | event R | unlabelled |")
    print("|---|---|---|---:|---:|---:|---:|")
    for split, name, c, p, r, e in rows:
        print(
            f"| {split} | {name} | {c['near']}/{c['event']}/{c['different']} | "
            f"{p:.3f} | {r:.3f} | {e:.3f} | {c['unlabelled']} |"
        )
    if args.kinds:
        kinds(args.kinds, config)


if __name__ == "__main__":
    main()
