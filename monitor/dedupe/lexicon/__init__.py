"""The dedupe word lists, as data files beside this module.

Each ``*.txt`` opens with a ``#`` header naming its source and licence, or the general
rule that produced it; ``#`` lines and blank lines are not data. No list holds an entry
because of one example headline.
"""

from __future__ import annotations

from importlib.resources import files


def lines(name: str) -> list[str]:
    """The data lines of ``name`` (e.g. "stopwords-en.txt"), stripped, in file order."""
    text = files(__name__).joinpath(name).read_text(encoding="utf-8")
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def words(name: str) -> frozenset[str]:
    return frozenset(lines(name))


def pairs(name: str) -> list[tuple[str, str]]:
    """Tab-separated two-column lines."""
    out = []
    for line in lines(name):
        a, b = line.split("\t")
        out.append((a.strip(), b.strip()))
    return out


def groups(name: str) -> list[tuple[str, list[str]]]:
    """``head = word, word, ...`` lines as (head, words)."""
    out = []
    for line in lines(name):
        head, _, rest = line.partition("=")
        out.append((head.strip(), [w.strip() for w in rest.split(",") if w.strip()]))
    return out
