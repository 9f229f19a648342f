"""Helpers for tests: write a config directory, build fixture feeds of the seed story."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import yaml

from tests.feedserver import FeedServer, rss

ROOT = Path(__file__).resolve().parents[1]


def write_config(
    root: Path,
    *,
    feeds: list[dict[str, Any]],
    watchlists: list[dict[str, Any]] | str | None = None,
    settings: dict[str, Any] | None = None,
) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'data' / 'wirewatch.db'}",
        "delivery": {"per_channel_interval": "0s"},
        "poll": {"per_host_spacing": "0s", "per_host": 8},
    }
    for key, value in (settings or {}).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    (cfg / "settings.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    if watchlists is None:
        watchlists = [{"name": "korea", "terms": ["Kim Jong Un", "ballistic missile"]}]
    text = (
        watchlists
        if isinstance(watchlists, str)
        else yaml.safe_dump({"watchlists": watchlists}, allow_unicode=True)
    )
    (cfg / "watchlists.yaml").write_text(text, encoding="utf-8")
    return cfg


def pubdate(hours_ago: float = 1.0) -> str:
    return format_datetime(datetime.now(UTC) - timedelta(hours=hours_ago))


SEED_SUMMARY_A = (
    "North Korean leader Kim Jong Un met Russian President Vladimir Putin on Wednesday in "
    "Russia's Far East for talks that Washington suspects will involve defence cooperation, "
    "while at home Kim's military fired two ballistic missiles."
)
SEED_SUMMARY_B = (
    "North Korea's Kim Jong Un met Vladimir Putin at the Vostochny cosmodrome on Wednesday "
    "in talks the US fears will involve arms deals, as Pyongyang fired two ballistic "
    "missiles into the sea."
)


def outlet_feed(outlet: str, items: list[dict[str, str]]) -> str:
    return rss(outlet, items)


def seed_feeds(hours_ago: float = 1.0) -> dict[str, str]:
    """Two outlets carrying the seed story under different headlines, plus other news."""
    cna = rss(
        "CNA",
        [
            {
                "title": "Kim Jong Un vows closer North Korea-Russia ties after meeting Putin "
                "at space facility",
                "link": "https://www.channelnewsasia.com/asia/kim-putin-meeting-3768011"
                "?utm_source=rss&amp;utm_medium=feed",
                "guid": "cna-3768011",
                "description": SEED_SUMMARY_A,
                "pubDate": pubdate(hours_ago),
            },
            {
                "title": "Singapore GDP grows 0.5% in second quarter",
                "link": "https://www.channelnewsasia.com/business/gdp-1",
                "guid": "cna-gdp-1",
                "description": "The economy expanded slightly, official data showed.",
                "pubDate": pubdate(hours_ago),
            },
        ],
    )
    aj = rss(
        "Al Jazeera",
        [
            {
                "title": "North Korea's Kim Jong-un vows closer ties with Russia after meeting "
                "Putin at space centre",
                "link": "https://www.aljazeera.com/news/2023/9/13/kim-putin",
                "guid": "aj-kim-putin",
                "description": SEED_SUMMARY_B,
                "pubDate": pubdate(hours_ago),
            },
            {
                "title": "Floods in Libya leave thousands missing",
                "link": "https://www.aljazeera.com/news/2023/9/13/libya-floods",
                "guid": "aj-libya",
                "description": "Rescuers search for survivors after dams burst in Derna.",
                "pubDate": pubdate(hours_ago),
            },
        ],
    )
    return {"/cna.xml": cna, "/aj.xml": aj}


def wirewatch(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``wirewatch ARGS`` as a user runs it, with only the SLACK_ and WIREWATCH_ variables
    in ``env`` (none leak in from the test runner's environment)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def serve_seed(server: FeedServer, version: str = "") -> list[dict[str, str]]:
    """The seed story's two outlet feeds on ``server``, as config feed entries."""
    for path, body in seed_feeds().items():
        server.set(path, body, etag=f'"{path}{version}"')
    return [
        {"name": "cna", "source": "CNA", "url": server.url("/cna.xml")},
        {"name": "aljazeera", "source": "Al Jazeera", "url": server.url("/aj.xml")},
    ]


# --------------------------------------------------------------- processes (tests, bench)

REPO = ROOT


def start_wirewatch(args: list[str], env: dict[str, str], **popen: Any) -> subprocess.Popen[Any]:
    """``python -m monitor ARGS`` as its own process, from the repository root."""
    return subprocess.Popen([sys.executable, "-m", "monitor", *args], env=env, cwd=REPO, **popen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    """(status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def pg_run(dsn: str, *statements: str, fetch: str | None = None) -> list[Any]:
    """Run ``statements`` on PostgreSQL, then ``fetch``'s rows (asyncpg, one connection)."""
    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
            return list(await conn.fetch(fetch)) if fetch else []
        finally:
            await conn.close()

    return asyncio.run(run())


@contextmanager
def fresh_database(dsn: str, suffix: str) -> Iterator[str]:
    """A PostgreSQL database ``<dsn's database>_<suffix>``, made new and dropped after."""
    from sqlalchemy.engine import make_url

    url = make_url(dsn)
    name = f"{url.database}_{suffix}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    pg_run(dsn, drop, f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        pg_run(dsn, drop)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
