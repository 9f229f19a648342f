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
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

_K = TypeVar("_K")

RECENT = 50  # titles per feed that the statistics cover
AFFIX_MIN = 2  # recent titles that must share a head/tail segment for it to be boilerplate
WORD_SHARE = 0.25  # share of recent titles a word must appear in to be boilerplate ...
WORD_MIN_TITLES = 12  # ... once the feed has at least this many recent titles
_MAX_STRIPS = 3  # affixes stripped per side ("X | Show | (date)")

# separators between a title and its affix: spaced dashes and bars, a colon after the
# head, bullets; and a bracketed tail
_HEAD = re.compile(r"^(.{1,80}?)(?:\s+[|\u2022\u2013\u2014-]\s+|:\s+|\s*\|\s*)(?=\S)")
_TAIL = re.compile(r"^(.*\S)(?:\s+[|\u2022\u2013\u2014-]\s+|\s*\|\s*)(.{1,80})$")
_BRACKET_TAIL = re.compile(r"(?<=\S)\s*([(\[][^()\[\]]{1,60}[)\]])\s*$")
_DIGITS = re.compile(r"\d+")
_SEPARATORS = frozenset("|:-\u2013\u2014\u2022([")


_PUNCT = "\"'\u2018\u2019\u201c\u201d.,;:!?()[]"


def _inc(counts: dict[_K, int], key: _K) -> int:
    n = counts.get(key, 0) + 1
    counts[key] = n
    return n


def _dec(counts: dict[_K, int], key: _K) -> int:
    """Count one less (a count that reaches 0 is deleted: the dicts stay bounded)."""
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
    return n


def _norm(segment: str) -> str:
    return _DIGITS.sub("0", " ".join(segment.casefold().split()))


def _head_cut(text: str) -> tuple[str, str] | None:
    """(head segment, rest) at the first separator of ``text``, or None."""
    m = _HEAD.match(text)
    return (m.group(1), text[m.end() :]) if m else None


def tail_cut(text: str) -> tuple[str, str] | None:
    """(tail segment, rest) at the last separator of ``text`` (or a bracketed tail)."""
    m = _BRACKET_TAIL.search(text)
    if m:
        return m.group(1), text[: m.start()].rstrip()
    m = _TAIL.match(text)
    return (m.group(2), m.group(1).rstrip()) if m else None


def _cuts(title: str, cut: Callable[[str], tuple[str, str] | None]) -> list[tuple[str, str]]:
    out = []
    rest = title.strip()
    for _ in range(_MAX_STRIPS):
        got = cut(rest)
        if got is None:
            break
        seg, rest = got
        out.append((_norm(seg), rest))
    return out


def heads(title: str) -> list[tuple[str, str]]:
    """(normalised head segment, rest) for each head cut of ``title``, outermost first."""
    return _cuts(title, _head_cut)


def tails(title: str) -> list[tuple[str, str]]:
    """(normalised tail segment, rest) for each tail cut of ``title``, outermost first."""
    return _cuts(title, tail_cut)


def words(title: str) -> frozenset[str]:
    """The title's words that may be boilerplate: letters only, case folded ("COVID-19",
    "19,000" and other tokens with digits are facts, never boilerplate)."""
    return frozenset(w for w in (t.strip(_PUNCT) for t in title.casefold().split()) if w.isalpha())


class Stripped(NamedTuple):
    """A title with its feed's boilerplate out, and what the guards still need of it."""

    text: str
    digits: str  # the digits of the stripped affixes ("" for none)
    names: tuple[str, ...]  # capitalised frequent words taken out, case folded


@dataclass(slots=True)
class _Seen:
    affixes: tuple[tuple[str, int], ...]  # ("h" or "t" + segment, hash of the rest folded)
    words: tuple[str, ...]  # unique, interned


@dataclass(slots=True)
class FeedBoilerplate:
    """What one feed repeats across its recent titles."""

    recent: deque[_Seen] = field(default_factory=lambda: deque(maxlen=RECENT))
    # (affix, rest) -> recent titles with both; affix -> distinct rests among them
    pair_count: dict[tuple[str, int], int] = field(default_factory=dict)
    affix_rests: dict[str, int] = field(default_factory=dict)
    word_count: dict[str, int] = field(default_factory=dict)
    # the words at or above the share, kept current as counts change once the feed has
    # RECENT titles (the bar is then fixed); recomputed while it has fewer
    _frequent: set[str] = field(default_factory=set)
    # words the caller's keying drops anyway (its stopwords): never boilerplate here, so
    # a title is not rewritten for nothing
    ignored: frozenset[str] = frozenset()

    def learn(self, title: str) -> Stripped:
        """``observe(title)`` then ``strip(title)``, sharing their work: what the index
        calls once per new title."""
        seen = self._seen(title)
        self._count(seen)
        if not self.affix_rests or not seen.affixes:
            # nothing to cut: only the frequent words may go
            text = title.strip()
            frequent = self.frequent_words()
            if not frequent or frequent.isdisjoint(seen.words):
                return Stripped(text, "", ())
        return self.strip(title)

    def observe(self, title: str) -> None:
        """Count one more title of this feed (the oldest of ``RECENT`` is forgotten).

        An affix counts once per *different* rest: a title the feed repeats whole is
        one story, not boilerplate."""
        self._count(self._seen(title))

    @staticmethod
    def _seen(title: str) -> _Seen:
        affixes: list[tuple[str, int]] = []
        if not _SEPARATORS.isdisjoint(title):
            affixes = [(sys.intern("h" + seg), hash(_norm(rest))) for seg, rest in heads(title)]
            affixes += [(sys.intern("t" + seg), hash(_norm(rest))) for seg, rest in tails(title)]
        return _Seen(tuple(dict.fromkeys(affixes)), tuple(map(sys.intern, words(title))))

    def _count(self, seen: _Seen) -> None:
        full = len(self.recent) == RECENT
        if full:
            old = self.recent[0]
            for pair in old.affixes:
                _dec(self.pair_count, pair)
                if pair not in self.pair_count:
                    _dec(self.affix_rests, pair[0])
            bar = WORD_SHARE * RECENT
            for w in old.words:
                if _dec(self.word_count, w) < bar:
                    self._frequent.discard(w)
        self.recent.append(seen)
        for pair in seen.affixes:
            if _inc(self.pair_count, pair) == 1:
                _inc(self.affix_rests, pair[0])
        if full:
            bar = WORD_SHARE * RECENT
            for w in seen.words:
                if _inc(self.word_count, w) >= bar and w not in self.ignored:
                    self._frequent.add(w)
        else:
            for w in seen.words:
                _inc(self.word_count, w)
            n = len(self.recent)
            # (while the feed warms up, recomputed every few titles: a vocabulary scan)
            if n >= WORD_MIN_TITLES and (n in (WORD_MIN_TITLES, RECENT) or n % 8 == 0):
                bar = WORD_SHARE * n
                self._frequent = {
                    w for w, c in self.word_count.items() if c >= bar and w not in self.ignored
                }

    def frequent_words(self) -> frozenset[str] | set[str]:
        return self._frequent if len(self.recent) >= WORD_MIN_TITLES else frozenset()

    def strip(self, title: str) -> Stripped:
        """``title`` without this feed's learned affixes and frequent words (never empty:
        when everything would go, the title is returned as it was); the digits the
        stripped affixes held ("20 2020" for "(20 August 2020)"): a date or an episode
        number in a programme's slot is the one fact that tells two episodes apart; and
        the capitalised frequent words taken out (a name the feed writes often, such as
        the politician a politics feed covers): the names guard still needs them."""
        text = title.strip()
        kept_heads: list[str] = []
        kept_tails: list[str] = []
        sides = (("h", _head_cut, kept_heads), ("t", tail_cut, kept_tails))
        for side, cut, kept in (
            sides if self.affix_rests and not _SEPARATORS.isdisjoint(text) else ()
        ):
            for _ in range(_MAX_STRIPS):
                got = cut(text)
                if got is None:
                    break
                seg, rest = got
                if not rest.strip() or self.affix_rests.get(side + _norm(seg), 0) < AFFIX_MIN:
                    break
                kept.extend(_DIGITS.findall(seg))
                text = rest.strip()
        digits = " ".join([*kept_heads, *kept_tails])
        frequent = self.frequent_words()
        names: list[str] = []
        if frequent:
            kept = []
            for tok in text.split():
                word = tok.strip(_PUNCT)
                if word.casefold() not in frequent:
                    kept.append(tok)
                elif word[:1].isupper():
                    names.append(word.casefold())
            if any(tok.strip(_PUNCT).isalnum() for tok in kept):
                text = " ".join(kept)
            else:
                names = []
        return Stripped(text, digits, tuple(names))


class Boilerplate:
    """Every feed's ``FeedBoilerplate``, by source name (bounded by the number of feeds)."""

    def __init__(self, ignored: frozenset[str] = frozenset()) -> None:
        self._feeds: dict[str, FeedBoilerplate] = {}
        self._ignored = ignored

    def learn(self, source: str, title: str) -> Stripped:
        """Count ``title`` in its feed's boilerplate; the title with it taken out, and the
        digits the stripped affixes held (``FeedBoilerplate.strip``)."""
        if not source or not title:
            return Stripped(title.strip(), "", ())
        feed = self._feeds.get(source)
        if feed is None:
            feed = self._feeds[source] = FeedBoilerplate(ignored=self._ignored)
        return feed.learn(title)

    def observe(self, source: str, title: str) -> None:
        if not source or not title:
            return
        feed = self._feeds.get(source)
        if feed is None:
            feed = self._feeds[source] = FeedBoilerplate(ignored=self._ignored)
        feed.observe(title)

    def strip(self, source: str, title: str) -> Stripped:
        """``FeedBoilerplate.strip`` for ``source``'s feed."""
        feed = self._feeds.get(source)
        return feed.strip(title) if feed is not None else Stripped(title, "", ())

    def __len__(self) -> int:
        return len(self._feeds)
