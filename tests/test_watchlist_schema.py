"""Watchlist schema: valid forms, and errors located on the offending node, quoting it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from monitor.match.schema import Term, Watchlist, WatchlistFile

FULL_EXAMPLE = r"""
watchlists:
  - name: korea
    channel: "#alerts"
    severity: high
    min_sources: 2
    followups: suppress
    fields: [title, summary]
    feeds: [bbc]
    tags: [asia]
    terms:
      - Kim Jong Un
      - phrase: Kim Jong Un
        aliases: [Kim Jong-un, KJU]
        fields: [title]
      - regex: '\bICBMs?\b'
      - near: [Kim, Putin]
        within: 10
      - all: [Kim Jong Un, Putin, {not: drill}]
      - any: [missile, rocket]
    all: [North Korea]
    not: [drill, {any: [sports, football]}]
  - name: simple
    terms: ["Kim Jong Un", "ballistic missile"]
"""


def test_simplest_form_and_defaults() -> None:
    wf = WatchlistFile.model_validate(
        {"watchlists": [{"name": "x", "terms": ["Kim Jong Un", "ballistic missile"]}]}
    )
    (wl,) = wf.watchlists
    assert wl.name == "x"
    assert [t.phrase for t in wl.terms] == ["Kim Jong Un", "ballistic missile"]
    assert [t.kind for t in wl.terms] == ["phrase", "phrase"]
    assert (wl.channel, wl.severity, wl.min_sources, wl.followups) == (None, "info", 1, "thread")
    assert wl.fields == ("title", "summary")
    assert (wl.feeds, wl.tags, wl.all_, wl.not_) == ((), (), (), ())


def test_full_example_validates() -> None:
    wf = WatchlistFile.model_validate(yaml.safe_load(FULL_EXAMPLE))
    korea = wf.watchlists[0]
    assert [t.kind for t in korea.terms] == ["phrase", "phrase", "regex", "near", "all", "any"]
    assert korea.terms[1].aliases == ("Kim Jong-un", "KJU")
    assert korea.terms[1].fields == ("title",)
    assert korea.terms[3].near_within == 10
    assert korea.terms[4].all_ is not None and korea.terms[4].all_[2].kind == "not"
    assert (korea.severity, korea.min_sources, korea.followups) == ("high", 2, "suppress")
    assert korea.not_[1].kind == "any"
    hash(korea)  # frozen: usable as a dict key / comparable across reloads


def test_scalars_are_forgiving_where_unambiguous() -> None:
    wl = Watchlist.model_validate(
        {"name": " x ", "terms": ["  Kim  ", 1984], "severity": "HIGH", "fields": ["Title"]}
    )
    assert wl.name == "x"
    assert [t.phrase for t in wl.terms] == ["Kim", "1984"]
    assert wl.severity == "high"
    assert wl.fields == ("title",)
    assert Term.model_validate({"near": ["a", "b"]}).near_within == 10


def _wl(**kw: Any) -> dict[str, Any]:
    return {"watchlists": [{"name": "x", "terms": ["a"], **kw}]}


ERRORS = [
    # (data, expected loc, substring of the message)
    (
        _wl(terms=["a", {"regex": "foo("}]),
        ("watchlists", 0, "terms", 1, "regex"),
        'invalid regex "foo(": missing ), unterminated subpattern at position 3',
    ),
    (
        _wl(terms=[{"regex": "x|"}]),
        ("watchlists", 0, "terms", 0, "regex"),
        'regex "x|" matches empty text',
    ),
    (
        _wl(terms=[{"regex": "Zürich"}]),
        ("watchlists", 0, "terms", 0, "regex"),
        'regex "Zürich" contains "ü"',
    ),
    (
        _wl(fields=["title", "titel"]),
        ("watchlists", 0, "fields", 1),
        'unknown field "titel" (did you mean "title"?)',
    ),
    (
        _wl(terms=[{"phrase": "a", "fields": ["body"]}]),
        ("watchlists", 0, "terms", 0, "fields", 0),
        'unknown field "body"',
    ),
    (_wl(fields=[]), ("watchlists", 0, "fields"), "fields is empty"),
    (_wl(terms=["a", "  "]), ("watchlists", 0, "terms", 1), 'empty term "  "'),
    (_wl(terms=["a", None]), ("watchlists", 0, "terms", 1), "empty term (null)"),
    (_wl(terms=[{"phrase": ""}]), ("watchlists", 0, "terms", 0, "phrase"), 'empty term ""'),
    (_wl(terms=["!!!"]), ("watchlists", 0, "terms", 0), 'term "!!!" has no letters or digits'),
    (
        _wl(terms=[{"phrase": "a", "aliases": ["b", " "]}]),
        ("watchlists", 0, "terms", 0, "aliases", 1),
        'empty alias " "',
    ),
    (_wl(terms=[False]), ("watchlists", 0, "terms", 0), "YAML boolean false"),
    (
        _wl(severity="urgent"),
        ("watchlists", 0, "severity"),
        'unknown severity "urgent"; allowed: info, high, critical',
    ),
    (_wl(followups="threads"), ("watchlists", 0, "followups"), 'unknown followups "threads"'),
    (
        _wl(sevrity="high"),
        ("watchlists", 0, "sevrity"),
        'unknown key "sevrity" (did you mean "severity"?)',
    ),
    (
        _wl(terms=[{"phrse": "a"}]),
        ("watchlists", 0, "terms", 0, "phrse"),
        'unknown key "phrse" (did you mean "phrase"?)',
    ),
    ({"watchlist": []}, ("watchlist",), 'unknown key "watchlist"'),
    ({"watchlists": [{"terms": ["a"]}]}, ("watchlists", 0, "name"), 'missing required key "name"'),
    ({"watchlists": [{"name": "x"}]}, ("watchlists", 0), 'watchlist "x" has nothing to match'),
    (_wl(terms="Kim"), ("watchlists", 0, "terms"), 'expected a list, got the text "Kim"'),
    (
        _wl(min_sources=0),
        ("watchlists", 0, "min_sources"),
        "min_sources must be at least 1 (got 0)",
    ),
    (
        _wl(terms=[{"near": ["a", "b"], "within": 0}]),
        ("watchlists", 0, "terms", 0, "within"),
        "within (words) must be at least 1 (got 0)",
    ),
    (
        _wl(terms=[{"near": ["a"]}]),
        ("watchlists", 0, "terms", 0, "near"),
        "near needs at least two phrases, got 1",
    ),
    (
        _wl(terms=[{"near": ["a", {"regex": "b"}]}]),
        ("watchlists", 0, "terms", 0, "near", 1),
        'near items must be plain phrases (text or {phrase, aliases}), got a regex term regex "b"',
    ),
    (
        _wl(terms=[{"phrase": "a", "within": 3}]),
        ("watchlists", 0, "terms", 0),
        "within only applies to a near term",
    ),
    (
        _wl(terms=[{"phrase": "a", "regex": "b"}]),
        ("watchlists", 0, "terms", 0),
        "this one has phrase and regex",
    ),
    (_wl(terms=[{"fields": ["title"]}]), ("watchlists", 0, "terms", 0), "a term needs one of"),
    (
        _wl(terms=[{"regex": "a", "aliases": ["b"]}]),
        ("watchlists", 0, "terms", 0),
        "aliases belong to a phrase term",
    ),
    (
        _wl(terms=["a", {"not": "drill"}]),
        ("watchlists", 0, "terms", 1),
        'it would match every entry without "drill"',
    ),
    (
        _wl(terms=[{"any": ["a", {"not": "b"}]}]),
        ("watchlists", 0, "terms", 0, "any", 1),
        "a not term is only meaningful inside all:",
    ),
    (_wl(**{"not": [{"not": "b"}]}), ("watchlists", 0, "not", 0), "a not term is only meaningful"),
    (
        _wl(terms=[{"all": [{"not": "drill"}]}]),
        ("watchlists", 0, "terms", 0),
        "all: needs at least one term that is not a not:",
    ),
    (_wl(terms=[{"all": []}]), ("watchlists", 0, "terms", 0, "all"), "empty group"),
    (
        _wl(terms=[{"all": ["a", {"any": ["b", {"regex": "("}]}]}]),
        ("watchlists", 0, "terms", 0, "all", 1, "any", 1, "regex"),
        'invalid regex "("',
    ),
    (_wl(channel=""), ("watchlists", 0, "channel"), 'empty channel ""'),
    (_wl(feeds=["bbc", ""]), ("watchlists", 0, "feeds", 1), 'empty feed name ""'),
]


@pytest.mark.parametrize(("data", "loc", "message"), ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_error_points_at_node_and_quotes_text(
    data: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        WatchlistFile.model_validate(data)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [loc], errors
    assert message in errors[0]["msg"]


def test_every_error_reported_at_once() -> None:
    data = {
        "watchlists": [
            {"name": "a", "terms": [{"regex": "("}], "severity": "loud"},
            {"name": "b", "terms": ["ok"], "fields": ["nope"]},
        ]
    }
    with pytest.raises(ValidationError) as info:
        WatchlistFile.model_validate(data)
    assert {e["loc"] for e in info.value.errors()} == {
        ("watchlists", 0, "terms", 0, "regex"),
        ("watchlists", 0, "severity"),
        ("watchlists", 1, "fields", 0),
    }


def test_braces_in_user_text_survive_messages() -> None:
    with pytest.raises(ValidationError) as info:
        WatchlistFile.model_validate(_wl(terms=[{"regex": r"\d{2,1}"}]))
    assert r'invalid regex "\d{2,1}"' in info.value.errors()[0]["msg"]
