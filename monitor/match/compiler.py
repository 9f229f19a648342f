"""``compile_watchlists``: validated watchlists → one ``Matcher`` with a single
Aho-Corasick automaton over every phrase, alias and near-word."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ahocorasick

from monitor.match.explain import FIELD_ORDER
from monitor.match.matcher import Matcher
from monitor.match.nodes import (
    AllOf,
    AnyOf,
    CompiledWatchlist,
    Near,
    Node,
    NotOf,
    Phrase,
    Regex,
)
from monitor.match.words import plurals, tokenize, variants

if TYPE_CHECKING:
    from monitor.match.schema import Term, Watchlist


# ---------------------------------------------------------------------------
# compiler


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
            forms = self.plural_cache[ident] = plurals(word, original)
        return forms

    def _key(self, text: str) -> int:
        words, spans, _, _ = tokenize(text)
        last_original = text[spans[-1][0] : spans[-1][1]]
        ident = (*words, "\0A" if last_original.isupper() else "\0a")
        key = self.key_ids.get(ident)
        if key is None:
            key = len(self.key_ids)
            self.key_ids[ident] = key
            self.key_watchlists.append([self.current])
            ids, keys = self.pattern_ids, self.pattern_keys
            for pattern in variants(words, last_original, self.plurals):
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

    def _phrase(self, path: str, term: Term, fields: tuple[str, ...]) -> Phrase:
        assert term.phrase is not None
        self.ordinal += 1
        self.n_leaves += 1
        node = Phrase(path, term.describe(), fields, term.phrase, self.ordinal)
        for text in (term.phrase, *term.aliases):
            key = self._key(text)
            if key not in node.via:
                node.keys.append(key)
                node.via[key] = text
        self.scan.update(fields)
        return node

    def term(self, path: str, term: Term, inherited: tuple[str, ...]) -> Node:
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
            return Regex(path, term.describe(), fields, term.regex, self.ordinal)
        if kind == "near":
            items = [
                self._phrase(f"{path}.near[{i}]", t, fields) for i, t in enumerate(term.near or ())
            ]
            return Near(path, term.describe(), fields, items, term.near_within)
        if kind == "not":
            assert term.not_ is not None
            return NotOf(path, term.describe(), fields, self.term(path, term.not_, fields))
        children = term.all_ if kind == "all" else term.any_
        nodes = [self.term(f"{path}.{kind}[{i}]", t, fields) for i, t in enumerate(children or ())]
        return (AllOf if kind == "all" else AnyOf)(path, term.describe(), fields, nodes)

    def watchlist(self, index: int, wl: Watchlist) -> CompiledWatchlist:
        self.current = index
        fields = tuple(wl.fields)
        terms = None
        if wl.terms:
            nodes = [self.term(f"terms[{i}]", t, fields) for i, t in enumerate(wl.terms)]
            terms = AnyOf("terms", f"({len(nodes)} terms)", fields, nodes)
        return CompiledWatchlist(
            watchlist=wl,
            feeds=frozenset(wl.feeds),
            tags=frozenset(wl.tags),
            terms=terms,
            all=[self.term(f"all[{i}]", t, fields) for i, t in enumerate(wl.all_)],
            nots=[
                NotOf(f"not[{i}]", t.describe(), fields, self.term(f"not[{i}]", t, fields))
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
            isinstance(leaf, Regex)
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
