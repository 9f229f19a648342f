"""`wirewatch cluster` code path: JSONL in file order -> (id, story id of first item)."""

from __future__ import annotations

import json

import pytest

from monitor.cluster import cluster_lines
from monitor.dedupe import DedupeConfig

SEED_SUMMARY = (
    "North Korean leader Kim Jong Un told Russian President Vladimir Putin that deepening "
    "ties is a number one priority, as the two met at the Vostochny cosmodrome."
)
ROWS: list[dict[str, object]] = [
    {"id": 1, "title": "Kim Jong Un vows closer North Korea-Russia ties after meeting Putin "
     "at space facility", "summary": SEED_SUMMARY, "published": "2023-09-13T08:00:00Z",
     "source": "CNA", "url": "https://www.channelnewsasia.com/asia/kim-putin?utm_source=x"},
    {"id": "aj-7", "title": "North Korea's Kim vows closer ties with Russia after meeting "
     "Putin at space centre", "summary": "<p>Kim Jong Un tells Vladimir Putin that ties "
     "with Russia are a top priority, at the Vostochny cosmodrome.</p>",
     "published": "2023-09-13T08:40:00+00:00", "source": "Al Jazeera",
     "url": "https://www.aljazeera.com/news/kim-putin"},
    {"id": 3, "title": "Kim Jong Un meets Xi in Beijing", "published": "2023-09-13T09:00:00Z",
     "source": "BBC"},
    {"id": 4, "title": "UPDATE 2-Kim Jong Un meets Xi in Beijing - Reuters",
     "published": "2023-09-13T09:30:00Z", "source": "Reuters"},
    {"id": 5, "title": "Putin hosts Kim at Russian spaceport",
     "url": "https://www.channelnewsasia.com/asia/kim-putin"},
    {"id": 6},
]  # fmt: skip


def lines() -> list[str]:
    return [json.dumps(r) for r in ROWS]


def test_cluster_folds_copies_and_keeps_different_stories_apart() -> None:
    out = list(cluster_lines(lines(), DedupeConfig()))
    assert out == [
        ("1", "1"),
        ("aj-7", "1"),  # the seed story from another outlet
        ("3", "3"),  # similar but different story: Xi, not Putin
        ("4", "3"),  # wire copy with prefix and outlet suffix
        ("5", "1"),  # same canonical link (tracking parameter dropped)
        ("6", "6"),  # only an id: its own story
    ]


def test_blank_lines_skipped_and_order_is_file_order() -> None:
    src = [lines()[2], "", "   ", lines()[3]]
    assert list(cluster_lines(src, DedupeConfig())) == [("3", "3"), ("4", "3")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 3: invalid JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ('{"title": "no id"}', "line 3: missing or invalid 'id'"),
        ('{"id": 9, "published": "yesterday"}', "line 3: bad 'published'"),
        ('{"id": 9, "title": 42}', "line 3: field 'title' must be a string"),
    ],
)
def test_bad_line_raises_with_line_number(bad: str, message: str) -> None:
    src = [*lines()[:2], bad]
    with pytest.raises(ValueError, match=message):
        list(cluster_lines(src, DedupeConfig()))
