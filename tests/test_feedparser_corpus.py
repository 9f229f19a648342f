"""Every file of feedparser's own test suite through the real server, fetcher and parser pool.

Robustness, not fidelity: no crash, no hang, no timeout, and every feed ends with entries,
a recorded error, or (for the many fixtures that are valid feeds without items) a
recognised feed with no items. Each fixture is served with the HTTP headers its
``Header:`` comment lines ask for (content types and charsets included).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from monitor.fetch import FetchLimits, FetchResult, fetch, make_session
from monitor.parse import ParseResult, parse_in_pool
from tests.feedserver import FeedServer

CORPUS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "feeds" / "feedparser-tests"
)
_HEADER = re.compile(rb"^Header:\s*([A-Za-z-]+):[ \t]*(.*?)\s*$", re.M)
BUDGET_S = 60.0

pytestmark = pytest.mark.data


def _files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".xml", ".json"))


def _headers(body: bytes) -> dict[str, str]:
    head = body[:2048]
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in _HEADER.findall(head)
        if value.strip()
    }


def _outcome(fetched: FetchResult, parsed: ParseResult | None) -> str:
    if fetched.error or parsed is None:
        return "fetch failed"
    if parsed.error and "timed out" in parsed.error:
        return "parse timed out"
    if parsed.entries:
        return "entries (with error)" if parsed.error else "entries"
    if parsed.error:
        return "error recorded"
    return "valid feed, no items" if parsed.meta.version else "nothing (BUG)"


def test_every_feedparser_fixture_ends_in_entries_or_a_recorded_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser corpus not present at {CORPUS}")
    files = _files()
    if not files:
        pytest.skip(f"no fixture files under {CORPUS}")

    with FeedServer() as server:
        paths: dict[str, Path] = {}
        for file in files:
            path = "/" + quote(file.relative_to(CORPUS).as_posix())
            body = file.read_bytes()
            headers = _headers(body)
            etag = next((v for k, v in headers.items() if k.lower() == "etag"), None)
            modified = next((v for k, v in headers.items() if k.lower() == "last-modified"), None)
            extra = {k: v for k, v in headers.items() if k.lower() not in ("etag", "last-modified")}
            content_type = "application/json" if file.suffix == ".json" else "application/xml"
            extra = {"Content-Type": content_type, **extra}
            server.set(path, body, headers=extra, etag=etag, last_modified=modified, gzip=True)
            paths[path] = file

        async def run_all() -> list[tuple[str, FetchResult, ParseResult | None]]:
            limits = FetchLimits(total_timeout=20)
            slots = asyncio.Semaphore(32)
            with ProcessPoolExecutor(max_workers=2) as pool:
                async with make_session(limits, limit=32, limit_per_host=32) as session:

                    async def one(path: str) -> tuple[str, FetchResult, ParseResult | None]:
                        async with slots:
                            fetched = await fetch(session, server.url(path), limits=limits)
                            parsed = None
                            if fetched.body is not None:
                                parsed = await parse_in_pool(
                                    pool,
                                    fetched.body,
                                    fetched.headers,
                                    url=fetched.final_url,
                                    feed=path,
                                    source="corpus",
                                    timeout=20,
                                )
                            return path, fetched, parsed

                    async with asyncio.timeout(BUDGET_S * 2):  # a hang fails, never blocks CI
                        return await asyncio.gather(*(one(p) for p in paths))

        started = time.perf_counter()
        results = asyncio.run(run_all())
        elapsed = time.perf_counter() - started

    outcomes = Counter(_outcome(fetched, parsed) for _, fetched, parsed in results)
    entries = sum(len(parsed.entries) for _, _, parsed in results if parsed)
    lines = [f"feedparser corpus: {len(results)} files in {elapsed:.1f}s, {entries} entries"]
    lines += [f"  {name:<22} {count:>5}" for name, count in sorted(outcomes.items())]
    by_dir = Counter((paths[p].relative_to(CORPUS).parts[1], _outcome(f, r)) for p, f, r in results)
    lines += [f"  {d + ' / ' + o:<45} {n:>5}" for (d, o), n in sorted(by_dir.items())]
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    bad = [
        (paths[p].name, _outcome(f, r), f.error)
        for p, f, r in results
        if _outcome(f, r) in ("fetch failed", "parse timed out", "nothing (BUG)")
    ]
    assert not bad, bad[:20]
    assert len(results) == len(files)
    assert outcomes["entries"] + outcomes["entries (with error)"] > 0
    assert elapsed < BUDGET_S
