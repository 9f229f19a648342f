"""Compiled clauses: phrase, regex, near, all, any and not, each evaluated over one
scanned document."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.match.document import Document
from monitor.match.explain import FIELD_RANK, Found

if TYPE_CHECKING:
    from monitor.match.schema import Watchlist


# ---------------------------------------------------------------------------
# compiled clauses

Events = list[tuple[int, Found]]


@dataclass(slots=True)
class _Res:
    ok: bool
    ev: Events
    why: str = ""


def _fields_text(fields: Iterable[str]) -> str:
    return ", ".join(sorted(set(fields), key=FIELD_RANK.__getitem__))


class Node:
    __slots__ = ("desc", "fields", "fieldset", "path")

    def __init__(self, path: str, desc: str, fields: tuple[str, ...]) -> None:
        self.path = path
        self.desc = desc
        self.fields = fields
        self.fieldset = frozenset(fields)

    def eval(self, doc: Document, explain: bool) -> _Res:  # pragma: no cover - abstract
        raise NotImplementedError

    def leaves(self) -> Iterable[Node]:
        yield self


class Phrase(Node):
    __slots__ = ("keys", "label", "ordinal", "via")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], label: str, ordinal: int
    ) -> None:
        super().__init__(path, desc, fields)
        self.label = label
        self.ordinal = ordinal
        self.keys: list[int] = []
        self.via: dict[int, str] = {}

    def positions(self, doc: Document, name: str) -> list[tuple[int, int, int]]:
        out: set[tuple[int, int, int]] = set()
        for key in self.keys:
            for f, ws, we in doc.occ.get(key, ()):
                if f == name:
                    out.add((ws, we, key))
        return sorted(out)

    def eval(self, doc: Document, explain: bool) -> _Res:
        ev: Events = []
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


class Regex(Node):
    __slots__ = ("ordinal", "pattern")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], pattern: str, ordinal: int
    ) -> None:
        super().__init__(path, desc, fields)
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.ordinal = ordinal

    def eval(self, doc: Document, explain: bool) -> _Res:
        ev: Events = [
            (self.ordinal, found)
            for name in self.fields
            for found in doc.regex_found(self.path, self.pattern, name)
        ]
        if ev:
            return _Res(True, ev)
        why = f"{self.path} {self.desc}: no match in {_fields_text(self.fields)}" if explain else ""
        return _Res(False, ev, why)


class Near(Node):
    __slots__ = ("items", "within")

    def __init__(
        self, path: str, desc: str, fields: tuple[str, ...], items: list[Phrase], within: int
    ) -> None:
        super().__init__(path, desc, fields)
        self.items = items
        self.within = within

    def leaves(self) -> Iterable[Node]:
        return iter(self.items)

    def eval(self, doc: Document, explain: bool) -> _Res:
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
            ev: Events = [
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


class AllOf(Node):
    __slots__ = ("children",)

    def __init__(self, path: str, desc: str, fields: tuple[str, ...], children: list[Node]) -> None:
        super().__init__(path, desc, fields)
        self.children = children

    def leaves(self) -> Iterable[Node]:
        for child in self.children:
            yield from child.leaves()

    def eval(self, doc: Document, explain: bool) -> _Res:
        ev: Events = []
        why = ""
        for child in self.children:
            res = child.eval(doc, explain)
            if not res.ok:
                if not explain:
                    return _Res(False, [])
                why = why or res.why
            ev.extend(res.ev)
        return _Res(not why, ev, why)


class AnyOf(Node):
    __slots__ = ("children", "index", "others", "searched")

    def __init__(self, path: str, desc: str, fields: tuple[str, ...], children: list[Node]) -> None:
        super().__init__(path, desc, fields)
        self.children = children
        # Only phrase children whose words were seen in the document need evaluating.
        self.index: dict[int, list[int]] = {}
        self.others: list[int] = []
        for i, child in enumerate(children):
            if isinstance(child, Phrase):
                for key in child.keys:
                    self.index.setdefault(key, []).append(i)
            else:
                self.others.append(i)
        self.searched = _fields_text(
            f for child in children for leaf in child.leaves() for f in leaf.fields
        )

    def leaves(self) -> Iterable[Node]:
        for child in self.children:
            yield from child.leaves()

    def eval(self, doc: Document, explain: bool) -> _Res:
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
        ev: Events = []
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


class NotOf(Node):
    __slots__ = ("child",)

    def __init__(self, path: str, desc: str, fields: tuple[str, ...], child: Node) -> None:
        super().__init__(path, desc, fields)
        self.child = child

    def leaves(self) -> Iterable[Node]:
        return self.child.leaves()

    def eval(self, doc: Document, explain: bool) -> _Res:
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


@dataclass(slots=True)
class CompiledWatchlist:
    watchlist: Watchlist
    feeds: frozenset[str]
    tags: frozenset[str]
    terms: AnyOf | None
    all: list[Node]
    nots: list[Node]

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
