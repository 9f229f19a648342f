"""Text normalisation shared by terms and documents: words, folding, scripts written
without spaces, joined words and plurals (the rules are listed in ``monitor.match``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import TYPE_CHECKING

from monitor.normalize import fold

if TYPE_CHECKING:
    pass


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
TOKEN = re.compile(f"[{_NOSPACE}]|(?:(?![{_NOSPACE}])[^\\W_]|[{_MARKS}])+")
ASCII_TOKEN = re.compile(r"[a-z0-9]+")
_NOSPACE_CHAR = re.compile(f"[{_NOSPACE}]")


def fold_words(text: str) -> str:
    # str.casefold turns "İ" into "i" + U+0307 after fold() has already removed accents.
    return fold(text).replace("\u0307", "")


def tokenize(text: str) -> tuple[list[str], list[tuple[int, int]], str, bool]:
    """Folded words, their (start, end) spans in ``text``, the folded text (what regexes
    run on) and whether positions in the folded text are positions in ``text``."""
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    if text.isascii():
        low = text.lower()
        for m in ASCII_TOKEN.finditer(low):
            words.append(m.group())
            spans.append(m.span())
        return words, spans, low, True
    folded = fold_words(text)
    if len(folded) == len(text):
        for m in TOKEN.finditer(folded):
            words.append(m.group())
            spans.append(m.span())
        return words, spans, folded, True
    for m in TOKEN.finditer(text):
        token = m.group()
        span = m.span()
        for sub in TOKEN.findall(token.lower() if token.isascii() else fold_words(token)):
            words.append(sub)
            spans.append(span)
    return words, spans, folded, False


def term_words(text: str) -> tuple[str, ...]:
    """The normalised words of a term or text, e.g. ``("kim", "jong", "un", "s")`` for
    "Kim Jong-Un's". Empty when the text has no letters or digits."""
    return tuple(tokenize(text)[0])


def _joinable(word: str) -> bool:
    return len(word) >= 2 and (word.isascii() or _NOSPACE_CHAR.match(word) is None)


def plurals(word: str, original: str) -> tuple[str, ...]:
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


def variants(
    words: Sequence[str],
    last_original: str,
    plurals: Callable[[str, str], tuple[str, ...]] = plurals,
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
