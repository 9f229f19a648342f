"""What matching returns: ``Hit`` per watchlist, ``Found`` per matched term, and
``Explanation`` for ``wirewatch explain`` (text and ``--json``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.match.schema import FIELD_NAMES

if TYPE_CHECKING:
    from monitor.models import Entry


# the order fields are matched and shown in: the schema's own list
FIELD_ORDER: tuple[str, ...] = FIELD_NAMES
FIELD_RANK = {f: i for i, f in enumerate(FIELD_ORDER)}

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
