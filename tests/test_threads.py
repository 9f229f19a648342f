"""Issue 3 end to end: five outlets carry one wire story and a sixth a similar but
different one → one parent alert with four thread replies, and one separate alert."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from monitor.config import load_config
from monitor.outbox import deliver_pending
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import open_runtime
from monitor.scheduler import startup
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import pubdate, write_config

SUMMARY = (
    "A magnitude {m} earthquake struck off the northeast coast of Japan on Tuesday, the "
    "Japan Meteorological Agency said. No tsunami warning was issued."
)
COPIES = [
    ("AFP", "Magnitude 6.1 earthquake strikes off Japan's northeast coast"),
    ("Reuters", "Strong magnitude 6.1 earthquake strikes off northeast Japan - Reuters"),
    ("Yahoo", "UPDATE 1-Magnitude 6.1 earthquake strikes off Japan's northeast coast"),
    ("AP", "Magnitude 6.1 earthquake strikes off northeast coast of Japan | AP News"),
    ("France 24", "Magnitude 6.1 earthquake strikes off Japan's northeast coast (AFP)"),
]
DIFFERENT = ("NHK", "Magnitude 7.1 earthquake strikes off Japan's northeast coast")


def _feed(outlet: str, title: str, magnitude: str) -> str:
    slug = outlet.lower().replace(" ", "")
    return rss(
        outlet,
        [
            {
                "title": title,
                "link": f"https://{slug}.example/quake-{magnitude}",
                "guid": f"{slug}-quake-{magnitude}",
                "description": SUMMARY.format(m=magnitude),
                "pubDate": pubdate(),
            }
        ],
    )


def test_five_copies_thread_under_one_parent_and_the_different_story_alerts_alone(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    outlets = [*COPIES, DIFFERENT]
    feeds = []
    for outlet, title in outlets:
        path = "/" + outlet.lower().replace(" ", "") + ".xml"
        feed_server.set(path, _feed(outlet, title, "7.1" if outlet == "NHK" else "6.1"))
        feeds.append({"name": outlet, "source": outlet, "url": feed_server.url(path)})
    env = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_API_URL": slack.base_url,
        "SLACK_CHANNEL": "#quakes",
    }
    wl = [{"name": "quakes", "terms": ["earthquake"]}]

    async def poll(upto: int) -> None:
        cfg = load_config(write_config(tmp_path, feeds=feeds[:upto], watchlists=wl), env=env)
        async with open_runtime(cfg) as rt:
            await startup(rt)
            await poll_cycle(rt, all_feeds=True)
            await deliver_pending(rt)

    # outlets publish one after another, as wire copies do
    for upto in range(1, len(outlets) + 1):
        asyncio.run(poll(upto))

    parents = [m for m in slack.messages if not m.get("thread_ts")]
    replies = [m for m in slack.messages if m.get("thread_ts")]
    assert len(parents) == 2, [m["text"] for m in parents]
    first, separate = parents
    assert "6.1" in first["text"] and "7.1" in separate["text"]
    assert len(replies) == 4
    assert all(r["thread_ts"] == first["ts"] for r in replies)
    blob = json.dumps([r["blocks"] for r in replies]) + " ".join(r["text"] for r in replies)
    for outlet, _ in COPIES[1:]:
        assert outlet in blob
    # the parent was edited to show how many outlets carry the story
    last_edit = [u for u in slack.updates if u["ts"] == first["ts"]][-1]
    assert "5 outlets" in last_edit["text"] + json.dumps(last_edit.get("blocks"))
