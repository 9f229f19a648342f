"""Per-feed boilerplate, learned from the feed's own recent titles.

Takes the titles one feed publishes, in order; returns, for a new title of that feed, the
title with what the feed repeats on every item taken out. Two kinds are learned, each from
the feed's last ``RECENT`` titles:

* **affixes**: a head or tail segment, cut at a separator (" | ", " - ", ": ", a trailing
  "(...)" or "[...]"), that at least ``AFFIX_MIN`` recent titles with different rests
  share, digits and case folded ("| Newscast Weekend", "(12 March 2020)", "Topic:",
  "- Outlet").
  A story's own words are rarely a whole separator-delimited segment of two titles, so
  what recurs as one names the programme, section, date or outlet, not the story.
* **frequent words**: a word in at least ``WORD_SHARE`` of the recent titles (once the feed
  has ``WORD_MIN_TITLES`` of them): in any language that is a function word of the feed's
  language ("ng", "sa", "de", "la") or the feed's standing topic, and says nothing about
  which story a title reports.

No outlet, programme or language is named here: everything is learned, per feed, so a new
feed in a new language is handled the day it is added. The learned state is bounded:
``RECENT`` titles' segment and word keys per feed.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

RECENT = 100  # titles per feed that the statistics cover
AFFIX_MIN = 2  # recent titles that must share a head/tail segment for it to be boilerplate
WORD_SHARE = 0.25  # share of recent titles a word must appear in to be boilerplate ...
WORD_MIN_TITLES = 12  # ... once the feed has at least this many recent titles
_REFRESH = 8  # titles between two recomputations of a feed's frequent words
_MAX_STRIPS = 3  # affixes stripped per side ("X | Show | (date)")

# separators between a title and its affix: spaced dashes and bars, a colon after the
# head, bullets; and a bracketed tail
_HEAD = re.compile(r"^(.{1,80}?)(?:\s+[|\u2022\u2013\u2014-]\s+|:\s+|\s*\|\s*)(?=\S)")
_TAIL = re.compile(r"^(.*\S)(?:\s+[|\u2022\u2013\u2014-]\s+|\s*\|\s*)(.{1,80})$")
_BRACKET_TAIL = re.compile(r"(?<=\S)\s*([(\[][^()\[\]]{1,60}[)\]])\s*$")
_DIGITS = re.compile(r"\d+")
# a word that may be a feed's frequent word: letters only ("COVID-19", "19,000" and
# other tokens with digits are facts, never boilerplate)
_WORD = re.compile(r"(?<![\w'\u2019-])[^\W\d_]+(?![\w'\u2019-])")


_PUNCT = "\"'\u2018\u2019\u201c\u201d.,;:!?()[]"


def _norm(segment: str) -> str:
    return _DIGITS.sub("0", " ".join(segment.casefold().split()))


def heads(title: str) -> list[tuple[str, str]]:
    """(normalised head segment, rest) for each head cut of ``title``, outermost first."""
    out = []
    rest = title.strip()
    for _ in range(_MAX_STRIPS):
        m = _HEAD.match(rest)
        if not m:
            break
        out.append((_norm(m.group(1)), rest[m.end() :]))
        rest = rest[m.end() :]
    return out


def tails(title: str) -> list[tuple[str, str]]:
    """(normalised tail segment, rest) for each tail cut of ``title``, outermost first."""
    out = []
    rest = title.strip()
    for _ in range(_MAX_STRIPS):
        m = _BRACKET_TAIL.search(rest)
        if m:
            seg, rest = m.group(1), rest[: m.start()].rstrip()
        else:
            m = _TAIL.match(rest)
            if not m:
                break
            seg, rest = m.group(2), m.group(1).rstrip()
        out.append((_norm(seg), rest))
    return out


def words(title: str) -> frozenset[str]:
    return frozenset(w.casefold() for w in _WORD.findall(title))


@dataclass(slots=True)
class _Seen:
    affixes: frozenset[tuple[str, str]]  # ("h" or "t" + segment, the rest folded)
    words: frozenset[str]


@dataclass(slots=True)
class FeedBoilerplate:
    """What one feed repeats across its recent titles."""

    recent: deque[_Seen] = field(default_factory=lambda: deque(maxlen=RECENT))
    # (affix, rest) -> recent titles with both; affix -> distinct rests among them
    pair_count: Counter[tuple[str, str]] = field(default_factory=Counter)
    affix_rests: Counter[str] = field(default_factory=Counter)
    word_count: Counter[str] = field(default_factory=Counter)
    # frequent_words, recomputed every _REFRESH titles (a scan of the feed's vocabulary)
    _frequent: frozenset[str] = frozenset()
    _stale: int = 0

    def observe(self, title: str) -> None:
        """Count one more title of this feed (the oldest of ``RECENT`` is forgotten).

        An affix counts once per *different* rest: a title the feed repeats whole is
        one story, not boilerplate."""
        affixes = [("h" + seg, _norm(rest)) for seg, rest in heads(title)]
        affixes += [("t" + seg, _norm(rest)) for seg, rest in tails(title)]
        seen = _Seen(frozenset(affixes), words(title))
        if len(self.recent) == self.recent.maxlen:
            old = self.recent[0]
            for pair in old.affixes:
                self.pair_count[pair] -= 1
                if self.pair_count[pair] <= 0:
                    del self.pair_count[pair]
                    self.affix_rests[pair[0]] -= 1
                    if self.affix_rests[pair[0]] <= 0:
                        del self.affix_rests[pair[0]]
            self.word_count.subtract(old.words)
        self.recent.append(seen)
        for pair in seen.affixes:
            self.pair_count[pair] += 1
            if self.pair_count[pair] == 1:
                self.affix_rests[pair[0]] += 1
        self.word_count.update(seen.words)
        self._stale += 1
        if len(self.word_count) > 30 * RECENT:  # drop the zero counts subtract leaves
            self.word_count = +self.word_count

    def frequent_words(self) -> frozenset[str]:
        n = len(self.recent)
        if n < WORD_MIN_TITLES:
            return frozenset()
        if self._stale >= _REFRESH or n == WORD_MIN_TITLES:
            bar = WORD_SHARE * n
            self._frequent = frozenset(w for w, c in self.word_count.items() if c >= bar)
            self._stale = 0
        return self._frequent

    def strip(self, title: str) -> str:
        """``title`` without this feed's learned affixes and frequent words. Never empty:
        when everything would go, the title is returned as it was."""
        text = title.strip()
        for _ in range(_MAX_STRIPS):
            before = text
            for seg, rest in heads(text)[:1]:
                if self.affix_rests.get("h" + seg, 0) >= AFFIX_MIN and rest.strip():
                    text = rest.strip()
            for seg, rest in tails(text)[:1]:
                if self.affix_rests.get("t" + seg, 0) >= AFFIX_MIN and rest.strip():
                    text = rest.strip()
            if text == before:
                break
        frequent = self.frequent_words()
        if frequent:
            kept = " ".join(
                tok
                for tok in text.split()
                if tok.strip(_PUNCT).casefold() not in frequent
                or not _WORD.fullmatch(tok.strip(_PUNCT))
            )
            if _WORD.search(kept):
                text = kept
        return text


class Boilerplate:
    """Every feed's ``FeedBoilerplate``, by source name (bounded by the number of feeds)."""

    def __init__(self) -> None:
        self._feeds: dict[str, FeedBoilerplate] = {}

    def observe(self, source: str, title: str) -> None:
        if not source or not title:
            return
        feed = self._feeds.get(source)
        if feed is None:
            feed = self._feeds[source] = FeedBoilerplate()
        feed.observe(title)

    def strip(self, source: str, title: str) -> str:
        feed = self._feeds.get(source)
        return feed.strip(title) if feed is not None else title

    def __len__(self) -> int:
        return len(self._feeds)
