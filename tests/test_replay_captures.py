"""Replay two same-day real captures through the real server, fetcher, parser and store:
poll the first capture, switch to the second, poll again: only genuinely new items are
new. Runs when ../shared/data is present."""

from __future__ import annotations

import asyncio
from pathlib import Path

import feedparser
import pytest

from monitor.config import load_config
from monitor.normalize import canonical_url
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import open_runtime
from monitor.scheduler import startup
from tests.conftest import SHARED_DATA
from tests.feedserver import FeedServer
from tests.util import write_config

CAPTURES = SHARED_DATA / "captures" / "gesab001"
FIRST, SECOND = "2020-04-28T090740_37e09926", "2020-04-28T203905_99556ba9"


def _keys(body: bytes) -> tuple[set[str], set[str]]:
    parsed = feedparser.parse(body)
    guids = {e.get("id") or e.get("link") or "" for e in parsed.entries}
    links = {canonical_url(e.get("link", "")) for e in parsed.entries if e.get("link")}
    return guids, links


@pytest.mark.skipif(not (CAPTURES / FIRST).is_dir(), reason=f"captures not found at {CAPTURES}")
def test_second_capture_only_new_items_are_new(tmp_path: Path) -> None:
    outlets = sorted(p.stem for p in (CAPTURES / FIRST).glob("*.xml"))
    with FeedServer() as server:
        for o in outlets:
            server.set(f"/{o}.xml", (CAPTURES / FIRST / f"{o}.xml").read_bytes())
        feeds = [{"name": o, "url": server.url(f"/{o}.xml")} for o in outlets]
        cfg = write_config(tmp_path, feeds=feeds, settings={"max_age": "none"})
        config = load_config(cfg, env={})

        async def poll() -> dict[str, int]:
            async with open_runtime(config, notifiers={}) as rt:
                await startup(rt)
                report = await poll_cycle(rt, all_feeds=True)
                assert not report.failed, [(p.feed, p.error) for p in report.failed]
                return {p.feed: p.new for p in report.polls}

        first = asyncio.run(poll())
        assert sum(first.values()) > 300

        expected: dict[str, int] = {}
        for o in outlets:
            a = (CAPTURES / FIRST / f"{o}.xml").read_bytes()
            b = CAPTURES / SECOND / f"{o}.xml"
            if not b.exists():
                continue
            body = b.read_bytes()
            server.set(f"/{o}.xml", body)
            guids_a, links_a = _keys(a)
            parsed_b = feedparser.parse(body)
            seen: set[str] = set()
            n = 0
            for e in parsed_b.entries:
                guid = e.get("id") or e.get("link") or ""
                link = canonical_url(e.get("link", ""))
                if guid in guids_a or guid in seen or (link and link in links_a):
                    continue
                seen.add(guid)
                n += 1
            expected[o] = n
        second = asyncio.run(poll())
        print(
            "\nreplay: first poll",
            sum(first.values()),
            "items; second poll new per outlet:",
            {o: second.get(o) for o in expected},
        )
        assert {o: second.get(o, 0) for o in expected} == expected
        assert 0 < sum(expected.values()) < sum(first.values())
