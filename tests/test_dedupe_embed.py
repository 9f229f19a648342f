"""The semantic signal: WordLlama's static embeddings, loaded from the installed wheel."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from monitor.dedupe import embed
from monitor.dedupe.index import prepare

TITLES = [
    "Central bank raises interest rates to curb inflation",
    "Central bank hikes rates in bid to tame inflation",
    "Floods force thousands from their homes in the north",
    "Striker signs four-year contract with champions",
    "Parliament approves budget after all-night session",
]


def test_the_model_loads_from_the_wheel_without_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any attempt to open a connection while the model loads fails the test."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedding model tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    embed._model.cache_clear()
    vec = embed.embed("Kim Jong Un meets Putin at space centre")
    assert vec.shape == (embed.DIM,)
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


def test_a_paraphrase_is_closer_than_an_unrelated_title() -> None:
    v = embed.embed_many(TITLES)
    sims = v @ v.T
    assert sims[0, 1] > max(sims[0, 2], sims[0, 3], sims[0, 4])


def test_the_stored_bytes_keep_the_cosine_within_a_hundredth() -> None:
    v = embed.embed_many(TITLES)
    q = [embed.quantize(x) for x in v]
    assert all(len(b) == embed.DIM for b in q)
    for i in range(len(TITLES)):
        for j in range(len(TITLES)):
            assert abs(embed.cosine(q[i], q[j]) - float(v[i] @ v[j])) < 0.01


def test_an_empty_title_or_vector_compares_as_nothing() -> None:
    assert not np.any(embed.embed(""))
    assert embed.cosine(b"", embed.quantize(embed.embed("x"))) == 0.0


def test_the_parse_workers_step_computes_the_embedding_once() -> None:
    """``prepare(..., features=True)`` (what the parse workers run) carries the title's
    quantized embedding, so the process that dedupes only compares bytes."""
    tk, _summary, feat, vec = prepare(TITLES[0], "", "Outlet", 300, features=True)
    assert feat
    assert vec == embed.quantize(embed.embed(tk.stripped))
    assert prepare(TITLES[0], "", "Outlet", 300)[3] == b""


def test_a_titles_tokens_are_its_words_tokens() -> None:
    """``token_ids`` encodes word by word (and keeps each word's ids): the same multiset
    of tokens as the tokenizer gives for the whole title, so the same vector."""
    from collections import Counter

    tokenizer, _ = embed._model()
    for title in [
        *TITLES,
        "Kim Jong-un's 'historic' visit: Putin hosts N.Korea leader",
        "¿Qué pasa?",
    ]:
        whole = tokenizer.encode(title, add_special_tokens=False).ids
        assert Counter(embed.token_ids(title)) == Counter(whole), title
