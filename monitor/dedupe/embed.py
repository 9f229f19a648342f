"""The semantic signal: a title as one unit vector, so that paraphrases meet.

Takes a title (plain text), returns a 256-dimension unit vector (float32), or its compact
stored form (``quantize``: 256 signed bytes, what the story index keeps per entry).

The model is WordLlama's ``l2_supercat_256``: static token embeddings (32,000 Llama-2
tokens x 256, float16, 16 MB) distilled from large language models' input embeddings,
shipped *inside* the ``wordllama`` wheel from the package registry, so it installs with
``pip`` and loads offline; nothing is ever fetched from a model hub. A title's vector is
the mean of its tokens' vectors, normalised: the computation ``WordLlamaInference.embed``
does (average pooling, then L2 norm), written out here so that loading cannot reach for
the network. Why this model and not another is measured in ``bench/RESULTS.md`` (story
dedup, semantic signal).

wordllama's own loader looks for the tokenizer under ``tokenizer/`` while the wheel ships
it under ``tokenizers/``; the paths are resolved here from the installed package.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vector = npt.NDArray[np.float32]

DIM = 256
WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"

_lock = threading.Lock()


class ModelMissing(RuntimeError):
    """The ``wordllama`` package (and so the model) is not installed."""


def _package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing("the wordllama package is not installed (pip install wordllama)")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _model() -> tuple[Any, Any]:
    """(tokenizer, float32 token matrix), loaded once per process from the wheel's files."""
    import numpy as np
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    # the tokenizers library may spawn a thread pool; the parse workers are forked
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = _package_dir()
    tokenizer = Tokenizer.from_file(str(root / TOKENIZER))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    # float32 (twice the size resident): averaging float16 rows costs much more
    weights = load_file(str(root / WEIGHTS))["embedding.weight"].astype(np.float32)
    return tokenizer, weights


_WORD_CACHE = 1 << 15  # words whose token ids are kept (two generations, per process)
_words: dict[str, list[int]] = {}
_words_old: dict[str, list[int]] = {}


def token_ids(title: str) -> list[int]:
    """The model's token ids of ``title``, word by word. The tokenizer (SentencePiece
    style) marks each word's start and never merges across a space, so a title's tokens
    are its words' tokens (the same multiset: tests/test_dedupe_embed.py), and a word's
    ids can be kept: the tokenizer call costs several times the rest of ``embed``."""
    global _words, _words_old
    with _lock:
        tokenizer, _weights = _model()
    out: list[int] = []
    for word in title.split():
        ids = _words.get(word)
        if ids is None:
            ids = _words_old.get(word)
            if ids is None:
                ids = tokenizer.encode(word, add_special_tokens=False).ids
            _words[word] = ids
            if len(_words) >= _WORD_CACHE // 2:
                _words, _words_old = {}, _words
        out.extend(ids)
    return out


def embed(title: str) -> Vector:
    """The unit vector of ``title`` (zeros for a title with no tokens)."""
    import numpy as np

    with _lock:
        _tokenizer, weights = _model()
    ids = token_ids(title)
    if not ids:
        return np.zeros(DIM, dtype=np.float32)
    vec: Vector = weights[ids].mean(axis=0).astype(np.float32)
    norm = float(np.linalg.norm(vec))
    if norm > 0.0:
        vec = (vec / norm).astype(np.float32)
    return vec


def embed_many(titles: Sequence[str]) -> Vector:
    """``embed`` of each title, as the rows of one matrix."""
    import numpy as np

    if not titles:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.stack([embed(t) for t in titles])


# Stored form: each component of a unit vector lies in [-1, 1]; scaled by 127 and rounded
# it fits a signed byte with an error under 0.004 per component, so a cosine computed on
# the bytes differs from the float one by well under 0.01 (tests/test_dedupe_embed.py).
_SCALE = 127.0


def quantize(vec: Vector) -> bytes:
    import numpy as np

    return bytes(np.clip(np.rint(vec * _SCALE), -127, 127).astype(np.int8).tobytes())


def cosine(a: bytes, b: bytes) -> float:
    """Cosine of two quantized unit vectors (0.0 when either is empty)."""
    import numpy as np

    if not a or not b:
        return 0.0
    va = np.frombuffer(a, dtype=np.int8).astype(np.float32)
    vb = np.frombuffer(b, dtype=np.int8).astype(np.float32)
    na = float(np.dot(va, va))
    nb = float(np.dot(vb, vb))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(va, vb)) / math.sqrt(na * nb)


def loaded() -> bool:
    """Whether this process has the model in memory (``embed`` costs microseconds)."""
    return _model.cache_info().currsize > 0


def load_in_background() -> None:
    """Start loading the model on a thread: a process that will need it soon (a parse
    worker, the daemon) does not stall its first work on the load.

    Not a daemon thread: at exit Python waits for it (a second at most) before it
    finalizes. A daemon thread still inside the tokenizer's native code when a short
    ``once`` exits is unwound by the interpreter's shutdown and aborts the process
    ("FATAL: exception not rethrown", exit -6)."""
    threading.Thread(target=_load_quietly, name="embed-load", daemon=False).start()


def _load_quietly() -> None:
    with contextlib.suppress(ModelMissing), _lock:
        _model()


def available() -> bool:
    try:
        _package_dir()
    except ModelMissing:
        return False
    return True
