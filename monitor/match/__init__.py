"""The match stage: validated watchlists (``schema``) compiled (``compiler``) into one
``Matcher`` (``matcher``), which gives an entry's hits per watchlist and explains them
(``explain``). Pure: data in, data out.

``compile_watchlists`` turns validated :class:`~monitor.match.schema.Watchlist` objects
into one :class:`Matcher` holding a single Aho-Corasick automaton over every phrase, alias
and near-word of every watchlist (``nodes``: the compiled clauses; ``document``: one entry
tokenised and scanned). Regex terms run separately on the folded text.

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

from monitor.match.compiler import compile_watchlists
from monitor.match.explain import (
    FIELD_ORDER,
    Explanation,
    Found,
    Hit,
    entry_fields,
    explain_json,
    format_explanations,
)
from monitor.match.matcher import Matcher
from monitor.match.words import term_words

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
