"""Watchlist compiler, matcher and explainer. Pure: data in, data out.

``compile_watchlists`` turns validated :class:`~monitor.watchlist.Watchlist` objects into
one :class:`Matcher` holding a single Aho-Corasick automaton over every phrase, alias and
near-word of every watchlist. Regex terms run separately on the folded text.

Normalisation (identical for terms and documents):

* Text is split into words: runs of letters, digits and combining marks. Everything else
  (spaces, hyphens, apostrophes, punctuation, ``_``) separates words, so "Kim Jong-un",
  "Kim Jong Un's", "Kim Jong Un’s" and "KIM JONG UN" all hold the words ``kim jong un``.
* Words are folded: NFKC, case-folded, accents removed ("Zürich" ≡ "Zurich"), full-width
  forms narrowed.
* Characters of scripts written without spaces (Chinese, Japanese kana, Korean Hangul,
  Thai, Lao, Khmer, Myanmar) are one word each, so such terms match inside longer runs
  of text: "金正恩" matches "金正恩氏", "김정은" matches "김정은이".
* A term matches whole words only ("Putin" does not match "Rasputin"; "Un" does not
  match "United").
* Adjacent words of a term may also appear written together: "Kim Jong Un" matches
  "Kim Jongun" and "KimJongUn" (only between words of two or more letters, so "U.S."
  never matches "us"). The reverse is not true: write terms with their spaces.
* The last word of a term may carry a simple plural: +s, +es (after s, x, z, ch, sh, o),
  y→ies. "ballistic missile" matches "ballistic missiles". Terms written in capitals get
  only +s ("ICBM" matches "ICBMs", "US" does not match "uses").
* ``near`` counts words: ``within: 10`` allows at most 10 other words between the terms.
"""

from __future__ import annotations

import gc
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, combinations
from typing import TYPE_CHECKING, Any

import ahocorasick

from monitor.normalize import fold

if TYPE_CHECKING:
    from monitor.models import Entry
    from monitor.watchlist import Term, Watchlist

__all__ = [
    "FIELD_ORDER",
    "Explanation",
    "Found",
    "Hit",
    "Matcher",
    "compile_watchlists",
    "entry_fields",
    "explain_json",
    "format_explanations",
    "term_words",
]

FIELD_ORDER: tuple[str, ...] = (
    "title",
    "summary",
    "content",
    "author",
    "categories",
    "feed",
    "url",
)
_FIELD_RANK = {f: i for i, f in enumerate(FIELD_ORDER)}

# ---------------------------------------------------------------------------
# text normalisation

# Scripts written without spaces between words: every character is a word of its own.
_NOSPACE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3005-\u3007"  # 々 〆 〇
    "\u3040-\u30fa\u30fc-\u30ff"  # Hiragana, Katakana (not the ・ separator)
    "\u3100-\u31ff"  # Bopomofo, Hangul compatibility Jamo, Katakana extensions
    "\u3400-\u4dbf\u4e00-\u9fff"  # CJK ideographs
    "\ua960-\ua97f\uac00-\ud7ff"  # Hangul
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
# Combining marks that belong inside a word (Python's \w does not include them).
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
    "\u0900-\u0963\u0966-\u0dff\u1ab0-\u1aff\u1dc0-\u1dff\u200c\u200d\u20d0-\u20ff"
    "\ufe20-\ufe2f"
)
_TOKEN = re.compile(f"[{_NOSPACE}]|(?:(?![{_NOSPACE}])[^\\W_]|[{_MARKS}])+")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")
_NOSPACE_CHAR = re.compile(f"[{_NOSPACE}]")


def _fold(text: str) -> str:
    # str.casefold turns "İ" into "i" + U+0307 after fold() has already removed accents.
    return fold(text).replace("\u0307", "")


def _tokenize(text: str) -> tuple[list[str], list[tuple[int, int]], str, bool]:
    """Folded words, their (start, end) spans in ``text``, the folded text (what regexes
    run on) and whether positions in the folded text are positions in ``text``."""
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    if text.isascii():
        low = text.lower()
        for m in _ASCII_TOKEN.finditer(low):
            words.append(m.group())
            spans.append(m.span())
        return words, spans, low, True
    folded = _fold(text)
    if len(folded) == len(text):
        for m in _TOKEN.finditer(folded):
            words.append(m.group())
            spans.append(m.span())
        return words, spans, folded, True
    for m in _TOKEN.finditer(text):
        token = m.group()
        span = m.span()
        for sub in _TOKEN.findall(token.lower() if token.isascii() else _fold(token)):
            words.append(sub)
            spans.append(span)
    return words, spans, folded, False


def term_words(text: str) -> tuple[str, ...]:
    """The normalised words of a term or text, e.g. ``("kim", "jong", "un", "s")`` for
    "Kim Jong-Un's". Empty when the text has no letters or digits."""
    return tuple(_tokenize(text)[0])


def _joinable(word: str) -> bool:
    return len(word) >= 2 and (word.isascii() or _NOSPACE_CHAR.match(word) is None)


def _plurals(word: str, original: str) -> tuple[str, ...]:
    if len(word) < 2 or not word.isascii() or not word.isalpha():
        return (word,)
    last = word[-1]
    if original.isupper():  # acronym: ICBM -> ICBMs, but US does not become "uses"
        return (word,) if last == "s" else (word, word + "s")
    if last in "sxzo" or word.endswith(("ch", "sh")):
        return (word, word + "s", word + "es")
    if last == "y" and word[-2] not in "aeiou":
        return (word, word + "s", word[:-1] + "ies")
    return (word, word + "s")


def _plans(n: int, joins: Sequence[int], limit: bool = False) -> list[list[tuple[int, ...]]]:
    """Ways to group n words when the gaps ``joins`` may be closed (all subsets, or with
    ``limit`` only none and all)."""
    subsets = (
        [(), tuple(joins)]
        if limit
        else [c for r in range(len(joins) + 1) for c in combinations(joins, r)]
    )
    plans: list[list[tuple[int, ...]]] = []
    for chosen in subsets:
        groups: list[tuple[int, ...]] = []
        current = [0]
        for i in range(1, n):
            if i - 1 in chosen:
                current.append(i)
            else:
                groups.append(tuple(current))
                current = [i]
        groups.append(tuple(current))
        plans.append(groups)
    return plans


# Precomputed groupings for terms of up to 4 words (constant tables).
_PLANS: dict[tuple[int, tuple[int, ...]], list[list[tuple[int, ...]]]] = {
    (n, joins): _plans(n, joins)
    for n in range(2, 5)
    for r in range(n)
    for joins in combinations(range(n - 1), r)
}


def _variants(
    words: Sequence[str],
    last_original: str,
    plurals: Callable[[str, str], tuple[str, ...]] = _plurals,
) -> list[str]:
    """Automaton patterns (space-delimited word sequences) for one phrase or alias:
    adjacent words joined (see module doc) x plural forms of the last word."""
    n = len(words)
    if n == 1:
        return [f" {w} " for w in plurals(words[0], last_original)]
    joins = tuple(i for i in range(n - 1) if _joinable(words[i]) and _joinable(words[i + 1]))
    plans = _PLANS.get((n, joins)) or _plans(n, joins, limit=True)
    out: list[str] = []
    for groups in plans:
        parts = [words[g[0]] if len(g) == 1 else "".join(words[i] for i in g) for g in groups]
        prefix = " " + " ".join(parts[:-1]) + " " if len(parts) > 1 else " "
        out.extend(prefix + w + " " for w in plurals(parts[-1], last_original))
    return out


# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class Hit:
    """One matching watchlist. ``terms``: canonical labels of the terms that matched (the
    phrase as written in the config, or the regex pattern), config order; ``words``: the
    document text that matched ("Kim Jong-un"); ``fields``: where."""

    watchlist: str
    terms: tuple[str, ...]
    words: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Found:
    """One piece of evidence: term ``term`` (matched through its spelling ``via``, an
    alias or the phrase itself) found as ``text`` in ``field``. ``words`` are 0-based word
    positions [start, end) and ``chars`` character offsets [start, end) in the field."""

    clause: str
    term: str
    via: str
    field: str
    text: str
    words: tuple[int, int]
    chars: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "term": self.term,
            "via": self.via,
            "field": self.field,
            "text": self.text,
            "words": list(self.words),
            "chars": list(self.chars),
        }

    def where(self) -> str:
        """``title at words 1–3`` (1-based, inclusive, for people)."""
        if self.words[0] < 0:
            at = f"chars {self.chars[0] + 1}–{self.chars[1]}"
        elif self.words[1] - self.words[0] <= 1:
            at = f"word {self.words[0] + 1}"
        else:
            at = f"words {self.words[0] + 1}–{self.words[1]}"
        return f"{self.field} at {at}"

    def describe(self) -> str:
        via = f' (via "{self.via}")' if self.via != self.term else ""
        return f'{self.clause} "{self.term}": found "{self.text}" in {self.where()}{via}'


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one watchlist does or does not match one document. ``found``: evidence of the
    positive clauses; ``failed``: the clauses that stopped a match, as text."""

    watchlist: str
    matched: bool
    found: tuple[Found, ...]
    failed: tuple[str, ...]
    hit: Hit | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "watchlist": self.watchlist,
            "matched": self.matched,
            "terms": list(self.hit.terms) if self.hit else [],
            "words": list(self.hit.words) if self.hit else [],
            "fields": list(self.hit.fields) if self.hit else [],
            "found": [f.to_dict() for f in self.found],
            "failed": list(self.failed),
        }


def explain_json(explanations: Iterable[Explanation]) -> dict[str, Any]:
    """``{"matched": [names...], "watchlists": [Explanation.to_dict()...]}``."""
    expls = list(explanations)
    return {
        "matched": [e.watchlist for e in expls if e.matched],
        "watchlists": [e.to_dict() for e in expls],
    }


def format_explanations(explanations: Iterable[Explanation]) -> str:
    """Human-readable explanation, one block per watchlist."""
    lines: list[str] = []
    for e in explanations:
        if e.matched and e.hit:
            lines.append(f"{e.watchlist}: MATCH (terms: {', '.join(e.hit.terms)})")
        else:
            lines.append(f"{e.watchlist}: no match")
        # the same words at the same place in two fields (a summary repeating the
        # title, or `explain --text`, which stands for both) are one hit, shown once
        shown: set[tuple[str, str, str, str, tuple[int, int], tuple[int, int]]] = set()
        for f in e.found:
            key = (f.clause, f.term, f.via, f.text, f.words, f.chars)
            if key not in shown:
                shown.add(key)
                lines.append(f"  + {f.describe()}")
        lines.extend(f"  - {why}" for why in e.failed)
    return "\n".join(lines)


def entry_fields(entry: Entry) -> dict[str, str]:
    """The matchable fields of a parsed entry. ``feed`` holds the feed name and the
    outlet's display name; ``categories`` are joined with " | "."""
    feed = entry.feed if entry.source in ("", entry.feed) else f"{entry.feed} | {entry.source}"
    return {
        "title": entry.title,
        "summary": entry.summary,
        "content": entry.content,
        "author": entry.author,
        "categories": " | ".join(entry.categories),
        "feed": feed,
        "url": entry.link,
    }


# ---------------------------------------------------------------------------
# one document, tokenised and scanned


class _Doc:
    """One document's fields, scanned once by the automaton. Word spans and the folded
    text are only needed to report evidence, so for plain-ASCII fields (most news text)
    they are computed on first use: the scan itself needs just the words."""

    __slots__ = ("_tok", "occ", "texts")

    def __init__(
        self,
        fields: Mapping[str, str],
        scan: Sequence[str],
        automaton: Any,
        info: list[tuple[int, int, tuple[int, ...]]],
    ) -> None:
        self.texts: dict[str, str] = {}
        # field -> (spans, folded text, whether folded positions are text positions)
        self._tok: dict[str, tuple[list[tuple[int, int]], str, bool]] = {}
        occ: dict[int, list[tuple[str, int, int]]] = {}
        self.occ = occ
        for name in scan:
            text = fields.get(name) or ""
            if not text:
                continue
            self.texts[name] = text
            if text.isascii():
                words: list[str] = _ASCII_TOKEN.findall(text.lower())
            else:
                folded = _fold(text)
                if len(folded) == len(text):  # positions agree: spans can wait too
                    words = _TOKEN.findall(folded)
                else:
                    words, spans, folded, aligned = _tokenize(text)
                    self._tok[name] = (spans, folded, aligned)
            if not words or automaton is None:
                continue
            offsets: list[int] | None = None
            for end, pid in automaton.iter(" " + " ".join(words) + " "):
                plen, ntok, keys = info[pid]
                if offsets is None:
                    offsets = list(accumulate([len(w) + 1 for w in words], initial=1))
                start = bisect_left(offsets, end - plen + 2)
                item = (name, start, start + ntok)
                for key in keys:
                    if key in occ:
                        occ[key].append(item)
                    else:
                        occ[key] = [item]

    def tokens(self, name: str) -> tuple[list[tuple[int, int]], str, bool] | None:
        tok = self._tok.get(name)
        if tok is None:
            text = self.texts.get(name)
            if not text:
                return None
            _, spans, folded, aligned = _tokenize(text)
            tok = self._tok[name] = (spans, folded, aligned)
        return tok

    def found(self, clause: str, term: str, via: str, name: str, ws: int, we: int) -> Found:
        tok = self.tokens(name)
        assert tok is not None  # a word was found in this field
        spans = tok[0]
        cs, ce = spans[ws][0], spans[we - 1][1]
        return Found(clause, term, via, name, self.texts[name][cs:ce], (ws, we), (cs, ce))

    def regex_found(
        self, clause: str, pattern: re.Pattern[str], name: str, limit: int = 20
    ) -> list[Found]:
        out: list[Found] = []
        tok = self.tokens(name)
        if tok is None or not tok[1]:
            return out
        spans, folded, aligned = tok
        for m in pattern.finditer(folded):
            cs, ce = m.span()
            if aligned:
                ws = bisect_right([s[1] for s in spans], cs)
                we = max(ws, bisect_left([s[0] for s in spans], ce))
                text = self.texts[name][cs:ce]
            else:
                ws = we = -1
                text = m.group()
            out.append(
                Found(clause, pattern.pattern, pattern.pattern, name, text, (ws, we), (cs, ce))
            )
            if len(out) >= limit:
                break
        return out


# ---------------------------------------------------------------------------
# compiled clauses

_Ev = list[tuple[int, Found]]


@dataclass(slots=True)
class _Res:
    ok: bool
    ev: _Ev
    why: str = ""


def _fields_text(fields: Iterable[str]) -> str:
    return ", ".join(sorted(set(fields), key=_FIELD_RANK.__getitem__))


class _Node:
    __slots__ = ("desc", "fields", "fieldset", "path")

    def __init__(self, path: str, desc: str, fields: tuple[str, ...]) -> None:
        self.path = path
        self.desc = desc
        self.fields = fields
        self.fieldset = frozenset(fields)

    def eval(self, doc: _Doc, explain: bool) -> _Res:  # pragma: no cover - abstract
        raise NotImplementedError

    def leaves(self) -> Iterable[_Node]:
        yield self


class _Phrase(_Node):
    __slots__ = ("keys", "label", "ordinal", "via")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], label: str, ordinal: int
    ) -> None:
        super().__init__(path, desc, fields)
        self.label = label
        self.ordinal = ordinal
        self.keys: list[int] = []
        self.via: dict[int, str] = {}

    def positions(self, doc: _Doc, name: str) -> list[tuple[int, int, int]]:
        out: set[tuple[int, int, int]] = set()
        for key in self.keys:
            for f, ws, we in doc.occ.get(key, ()):
                if f == name:
                    out.add((ws, we, key))
        return sorted(out)

    def eval(self, doc: _Doc, explain: bool) -> _Res:
        ev: _Ev = []
        seen: set[tuple[str, int, int]] = set()
        for key in self.keys:
            for item in doc.occ.get(key, ()):
                if item[0] in self.fieldset and item not in seen:
                    seen.add(item)
                    ev.append(
                        (self.ordinal, doc.found(self.path, self.label, self.via[key], *item))
                    )
        if ev:
            return _Res(True, ev)
        why = (
            f"{self.path} {self.desc}: not found in {_fields_text(self.fields)}" if explain else ""
        )
        return _Res(False, ev, why)


class _Regex(_Node):
    __slots__ = ("ordinal", "pattern")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], pattern: str, ordinal: int
    ) -> None:
        super().__init__(path, desc, fields)
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.ordinal = ordinal

    def eval(self, doc: _Doc, explain: bool) -> _Res:
        ev: _Ev = [
            (self.ordinal, found)
            for name in self.fields
            for found in doc.regex_found(self.path, self.pattern, name)
        ]
        if ev:
            return _Res(True, ev)
        why = f"{self.path} {self.desc}: no match in {_fields_text(self.fields)}" if explain else ""
        return _Res(False, ev, why)


class _Near(_Node):
    __slots__ = ("items", "within")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], items: list[_Phrase], within: int
    ) -> None:
        super().__init__(path, desc, fields)
        self.items = items
        self.within = within

    def leaves(self) -> Iterable[_Node]:
        return iter(self.items)

    def eval(self, doc: _Doc, explain: bool) -> _Res:
        best: tuple[int, str, list[tuple[int, int, int]]] | None = None
        seen_items: set[int] = set()
        for name in self.fields:
            per = [item.positions(doc, name) for item in self.items]
            seen_items.update(i for i, p in enumerate(per) if p)
            if not all(per):
                continue
            gap, chosen = _closest(per)
            if best is None or gap < best[0]:
                best = (gap, name, chosen)
        if best is not None and best[0] <= self.within:
            _, name, chosen = best
            ev: _Ev = [
                (item.ordinal, doc.found(self.path, item.label, item.via[key], name, ws, we))
                for item, (ws, we, key) in zip(self.items, chosen, strict=True)
            ]
            return _Res(True, ev)
        if not explain:
            return _Res(False, [])
        missing = [item.desc for i, item in enumerate(self.items) if i not in seen_items]
        if missing:
            reason = f"{', '.join(missing)} not found in {_fields_text(self.fields)}"
        elif best is None:
            reason = "the terms are never in the same field"
        else:
            reason = f"closest in {best[1]} are {best[0]} words apart"
        return _Res(False, [], f"{self.path} {self.desc}: {reason}")


def _closest(per: list[list[tuple[int, int, int]]]) -> tuple[int, list[tuple[int, int, int]]]:
    """Choose one position per item minimising the words between them:
    max(start) - min(end) over the chosen [start, end) spans (0 when they touch/overlap)."""
    best_gap = -1
    best: list[tuple[int, int, int]] = []
    for anchor_item, positions in enumerate(per):
        for anchor in positions:
            chosen: list[tuple[int, int, int]] = []
            for j, other in enumerate(per):
                if j == anchor_item:
                    chosen.append(anchor)
                    continue
                usable = [p for p in other if p[0] <= anchor[0]]
                if not usable:
                    break
                chosen.append(max(usable, key=lambda p: p[1]))
            else:
                gap = max(0, anchor[0] - min(p[1] for p in chosen))
                if best_gap < 0 or gap < best_gap:
                    best_gap, best = gap, chosen
    return best_gap, best


class _All(_Node):
    __slots__ = ("children",)

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], children: list[_Node]
    ) -> None:
        super().__init__(path, desc, fields)
        self.children = children

    def leaves(self) -> Iterable[_Node]:
        for child in self.children:
            yield from child.leaves()

    def eval(self, doc: _Doc, explain: bool) -> _Res:
        ev: _Ev = []
        why = ""
        for child in self.children:
            res = child.eval(doc, explain)
            if not res.ok:
                if not explain:
                    return _Res(False, [])
                why = why or res.why
            ev.extend(res.ev)
        return _Res(not why, ev, why)


class _Any(_Node):
    __slots__ = ("children", "index", "others", "searched")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], children: list[_Node]
    ) -> None:
        super().__init__(path, desc, fields)
        self.children = children
        # Only phrase children whose words were seen in the document need evaluating.
        self.index: dict[int, list[int]] = {}
        self.others: list[int] = []
        for i, child in enumerate(children):
            if isinstance(child, _Phrase):
                for key in child.keys:
                    self.index.setdefault(key, []).append(i)
            else:
                self.others.append(i)
        self.searched = _fields_text(
            f for child in children for leaf in child.leaves() for f in leaf.fields
        )

    def leaves(self) -> Iterable[_Node]:
        for child in self.children:
            yield from child.leaves()

    def eval(self, doc: _Doc, explain: bool) -> _Res:
        todo = set(self.others)
        occ, index = doc.occ, self.index
        if len(occ) <= len(index):
            for key in occ:
                hit = index.get(key)
                if hit:
                    todo.update(hit)
        else:
            for key, hit in index.items():
                if key in occ:
                    todo.update(hit)
        ev: _Ev = []
        fails: list[str] = []
        for i in sorted(todo):
            res = self.children[i].eval(doc, explain)
            if res.ok:
                ev.extend(res.ev)
            elif explain:
                fails.append(res.why)
        if ev:
            return _Res(True, ev)
        if not explain:
            return _Res(False, ev)
        if len(self.children) == 1:
            why = fails[0] if fails else self.children[0].eval(doc, True).why
        else:
            why = f"{self.path} {self.desc}: none found in {self.searched}"
        return _Res(False, ev, why)


class _Not(_Node):
    __slots__ = ("child",)

    def __init__(self, path: str, desc: str, fields: tuple[str, ...], child: _Node) -> None:
        super().__init__(path, desc, fields)
        self.child = child

    def leaves(self) -> Iterable[_Node]:
        return self.child.leaves()

    def eval(self, doc: _Doc, explain: bool) -> _Res:
        res = self.child.eval(doc, explain)
        if not res.ok:
            return _Res(True, [])
        why = ""
        if explain:
            first = res.ev[0][1]
            why = f'{self.path} {self.desc}: found "{first.text}" in {first.where()}' + (
                f" (+{len(res.ev) - 1} more)" if len(res.ev) > 1 else ""
            )
        return _Res(False, [], why)


# ---------------------------------------------------------------------------
# compiler


@dataclass(slots=True)
class _CompiledWatchlist:
    watchlist: Watchlist
    feeds: frozenset[str]
    tags: frozenset[str]
    terms: _Any | None
    all: list[_Node]
    nots: list[_Node]

    def in_scope(self, feed: str, feed_tags: Collection[str]) -> bool:
        if not self.feeds and not self.tags:
            return True
        return feed in self.feeds or any(t in self.tags for t in feed_tags)

    def scope_reason(self, feed: str, feed_tags: Collection[str]) -> str:
        parts = []
        if self.feeds:
            parts.append("feeds [" + ", ".join(sorted(self.feeds)) + "]")
        if self.tags:
            parts.append("tags [" + ", ".join(sorted(self.tags)) + "]")
        if not feed:  # explain --text without --feed
            return "scope: only feeds in " + " or ".join(parts) + " (give --feed NAME)"
        tags = f" (tags: {', '.join(feed_tags)})" if feed_tags else ""
        return f'scope: feed "{feed}"{tags} is not in ' + " or ".join(parts)


class _Compiler:
    def __init__(self) -> None:
        self.key_ids: dict[tuple[str, ...], int] = {}
        self.pattern_ids: dict[str, int] = {}
        self.pattern_keys: list[int | tuple[int, ...]] = []
        self.key_watchlists: list[list[int]] = []
        self.ordinal = 0
        self.n_regex = 0
        self.n_leaves = 0
        self.scan: set[str] = set()
        self.current = 0
        self.plural_cache: dict[tuple[str, bool], tuple[str, ...]] = {}

    def plurals(self, word: str, original: str) -> tuple[str, ...]:
        ident = (word, original.isupper())
        forms = self.plural_cache.get(ident)
        if forms is None:
            forms = self.plural_cache[ident] = _plurals(word, original)
        return forms

    def _key(self, text: str) -> int:
        words, spans, _, _ = _tokenize(text)
        last_original = text[spans[-1][0] : spans[-1][1]]
        ident = (*words, "\0A" if last_original.isupper() else "\0a")
        key = self.key_ids.get(ident)
        if key is None:
            key = len(self.key_ids)
            self.key_ids[ident] = key
            self.key_watchlists.append([self.current])
            ids, keys = self.pattern_ids, self.pattern_keys
            for pattern in _variants(words, last_original, self.plurals):
                pid = ids.get(pattern)
                if pid is None:
                    ids[pattern] = len(keys)
                    keys.append(key)
                else:
                    old = keys[pid]
                    keys[pid] = (*old, key) if isinstance(old, tuple) else (old, key)
        else:
            owners = self.key_watchlists[key]
            if owners[-1] != self.current:
                owners.append(self.current)
        return key

    def _phrase(self, path: str, term: Term, fields: tuple[str, ...]) -> _Phrase:
        assert term.phrase is not None
        self.ordinal += 1
        self.n_leaves += 1
        node = _Phrase(path, term.describe(), fields, term.phrase, self.ordinal)
        for text in (term.phrase, *term.aliases):
            key = self._key(text)
            if key not in node.via:
                node.keys.append(key)
                node.via[key] = text
        self.scan.update(fields)
        return node

    def term(self, path: str, term: Term, inherited: tuple[str, ...]) -> _Node:
        fields: tuple[str, ...] = tuple(term.fields) if term.fields else inherited
        kind = term.kind
        if kind == "phrase":
            return self._phrase(path, term, fields)
        if kind == "regex":
            assert term.regex is not None
            self.ordinal += 1
            self.n_leaves += 1
            self.n_regex += 1
            self.scan.update(fields)
            return _Regex(path, term.describe(), fields, term.regex, self.ordinal)
        if kind == "near":
            items = [
                self._phrase(f"{path}.near[{i}]", t, fields) for i, t in enumerate(term.near or ())
            ]
            return _Near(path, term.describe(), fields, items, term.near_within)
        if kind == "not":
            assert term.not_ is not None
            return _Not(path, term.describe(), fields, self.term(path, term.not_, fields))
        children = term.all_ if kind == "all" else term.any_
        nodes = [self.term(f"{path}.{kind}[{i}]", t, fields) for i, t in enumerate(children or ())]
        return (_All if kind == "all" else _Any)(path, term.describe(), fields, nodes)

    def watchlist(self, index: int, wl: Watchlist) -> _CompiledWatchlist:
        self.current = index
        fields = tuple(wl.fields)
        terms = None
        if wl.terms:
            nodes = [self.term(f"terms[{i}]", t, fields) for i, t in enumerate(wl.terms)]
            terms = _Any("terms", f"({len(nodes)} terms)", fields, nodes)
        return _CompiledWatchlist(
            watchlist=wl,
            feeds=frozenset(wl.feeds),
            tags=frozenset(wl.tags),
            terms=terms,
            all=[self.term(f"all[{i}]", t, fields) for i, t in enumerate(wl.all_)],
            nots=[
                _Not(f"not[{i}]", t.describe(), fields, self.term(f"not[{i}]", t, fields))
                for i, t in enumerate(wl.not_)
            ],
        )


def compile_watchlists(watchlists: Sequence[Watchlist]) -> Matcher:
    """Compile validated watchlists into one :class:`Matcher` (one automaton for all)."""
    names: set[str] = set()
    for wl in watchlists:
        if wl.name in names:
            raise ValueError(f'duplicate watchlist name "{wl.name}"')
        names.add(wl.name)
    # Building allocates hundreds of thousands of short-lived containers; cyclic GC passes
    # over a large heap in the middle of that cost ~30% of the build and free nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _compile(watchlists)
    finally:
        if gc_was_enabled:
            gc.enable()


def _compile(watchlists: Sequence[Watchlist]) -> Matcher:
    compiler = _Compiler()
    compiled = [compiler.watchlist(i, wl) for i, wl in enumerate(watchlists)]
    automaton: Any = None
    info: list[tuple[int, int, tuple[int, ...]]] = []
    if compiler.pattern_ids:
        # Values are pattern ids (C ints, no Python objects per pattern); ``info`` holds
        # each pattern's length in characters, in words, and the phrase keys it stands for.
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        add = automaton.add_word
        for pattern, pid in compiler.pattern_ids.items():
            add(pattern, pid)
            keys = compiler.pattern_keys[pid]
            info.append(
                (len(pattern), pattern.count(" ") - 1, keys if isinstance(keys, tuple) else (keys,))
            )
        automaton.make_automaton()
    always = frozenset(
        i
        for i, cw in enumerate(compiled)
        if any(
            isinstance(leaf, _Regex)
            for node in [*([cw.terms] if cw.terms else []), *cw.all, *cw.nots]
            for leaf in node.leaves()
        )
    )
    stats = {
        "watchlists": len(compiled),
        "terms": compiler.n_leaves,
        "regexes": compiler.n_regex,
        "phrases": len(compiler.key_ids),
        "patterns": len(compiler.pattern_ids),
    }
    return Matcher(
        compiled=compiled,
        automaton=automaton,
        info=info,
        key_watchlists=[tuple(s) for s in compiler.key_watchlists],
        always=always,
        scan=tuple(f for f in FIELD_ORDER if f in compiler.scan),
        stats=stats,
    )


# ---------------------------------------------------------------------------
# matcher


def _hit(name: str, ev: _Ev) -> Hit:
    ordered = sorted(ev, key=lambda e: (e[0], _FIELD_RANK[e[1].field], e[1].chars))
    terms: dict[str, None] = {}
    words: dict[str, str] = {}
    for _, found in ordered:
        terms.setdefault(found.term, None)
        words.setdefault(_fold(found.text), found.text)
    fields = sorted({f.field for _, f in ev}, key=_FIELD_RANK.__getitem__)
    return Hit(name, tuple(terms), tuple(words.values()), tuple(fields))


class Matcher:
    """Compiled watchlists. Immutable after construction; safe to share between tasks."""

    def __init__(
        self,
        *,
        compiled: list[_CompiledWatchlist],
        automaton: Any,
        info: list[tuple[int, int, tuple[int, ...]]],
        key_watchlists: list[tuple[int, ...]],
        always: frozenset[int],
        scan: tuple[str, ...],
        stats: dict[str, int],
    ) -> None:
        self._compiled = compiled
        self._automaton = automaton
        self._info = info
        self._key_watchlists = key_watchlists
        self._always = always
        self._scan = scan
        self.stats: Mapping[str, int] = dict(stats)
        self.watchlists: Mapping[str, Watchlist] = {
            cw.watchlist.name: cw.watchlist for cw in compiled
        }

    def _doc(self, fields: Mapping[str, str]) -> _Doc:
        return _Doc(fields, self._scan, self._automaton, self._info)

    def match(
        self, fields: Mapping[str, str], *, feed: str = "", feed_tags: Collection[str] = ()
    ) -> list[Hit]:
        """Watchlists matching a document (keys: title, summary, content, author,
        categories, feed, url; missing = empty), in config order."""
        doc = self._doc(fields)
        candidates = set(self._always)
        for key in doc.occ:
            candidates.update(self._key_watchlists[key])
        hits: list[Hit] = []
        for i in sorted(candidates):
            cw = self._compiled[i]
            if not cw.in_scope(feed, feed_tags):
                continue
            ev = self._evaluate(cw, doc, explain=False)[1]
            if ev is not None:
                hits.append(_hit(cw.watchlist.name, ev))
        return hits

    def match_entry(self, entry: Entry) -> list[Hit]:
        return self.match(entry_fields(entry), feed=entry.feed, feed_tags=entry.feed_tags)

    @staticmethod
    def _evaluate(cw: _CompiledWatchlist, doc: _Doc, explain: bool) -> tuple[list[str], _Ev | None]:
        """(failure reasons, evidence) — evidence is None when the watchlist fails."""
        failed: list[str] = []
        ev: _Ev = []
        if cw.terms is not None:
            res = cw.terms.eval(doc, explain)
            if not res.ok:
                if not explain:
                    return failed, None
                failed.append(res.why)
            ev.extend(res.ev)
        for node in (*cw.all, *cw.nots):
            res = node.eval(doc, explain)
            if not res.ok:
                if not explain:
                    return failed, None
                failed.append(res.why)
            ev.extend(res.ev)
        return failed, ev

    def explain(
        self, fields: Mapping[str, str], *, feed: str = "", feed_tags: Collection[str] = ()
    ) -> list[Explanation]:
        """One :class:`Explanation` per watchlist, in config order."""
        doc = self._doc(fields)
        out: list[Explanation] = []
        for cw in self._compiled:
            failed, ev = self._evaluate(cw, doc, explain=True)
            assert ev is not None
            if not cw.in_scope(feed, feed_tags):
                failed.insert(0, cw.scope_reason(feed, feed_tags))
            matched = not failed
            name = cw.watchlist.name
            ordered = sorted(ev, key=lambda e: (e[0], _FIELD_RANK[e[1].field], e[1].chars))
            out.append(
                Explanation(
                    watchlist=name,
                    matched=matched,
                    found=tuple(f for _, f in ordered),
                    failed=tuple(failed),
                    hit=_hit(name, ev) if matched else None,
                )
            )
        return out

    def explain_entry(self, entry: Entry) -> list[Explanation]:
        return self.explain(entry_fields(entry), feed=entry.feed, feed_tags=entry.feed_tags)
