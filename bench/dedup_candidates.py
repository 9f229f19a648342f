"""Candidate pairs for labelling: every pair that any method proposes, per split.

Methods (a pair enters the pool when any one proposes it; see ``bench/DEDUP_LABELLING.md``):

* ``wirewatch``: co-clustered by ``wirewatch cluster`` (the code at the time of the run;
  run again after every change of the method, so its new pairs are labelled too);
* ``exact``: identical titles after case and whitespace folding;
* ``embed``: cosine of the titles' static embeddings (the model Wirewatch ships) >= 0.60;
* ``lexical``: rapidfuzz ``token_set_ratio`` >= 60 over case-folded titles with 3+ words.

Pairs already in ``bench/dedup_labels.tsv`` are skipped; the rest are written, with
their titles read from ``../shared/data``, to ``--out`` (default
``/tmp/dedup_to_label.tsv``), one per line: split, key_a, key_b, methods, outlet_a,
title_a, outlet_b, title_b. Only pairs within one stream (one day) are proposed.

    .venv/bin/python bench/dedup_candidates.py [--split tune|heldout|all]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedup_corpus import SPLITS, Item, available, streams

if TYPE_CHECKING:
    from monitor.dedupe import DedupeConfig

HERE = Path(__file__).resolve().parent
LABELS = HERE / "dedup_labels.tsv"

Pair = tuple[str, str]


def norm_pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def load_labels() -> dict[Pair, str]:
    out: dict[Pair, str] = {}
    if not LABELS.exists():
        return out
    with LABELS.open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if not row or row[0].startswith("#") or row[0] == "split":
                continue
            out[norm_pair(row[1], row[2])] = row[3]
    return out


def cluster_pairs(items: list[Item], config: DedupeConfig | None = None) -> set[Pair]:
    """Every pair of items `wirewatch cluster` puts in one story."""
    from monitor.cluster import cluster_lines
    from monitor.dedupe import DedupeConfig

    stories: dict[str, list[str]] = defaultdict(list)
    lines = (it.jsonl() for it in items)
    for key, story in cluster_lines(lines, config or DedupeConfig()):
        stories[story].append(key)
    out: set[Pair] = set()
    for members in stories.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if a != b:
                    out.add(norm_pair(a, b))
    return out


def exact_pairs(items: list[Item]) -> set[Pair]:
    groups: dict[str, list[str]] = defaultdict(list)
    for it in items:
        groups[" ".join(it.title.casefold().split())].append(it.key)
    out: set[Pair] = set()
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                out.add(norm_pair(a, b))
    return out


def embed_pairs(items: list[Item], threshold: float = 0.60) -> set[Pair]:
    import numpy as np

    from monitor.dedupe.embed import embed_many

    vecs = embed_many([it.title for it in items])
    sims = vecs @ vecs.T
    out: set[Pair] = set()
    idx = np.argwhere(np.triu(sims, 1) >= threshold)
    for i, j in idx:
        out.add(norm_pair(items[i].key, items[j].key))
    return out


def lexical_pairs(items: list[Item], threshold: float = 60.0) -> set[Pair]:
    from rapidfuzz import fuzz, process

    titles = [it.title.casefold() for it in items]
    ok = [len(t.split()) >= 3 for t in titles]
    out: set[Pair] = set()
    scores = process.cdist(titles, titles, scorer=fuzz.token_set_ratio, workers=1)
    n = len(items)
    for i in range(n):
        if not ok[i]:
            continue
        for j in range(i + 1, n):
            if ok[j] and scores[i][j] >= threshold:
                out.add(norm_pair(items[i].key, items[j].key))
    return out


METHODS = {
    "wirewatch": cluster_pairs,
    "exact": exact_pairs,
    "embed": embed_pairs,
    "lexical": lexical_pairs,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="all", choices=(*SPLITS, "all"))
    ap.add_argument("--out", default="/tmp/dedup_to_label.tsv")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    if not available():
        sys.exit("../shared/data/captures is not there")
    labelled = load_labels()
    splits = SPLITS if args.split == "all" else (args.split,)
    rows = []
    for split in splits:
        for stream, items in streams(split):
            by_key = {it.key: it for it in items}
            proposed: dict[Pair, list[str]] = defaultdict(list)
            for name in args.methods.split(","):
                for pair in METHODS[name](items):
                    proposed[pair].append(name)
            new = [p for p in proposed if p not in labelled]
            print(f"{split} {stream}: {len(items)} items, {len(proposed)} pairs, {len(new)} new")
            for a, b in sorted(new):
                ia, ib = by_key[a], by_key[b]
                how = "+".join(proposed[(a, b)])
                rows.append((split, a, b, how, ia.source, ia.title, ib.source, ib.title))
    with open(args.out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerows(rows)
    print(f"{len(rows)} pairs to label -> {args.out}")


if __name__ == "__main__":
    main()
