"""Story dedupe: takes a new item (title, summary, outlet, link, time) and the window of
recent items, returns the story it belongs to or "new".

* ``textkey``: title keys, wire-copy normalisation, guard features (numbers, names,
  dates, negation); pure functions of one title.
* ``boilerplate``: per-feed affixes and tokens learned from the feed's own recent titles.
* ``embed``: the semantic signal, static word embeddings shipped inside a wheel.
* ``index``: ``StoryIndex``, the window, candidate blocking and decisions.
* ``scoring``: how alike two titles are (lexical signals, the merge model) and the guards
  that veto a merge.
* ``lexicon/*.txt``: the word lists, each with a header naming its source or rule.
"""

from __future__ import annotations

from monitor.dedupe.index import (
    Decision,
    DedupeConfig,
    Prepared,
    StoryIndex,
    StoryItem,
    article_url,
    is_development,
    is_material_change,
    prepare,
)
from monitor.dedupe.scoring import MODEL, SIGNALS, model_score, pair_score, similarity_signals, veto

__all__ = [
    "MODEL",
    "SIGNALS",
    "Decision",
    "DedupeConfig",
    "Prepared",
    "StoryIndex",
    "StoryItem",
    "article_url",
    "is_development",
    "is_material_change",
    "model_score",
    "pair_score",
    "prepare",
    "similarity_signals",
    "veto",
]
