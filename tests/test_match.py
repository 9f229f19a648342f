"""Watchlist matching: normalisation rules, boolean/proximity forms, scope, fields, explain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.match import (
    Matcher,
    compile_watchlists,
    entry_fields,
    explain_json,
    format_explanations,
    term_words,
)
from monitor.match.schema import WatchlistFile
from monitor.models import Entry

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build(*watchlists: dict[str, Any]) -> Matcher:
    return compile_watchlists(
        WatchlistFile.model_validate({"watchlists": list(watchlists)}).watchlists
    )


def matches(term: Any, title: str, **extra: Any) -> bool:
    m = build({"name": "w", "terms": [term], **extra})
    return bool(m.match({"title": title}))


# --------------------------------------------------------------------------- normalisation

NORMALISATION = [
    # (term, text, should match, rule)
    ("Kim Jong Un", "KIM JONG UN arrives", True, "case"),
    ("Kim Jong Un", "kim jong un arrives", True, "case"),
    ("Kim Jong Un", "Kim Jong-un arrives", True, "hyphen = space"),
    ("Kim Jong-un", "Kim Jong Un arrives", True, "hyphen in term = space"),
    ("Kim Jong Un", "Kim Jong‐un arrives", True, "unicode hyphen"),
    ("Kim Jong Un", "Kim Jong–Un arrives", True, "en dash"),
    ("Kim Jong Un", "Kim Jongun arrives", True, "no space between words"),
    ("Kim Jong Un", "#KimJongUn trends", True, "all words joined"),
    ("Kim Jong Un", "Kim Jong Un's sister", True, "possessive, straight apostrophe"),
    ("Kim Jong Un", "Kim Jong Un’s sister", True, "possessive, curly apostrophe"),
    ("Kim Jong Un", "Kim Jong Un' sister", True, "trailing apostrophe"),
    ("Kim Jong Un", "Kim Jong, Un", True, "punctuation separates words like a space"),
    ("ballistic missile", "two ballistic missiles fired", True, "plural +s"),
    ("crash", "plane crashes in Nepal", True, "plural +es"),
    ("policy", "new policies announced", True, "plural y -> ies"),
    ("ballistic missile", "ballistics missile", False, "plural only on the last word"),
    ("ICBM", "North Korea tests ICBMs", True, "acronym plural"),
    ("US", "He uses a phone", False, "capitalised term is not given +es"),
    ("Zürich", "Zurich police said", True, "accents folded in term"),
    ("Zurich", "ZÜRICH police said", True, "accents folded in text"),
    ("Zurich", "Zu\u0308rich police said", True, "decomposed accent in text"),
    ("Kim", "ＫＩＭ speaks", True, "NFKC full-width letters"),
    ("Istanbul", "İstanbul airport", True, "dotted capital I"),
    ("Putin", "Rasputin was a mystic", False, "whole word: suffix"),
    ("Putin", "Putinism explained", False, "whole word: prefix"),
    ("Un", "United Nations meets", False, "whole word: Un not in United"),
    ("Un", "Kim Jong Un meets", True, "whole word: Un alone"),
    ("U.S.", "U.S. Navy", True, "abbreviation with dots"),
    ("U.S.", "tell us more", False, "single letters are never joined"),
    ("金正恩", "朝鲜领导人金正恩视察工厂", True, "Chinese without word boundaries"),
    ("金正恩", "金正日的儿子", False, "Chinese: different name"),
    ("김정은", "김정은이 말했다", True, "Korean with attached particle"),
    ("プーチン", "プーチン大統領が訪問", True, "Japanese katakana inside a run"),
    ("Putin", "プーチン大統領 Putin", True, "Latin next to CJK"),
]


@pytest.mark.parametrize(
    ("term", "text", "expected"),
    [pytest.param(t, x, e, id=rule) for t, x, e, rule in NORMALISATION],
)
def test_normalisation(term: str, text: str, expected: bool) -> None:
    assert matches(term, text) is expected


def test_term_words() -> None:
    assert term_words("Kim Jong-Un’s") == ("kim", "jong", "un", "s")
    assert term_words("  !!! ") == ()
    assert term_words("金正恩") == ("金", "正", "恩")


def test_hit_reports_canonical_terms_and_document_words() -> None:
    m = build({"name": "korea", "terms": ["ballistic missile", "Kim Jong Un", "Putin"]})
    hits = m.match(
        {
            "title": "Kim Jong-un fires ballistic missiles",
            "summary": "KIM JONG-UN said it again",
            "content": "Putin",  # not a searched field by default
        }
    )
    assert len(hits) == 1
    hit = hits[0]
    assert hit.watchlist == "korea"
    assert hit.terms == ("ballistic missile", "Kim Jong Un")  # config order, deduplicated
    assert hit.words == ("ballistic missiles", "Kim Jong-un")  # text as written, deduplicated
    assert hit.fields == ("title", "summary")


def test_alias_reports_phrase_as_term_and_alias_as_word() -> None:
    m = build(
        {"name": "w", "terms": [{"phrase": "Kim Jong Un", "aliases": ["KJU", "Kim Jong-il's son"]}]}
    )
    (hit,) = m.match({"title": "KJU speaks"})
    assert hit.terms == ("Kim Jong Un",)
    assert hit.words == ("KJU",)
    assert m.match({"title": "Kim Jong-il's son speaks"})[0].words == ("Kim Jong-il's son",)
    assert m.match({"title": "Kim Jong-il speaks"}) == []


# --------------------------------------------------------------------------- boolean forms

BOOLEAN = [
    ({"all": ["Kim Jong Un", "Putin"]}, "Kim Jong Un meets Putin", True),
    ({"all": ["Kim Jong Un", "Putin"]}, "Kim Jong Un meets Xi", False),
    ({"any": ["missile", "rocket"]}, "Rocket launch delayed", True),
    ({"any": ["missile", "rocket"]}, "Drone launch delayed", False),
    ({"all": ["Kim Jong Un", {"not": "drill"}]}, "Kim Jong Un gives a speech", True),
    ({"all": ["Kim Jong Un", {"not": "drill"}]}, "Kim Jong Un watches a drill", False),
    ({"all": [{"any": ["Kim", "Putin"]}, "summit"]}, "Putin summit", True),
    ({"all": [{"any": ["Kim", "Putin"]}, "summit"]}, "Xi summit", False),
    ({"near": ["Kim", "Putin"], "within": 3}, "Kim meets Putin", True),
    ({"near": ["Kim", "Putin"], "within": 3}, "Putin meets Kim", True),  # either order
    ({"near": ["Kim", "Putin"], "within": 3}, "Kim will soon meet Putin", True),  # 3 between
    ({"near": ["Kim", "Putin"], "within": 3}, "Kim will very soon meet Putin", False),  # 4
    ({"near": ["Kim Jong Un", "Putin"], "within": 1}, "Kim Jong-un and Putin", True),
    ({"near": ["Kim", "Putin", "Xi"], "within": 2}, "Kim, Putin and Xi", True),
    ({"near": ["Kim", "Putin", "Xi"], "within": 2}, "Kim, Putin and then later Xi", False),
    ({"near": ["Kim", "Putin"]}, "Kim " + "word " * 10 + "Putin", True),  # default within 10
    ({"near": ["Kim", "Putin"]}, "Kim " + "word " * 11 + "Putin", False),
    ({"regex": r"\bICBMs?\b"}, "North Korea fires ICBM", True),
    ({"regex": r"\bICBMs?\b"}, "ICBMX programme", False),
    ({"regex": r"zurich"}, "Zürich police", True),  # regex runs on folded text
    ({"regex": r"\d+ missiles"}, "fired 2 missiles", True),
]


@pytest.mark.parametrize(("term", "text", "expected"), BOOLEAN)
def test_boolean_and_proximity(term: dict[str, Any], text: str, expected: bool) -> None:
    assert matches(term, text) is expected


def test_near_needs_one_field() -> None:
    m = build({"name": "w", "terms": [{"near": ["Kim", "Putin"], "within": 5}]})
    assert m.match({"title": "Kim arrives", "summary": "Putin waits"}) == []
    (hit,) = m.match({"title": "Kim arrives", "summary": "Kim and Putin"})
    assert hit.fields == ("summary",)
    assert hit.terms == ("Kim", "Putin")


def test_watchlist_level_all_and_not() -> None:
    m = build(
        {"name": "w", "terms": ["Kim Jong Un", "Pyongyang"], "all": ["missile"], "not": ["drill"]}
    )
    assert [h.watchlist for h in m.match({"title": "Pyongyang fires missile"})] == ["w"]
    assert m.match({"title": "Pyongyang speech"}) == []  # all: missile missing
    assert m.match({"title": "Pyongyang missile drill"}) == []  # excluded
    assert m.match({"title": "Missile over Tokyo"}) == []  # none of terms
    only_all = build({"name": "w", "all": ["Kim", "Putin"]})
    assert only_all.match({"title": "Putin hosts Kim"})[0].terms == ("Kim", "Putin")


def test_exclusion_evidence_is_not_reported_as_matched_words() -> None:
    m = build({"name": "w", "terms": [{"all": ["Kim", {"not": "drill"}]}], "not": ["sports"]})
    (hit,) = m.match({"title": "Kim speaks"})
    assert hit.words == ("Kim",)


# --------------------------------------------------------------------------- scope and fields


@pytest.mark.parametrize(
    ("feed", "tags", "expected"),
    [
        ("bbc", (), True),
        ("cna", ("asia",), True),
        ("dw", ("europe",), False),
        ("", (), False),
    ],
)
def test_scope_by_feed_or_tag(feed: str, tags: tuple[str, ...], expected: bool) -> None:
    m = build(
        {"name": "scoped", "terms": ["Kim"], "feeds": ["bbc"], "tags": ["asia"]},
        {"name": "everywhere", "terms": ["Kim"]},
    )
    names = [h.watchlist for h in m.match({"title": "Kim"}, feed=feed, feed_tags=tags)]
    assert names == (["scoped", "everywhere"] if expected else ["everywhere"])


FIELDS = [
    ({}, {"content": "Kim arrives"}, False),  # default: title + summary only
    ({}, {"summary": "Kim arrives"}, True),
    ({"fields": ["content"]}, {"content": "Kim arrives"}, True),
    ({"fields": ["content"]}, {"title": "Kim arrives"}, False),
    ({"fields": ["author"]}, {"author": "By Kim Tong-hyung"}, True),
    ({"fields": ["categories"]}, {"categories": "Asia | Kim"}, True),
    ({"fields": ["feed"]}, {"feed": "kim-news | Kim News"}, True),
    ({"fields": ["url"]}, {"url": "https://example.com/asia/kim-visits-russia"}, True),
]


@pytest.mark.parametrize(("extra", "fields", "expected"), FIELDS)
def test_field_selection(extra: dict[str, Any], fields: dict[str, str], expected: bool) -> None:
    m = build({"name": "w", "terms": ["Kim"], **extra})
    assert bool(m.match(fields)) is expected


def test_per_term_fields_override() -> None:
    m = build(
        {
            "name": "w",
            "fields": ["title", "summary"],
            "terms": [
                {"phrase": "Kim", "fields": ["title"]},
                {"any": ["Putin"], "fields": ["content"]},
            ],
        }
    )
    assert m.match({"summary": "Kim"}) == []
    assert m.match({"title": "Kim"})[0].terms == ("Kim",)
    assert m.match({"title": "Putin"}) == []
    assert m.match({"content": "Putin"})[0].fields == ("content",)


def test_match_entry_uses_feed_scope_and_all_fields() -> None:
    entry = Entry(
        feed="bbc-world",
        source="BBC News",
        guid="1",
        link="https://www.bbc.co.uk/news/world-asia-1",
        title="Summit in Vladivostok",
        summary="Leaders meet",
        published=datetime(2023, 9, 13, tzinfo=UTC),
        categories=("Asia", "Kim Jong Un"),
        feed_tags=("asia",),
    )
    assert entry_fields(entry)["feed"] == "bbc-world | BBC News"
    m = build(
        {"name": "cat", "terms": ["Kim Jong Un"], "fields": ["categories"], "tags": ["asia"]},
        {"name": "other", "terms": ["Kim Jong Un"], "feeds": ["cna"], "fields": ["categories"]},
    )
    assert [h.watchlist for h in m.match_entry(entry)] == ["cat"]


def test_one_automaton_many_watchlists_and_stats() -> None:
    m = build(
        {"name": "a", "terms": ["Kim Jong Un", {"regex": "icbm"}]},
        {"name": "b", "terms": ["Kim Jong-un", "Putin"], "severity": "critical", "channel": "#x"},
    )
    assert m.stats["watchlists"] == 2
    assert m.stats["regexes"] == 1
    assert m.stats["phrases"] == 2  # "Kim Jong Un" and "Kim Jong-un" share one phrase key
    assert [h.watchlist for h in m.match({"title": "Kim Jong Un"})] == ["a", "b"]
    assert m.watchlists["b"].severity == "critical"
    assert m.watchlists["b"].channel == "#x"


def test_duplicate_names_rejected_and_empty_matcher_works() -> None:
    with pytest.raises(ValueError, match='duplicate watchlist name "a"'):
        build({"name": "a", "terms": ["x"]}, {"name": "a", "terms": ["y"]})
    assert build().match({"title": "anything"}) == []
    regex_only = build({"name": "r", "terms": [{"regex": r"\bicbm\b"}]})
    assert [h.watchlist for h in regex_only.match({"title": "ICBM"})] == ["r"]


@settings(max_examples=60, deadline=None)
@given(
    term=st.lists(st.text("abcdefgh", min_size=2, max_size=6), min_size=1, max_size=3),
    before=st.text("xyz ", max_size=10),
    after=st.text("xyz ", max_size=10),
    glue=st.sampled_from([" ", "-", " – ", ", "]),
)
def test_property_whole_words(term: list[str], before: str, after: str, glue: str) -> None:
    phrase = " ".join(term)
    m = build({"name": "w", "terms": [phrase]})
    # surrounded by separators: always found, with any separator between its words
    assert m.match({"title": f"{before} {glue.join(term)}'s {after}"})
    # glued to letters on the left: never found (whole-word rule)
    assert not m.match({"title": f"q{phrase.replace(' ', 'q')}"})


# --------------------------------------------------------------------------- explain


def test_explain_match_and_non_match() -> None:
    m = build(
        {"name": "korea", "terms": [{"phrase": "Kim Jong Un", "aliases": ["KJU"]}]},
        {"name": "summit", "terms": ["Kim Jong Un"], "all": ["Putin"]},
        {"name": "nodrill", "terms": ["Kim Jong Un"], "not": ["drill"]},
        {"name": "bbc", "terms": ["Kim"], "feeds": ["bbc"]},
        {"name": "near", "terms": [{"near": ["Kim", "Xi"], "within": 1}]},
    )
    fields = {"title": "Kim Jong-un watches drill", "summary": "Xi was not there with Kim"}
    expls = m.explain(fields, feed="cna")
    by = {e.watchlist: e for e in expls}
    assert [e.watchlist for e in expls] == ["korea", "summit", "nodrill", "bbc", "near"]

    korea = by["korea"]
    assert korea.matched and korea.failed == ()
    (found,) = korea.found
    assert (found.clause, found.term, found.via, found.field, found.text) == (
        "terms[0]",
        "Kim Jong Un",
        "Kim Jong Un",
        "title",
        "Kim Jong-un",
    )
    assert found.words == (0, 3) and found.chars == (0, 11)

    assert not by["summit"].matched
    assert by["summit"].failed == ('all[0] "Putin": not found in title, summary',)
    assert by["summit"].found[0].text == "Kim Jong-un"  # partial evidence is shown

    assert by["nodrill"].failed == ('not[0] "drill": found "drill" in title at word 5',)
    assert by["bbc"].failed == ('scope: feed "cna" is not in feeds [bbc]',)
    unnamed = {e.watchlist: e for e in m.explain(fields, feed="")}
    assert unnamed["bbc"].failed == ("scope: only feeds in feeds [bbc] (give --feed NAME)",)
    assert by["near"].failed == (
        'terms[0] "Kim" near "Xi" (within 1 words): closest in summary are 4 words apart',
    )

    data = explain_json(expls)
    assert data["matched"] == ["korea"]
    assert json.loads(json.dumps(data)) == data  # JSON-able
    assert data["watchlists"][0] == {
        "watchlist": "korea",
        "matched": True,
        "terms": ["Kim Jong Un"],
        "words": ["Kim Jong-un"],
        "fields": ["title"],
        "found": [
            {
                "clause": "terms[0]",
                "term": "Kim Jong Un",
                "via": "Kim Jong Un",
                "field": "title",
                "text": "Kim Jong-un",
                "words": [0, 3],
                "chars": [0, 11],
            }
        ],
        "failed": [],
    }

    text = format_explanations(expls)
    assert (
        "korea: MATCH (terms: Kim Jong Un)\n"
        '  + terms[0] "Kim Jong Un": found "Kim Jong-un" in title at words 1–3' in text
    )
    assert 'summit: no match\n  + terms[0] "Kim Jong Un": found "Kim Jong-un"' in text
    assert '  - all[0] "Putin": not found in title, summary' in text


def test_explain_alias_groups_and_multi_term_failure() -> None:
    m = build(
        {"name": "alias", "terms": [{"phrase": "Kim Jong Un", "aliases": ["KJU"]}]},
        {"name": "many", "terms": ["Putin", "Xi Jinping", {"regex": "icbm"}]},
        {"name": "grp", "terms": [{"all": ["KJU", {"any": ["missile", "rocket"]}]}]},
    )
    by = {e.watchlist: e for e in m.explain({"title": "KJU inspects factory"})}
    assert by["alias"].found[0].via == "KJU"
    assert 'found "KJU" in title at word 1 (via "KJU")' in format_explanations([by["alias"]])
    assert by["many"].failed == ("terms (3 terms): none found in title, summary",)
    assert by["grp"].failed == (
        'terms[0].all[1] any of ("missile", "rocket"): none found in title, summary',
    )


# --------------------------------------------------------------------------- real data


def test_seed_story_matches_both_terms() -> None:
    seed = DATA / "seed" / "000_d90c625a70e1933d.txt"
    if not seed.exists():
        pytest.skip(f"shared test data not present at {seed}")
    text = seed.read_text(encoding="utf-8")
    title = "Kim Jong Un vows closer North Korea-Russia ties after meeting Putin at space facility"
    m = build(
        {"name": "korea", "terms": ["Kim Jong Un", "ballistic missile"]},
        {"name": "rasputin", "terms": ["Rasputin"]},
    )
    (hit,) = m.match({"title": title, "summary": text})
    assert hit.watchlist == "korea"
    assert hit.terms == ("Kim Jong Un", "ballistic missile")
    assert "ballistic missiles" in hit.words
