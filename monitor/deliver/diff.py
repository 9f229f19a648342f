"""What changed between two headlines, word by word, for an update reply:
``"Floods kill 12 in Brazil"`` → ``"Floods kill 40 in Brazil"`` gives
``[("kill 12", "kill 40")]``: each changed run of words with one word of context before
it, old beside new. Pure text in, text out (the renderer escapes it)."""

from __future__ import annotations

import difflib


def headline_changes(old: str, new: str, *, context: int = 1) -> list[tuple[str, str]]:
    """(before, after) for each run of words that differs, with ``context`` unchanged
    words before it (so "12 → 40" reads "kill 12 → kill 40")."""
    a, b = old.split(), new.split()
    matcher = difflib.SequenceMatcher(a=[w.casefold() for w in a], b=[w.casefold() for w in b])
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        lead = a[max(0, i1 - context) : i1]
        out.append((" ".join([*lead, *a[i1:i2]]), " ".join([*lead, *b[j1:j2]])))
    return out


def describe_change(old: str, new: str, *, limit: int = 3) -> str:
    """``"kill 12 → kill 40"``; several changes joined with ``"; "`` (at most ``limit``,
    then the whole headline old → new is clearer)."""
    changes = headline_changes(old, new)
    if not changes or len(changes) > limit:
        return f"{old} → {new}"
    return "; ".join(f"{before or '∅'} → {after or '∅'}" for before, after in changes)
