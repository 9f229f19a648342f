"""Fetch + parse throughput: 1,000 feeds x 50 items of real news text from a local server.

Run by hand:  .venv/bin/python bench/bench_fetch_parse.py [--feeds 1000] [--items 50]

The server runs in a separate process (aiohttp.web, bodies in memory, ETag/304 support),
so the numbers below are the client's alone. Modes, each over the same URLs:

  floor        plain aiohttp GET + read(), 50 concurrent (no limits, no decompression code)
  fetch        monitor.fetch.fetch (redirect handling, size caps, header capture)
  fetch+fp     fetch, then feedparser.parse on the event loop thread (one process)
  fetch+pool   fetch, then monitor.parse.ParsePool(2 workers).parse (full normalisation)
  warm 304     fetch with the stored ETag: every feed answers 304, nothing parsed

Then, in this process, CPU ms per feed of parse_feed and of feedparser.parse alone, with
the feedparser speed-ups off and on (median over feeds, best of 3 runs per feed), over the
bench corpus and over the real RSS captures in shared/data/captures/gesab001.
Only that part:  .venv/bin/python bench/bench_fetch_parse.py --cpu-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import aiohttp
import feedparser
from aiohttp import web

from monitor.fetch import FetchLimits, FetchResult, fetch, make_session
from monitor.parse import ParsePool, install_speedups, parse_feed, remove_speedups

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "captures" / "blazzzeee"
REAL = DATA.parent / "gesab001"
CONCURRENCY = 50


def build_feeds(n_feeds: int, n_items: int) -> list[bytes]:
    items: list[dict[str, str]] = []
    for file in sorted(DATA.glob("*.json")):
        items.extend(json.loads(file.read_text()))
    if not items:
        items = [
            {"title": f"Story {i}", "description": "Text " * 40, "link": f"https://e/{i}"}
            for i in range(1000)
        ]
    base = datetime(2025, 5, 27, tzinfo=UTC)
    feeds = []
    for f in range(n_feeds):
        parts = [
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
            f"<title>Outlet {f}</title><link>https://outlet{f}.example/</link>",
            "<description>bench</description>",
        ]
        for i in range(n_items):
            it = items[(f * n_items + i) % len(items)]
            when = format_datetime(base - timedelta(minutes=7 * i + f), usegmt=True)
            parts.append(
                f"<item><title>{escape(it.get('title') or '')}</title>"
                f"<link>{escape((it.get('link') or '') + f'?utm_source=rss&f={f}')}</link>"
                f"<guid>{f}-{i}</guid><pubDate>{when}</pubDate>"
                f"<description>{escape(it.get('description') or '')}</description></item>"
            )
        parts.append("</channel></rss>")
        feeds.append("".join(parts).encode())
    return feeds


def serve(feeds: list[bytes], port_queue: multiprocessing.Queue[int]) -> None:
    async def handle(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        etag = f'"v{i}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=feeds[i], headers={"ETag": etag, "Content-Type": "application/rss+xml"}
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{i}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def worker_cpu(pool: ParsePool) -> float:
    total = 0.0
    for proc in getattr(pool._executor, "_processes", {}).values():
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


async def run(urls: list[str]) -> list[tuple[str, float, float, str]]:
    rows: list[tuple[str, float, float, str]] = []
    limits = FetchLimits()

    async def timed(name: str, coro_factory, extra=lambda: "") -> object:  # type: ignore[no-untyped-def]
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = await coro_factory()
        rows.append((name, time.perf_counter() - t0, time.process_time() - cpu0, extra()))
        return result

    async def floor() -> None:
        sem = asyncio.Semaphore(CONCURRENCY)
        conn = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=conn) as session:

            async def one(url: str) -> int:
                async with sem, session.get(url) as resp:
                    return len(await resp.read())

            await asyncio.gather(*(one(u) for u in urls))

    async def fetch_all(
        session: aiohttp.ClientSession, etags: dict[str, str] | None = None
    ) -> list[FetchResult]:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(url: str) -> FetchResult:
            async with sem:
                return await fetch(session, url, limits=limits, etag=(etags or {}).get(url))

        return await asyncio.gather(*(one(u) for u in urls))

    await timed("floor: plain aiohttp GET", floor)
    async with make_session(limits, limit=CONCURRENCY, limit_per_host=CONCURRENCY) as session:
        results = await timed("fetch()", lambda: fetch_all(session))
        assert all(r.status == 200 for r in results), {r.error for r in results}

        async def fetch_fp() -> int:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(url: str) -> int:
                async with sem:
                    r = await fetch(session, url, limits=limits)
                    assert r.body is not None
                    return len(feedparser.parse(r.body, response_headers=r.headers).entries)

            counts = await asyncio.gather(*(one(u) for u in urls))
            return sum(counts)

        n = await timed("fetch() + feedparser.parse, one process", fetch_fp)

        pool = ParsePool(workers=2, timeout=30)
        pool.start()
        cpu_before = worker_cpu(pool)

        async def fetch_pool() -> int:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(url: str) -> int:
                async with sem:
                    r = await fetch(session, url, limits=limits)
                    assert r.body is not None
                parsed = await pool.parse(r.body, r.headers, url=r.final_url, feed=url, source="b")
                assert parsed.error is None, parsed.error
                return len(parsed.entries)

            counts = await asyncio.gather(*(one(u) for u in urls))
            return sum(counts)

        m = await timed(
            "fetch() + ParsePool(2) parse_feed",
            fetch_pool,
            lambda: f"workers' CPU {worker_cpu(pool) - cpu_before:.2f} s",
        )
        pool.close()
        etags = {r.url: r.etag or "" for r in results}
        warm = await timed("warm cycle: fetch() all 304", lambda: fetch_all(session, etags))
        assert all(r.not_modified for r in warm)
    rows.append((f"entries: feedparser {n}, ParsePool {m}", 0, 0, ""))
    return rows


def cpu_per_feed(corpus: list[bytes]) -> dict[str, float]:
    """Median over feeds of the best of 3 CPU times, in ms, for each mode."""
    headers = {"Content-Type": "application/rss+xml"}

    def pf(body: bytes) -> object:  # speedups=False: leave them as the mode set them
        return parse_feed(
            body, headers, url="https://x.example/f", feed="f", source="s", speedups=False
        )

    def fp(body: bytes) -> object:
        return feedparser.parse(
            body,
            response_headers={"content-type": "application/xml"},
            sanitize_html=False,
            resolve_relative_uris=False,
        )

    modes = {
        "parse_feed, plain feedparser": (False, pf),
        "parse_feed, speed-ups": (True, pf),
        "feedparser.parse alone, plain": (False, fp),
        "feedparser.parse alone, speed-ups": (True, fp),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    for body in corpus:
        best = dict.fromkeys(modes, float("inf"))
        for _ in range(3):
            for name, (fast, fn) in modes.items():
                if fast:
                    install_speedups()
                else:
                    remove_speedups()
                t0 = time.process_time()
                fn(body)
                best[name] = min(best[name], time.process_time() - t0)
        for name in modes:
            times[name].append(best[name] * 1000)
    install_speedups()
    return {name: statistics.median(values) for name, values in times.items()}


def print_cpu_table(n_items: int) -> None:
    corpora = {f"bench corpus, 200 feeds x {n_items}": build_feeds(200, n_items)}
    real = [p.read_bytes() for p in sorted(REAL.glob("*/*.xml"))]
    if real:
        corpora[f"gesab001 captures, {len(real)} real feeds"] = real
    results = {name: cpu_per_feed(corpus) for name, corpus in corpora.items()}
    print("\nCPU ms per feed (median)\n")
    print("| mode | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for mode in next(iter(results.values())):
        print(f"| {mode} | " + " | ".join(f"{r[mode]:.1f}" for r in results.values()) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--cpu-only", action="store_true", help="only the CPU-per-feed table")
    args = ap.parse_args()
    if args.cpu_only:
        print(f"nproc={os.cpu_count()}, Python {platform.python_version()}")
        print_cpu_table(args.items)
        return
    feeds = build_feeds(args.feeds, args.items)
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue[int] = ctx.Queue()
    server = ctx.Process(target=serve, args=(feeds, q), daemon=True)
    server.start()
    port = q.get(timeout=30)
    urls = [f"http://127.0.0.1:{port}/feed/{i}" for i in range(args.feeds)]
    size = sum(map(len, feeds)) / 2**20
    try:
        rows = asyncio.run(run(urls))
    finally:
        server.terminate()
    print(
        f"{args.feeds} feeds x {args.items} items ({size:.1f} MB), concurrency {CONCURRENCY};"
        f" nproc={os.cpu_count()}, Python {platform.python_version()}"
    )
    print("| mode | wall s | client CPU s | note |\n|---|---:|---:|---|")
    for name, wall, cpu, note in rows:
        if wall:
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {note} |")
        else:
            print(f"\n{name}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (client process): {peak:.0f} MB")
    print_cpu_table(args.items)


if __name__ == "__main__":
    main()
