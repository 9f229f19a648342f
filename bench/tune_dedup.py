"""Tuning on the *tune* split only (captures tune days and STS train); the held-out split
is never read here.

* ``--grid NAME=v1,v2 ...``: precision and recall of each setting of ``DedupeConfig``;
* ``--fit``: refits ``MERGE_MODEL`` (L2-regularised logistic regression) on the merge
  features of every candidate pair the index weighs in the tune streams and the STS train
  pairs, with ``near`` / grade >= 4 as positive and ``different`` / grade <= 2 as
  negative (``event`` pairs and ungraded middles left out), and prints it.

    .venv/bin/python bench/tune_dedup.py [--grid NAME=v1,v2 ...] [--fit]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dedup_captures import figures, merged_pairs, score, split_data
from bench_dedup_sts import evaluate, load
from dedup_candidates import load_labels

from monitor.cluster import cluster_lines
from monitor.dedupe import DedupeConfig, StoryIndex
from monitor.dedupe.scoring import MERGE_FEATURES


def traced(lines: list[str], config: DedupeConfig) -> dict[tuple[str, str], tuple[float, ...]]:
    """The merge features of each candidate pair the index weighs, by (key, key) sorted."""
    index = StoryIndex(config)
    index.trace = []
    for _ in cluster_lines(lines, config, index):
        pass
    out = {}
    for key, slot, feats in index.trace:
        other = index.trace_keys.get(slot)
        if other is not None and other != key:
            out[(key, other) if key < other else (other, key)] = feats
    return out


def fit(xs: list[tuple[float, ...]], ys: list[int], lam: float = 1.0) -> list[float]:
    import numpy as np

    x = np.hstack([np.ones((len(xs), 1)), np.array(xs)])
    y = np.array(ys, dtype=float)
    w = np.zeros(x.shape[1])
    reg = lam * np.eye(x.shape[1])
    reg[0, 0] = 0.0
    for _ in range(30):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + reg @ w
        hess = (x.T * (p * (1 - p))) @ x + reg
        w -= np.linalg.solve(hess, grad)
    return [float(v) for v in w]


def fit_main(config: DedupeConfig, sts_weight: int = 1) -> None:
    import json

    labels = load_labels()
    xs: list[tuple[float, ...]] = []
    ys: list[int] = []
    for _s, items, pairs_in in split_data("tune"):
        feats = traced([it.jsonl() for it in items], config)
        for pair, f in feats.items():
            lab = labels.get(pair) if pair in pairs_in else None
            if lab in ("near", "different"):
                xs.append(f)
                ys.append(1 if lab == "near" else 0)
    n_cap = len(xs)
    for same, a, b, _split in (r for r in load() if r[3] == "train" and sts_weight):
        lines = [
            json.dumps({"id": "a", "title": a, "published": "2024-01-01T00:00:00Z", "source": "A"}),
            json.dumps({"id": "b", "title": b, "published": "2024-01-01T00:01:00Z", "source": "B"}),
        ]
        for f in traced(lines, config).values():
            xs.append(f)
            ys.append(1 if same else 0)
    print(
        f"fitting on {n_cap} capture pairs and {len(xs) - n_cap} STS train pairs "
        f"({sum(ys)} positive); features {MERGE_FEATURES}"
    )
    w = fit(xs, ys)
    print("MERGE_MODEL = (" + ", ".join(f"{v:.3f}" for v in w) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", nargs="*", default=[])
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--no-sts", action="store_true", help="fit on the capture pairs alone")
    args = ap.parse_args()
    if args.fit:
        fit_main(DedupeConfig(), 0 if args.no_sts else 1)
        return
    grid = {}
    for spec in args.grid:
        name, _, values = spec.partition("=")
        grid[name] = [int(v) if v.isdigit() else float(v) for v in values.split(",")]
    labels = load_labels()
    data = split_data("tune")
    sts = [r for r in load() if r[3] == "train"]
    names = list(grid)
    print("| " + " | ".join(names) + " | cap P | cap near R | cap event R | STS train P | R |")
    for values in itertools.product(*(grid[n] for n in names)):
        config = dataclasses.replace(DedupeConfig(), **dict(zip(names, values, strict=True)))
        c: Counter[str] = Counter()
        for _s, items, pairs_in in data:
            c += score(merged_pairs(items, config), labels, pairs_in)
        p, r, e = figures(c)
        tp, fp, fn = evaluate(config, sts)["all"]
        sp = tp / (tp + fp) if tp + fp else 1.0
        sr = tp / (tp + fn) if tp + fn else 0.0
        cells = " | ".join(f"{v:g}" for v in values)
        print(f"| {cells} | {p:.3f} | {r:.3f} | {e:.3f} | {sp:.3f} | {sr:.3f} |", flush=True)


if __name__ == "__main__":
    main()
