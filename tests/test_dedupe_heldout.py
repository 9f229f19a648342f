"""`wirewatch cluster` on the held-out labelled captures (issue 12), when ../shared is there.

The held-out split (bench/DEDUP_LABELLING.md) is never tuned on. The regression floor is
what this code measured when the split was first evaluated, less a small margin, so a
change that makes dedup worse on news it was not tuned on fails here. The issue's target
(P >= 0.97, near recall >= 0.90) is not reached yet: that test is marked xfail with the
measured figures, so it shows in every run and turns into a pass when the target is met.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from dedup_candidates import load_labels  # noqa: E402
from dedup_corpus import available, streams  # noqa: E402

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not available(), reason="needs ../shared/data/captures"),
]


@pytest.fixture(scope="module")
def heldout() -> tuple[float, float, int]:
    from bench_dedup_captures import figures, merged_pairs, score

    from monitor.dedupe import DedupeConfig

    labels = load_labels()
    total: Counter[str] = Counter()
    for _stream, items in streams("heldout"):
        keys = {it.key for it in items}
        pairs_in = {p for p in labels if p[0] in keys and p[1] in keys}
        total += score(merged_pairs(items, DedupeConfig()), labels, pairs_in)
    p, r, _e = figures(total)
    return p, r, total["unlabelled"]


def test_every_merge_on_the_heldout_split_is_labelled(heldout: tuple[float, float, int]) -> None:
    # a figure over pairs nobody looked at means nothing: label them first
    # (bench/dedup_candidates.py)
    assert heldout[2] == 0


def test_heldout_quality_does_not_fall_below_what_was_measured(
    heldout: tuple[float, float, int],
) -> None:
    precision, near_recall, _ = heldout
    assert precision >= 0.90, precision
    assert near_recall >= 0.44, near_recall


@pytest.mark.xfail(
    reason="issue 12's target is not reached: held-out P 0.920 / near recall 0.454 "
    "(bench/RESULTS.md, story dedup)",
    strict=False,
)
def test_heldout_quality_meets_the_issue_target(heldout: tuple[float, float, int]) -> None:
    precision, near_recall, _ = heldout
    assert precision >= 0.97
    assert near_recall >= 0.90
