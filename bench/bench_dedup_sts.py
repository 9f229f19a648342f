"""Dedupe quality on the STS headlines pairs, through the `wirewatch cluster` code path.

Each pair (grade >= 4 = same story, <= 2 = different, in between ignored) is fed to
``cluster_lines`` as a two-line JSONL file (two outlets, same minute, no links, no
summaries); the pair counts as merged when both lines get the same story id. Prints
pairwise precision/recall at the configured defaults and the curve over
``title_threshold``.

    .venv/bin/python bench/bench_dedup_sts.py [--errors N]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.cluster import cluster_lines
from monitor.dedupe import DedupeConfig
from monitor.storykey import features

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dedup"
STS = DATA / "sts-headlines-dev.tsv"


def load() -> list[tuple[bool, str, str]]:
    rows = []
    with STS.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            grade = float(row[3])
            if 2.0 < grade < 4.0:
                continue
            rows.append((grade >= 4.0, row[4], row[5]))
    return rows


def merged(config: DedupeConfig, a: str, b: str) -> bool:
    lines = [
        json.dumps({"id": 1, "title": a, "published": "2024-01-01T00:00:00Z", "source": "A"}),
        json.dumps({"id": 2, "title": b, "published": "2024-01-01T00:01:00Z", "source": "B"}),
    ]
    out = dict(cluster_lines(lines, config))
    return out["1"] == out["2"]


def evaluate(config: DedupeConfig, rows: list[tuple[bool, str, str]]) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for same, a, b in rows:
        m = merged(config, a, b)
        tp += same and m
        fp += (not same) and m
        fn += same and not m
    return tp, fp, fn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--errors", type=int, default=0, help="print N errors of each kind")
    args = parser.parse_args()
    if not STS.exists():
        sys.exit(f"missing {STS}")
    rows = load()
    pos = sum(1 for r in rows if r[0])
    print(f"STS headlines: {pos} same (grade>=4), {len(rows) - pos} different (grade<=2)")
    base = DedupeConfig()
    tp, fp, fn = evaluate(base, rows)
    p = tp / max(1, tp + fp)
    r = tp / max(1, tp + fn)
    print(
        f"\ndefaults (title_threshold={base.title_threshold}): precision {p:.3f} "
        f"recall {r:.3f} (tp {tp}, fp {fp}, fn {fn})\n"
    )
    print("| title_threshold | precision | recall | merged pairs |")
    print("|---:|---:|---:|---:|")
    for th in (40, 50, 60, 65, 68, 70, 72, 74, 76, 80, 85, 90):
        cfg = dataclasses.replace(base, title_threshold=float(th))
        tp, fp, fn = evaluate(cfg, rows)
        print(f"| {th} | {tp / max(1, tp + fp):.3f} | {tp / max(1, tp + fn):.3f} | {tp + fp} |")
    if args.errors:
        from monitor.dedupe import veto

        fps, fns = [], []
        reasons: Counter[str] = Counter()
        for same, a, b in rows:
            m = merged(base, a, b)
            if m and not same:
                fps.append((a, b))
            if same and not m:
                why = veto(features(a), features(b)) or "score"
                reasons[why] += 1
                fns.append((why, a, b))
        print("\nfalse merges:")
        for a, b in fps[: args.errors]:
            print(f"  {a}  ||  {b}")
        print(f"\nmissed ({dict(reasons)}):")
        for why, a, b in fns[: args.errors]:
            print(f"  [{why}] {a}  ||  {b}")


if __name__ == "__main__":
    main()
