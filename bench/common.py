"""Shared helpers for the pipeline benchmarks (bench_cycle, bench_delivery, bench_restart).

* ``news_pool()``: real headlines + descriptions from ``../shared/data/captures``
  (blazzzeee JSON dumps and gesab001 RSS captures); synthetic text when absent.
* ``build_feed_bodies()``: N RSS feeds x M items, every feed with its own stories and
  about a fifth of its items wire copies that other feeds carry too.
* ``serve_feeds()``: an aiohttp.web server with ETag/304, meant to run in its own process.
* machine description, /proc readers (CPU, RSS of other processes), Markdown tables.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CAPTURES = SHARED / "captures"

WIRE_PREFIXES = ("", "", "", "UPDATE 1-", "UPDATE 2-", "EXCLUSIVE-")
WIRE_SUFFIXES = ("", "", "", " - Reuters", " | AP News", " (AFP)")

# a few dozen watchlist terms, spread over four desks
WATCHLISTS: list[dict[str, Any]] = [
    {
        "name": "asia",
        "channel": "#asia",
        "terms": [
            "Kim Jong Un",
            "North Korea",
            "ballistic missile",
            "Taiwan",
            "Xi Jinping",
            "Philippines",
            "Duterte",
            "Hong Kong",
            "Modi",
        ],
    },
    {
        "name": "europe",
        "channel": "#europe",
        "terms": [
            "Putin",
            "Ukraine",
            "Kremlin",
            "Macron",
            "Merkel",
            "Boris Johnson",
            "Brexit",
            "European Union",
        ],
    },
    {
        "name": "mideast",
        "channel": "#mideast",
        "terms": [
            "Gaza",
            "Israel",
            "Iran",
            "Hezbollah",
            "Netanyahu",
            "Saudi",
            "Houthi",
            "Syria",
        ],
    },
    {
        "name": "hazards",
        "channel": "#hazards",
        "terms": [
            "earthquake",
            "tsunami",
            "wildfire",
            "cyclone",
            "typhoon",
            "hurricane",
            "volcano",
            {"near": ["flood", "dead"], "within": 8},
        ],
    },
]


@dataclass(frozen=True)
class NewsItem:
    title: str
    description: str


def _clean(text: str) -> str:
    text = re.sub(r"<[^>]*>", " ", text or "")
    return re.sub(r"\s+", " ", text).strip()


def news_pool() -> tuple[list[NewsItem], str]:
    """Unique (title, description) pairs from the shared captures, and where they came
    from. Falls back to synthetic text (and says so) when the data set is absent."""
    seen: set[str] = set()
    out: list[NewsItem] = []

    def add(title: str, desc: str) -> None:
        t, d = _clean(title), _clean(desc)
        if len(t.split()) >= 4 and t.lower() not in seen:
            seen.add(t.lower())
            out.append(NewsItem(t, d[:600]))

    for file in sorted((CAPTURES / "blazzzeee").glob("*.json")):
        try:
            for it in json.loads(file.read_text(encoding="utf-8")):
                add(str(it.get("title") or ""), str(it.get("description") or ""))
        except (OSError, ValueError):
            continue
    n_json = len(out)
    for file in sorted((CAPTURES / "gesab001").glob("*/*.xml")):
        try:
            root = ET.fromstring(file.read_bytes())
        except (OSError, ET.ParseError):
            continue
        for item in root.iter("item"):
            add(item.findtext("title") or "", item.findtext("description") or "")
    if len(out) >= 500:
        return out, (
            f"{len(out)} unique real headlines ({n_json} from captures/blazzzeee, "
            f"{len(out) - n_json} from captures/gesab001)"
        )
    rng = random.Random(7)
    words = [
        "minister",
        "talks",
        "border",
        "missile",
        "flood",
        "court",
        "vote",
        "rally",
        "market",
        "bank",
        "strike",
        "storm",
        "deal",
        "trade",
        "police",
        "port",
        "oil",
        "army",
        "election",
        "budget",
        "virus",
        "vaccine",
    ]
    places = [
        "Seoul",
        "Kyiv",
        "Gaza",
        "Paris",
        "Lagos",
        "Lima",
        "Delhi",
        "Tokyo",
        "Cairo",
        "Quito",
        "Manila",
        "Dakar",
    ]
    synth = [
        NewsItem(
            f"{rng.choice(places)} {' '.join(rng.sample(words, 5))} {i}",
            " ".join(rng.choice(words) for _ in range(40)),
        )
        for i in range(3000)
    ]
    return synth, f"SYNTHETIC text ({CAPTURES} absent: real captures not found)"


def _splice(a: NewsItem, b: NewsItem, rng: random.Random) -> NewsItem:
    """A new, plausible headline: the start of one real headline, the end of another."""
    wa, wb = a.title.split(), b.title.split()
    ka = max(2, len(wa) // 2 + rng.randint(-1, 1))
    kb = max(1, len(wb) // 2 + rng.randint(-1, 1))
    title = " ".join(wa[:ka] + wb[kb:])
    desc = (a.description + " " + b.description).strip()
    return NewsItem(title, desc[:700])


def build_feed_bodies(
    n_feeds: int,
    n_items: int,
    *,
    now: datetime,
    seed: int = 1,
    wire_share: float = 0.2,
) -> list[bytes]:
    """RSS 2.0 documents. Each feed's own stories are spliced from real headlines (so
    they differ from feed to feed); ``wire_share`` of its items are copies of a shared
    set of wire stories, carried by several feeds under wire prefixes/suffixes."""
    pool, _ = news_pool()
    rng = random.Random(seed)
    wire = rng.sample(pool, min(len(pool) // 2, max(50, n_feeds * n_items // 30)))
    n_wire = round(n_items * wire_share)
    bodies: list[bytes] = []
    for f in range(n_feeds):
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>',
            f"<title>Outlet {f}</title><link>https://outlet{f}.example/</link>",
            f"<description>News from outlet {f}</description><language>en</language>",
        ]
        wire_slots = set(rng.sample(range(n_items), n_wire))
        for i in range(n_items):
            if i in wire_slots:
                base = rng.choice(wire)
                title = rng.choice(WIRE_PREFIXES) + base.title + rng.choice(WIRE_SUFFIXES)
                item = NewsItem(title, base.description)
            else:
                item = _splice(rng.choice(pool), rng.choice(pool), rng)
            slug = re.sub(r"[^a-z0-9]+", "-", item.title.lower()).strip("-")[:60]
            when = format_datetime(now - timedelta(minutes=9 * i + rng.randint(0, 8)), usegmt=True)
            link = f"https://outlet{f}.example/news/{slug}-{i}?utm_source=rss&amp;utm_medium=feed"
            parts.append(
                f"<item><title>{escape(item.title)}</title><link>{link}</link>"
                f'<guid isPermaLink="false">outlet{f}-{i}</guid><pubDate>{when}</pubDate>'
                f"<description>{escape(item.description)}</description></item>"
            )
        parts.append("</channel></rss>")
        bodies.append("\n".join(parts).encode("utf-8"))
    return bodies


# --------------------------------------------------------------------------- feed server


def serve_feeds(
    n_feeds: int, n_items: int, now_ts: float, port_queue: multiprocessing.Queue[Any]
) -> None:
    """Process target: build the bodies here (the measured process never holds them)
    and serve ``/feed/{i}`` with an ETag; a matching If-None-Match gets 304."""
    from aiohttp import web

    bodies = build_feed_bodies(n_feeds, n_items, now=datetime.fromtimestamp(now_ts, UTC))

    async def handle(request: web.Request) -> web.StreamResponse:
        i = int(request.match_info["i"])
        etag = f'"v1-{i}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=bodies[i],
            headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{i}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        port_queue.put((port, sum(map(len, bodies))))
        await asyncio.Event().wait()

    asyncio.run(main())


def start_feed_server(
    n_feeds: int, n_items: int, now: datetime
) -> tuple[multiprocessing.process.BaseProcess, int, int]:
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue[Any] = ctx.Queue()
    proc = ctx.Process(target=serve_feeds, args=(n_feeds, n_items, now.timestamp(), q))
    proc.daemon = True
    proc.start()
    port, size = q.get(timeout=120)
    return proc, int(port), int(size)


# --------------------------------------------------------------------------- measuring


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, {model}, Python {platform.python_version()}"


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def self_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_cpu(pid: int) -> float:
    """user+sys CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status_mb(pid: int | str, key: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of a process in MB, from /proc/PID/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def rss_mb() -> float:
    return proc_status_mb("self", "VmRSS")


def pool_pids(pool: object) -> list[int]:
    """Worker pids of a ProcessPoolExecutor, or of a ParsePool wrapping one."""
    executor = getattr(pool, "_executor", pool)
    procs = getattr(executor, "_processes", None) or {}
    return [p.pid for p in procs.values() if p.pid is not None]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |"]
    last = len(headers) - 1
    out.append(
        "|" + "|".join("---" if i in (0, last) else "---:" for i in range(len(headers))) + "|"
    )
    out.extend("| " + " | ".join(cell(v) for v in r) + " |" for r in rows)
    return "\n".join(out)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def news_items(n: int, *, seed: int = 1, wire_share: float = 0.2) -> list[NewsItem]:
    """``n`` headlines+descriptions like ``build_feed_bodies`` makes: mostly new headlines
    spliced from real ones, ``wire_share`` of them copies of shared wire stories."""
    pool, _ = news_pool()
    rng = random.Random(seed)
    wire = rng.sample(pool, min(len(pool) // 2, max(50, n // 30)))
    out = []
    for _ in range(n):
        if rng.random() < wire_share:
            base = rng.choice(wire)
            title = rng.choice(WIRE_PREFIXES) + base.title + rng.choice(WIRE_SUFFIXES)
            out.append(NewsItem(title, base.description))
        else:
            out.append(_splice(rng.choice(pool), rng.choice(pool), rng))
    return out


def feed_rows(n: int, now: datetime, *, name: str, source: str, age: timedelta) -> list[dict]:
    """``n`` rows for the feeds table (ids 1..n, named ``name.format(i)``, outlet
    ``source.format(i)``, due now, created ``age`` ago), for benchmarks that build a
    database directly."""
    return [
        {
            "id": i + 1,
            "name": name.format(i),
            "url": f"http://127.0.0.1:9/{i}.xml",
            "source": source.format(i),
            "tags": "",
            "enabled": True,
            "next_due": now,
            "consecutive_failures": 0,
            "title": "",
            "entries_seen": 0,
            "created_at": now - age,
        }
        for i in range(n)
    ]
