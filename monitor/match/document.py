"""One document (an entry's fields), tokenised once and scanned with the automaton."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from monitor.match.explain import Found
from monitor.match.words import ASCII_TOKEN, TOKEN, fold_words, tokenize

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------
# one document, tokenised and scanned


class Document:
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
                words: list[str] = ASCII_TOKEN.findall(text.lower())
            else:
                folded = fold_words(text)
                if len(folded) == len(text):  # positions agree: spans can wait too
                    words = TOKEN.findall(folded)
                else:
                    words, spans, folded, aligned = tokenize(text)
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
            _, spans, folded, aligned = tokenize(text)
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
