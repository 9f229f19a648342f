"""The fast paths of story dedupe give exactly what the plain definitions give.

The index keeps a compact form of each scored title's features, scores candidates first
with two signals at their bounds, reads the names guard off the stems ``_match`` found
covered, keeps summaries as stems, and reads stored rows without SQLAlchemy's datetime
processing; storykey folds quotes, strips wire prefixes and tokenises with shortcuts.
Each shortcut is checked here against the plain computation it replaces."""

from __future__ import annotations

import asyncio
import gc
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from monitor import normalize
from monitor.dedupe import textkey as storykey
from monitor.dedupe.index import (
    _NO_STEMS,
    _SUMMARY,
    DedupeConfig,
    StoryIndex,
    StoryItem,
    _late_veto,
    _match,
    _model_score,
    _Profile,
    _quick_veto,
    veto,
)
from monitor.dedupe.scoring import (
    _covered,
    _near_pairs,
    _tokens_match,
    model_score,
    similarity_signals,
    summary_score,
)
from monitor.dedupe.textkey import (
    STOPWORDS,
    canon,
    features,
    raw_tokens,
    strip_wire,
    summary_stems,
    title_key,
)
from monitor.normalize import fold_keep_case
from monitor.store.db import create_engine, migrate, sessionmaker
from monitor.store.entries import stream_window
from monitor.store.tables import EntryRow, FeedRow, StoryRow

_WORDS = [
    "Kim", "Jong", "Un", "meets", "Putin", "at", "Russian", "space", "centre", "Syria",
    "Syrian", "rebels", "seize", "town", "U.S.", "UK", "NASA", "USGS", "US", "Geological",
    "Survey", "quake", "6.1", "7.1", "1,000", "$5bn", "86th", "Monday", "Tuesday", "not",
    "won't", "open", "close", "Egypt", "Eygpt", "government", "governor", "governing",
    "Kim's", "KIM'S", "the", "of", "a", "stocks", "fall", "rise", "Biden", "Bidens",
    "Afghanistan", "Afganistan", "dozens", "first", "Live", "updates", "-", "Reuters",
]  # fmt: skip


def _title(words: list[str]) -> str:
    return " ".join(words)


titles = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=12).map(_title)


def _profile(title: str) -> _Profile:
    return _Profile.of(features(title))


def _fields(p: _Profile) -> dict[str, object]:
    return {name: getattr(p, name) for name in _Profile.__slots__ if name not in ("packed", "feat")}


# --- the compact form --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(titles)
def test_compact_form_rebuilds_the_same_profile(title: str) -> None:
    tk = title_key(title)
    prof = _Profile.of(features(tk.stripped))
    packed = prof.encode(tk.stems)
    if prof.uniq != tk.stems:  # (the title strips further: nothing is kept)
        assert packed == ""
        return
    back = _Profile.decode(packed, tk.stems)
    back.complete()
    assert {k: set(v) if isinstance(v, tuple) and k in ("strong", "names") else v
            for k, v in _fields(back).items()} == {
        k: set(v) if isinstance(v, tuple) and k in ("strong", "names") else v
        for k, v in _fields(prof).items()
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(titles, titles)
def test_match_covered_stems_and_guards_equal_the_plain_ones(a: str, b: str) -> None:
    fa, fb = features(a), features(b)
    pa, pb = _profile(a), _profile(b)
    signals, ma, mb = _match(pa, pb)
    assert signals == similarity_signals(fa, fb)
    sa, sb = frozenset(fa.stems), frozenset(fb.stems)
    if fa.stems and fb.stems:
        assert ma == {x for x in sa if _covered(x, sb)}
        assert mb == {y for y in sb if _covered(y, sa)}
    reference = veto(fa, fb)
    if fa.stems and fb.stems:
        assert bool(_quick_veto(pa, pb) or _late_veto(pa, pb, ma, mb)) == bool(reference)
    # the bounded score is never below the true one
    bounded = _match(pa, pb, exact=False)[0]
    assert _model_score(bounded) >= model_score(signals) == _model_score(signals)


@settings(max_examples=200, deadline=None)
@given(titles)
def test_near_pairs_are_the_soft_matches_within_a_title(title: str) -> None:
    prof = _profile(title)
    stems = [e[0] for e in prof.elig]
    expected = {(x, y) for x in stems for y in stems if x != y and _tokens_match(x, y)}
    assert set(_near_pairs(prof.elig)) == expected


# --- storykey shortcuts ------------------------------------------------------------------


def _fold_reference(value: str) -> str:
    if value.isascii():
        return value.replace("`", "'")
    value = unicodedata.normalize("NFKC", value).translate(normalize._QUOTES)
    if value.isascii():
        return value
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


FOLD_CASES = [
    "plain", "\u2018quoted\u2019 \u201cdouble\u201d \u2014 dash", "caf\u00e9", "cafe\u0301",
    "\u00b4acute", "\ufb01nal", "\u212aelvin", "\u017fs", "\u0130stanbul", "\u0131", "\u00df",
    "na\u00efve \U0001f600 emoji\u0301", "\u00a0nbsp\u2011hyphen", "`tick`", "\u0915\u093f",
]  # fmt: skip


@pytest.mark.parametrize("value", FOLD_CASES)
def test_fold_keep_case_equals_the_plain_normalisation(value: str) -> None:
    assert fold_keep_case(value) == _fold_reference(value)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ \u2019\u201c\u00b4\u00e9\u0301\u0131\u2013\u00a0`")))
def test_fold_keep_case_equals_the_plain_normalisation_on_mixtures(value: str) -> None:
    assert fold_keep_case(value) == _fold_reference(value)


def _casefold_reference(value: str) -> str:
    """``normalize.fold`` as first written: NFKC, quotes by str.translate, accents off."""
    value = unicodedata.normalize("NFKC", value).translate(normalize._QUOTES)
    if value.isascii():
        return value.casefold()
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped).casefold()


@pytest.mark.parametrize("value", FOLD_CASES)
def test_fold_equals_the_plain_normalisation(value: str) -> None:
    assert normalize.fold(value) == _casefold_reference(value)


@settings(max_examples=500, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from("aZ \u2019\u201c\u00b4\u00e9\u0301\u0131\u2013\u00a0`\u0130\u00df")
    )
)
def test_fold_equals_the_plain_normalisation_on_mixtures(value: str) -> None:
    assert normalize.fold(value) == _casefold_reference(value)


def _strip_reference(title: str, source: str = "") -> str:
    """strip_wire with the regexes run unconditionally (no cheap pre-checks)."""
    text = fold_keep_case(title)
    text = storykey._WS.sub(" ", text).strip()
    for _ in range(3):
        s = storykey._PREFIX.sub("", text)
        s = storykey._PREFIX_BARE.sub("", s)
        s = storykey._PAREN_OUTLET.sub(" ", s).strip()
        if source:
            src = fold_keep_case(source).strip().casefold()
            if src and len(s) > len(src) + 3 and s[-len(src) :].casefold() == src:
                low = s.casefold()
                for sep in (" - ", " | ", " : ", " -- ", " \u2022 "):
                    if len(s) > len(sep + src) and low.endswith(sep + src):
                        s = s[: -len(sep + src)].rstrip()
                        break
        if s == text:
            break
        text = s
    return text.strip(" -|:")


STRIP_CASES = [
    ("UPDATE 2-Japan's Kishida reshuffles cabinet - Reuters", ""),
    ("ıNSTANT VIEW-Markets react", ""),
    ("Instant View: markets react | AP News", ""),
    ("Talks go on - Polıtico", ""),
    ("Talks go on - the hill .com", ""),
    ("WRAPUP 1-Floods kill dozens (AFP)", ""),
    ("Breaking News: Quake hits \u2022 Al Jazeera", ""),
    ("photos / Storm - NHK WORLD-JAPAN", ""),
    ("Kim vows ties: report - Outlet 3", "Outlet 3"),
    ("REFILE-UPDATE 1-EXCLUSIVE-Deal near - Philstar.com", ""),
    ("A - B | C : D", ""),
    ("Stocks slip - ABS-CBN News", ""),
]


@pytest.mark.parametrize(("title", "source"), STRIP_CASES)
def test_strip_wire_equals_the_unconditional_regexes(title: str, source: str) -> None:
    assert strip_wire(title, source) == _strip_reference(title, source)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "UPDATE 2-", "ıNSTANT VIEW-", "watch | ", "FACTBOX ", "Analysis: "]),
    titles,
    st.sampled_from(["", " - Reuters", " | AP NEWS", " - Polıtico", ": bbc", " (AFP)", " - x"]),
)
def test_strip_wire_equals_the_unconditional_regexes_generated(
    prefix: str, title: str, suffix: str
) -> None:
    raw = prefix + title + suffix
    assert strip_wire(raw) == _strip_reference(raw)


@settings(max_examples=300, deadline=None)
@given(titles)
def test_word_infos_are_those_of_raw_tokens(title: str) -> None:
    stripped = strip_wire(title)
    text = storykey._ACRONYM_DOTS.sub(lambda m: m.group(1).replace(".", ""), stripped)
    expected = [storykey._word_info(w) for w in raw_tokens(text)]
    storykey._last_infos = ("", [])
    assert storykey._word_infos(stripped) == expected
    assert storykey._word_infos(stripped) == expected  # (kept from the last call)


def _summary_reference(text: str) -> frozenset[str]:
    out: list[str] = []
    for w in raw_tokens(text):
        low = w.casefold()
        if low in STOPWORDS or len(low) < 2:
            continue
        out.extend(canon(low).split())
    return frozenset(out)


@pytest.mark.parametrize(
    "text",
    [
        "Kim Jong Un told Putin that ties are a top priority, 1,000 troops said.",
        "The a of",
        "",
        "U.S.-Russia talks: Putin's envoy meets Kim's aides",
    ],
)
def test_summary_stems_equal_the_plain_tokenisation(text: str) -> None:
    assert summary_stems(text) == _summary_reference(text)


def test_every_series_phrase_alone_is_a_series_title() -> None:
    """The word pre-check (``_SERIES_WORDS``) never hides a phrase of the series list."""
    for phrase in storykey._SERIES_PHRASES:
        assert storykey.is_series_title(phrase.title()), phrase
        assert storykey.title_key(phrase.title()).series, phrase


# --- the index ---------------------------------------------------------------------------

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_entries_are_untracked_tuples_once_the_collector_has_seen_them() -> None:
    index = StoryIndex(DedupeConfig())
    for i in range(50):
        index.add(StoryItem(str(i), f"Story number {i} about rebels", "", T0, "O", ""), i)
    gc.collect()  # a tuple is untracked once its items are: the stems first, ...
    gc.collect()  # ... then the entry
    assert not any(gc.is_tracked(rec) for rec in index._recs.values())


def test_summaries_become_stems_and_a_summary_without_content_words_scores_zero() -> None:
    cfg = DedupeConfig()
    index = StoryIndex(cfg)
    a = StoryItem("a", "Floods kill dozens in northern India", "The a of the", T0, "A", "")
    index.add(a, 1)
    b = StoryItem("b", "Dozens dead as floods hit north India villages", "The of a", T0, "B", "")
    decision = index.find(b, T0)
    assert decision.reason in ("new", "fuzzy")
    assert summary_score("The a of the", "The of a") == 0.0
    rec = index._recs[0]
    assert rec[_SUMMARY] in ((), _NO_STEMS) or isinstance(rec[_SUMMARY], str)


def test_add_stored_takes_sqlite_text_and_datetimes_as_add_does() -> None:
    rows = [
        ("Kim meets Putin at space centre", "<p>Talks</p>", T0, "A", "u1", 1),
        ("Kim meets Putin at space center - Reuters", "Talks", T0 + timedelta(hours=1), "B", "", 1),
        ("Live updates: markets", "", T0 - timedelta(hours=2), "C", "u3", 2),
    ]
    by_item = StoryIndex(DedupeConfig())
    by_text = StoryIndex(DedupeConfig())
    by_dt = StoryIndex(DedupeConfig())
    for title, summary, when, source, url, sid in rows:
        by_item.add(StoryItem("k", title, summary, when, source, url), sid)
        naive = when.astimezone(UTC).replace(tzinfo=None)
        by_text.add_stored(title, summary, naive.isoformat(" "), source, url, sid)
        by_dt.add_stored(title, summary, when, source, url, sid)
    assert by_item._recs == by_text._recs == by_dt._recs
    assert by_item._postings == by_text._postings == by_dt._postings


def test_the_stored_window_feeds_add_stored_like_stored_items(db_url: str) -> None:
    """On every backend: the window query's rows, through ``add_stored``, build the same
    index as the stored entries through ``add``."""
    entries = [
        ("Kim vows closer ties after meeting Putin", "Kim told Putin ...", T0, 1),
        ("UPDATE 2-Kim vows closer ties after meeting Putin - Reuters", "x" * 2000, None, 1),
        ("Floods kill 12 in Brazil", "", T0 - timedelta(hours=3), 2),
        ("Old story outside the window", "", T0 - timedelta(days=5), 3),
    ]

    async def go() -> tuple[StoryIndex, StoryIndex]:
        engine = create_engine(db_url)
        try:
            await migrate(engine)
            seen = T0 + timedelta(minutes=5)
            async with engine.begin() as conn:
                await conn.execute(
                    insert(FeedRow.__table__),  # type: ignore[attr-defined]
                    [{"id": 1, "name": "f", "url": "u", "source": "Outlet", "tags": "",
                      "enabled": True, "consecutive_failures": 0, "title": "",
                      "entries_seen": 0, "created_at": T0}],
                )  # fmt: skip
                await conn.execute(
                    insert(StoryRow.__table__),  # type: ignore[attr-defined]
                    [{"id": i, "title": "t", "link": "", "source": "", "source_count": 1,
                      "created_at": T0, "updated_at": T0} for i in (1, 2, 3)],
                )  # fmt: skip
                await conn.execute(
                    insert(EntryRow.__table__),  # type: ignore[attr-defined]
                    [{"feed_id": 1, "guid": f"g{i}", "link": f"https://o.example/{i}",
                      "title": title, "summary": summary, "content": "", "author": "",
                      "categories": "", "source": "Outlet", "published": published,
                      "seen_at": published or seen if i < 3 else T0 - timedelta(days=5),
                      "story_id": sid, "updates": 0}
                     for i, (title, summary, published, sid) in enumerate(entries)],
                )  # fmt: skip
            since = T0 - timedelta(hours=48)
            stored = StoryIndex(DedupeConfig())
            async with sessionmaker(engine)() as s:
                async for part in stream_window(s, since, summary_chars=900):
                    for row in part:
                        stored.add_stored(*row)
            expected = StoryIndex(DedupeConfig())
            for i, (title, summary, published, sid) in enumerate(entries[:3]):
                when = published or (seen if i < 3 else T0)
                expected.add(
                    StoryItem("k", title, summary, when, "Outlet", f"https://o.example/{i}"), sid
                )
            return stored, expected
        finally:
            await engine.dispose()

    stored, expected = asyncio.run(go())
    assert len(stored) == 3
    assert stored._recs == expected._recs
    assert stored._postings == expected._postings
