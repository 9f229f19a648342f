"""End to end over real sockets: local feed server → pipeline → local Slack Web API.

These run the real runtime (aiohttp fetcher, parser process pool, SQLite/PostgreSQL,
slack-sdk client pointed at the fake Slack server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from monitor.config import load_config
from monitor.outbox import deliver_pending
from monitor.pipeline import CycleReport, catch_up, poll_cycle, poll_feed
from monitor.pipeline.runtime import open_runtime
from monitor.scheduler import startup
from monitor.store.entries import hold_ingest_lock
from monitor.store.tables import AlertRow, EntryRow, FeedRow, StoryRow
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import pubdate, seed_feeds, serve_seed, write_config


def _env(slack: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_CHANNEL": "#alerts",
        "SLACK_API_URL": slack.base_url,
    }


async def _cycle(cfg_dir: Path, env: dict[str, str], **kw: Any) -> CycleReport:
    cfg = load_config(cfg_dir, env=env)
    async with open_runtime(cfg, **kw) as rt:
        await startup(rt)
        report = await poll_cycle(rt, all_feeds=True)
        await deliver_pending(rt)
        return report


def _stories(cfg_dir: Path) -> dict[int, list[str]]:
    """Stored entries' titles by story."""

    async def read() -> dict[int, list[str]]:
        cfg = load_config(cfg_dir, env={})
        async with open_runtime(cfg, notifiers={}) as rt, rt.sessions() as s:
            rows = (await s.exec(select(EntryRow.story_id, EntryRow.title))).all()
        stories: dict[int, list[str]] = {}
        for story, title in rows:
            stories.setdefault(story or 0, []).append(title)
        return stories

    return asyncio.run(read())


def _all_text(message: dict[str, Any]) -> str:
    return message["text"] + json.dumps(message.get("blocks") or [])


def test_two_outlets_one_post_naming_both_terms_and_no_repeats(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, db_url: str
) -> None:
    feeds = serve_seed(feed_server, "-v1")
    cfg = write_config(tmp_path, feeds=feeds, settings={"database_url": db_url})
    env = _env(slack)

    report = asyncio.run(_cycle(cfg, env))
    assert report.new == 4 and not report.failed
    parents = [m for m in slack.messages if not m.get("thread_ts")]
    assert len(parents) == 1, [m["text"] for m in slack.messages]
    post = parents[0]
    text = _all_text(post)
    assert "Kim Jong Un" in text and "ballistic missile" in text
    assert post["channel"] == "#alerts"
    assert "Putin" in text
    total = len(slack.messages)

    # polling again (304s) sends nothing
    report2 = asyncio.run(_cycle(cfg, env))
    assert all(p.not_modified for p in report2.polls)
    assert len(slack.messages) == total

    # a restart with changed feeds bodies but the same items sends nothing new either
    for path, body in seed_feeds().items():
        feed_server.set(path, body + "\n<!-- changed -->", etag=f'"{path}-v2"')
    report3 = asyncio.run(_cycle(cfg, env))
    assert report3.new == 0
    assert len(slack.messages) == total


def test_processes_sharing_postgresql_fold_each_others_copies(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, pg_url: str
) -> None:
    """Two daemons on one PostgreSQL, each with its own story index loaded at start: a
    copy one of them polls after the other stored the story joins that story (one Slack
    post, a thread reply), instead of starting a second story and posting it again."""
    bodies = seed_feeds()
    feeds = serve_seed(feed_server, "-v1")
    feed_server.set("/aj.xml", rss("Al Jazeera", []), etag='"aj-empty"')
    cfg = write_config(tmp_path, feeds=feeds, settings={"database_url": pg_url})
    env = _env(slack)

    async def go() -> tuple[int, int]:
        config = load_config(cfg, env=env)
        async with open_runtime(config) as a, open_runtime(config) as b:
            await startup(a)
            await startup(b)  # both indexes loaded now, before anything is stored
            first = await poll_cycle(a, all_feeds=True)
            # alone so far: its own ids move its mark on, nothing is read back
            assert a.ingest.seen_entry_id == await _one(a, select(func.max(EntryRow.id)))
            async with a.sessions() as s:
                assert await catch_up(a, s) == 0
            await deliver_pending(a)
            feed_server.set("/aj.xml", bodies["/aj.xml"], etag='"aj-v2"')
            second = await poll_cycle(b, all_feeds=True)
            await deliver_pending(b)
            return first.new, second.new

    assert asyncio.run(go()) == (2, 2)
    stories = _stories(cfg)
    kim = [sid for sid, titles in stories.items() if any("Putin" in t for t in titles)]
    assert len(kim) == 1 and len(stories[kim[0]]) == 2, stories
    parents = [m for m in slack.messages if not m.get("thread_ts")]
    replies = [m for m in slack.messages if m.get("thread_ts")]
    assert len(parents) == 1 and len(replies) == 1, [m["text"] for m in slack.messages]
    assert replies[0]["text"].startswith("Also reported by Al Jazeera")


def test_processes_storing_copies_at_the_same_moment_make_one_story(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, pg_url: str
) -> None:
    """Two daemons on one PostgreSQL storing the two outlets' copies of one story at the
    same moment (their transactions overlap) still make one story, not one each."""
    feeds = serve_seed(feed_server, "-v1")
    cfg = write_config(tmp_path, feeds=feeds, settings={"database_url": pg_url})

    async def go() -> None:
        config = load_config(cfg, env=_env(slack))
        async with open_runtime(config) as a, open_runtime(config) as b:
            await startup(a)
            await startup(b)
            async with a.sessions() as s:
                rows = {r.name: r for r in (await s.exec(select(FeedRow))).all()}
            await asyncio.gather(poll_feed(a, rows["cna"]), poll_feed(b, rows["aljazeera"]))

    asyncio.run(go())
    stories = _stories(cfg)
    kim = [sid for sid, titles in stories.items() if any("Putin" in t for t in titles)]
    assert len(kim) == 1, stories


def test_a_catch_up_waits_for_a_batch_another_process_is_storing(
    tmp_path: Path, pg_url: str
) -> None:
    """Another process storing a batch holds the ingest lock, as every store does: a
    catch-up waits for it to commit, then learns the whole batch, once."""
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "f", "url": "http://127.0.0.1:9/f.xml"}],
        settings={"database_url": pg_url},
    )

    async def go() -> tuple[bool, list[int], bool]:
        async with open_runtime(load_config(cfg, env={})) as rt:
            await startup(rt)
            feed_id = (await _one(rt, select(FeedRow.id))) or 0
            now = rt.clock()

            async def caught_up() -> int:
                async with rt.sessions() as s:
                    return await catch_up(rt, s)

            async with rt.sessions() as other:  # the other process's storing transaction
                await hold_ingest_lock(other)
                for n in (1, 2):
                    story = StoryRow(title=f"s{n}", created_at=now, updated_at=now)
                    other.add(story)
                    await other.flush()
                    other.add(
                        EntryRow(
                            feed_id=feed_id,
                            guid=f"g{n}",
                            title=f"Harbour works story {n} begins",
                            source="Other",
                            seen_at=now,
                            story_id=story.id,
                        )
                    )
                    await other.flush()
                waiting = asyncio.create_task(caught_up())
                await asyncio.sleep(0.3)
                blocked = not waiting.done()
                await other.commit()
            added = [await waiting, await caught_up()]
            top = await _one(rt, select(func.max(EntryRow.id)))
            return blocked, added, rt.ingest.seen_entry_id == top

    assert asyncio.run(go()) == (True, [2, 0], True)


async def _one(rt: Any, query: Any) -> Any:
    async with rt.sessions() as s:
        return (await s.exec(query)).first()


def test_304_costs_no_parse_and_sends_validators(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    feeds = serve_seed(feed_server, "-v1")
    cfg = write_config(tmp_path, feeds=feeds)
    asyncio.run(_cycle(cfg, _env(slack)))
    report = asyncio.run(_cycle(cfg, _env(slack)))
    second = feed_server.hits("/cna.xml")[-1]
    assert second.headers.get("If-None-Match") == '"/cna.xml-v1"'
    by_feed = {p.feed: p for p in report.polls}
    assert by_feed["cna"].status == 304
    assert by_feed["cna"].not_modified and by_feed["cna"].entries == 0


def test_broken_feeds_are_recorded_and_others_still_alert(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, db_url: str
) -> None:
    feeds = serve_seed(feed_server, "-v1")
    feed_server.set("/broken.xml", "boom", status=500)
    feed_server.set(
        "/malformed.xml",
        '<?xml version="1.0"?><rss version="2.0"><channel><title>M</title>'
        "<item><title>Kim Jong Un inspects &bogus; factory</title><link>http://m.example/1</link>"
        f"<pubDate>{pubdate()}</pubDate></item><item><title>unclosed",
        etag='"m1"',
    )
    feeds += [
        {"name": "broken", "url": feed_server.url("/broken.xml")},
        {"name": "malformed", "url": feed_server.url("/malformed.xml")},
    ]
    cfg = write_config(tmp_path, feeds=feeds, settings={"database_url": db_url})
    report = asyncio.run(_cycle(cfg, _env(slack)))
    failed = {p.feed: p.error for p in report.failed}
    assert "broken" in failed and "500" in (failed["broken"] or "")
    texts = [_all_text(m) for m in slack.messages]
    assert any("Vostochny" in t or "space" in t for t in texts)

    async def rows() -> dict[str, FeedRow]:
        cfg_obj = load_config(cfg, env=_env(slack))
        async with open_runtime(cfg_obj) as rt, rt.sessions() as s:
            return {r.name: r for r in (await s.exec(select(FeedRow))).all()}

    state = asyncio.run(rows())
    assert state["broken"].consecutive_failures == 1
    assert "500" in (state["broken"].last_error or "")
    assert state["malformed"].last_error  # the malformation is recorded on the feed
    assert state["cna"].last_error is None and state["cna"].consecutive_failures == 0
    # an unchanged (304) malformed body is still malformed: the reason stays on the feed
    again = asyncio.run(_cycle(cfg, _env(slack)))
    assert {p.feed: p.not_modified for p in again.polls}["malformed"]
    after = asyncio.run(rows())["malformed"]
    assert after.last_error == state["malformed"].last_error and after.last_error_kind == "parse"


def test_hostile_title_is_escaped_in_slack_payload(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    hostile = rss(
        "Evil",
        [
            {
                "title": "Kim Jong Un &lt;!channel&gt; &lt;https://evil.example|click here&gt; "
                "&amp; co",
                "link": "https://evil.example/a",
                "guid": "evil-1",
                "description": "&lt;!here&gt; ballistic missile &lt;@U123&gt;",
                "pubDate": pubdate(),
            }
        ],
    )
    feed_server.set("/evil.xml", hostile)
    cfg = write_config(tmp_path, feeds=[{"name": "evil", "url": feed_server.url("/evil.xml")}])
    asyncio.run(_cycle(cfg, _env(slack)))
    assert len(slack.messages) == 1
    payload = _all_text(slack.messages[0])
    assert "<!channel>" not in payload and "<!here>" not in payload
    assert "<https://evil.example|click here>" not in payload
    assert "<@U123>" not in payload
    assert "&lt;!channel&gt;" in payload


def test_old_items_are_stored_but_not_alerted_unless_max_age_none(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    for path, body in seed_feeds(hours_ago=72).items():
        feed_server.set(path, body)
    feeds = [
        {"name": "cna", "source": "CNA", "url": feed_server.url("/cna.xml")},
        {"name": "aljazeera", "source": "Al Jazeera", "url": feed_server.url("/aj.xml")},
    ]
    cfg = write_config(tmp_path, feeds=feeds)
    report = asyncio.run(_cycle(cfg, _env(slack)))
    assert report.new == 4
    assert slack.messages == []

    other = tmp_path / "replay"
    cfg2 = write_config(other, feeds=feeds)
    asyncio.run(_cycle(cfg2, _env(slack), max_age=None))
    assert len([m for m in slack.messages if not m.get("thread_ts")]) == 1


def test_slack_down_queues_alerts_and_they_drain_later(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    feeds = serve_seed(feed_server, "-v1")
    cfg = write_config(tmp_path, feeds=feeds)
    slack.down()
    try:
        asyncio.run(_cycle(cfg, _env(slack)))
    finally:
        slack.up()
    assert slack.messages == []

    async def pending() -> list[AlertRow]:
        async with open_runtime(load_config(cfg, env=_env(slack))) as rt, rt.sessions() as s:
            return list((await s.exec(select(AlertRow))).all())

    rows = asyncio.run(pending())
    assert rows and all(r.state == "pending" for r in rows)
    assert all("connection" in (r.last_error or "") for r in rows if r.kind == "new")

    async def drain() -> None:
        async with open_runtime(load_config(cfg, env=_env(slack))) as rt:
            async with rt.sessions() as s:
                for r in (await s.exec(select(AlertRow))).all():
                    r.next_attempt_at = rt.clock()
                    s.add(r)
                await s.commit()
            await deliver_pending(rt)

    asyncio.run(drain())
    assert len([m for m in slack.messages if not m.get("thread_ts")]) == 1


@pytest.mark.parametrize("followups", ["thread", "suppress"])
def test_later_outlet_goes_into_thread_or_is_suppressed(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, followups: str
) -> None:
    feeds_all = serve_seed(feed_server, "-v1")
    cfg = write_config(
        tmp_path,
        feeds=feeds_all[:1],
        watchlists=[{"name": "korea", "terms": ["Kim Jong Un"], "followups": followups}],
    )
    asyncio.run(_cycle(cfg, _env(slack)))
    assert len(slack.messages) == 1
    cfg = write_config(
        tmp_path,
        feeds=feeds_all,
        watchlists=[{"name": "korea", "terms": ["Kim Jong Un"], "followups": followups}],
    )
    asyncio.run(_cycle(cfg, _env(slack)))
    parents = [m for m in slack.messages if not m.get("thread_ts")]
    replies = [m for m in slack.messages if m.get("thread_ts")]
    assert len(parents) == 1
    if followups == "thread":
        assert len(replies) == 1
        assert replies[0]["thread_ts"] == parents[0]["ts"]
        # the reply is about the copy that is new, not a list that repeats the parent's outlet
        assert replies[0]["text"].startswith("Also reported by Al Jazeera: ")
        assert "CNA" not in _all_text(replies[0])
        assert slack.updates, "the parent is edited to show how many outlets carry it"
    else:
        assert replies == []


def test_guid_flood_is_recognised_and_sends_nothing(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    def feed(version: int, link_version: int) -> str:
        return rss(
            "Flood",
            [
                {
                    "title": f"Kim Jong Un inspects site number {i}",
                    "link": f"https://flood.example/v{link_version}/{i}",
                    "guid": f"urn:v{version}:{i}",
                    "description": "",
                    "pubDate": pubdate(),
                }
                for i in range(8)
            ],
        )

    feed_server.set("/f.xml", feed(1, 1))
    cfg = write_config(tmp_path, feeds=[{"name": "f", "url": feed_server.url("/f.xml")}])
    first = asyncio.run(_cycle(cfg, _env(slack)))
    assert first.new == 8
    sent = len(slack.messages)
    # every guid regenerated, links unchanged
    feed_server.set("/f.xml", feed(2, 1))
    caplog.clear()
    again = asyncio.run(_cycle(cfg, _env(slack)))
    assert again.new == 0 and again.polls[0].relinked == 8
    flood = [r.getMessage() for r in caplog.records if "guid regeneration" in r.getMessage()]
    assert flood == ["feed f: 8 items came back with new guids but known links or titles "
                     "(guid regeneration); treated as already seen"]  # fmt: skip
    # guids and links regenerated, titles unchanged
    feed_server.set("/f.xml", feed(3, 2))
    again = asyncio.run(_cycle(cfg, _env(slack)))
    assert again.new == 0 and again.polls[0].relinked == 8
    assert len(slack.messages) == sent


def test_a_guid_regeneration_of_entries_older_than_a_week_is_recognised(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """A low-volume feed whose items were first seen 8 days ago regenerates every guid
    (a CMS migration): still the same items, by their links."""
    import sqlite3

    def feed(version: int) -> str:
        items = [
            {
                "title": f"Kim Jong Un inspects site number {i}",
                "link": f"https://weekly.example/post/{i}",
                "guid": f"urn:v{version}:{i}",
            }
            for i in range(8)
        ]
        return rss("Weekly", items)

    feed_server.set("/f.xml", feed(1))
    cfg = write_config(tmp_path, feeds=[{"name": "f", "url": feed_server.url("/f.xml")}])
    assert asyncio.run(_cycle(cfg, _env(slack))).new == 8
    sent = len(slack.messages)
    with sqlite3.connect(tmp_path / "data" / "wirewatch.db") as conn:
        conn.execute("UPDATE entries SET seen_at = datetime(seen_at, '-8 days')")
    feed_server.set("/f.xml", feed(2))
    again = asyncio.run(_cycle(cfg, _env(slack)))
    assert again.new == 0 and again.polls[0].relinked == 8
    assert len(slack.messages) == sent


@pytest.mark.parametrize(
    "link", ["https://press.example/", "https://live.example/korea-summit#update"]
)
def test_new_items_on_a_known_link_are_new_unless_they_repeat_the_title(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, link: str
) -> None:
    """Feeds that give every item the same link (a press office linking to its home page,
    a liveblog's updates): each new guid with a new title is a new entry; one item whose
    guid alone changed is the same entry. Items on a front page are separate stories,
    each alerted; a liveblog's updates are one story: one alert, and its new figures as
    update replies in that alert's thread (issue 17), never a second card."""

    def item(i: int, guid: str | None = None) -> dict[str, str]:
        return {
            "title": f"Kim Jong Un update {i}: talks enter day {i + 1}",
            "link": link,
            "guid": guid or f"upd-{i}",
            "description": f"Entry {i} of the page.",
            "pubDate": pubdate(),
        }

    front_page = link.endswith(".example/")
    feed_server.set("/f.xml", rss("Live", [item(1)]))
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "live", "url": feed_server.url("/f.xml")}],
        watchlists=[{"name": "korea", "terms": ["Kim Jong Un"]}],
    )
    first = asyncio.run(_cycle(cfg, _env(slack)))
    assert first.new == 1 and len(slack.messages) == 1
    feed_server.set("/f.xml", rss("Live", [item(2), item(1)]))
    second = asyncio.run(_cycle(cfg, _env(slack)))
    assert second.new == 1 and second.polls[0].relinked == 0
    third_feed = rss("Live", [item(3), item(2, guid="upd-2-republished"), item(1)])
    feed_server.set("/f.xml", third_feed)
    third = asyncio.run(_cycle(cfg, _env(slack)))
    assert third.new == 1 and third.polls[0].relinked == 1
    texts = [_all_text(m) for m in slack.messages]
    if front_page:
        assert len(texts) == 3
        assert ["update 1" in texts[0], "update 2" in texts[1], "update 3" in texts[2]] == [
            True
        ] * 3
    else:
        top = [m for m in slack.messages if not m["thread_ts"]]
        assert len(top) == 1 and "update 1" in _all_text(top[0])
        replies = [m for m in slack.messages if m["thread_ts"]]
        assert all(r["thread_ts"] == top[0]["ts"] and "Update" in _all_text(r) for r in replies)
        assert "day 2 → day 3" in _all_text(replies[0])
    stories = _stories(cfg)
    assert sorted(len(v) for v in stories.values()) == ([1, 1, 1] if front_page else [3])
    # a burst of six updates between two polls is six new items, not a guid regeneration
    burst = [item(i) for i in range(9, 3, -1)]
    feed_server.set("/f.xml", rss("Live", [*burst, item(3), item(2, "upd-2-republished")]))
    fourth = asyncio.run(_cycle(cfg, _env(slack)))
    assert fourth.new == 6 and fourth.polls[0].relinked == 1  # the republished one again


def test_a_poll_that_breaks_its_batch_fails_alone(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls finishing together are stored in one transaction (group commit). When that
    transaction fails because of one poll, the batch is retried poll by poll: the other
    feeds' entries are stored, and only the bad feed records an error."""
    from monitor.pipeline import fold

    feeds = []
    for i in range(6):
        name = f"f{i}"
        items = [
            {
                "title": f"Story {j} from outlet {i} about harbour works",
                "link": f"https://{name}.example/{j}",
                "guid": f"{name}-{j}",
                "pubDate": pubdate(),
            }
            for j in range(3)
        ]
        feed_server.set(f"/{name}.xml", rss(name, items))
        feeds.append({"name": name, "source": name.upper(), "url": feed_server.url(f"/{name}.xml")})
    cfg_dir = write_config(tmp_path, feeds=feeds)
    real = fold.store_new_entries
    batches: list[int] = []

    async def failing(rt: Any, session: Any, fresh: Any, now: Any, stored: Any) -> Any:
        batches.append(len({job.feed.id for job, _ in fresh}))
        if any(job.feed.name == "f3" for job, _ in fresh):  # an edge case: a store error
            raise RuntimeError("disk I/O error")
        return await real(rt, session, fresh, now, stored)

    monkeypatch.setattr(fold, "store_new_entries", failing)

    async def run() -> CycleReport:
        cfg = load_config(cfg_dir, env={})
        async with open_runtime(cfg, notifiers={}) as rt:
            await startup(rt)
            # hold the ingest lock until every poll is parsed, so they form one batch
            async with rt.ingest.lock:
                task = asyncio.create_task(poll_cycle(rt, all_feeds=True))
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    if len(rt.ingest.queue) == 6:
                        break
            return await task

    report = asyncio.run(run())
    assert max(batches) == 6  # they were tried together first
    by_feed = {p.feed: p for p in report.polls}
    assert [p.feed for p in report.failed] == ["f3"]
    assert "disk I/O error" in (by_feed["f3"].error or "")
    assert all(by_feed[f"f{i}"].new == 3 for i in (0, 1, 2, 4, 5))
