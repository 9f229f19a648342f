"""``Matcher``: the watchlists' hits for an entry, and explanations of why."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from monitor.match.document import Document
from monitor.match.explain import FIELD_RANK, Explanation, Hit, entry_fields
from monitor.match.nodes import CompiledWatchlist, Events
from monitor.match.words import fold_words

if TYPE_CHECKING:
    from monitor.match.schema import Watchlist
    from monitor.models import Entry


# ---------------------------------------------------------------------------
# matcher


def _hit(name: str, ev: Events) -> Hit:
    ordered = sorted(ev, key=lambda e: (e[0], FIELD_RANK[e[1].field], e[1].chars))
    terms: dict[str, None] = {}
    words: dict[str, str] = {}
    for _, found in ordered:
        terms.setdefault(found.term, None)
        words.setdefault(fold_words(found.text), found.text)
    fields = sorted({f.field for _, f in ev}, key=FIELD_RANK.__getitem__)
    return Hit(name, tuple(terms), tuple(words.values()), tuple(fields))


class Matcher:
    """Compiled watchlists. Immutable after construction; safe to share between tasks."""

    def __init__(
        self,
        *,
        compiled: list[CompiledWatchlist],
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

    def _doc(self, fields: Mapping[str, str]) -> Document:
        return Document(fields, self._scan, self._automaton, self._info)

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
    def _evaluate(
        cw: CompiledWatchlist, doc: Document, explain: bool
    ) -> tuple[list[str], Events | None]:
        """(failure reasons, evidence) — evidence is None when the watchlist fails."""
        failed: list[str] = []
        ev: Events = []
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
            ordered = sorted(ev, key=lambda e: (e[0], FIELD_RANK[e[1].field], e[1].chars))
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
