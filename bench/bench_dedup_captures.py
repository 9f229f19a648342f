"""Dedupe quality on hand-labelled cross-outlet pairs from real RSS captures.

``bench/captures_pairs.tsv`` holds pairs of titles from the gesab001 captures (same
capture day, different outlets), labelled by hand: ``same_report`` (the same news
item), ``same_event`` (the same event, another angle or a follow-up) or ``different``.
Each pair goes through ``cluster_lines`` (the `wirewatch cluster` code path) as two lines;
summaries are looked up in the captures when they are present (``--no-summaries`` to
score titles alone). Reported two ways:

* strict: ``same_report`` must merge, ``different`` must not, ``same_event`` ignored;
* lenient: ``same_report`` + ``same_event`` positive, ``different`` negative.

    .venv/bin/python bench/bench_dedup_captures.py [--no-summaries] [--errors]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.cluster import cluster_lines
from monitor.dedupe import DedupeConfig
from monitor.normalize import html_to_text

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "captures_pairs.tsv"
CAPTURES = HERE.parents[1] / "shared" / "data" / "captures" / "gesab001"

Pair = tuple[str, str, str, str, str, str]  # label, day, title_a, source_a, title_b, source_b


def load_pairs() -> list[Pair]:
    with PAIRS.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in reader]


def load_summaries() -> dict[tuple[str, str, str], str]:
    """(day, outlet, title) -> summary, from the raw captures (empty when absent)."""
    out: dict[tuple[str, str, str], str] = {}
    if not CAPTURES.is_dir():
        return out
    import feedparser

    for capture in sorted(CAPTURES.iterdir()):
        day = capture.name[:10]
        for xml in sorted(capture.glob("*.xml")):
            parsed = feedparser.parse(xml.read_bytes())
            for entry in parsed.entries:
                title = html_to_text(entry.get("title", "")).strip()
                if title:
                    out.setdefault((day, xml.stem, title), html_to_text(entry.get("summary", "")))
    return out


def merged(config: DedupeConfig, pair: Pair, summaries: dict[tuple[str, str, str], str]) -> bool:
    _label, day, ta, sa, tb, sb = pair
    lines = [
        json.dumps(
            {
                "id": i,
                "title": t,
                "summary": summaries.get((day, s, t), ""),
                "source": s,
                "published": f"{day}T12:0{i}:00Z",
                "url": f"https://{s}.example/{i}",
            }
        )
        for i, (t, s) in enumerate(((ta, sa), (tb, sb)))
    ]
    out = dict(cluster_lines(lines, config))
    return out["0"] == out["1"]


def score(results: list[tuple[str, bool]], positives: set[str]) -> tuple[float, float, int, int]:
    tp = sum(1 for label, m in results if m and label in positives)
    fp = sum(1 for label, m in results if m and label == "different")
    pos = sum(1 for label, _m in results if label in positives)
    return tp / max(1, tp + fp), tp / max(1, pos), tp, fp


def evaluate(config: DedupeConfig, pairs: list[Pair], summaries: dict) -> list[tuple[str, bool]]:
    return [(p[0], merged(config, p, summaries)) for p in pairs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-summaries", action="store_true")
    parser.add_argument("--errors", action="store_true")
    args = parser.parse_args()
    pairs = load_pairs()
    summaries = {} if args.no_summaries else load_summaries()
    have = sum(
        1 for p in pairs if summaries.get((p[1], p[3], p[2])) and summaries.get((p[1], p[5], p[4]))
    )
    counts = {
        k: sum(1 for p in pairs if p[0] == k) for k in ("same_report", "same_event", "different")
    }
    print(f"{len(pairs)} pairs {counts}; both summaries present for {have}")
    base = DedupeConfig()
    print("\n| title_threshold | strict P | strict R | lenient P | lenient R |")
    print("|---:|---:|---:|---:|---:|")
    for th in (50, 60, 65, 70, 72, 74, 76, 78, 80, 85):
        cfg = dataclasses.replace(base, title_threshold=float(th))
        res = evaluate(cfg, pairs, summaries)
        sp, sr, _, _ = score([r for r in res if r[0] != "same_event"], {"same_report"})
        lp, lr, _, _ = score(res, {"same_report", "same_event"})
        mark = " (default)" if th == base.title_threshold else ""
        print(f"| {th}{mark} | {sp:.3f} | {sr:.3f} | {lp:.3f} | {lr:.3f} |")
    if not args.no_summaries and have:
        print("\nsummary_threshold sweep at the default title threshold:")
        print("| summary_threshold | strict P | strict R | lenient P | lenient R |")
        print("|---:|---:|---:|---:|---:|")
        for sth in (30, 35, 40, 45, 50, 55, 60, 101):
            cfg = dataclasses.replace(base, summary_threshold=float(sth))
            res = evaluate(cfg, pairs, summaries)
            sp, sr, _, _ = score([r for r in res if r[0] != "same_event"], {"same_report"})
            lp, lr, _, _ = score(res, {"same_report", "same_event"})
            label = "off" if sth > 100 else str(sth)
            print(f"| {label} | {sp:.3f} | {sr:.3f} | {lp:.3f} | {lr:.3f} |")
    if args.errors:
        res = evaluate(base, pairs, summaries)
        for p, (label, m) in zip(pairs, res, strict=True):
            if (label == "different" and m) or (label == "same_report" and not m):
                print(f"{'FALSE MERGE' if m else 'missed':12} {p[2]} [{p[3]}] || {p[4]} [{p[5]}]")


if __name__ == "__main__":
    main()
