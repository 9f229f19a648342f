"""Dedupe quality on the STS headlines pairs, through the `wirewatch cluster` code path.

Each pair (grade >= 4 = same story, <= 2 = different, in between ignored) is fed to
``cluster_lines`` as a two-line JSONL file (two outlets, same minute, no links, no
summaries); the pair counts as merged when both lines get the same story id. Prints
pairwise precision/recall at the configured defaults and the curve over
``title_threshold``, for the file's ``train`` and ``dev`` splits and overall.

The title model (``monitor.dedupe.MODEL``) was fitted on the train split only;
``--fit`` refits it (L2-regularised logistic regression, Newton steps, pure Python) on
the train pairs that no guard vetoes and prints the weights to paste into dedupe.py.
The default ``title_threshold`` is the lowest value with train precision >= 0.97.

    .venv/bin/python bench/bench_dedup_sts.py [--errors N] [--fit]
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
from monitor.dedupe.textkey import features

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dedup"
STS = DATA / "sts-headlines-dev.tsv"


Row = tuple[bool, str, str, str]  # same?, title a, title b, split


def load() -> list[Row]:
    rows = []
    with STS.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            grade = float(row[3])
            if 2.0 < grade < 4.0:
                continue
            rows.append((grade >= 4.0, row[4], row[5], row[0]))
    return rows


def merged(config: DedupeConfig, a: str, b: str) -> bool:
    lines = [
        json.dumps({"id": 1, "title": a, "published": "2024-01-01T00:00:00Z", "source": "A"}),
        json.dumps({"id": 2, "title": b, "published": "2024-01-01T00:01:00Z", "source": "B"}),
    ]
    out = dict(cluster_lines(lines, config))
    return out["1"] == out["2"]


def evaluate(config: DedupeConfig, rows: list[Row]) -> dict[str, tuple[int, int, int]]:
    """(tp, fp, fn) per split and for "all"."""
    out: dict[str, list[int]] = {}
    for same, a, b, split in rows:
        m = merged(config, a, b)
        for key in (split, "all"):
            c = out.setdefault(key, [0, 0, 0])
            c[0] += same and m
            c[1] += (not same) and m
            c[2] += same and not m
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def pr(c: tuple[int, int, int]) -> str:
    tp, fp, fn = c
    return f"{tp / max(1, tp + fp):.3f} | {tp / max(1, tp + fn):.3f}"


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    n = len(b)
    m = [[*a[i], b[i]] for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(rows: list[Row], lam: float = 1.0, steps: int = 25) -> list[float]:
    """Logistic regression of same-story on the title signals, train split only."""
    import math

    from monitor.dedupe import similarity_signals, veto

    data = []
    for same, a, b, split in rows:
        if split != "train":
            continue
        fa, fb = features(a), features(b)
        if veto(fa, fb) or not fa.stems or not fb.stems:
            continue
        data.append(([1.0, *similarity_signals(fa, fb)], 1.0 if same else 0.0))
    d = len(data[0][0])
    w = [0.0] * d
    for _ in range(steps):
        g = [0.0] * d
        h = [[0.0] * d for _ in range(d)]
        for x, y in data:
            p = 1.0 / (1.0 + math.exp(-sum(wi * xi for wi, xi in zip(w, x, strict=True))))
            for j in range(d):
                g[j] += (p - y) * x[j]
                for k in range(d):
                    h[j][k] += p * (1 - p) * x[j] * x[k]
        for j in range(1, d):
            g[j] += lam * w[j]
            h[j][j] += lam
        w = [wi - si for wi, si in zip(w, _solve(h, g), strict=True)]
    return w


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--errors", type=int, default=0, help="print N errors of each kind")
    parser.add_argument("--fit", action="store_true", help="refit the title model on train")
    args = parser.parse_args()
    if not STS.exists():
        sys.exit(f"missing {STS}")
    rows = load()
    if args.fit:
        w = fit(rows)
        print("MODEL = (" + ", ".join(f"{x:.3f}" for x in w) + ")")
        return
    for split in ("train", "dev"):
        part = [r for r in rows if r[3] == split]
        pos = sum(1 for r in part if r[0])
        print(f"STS {split}: {pos} same (grade>=4), {len(part) - pos} different (grade<=2)")
    base = DedupeConfig()
    res = evaluate(base, rows)
    print(f"\ndefaults (title_threshold={base.title_threshold}):")
    for k in ("train", "dev", "all"):
        tp, fp, fn = res[k]
        print(f"  {k:5} precision | recall = {pr(res[k])} (tp {tp}, fp {fp}, fn {fn})")
    print(
        "\n| title_threshold | train P | train R | dev P | dev R | all P | all R "
        "| merged pairs (all) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for th in (40, 50, 60, 65, 70, 72, 74, 76, 78, 80, 82, 85, 90):
        cfg = dataclasses.replace(base, title_threshold=float(th))
        r = evaluate(cfg, rows)
        mark = " (default)" if th == base.title_threshold else ""
        print(
            f"| {th}{mark} | {pr(r['train'])} | {pr(r['dev'])} | {pr(r['all'])} "
            f"| {r['all'][0] + r['all'][1]} |"
        )
    if args.errors:
        from monitor.dedupe import veto

        fps, fns = [], []
        reasons: Counter[str] = Counter()
        for same, a, b, split in rows:
            m = merged(base, a, b)
            if m and not same:
                fps.append((split, a, b))
            if same and not m:
                why = veto(features(a), features(b)) or "score"
                reasons[why] += 1
                fns.append((why, split, a, b))
        print("\nfalse merges:")
        for split, a, b in fps[: args.errors]:
            print(f"  ({split}) {a}  ||  {b}")
        print(f"\nmissed ({dict(reasons)}):")
        for why, split, a, b in fns[: args.errors]:
            print(f"  [{why}] ({split}) {a}  ||  {b}")


if __name__ == "__main__":
    main()
