"""Benchmark: watchlist matching at 10,000 terms.

Run by hand: ``.venv/bin/python bench/bench_match.py [--terms 10000] [--entries 1000]``.

Builds synthetic name-like terms (each with aliases: a hyphenated and a joined spelling),
spread over 100 watchlists with some near/all/not/regex clauses, validates them through
the pydantic schema, compiles one matcher, then matches 1,000 entries of ~400 characters
(real headlines+descriptions from ../shared/data when present, else synthetic text), a
tenth of them seeded with a term. Reports build time, median/p99 per entry, memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.match import compile_watchlists
from monitor.match.schema import WatchlistFile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SYLLABLES = (
    "ka",
    "kim",
    "jo",
    "ng",
    "un",
    "pu",
    "tin",
    "xi",
    "jin",
    "ping",
    "ali",
    "ha",
    "mad",
    "mo",
    "ham",
    "ser",
    "gei",
    "vla",
    "di",
    "mir",
    "ze",
    "len",
    "sky",
    "na",
    "ren",
    "dra",
    "mo",
    "di",
    "lu",
    "la",
    "da",
    "sil",
    "va",
    "oli",
    "ver",
    "ta",
    "mar",
    "an",
    "dre",
    "as",
    "bo",
    "ris",
    "jo",
    "hn",
    "son",
    "ma",
    "ri",
    "a",
    "el",
    "ena",
    "sa",
    "ra",
    "yu",
    "ki",
    "ta",
    "ro",
    "hi",
    "de",
    "fu",
    "mi",
    "ko",
    "ba",
    "rak",
    "ob",
    "am",
    "ra",
    "fa",
    "el",
    "nu",
    "ri",
    "la",
    "ila",
    "ko",
    "va",
)


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def make_terms(n: int, rng: random.Random) -> list[dict[str, Any]]:
    seen: set[str] = set()
    terms: list[dict[str, Any]] = []
    while len(terms) < n:
        words = [_word(rng) for _ in range(rng.choice((1, 2, 2, 3, 3)))]
        phrase = " ".join(words)
        if phrase.lower() in seen:
            continue
        seen.add(phrase.lower())
        aliases = []
        if len(words) > 1:
            aliases.append(f"{words[0]} {'-'.join(words[1:])}")  # hyphenated spelling
            aliases.append(_word(rng) + " " + words[-1])  # another transliteration
        else:
            aliases.append(words[0] + "a")
        terms.append({"phrase": phrase, "aliases": aliases})
    return terms


def make_watchlists(
    terms: list[dict[str, Any]], n_lists: int, rng: random.Random
) -> dict[str, Any]:
    per = max(1, len(terms) // n_lists)
    lists: list[dict[str, Any]] = []
    for i in range(n_lists):
        chunk: list[Any] = list(terms[i * per : (i + 1) * per])
        if i % 10 == 1:
            chunk.append({"near": [chunk[0]["phrase"], "missile"], "within": 8})
        if i % 10 == 2:
            chunk.append({"all": [chunk[0]["phrase"], {"not": "drill"}]})
        if i % 20 == 3:
            chunk.append({"regex": rf"\b{rng.choice(SYLLABLES)}{rng.choice(SYLLABLES)}\d+\b"})
        wl: dict[str, Any] = {"name": f"list{i}", "terms": chunk}
        if i % 10 == 4:
            wl["not"] = ["sports"]
        lists.append(wl)
    return {"watchlists": lists}


def load_texts(n: int, rng: random.Random) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    folder = DATA / "captures" / "blazzzeee"
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            for item in json.loads(path.read_text(encoding="utf-8")):
                title = str(item.get("title") or "")
                summary = str(item.get("description") or "")
                if title:
                    texts.append((title, summary))
    while len(texts) < n:  # synthetic filler
        words = [
            rng.choice(("the", "a", "in", "of", "said", "on"))
            if rng.random() < 0.4
            else _word(rng).lower()
            for _ in range(70)
        ]
        texts.append((" ".join(words[:10]), " ".join(words[10:])))
    rng.shuffle(texts)
    out: list[tuple[str, str]] = []
    for title, summary in texts[:n]:
        # pad the description to ~400 characters of entry text in total
        while len(title) + len(summary) < 400:
            summary = f"{summary} {rng.choice(texts)[1]}".strip() or "x" * 400
        out.append((title, summary[: 400 - len(title)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--terms", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=1_000)
    parser.add_argument("--watchlists", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    terms = make_terms(args.terms, rng)
    data = make_watchlists(terms, args.watchlists, rng)
    t0 = time.perf_counter()
    wf = WatchlistFile.model_validate(data)
    validate_s = time.perf_counter() - t0

    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    matcher = compile_watchlists(wf.watchlists)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del matcher
    gc.collect()
    tracemalloc.start()
    matcher = compile_watchlists(wf.watchlists)
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # time the build again without tracemalloc overhead: wall and CPU (one core)
    builds: list[tuple[float, float]] = []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        compile_watchlists(wf.watchlists)
        builds.append((time.perf_counter() - t0, time.process_time() - c0))
    build_s = min(b[0] for b in builds)
    build_cpu_s = min(b[1] for b in builds)

    texts = load_texts(args.entries, rng)
    seeded = 0
    docs: list[dict[str, str]] = []
    for i, (title, summary) in enumerate(texts):
        if i % 10 == 0:  # a tenth of the entries mention a watched name
            term = rng.choice(terms)
            spelling = rng.choice([term["phrase"], *term["aliases"]])
            title = f"{spelling}'s visit: {title}"[:120]
            seeded += 1
        docs.append({"title": title, "summary": summary})

    for doc in docs[:50]:  # warm up
        matcher.match(doc)
    gc.collect()
    times: list[float] = []
    cpu_times: list[float] = []
    hits = 0
    for doc in docs:
        t0, c0 = time.perf_counter(), time.thread_time()
        result = matcher.match(doc)
        cpu_times.append(time.thread_time() - c0)
        times.append(time.perf_counter() - t0)
        hits += bool(result)

    def stats(values: list[float]) -> tuple[float, float]:
        values = sorted(values)
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return statistics.median(values) * 1e3, p99 * 1e3

    median_ms, p99_ms = stats(times)
    cpu_median_ms, cpu_p99_ms = stats(cpu_times)
    t0 = time.perf_counter()
    for doc in docs[:100]:
        matcher.explain(doc)
    explain_ms = (time.perf_counter() - t0) / 100 * 1e3

    avg_len = statistics.mean(len(d["title"]) + len(d["summary"]) for d in docs)
    print(
        f"python {platform.python_version()} on {platform.machine()}, {args.entries} entries "
        f"(avg {avg_len:.0f} chars), seeded {seeded}"
    )
    print(f"matcher stats: {dict(matcher.stats)}")
    print(f"validate (pydantic) : {validate_s * 1e3:8.1f} ms")
    print(
        f"build automaton     : {build_s * 1e3:8.1f} ms wall, {build_cpu_s * 1e3:.1f} ms CPU "
        "(best of 5)"
    )
    print(f"match median        : {median_ms:8.3f} ms/entry wall, {cpu_median_ms:.3f} ms CPU")
    print(f"match p99           : {p99_ms:8.3f} ms/entry wall, {cpu_p99_ms:.3f} ms CPU")
    print(f"explain (all lists) : {explain_ms:8.3f} ms/entry")
    print(f"entries with a hit  : {hits}")
    print(f"memory (tracemalloc): {traced / 2**20:8.1f} MiB held by the matcher")
    print(f"memory (max RSS +)  : {(rss1 - rss0) / 1024:8.1f} MiB peak RSS growth, first build")


if __name__ == "__main__":
    main()
