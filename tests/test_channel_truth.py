"""What a person sees in the channel after digests, copies and edits (issue 13): the
Slack stand-in applies ``chat.update`` as Slack does, replacing the whole message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import select

from tests.fakeslack import FakeSlack, shown
from tests.feedserver import FeedServer, rss
from tests.test_delivery import _env, _outbox, _poll_and_deliver, _stories
from tests.util import pubdate, write_config

ROOT = Path(__file__).resolve().parents[1]


def _audit(cfg: Path, slack: FakeSlack, *args: str) -> subprocess.CompletedProcess[str]:
    """``wirewatch audit ARGS`` as an operator (or cron) runs it."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "audit", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(slack)},
        cwd=ROOT,
        timeout=120,
    )


def test_a_copy_of_a_digest_story_threads_under_the_digest_and_the_digest_keeps_every_line(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """The reported case: a burst went out as a two-part digest; a later copy of one of
    its stories edited "the parent" to count outlets, and that parent was the digest,
    replaced by one story's card: 19 stories vanished from the channel."""
    feed_server.set("/a.xml", _stories("a", 25))
    feeds = [{"name": "a", "source": "Outlet A", "url": feed_server.url("/a.xml")}]
    wl = [{"name": "w", "terms": ["Kim Jong Un"], "channel": "#desk"}]
    settings = {"delivery": {"burst_max": 3, "burst_window": "1h"}}
    cfg = write_config(tmp_path, feeds=feeds, watchlists=wl, settings=settings)
    _poll_and_deliver(cfg, _env(slack))

    before = slack.view("#desk")
    assert len(before) == 5  # three cards, then a digest of 22 in two parts (20 + 2)
    digest = before[3]
    assert "part 1/2" in shown(digest)
    links = [f"https://a.example/{i}|" for i in range(25)]  # (as Slack links: <url|title>)
    for link in links:
        assert sum(link in shown(m) for m in before) == 1, link

    # a second outlet carries story 5 (the third line of the digest's first part)
    title = "Kim Jong Un tours factory in Chongjin on visit 6"  # as outlet A gave it
    feed_server.set(
        "/b.xml",
        rss(
            "b",
            [
                {
                    "title": title,
                    "link": "https://b.example/copy",
                    "guid": "b-copy",
                    "description": "State media showed the leader at the hospital.",
                    "pubDate": pubdate(),
                }
            ],
        ),
    )
    feeds.append({"name": "b", "source": "Outlet B", "url": feed_server.url("/b.xml")})
    cfg = write_config(tmp_path, feeds=feeds, watchlists=wl, settings=settings)
    rows = _poll_and_deliver(cfg, _env(slack))
    assert [r.kind for r in rows].count("followup") == 1

    after = slack.view("#desk")
    assert len(after) == 5, "the copy must not be posted at top level"
    # every story the channel showed is still there, once, and the digest is a digest
    for link in links:
        assert sum(link in shown(m) for m in after) == 1, link
    assert "part 1/2" in shown(after[3]) and "Digest" in shown(after[3])
    assert any(u["ts"] == digest["ts"] for u in slack.updates), "the line shows its count"
    line = next(b for b in after[3]["blocks"] if "https://a.example/5|" in json.dumps(b))
    assert "+1 outlet" in json.dumps(line)
    # the copy is in the digest's thread, naming the story it belongs to
    replies = after[3]["replies"]
    assert len(replies) == 1
    assert "https://b.example/copy" in shown(replies[0])
    assert "Outlet B" in shown(replies[0]) and title in shown(replies[0])
    assert all(not m["replies"] for i, m in enumerate(after) if i != 3)

    # the audit reads the channel back and agrees
    ok = _audit(cfg, slack, "--since", "1h")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "26 copies" not in ok.stdout and "25 stories and 1 copies" in ok.stdout

    # what the old edit did: the digest's first part replaced by one story's card
    card = after[0]
    slack.tamper("#desk", digest["ts"], text=card["text"], blocks=card["blocks"])
    # and a card posted twice
    slack.tamper("#desk", after[1]["ts"], repost=True)
    bad = _audit(cfg, slack, "--since", "1h", "--channel", "#desk")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = bad.stdout.splitlines()
    assert sum(ln.startswith("missing") for ln in lines) == 20, bad.stdout  # its lines
    assert sum(ln.startswith("twice") for ln in lines) == 2, bad.stdout  # card 0 and 1
    assert any(ln.startswith("mislabelled") for ln in lines), bad.stdout
    assert "copy-missing" not in bad.stdout  # (the thread stays with its parent message)


def test_a_row_whose_history_check_slack_refuses_turns_failed_with_what_to_do(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """Slack accepted the post but the answer never came, and the app lacks the history
    scope: the row cannot be checked. It must not stay in ``sending`` for good."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from monitor.config import load_config
    from monitor.outbox import RECONCILE_AFTER, deliver_pending
    from monitor.pipeline import poll_cycle
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import startup
    from monitor.store.tables import AlertRow

    feed_server.set("/a.xml", _stories("a", 1))
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": feed_server.url("/a.xml")}],
        watchlists=[{"name": "w", "terms": ["Kim Jong Un"], "channel": "#desk"}],
    )
    offset = [0.0]

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset[0])

    async def go() -> list[AlertRow]:
        async with open_runtime(load_config(cfg, env=_env(slack)), clock=clock) as rt:
            await startup(rt)
            slack.inject("accept_drop")  # posted; the answer is lost
            await poll_cycle(rt, all_feeds=True)
            await deliver_pending(rt)
            slack.method_error("conversations.history", "missing_scope")
            states = []
            for _ in range(4):
                offset[0] += RECONCILE_AFTER + 1
                await deliver_pending(rt)
                async with rt.sessions() as s:
                    states.append((await s.exec(select(AlertRow))).one())
            return states

    states = asyncio.run(go())
    assert [s.state for s in states] == ["sending", "sending", "failed", "failed"]
    why = states[-1].last_error or ""
    assert "missing_scope" in why and "channels:history" in why and "outbox retry" in why
    assert len(slack.messages) == 1  # never sent blind a second time
    listing = _outbox(cfg, slack)  # what the operator sees
    assert "failed" in listing and "missing_scope" in listing
