"""Issue 17, the wire desk, end to end over real sockets (feed server, Slack stand-in):
a story's developments as thread replies, a retitle of the alerted copy sent to the
channel, provenance on the card, and escalation to a breaking channel."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from monitor.config import load_config
from monitor.outbox import deliver_pending
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import open_runtime
from monitor.scheduler import startup
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import pubdate, wirewatch, write_config

SUMMARY = (
    "Heavy rain caused flooding and landslides in the southern state of Rio Grande do Sul, "
    "the civil defence agency said on Monday, as rescuers searched for the missing."
)
OUTLETS = ["Reuters", "AFP", "AP", "BBC", "DW", "France 24", "NHK", "CNA", "ABC", "RTE", "SBS"]
SUFFIX = {"Reuters": " - Reuters", "AP": " | AP News", "AFP": " (AFP)", "BBC": " - BBC News"}


def _slug(outlet: str) -> str:
    return outlet.lower().replace(" ", "")


def _item(outlet: str, title: str, minutes_ago: float, version: str = "") -> dict[str, str]:
    return {
        "title": title + SUFFIX.get(outlet, ""),
        "link": f"https://{_slug(outlet)}.example/brazil-floods{version}",
        "guid": f"{_slug(outlet)}-brazil-floods{version}",
        "description": SUMMARY,
        "pubDate": pubdate(minutes_ago / 60),
    }


class Desk:
    """One daemon-like runtime over feeds that outlets fill one by one."""

    def __init__(
        self, tmp_path: Path, feed_server: FeedServer, slack: FakeSlack, wl: dict[str, Any]
    ) -> None:
        self.server, self.slack = feed_server, slack
        feeds = []
        for outlet in OUTLETS:
            path = f"/{_slug(outlet)}.xml"
            feed_server.set(path, rss(outlet, []))
            feeds.append({"name": outlet, "source": outlet, "url": feed_server.url(path)})
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": slack.base_url,
            "SLACK_CHANNEL": "#floods",
        }
        self.cfg = load_config(write_config(tmp_path, feeds=feeds, watchlists=[wl]), env=env)

    def publish(self, outlet: str, title: str, minutes_ago: float = 5) -> None:
        # "UPDATE n" is a new item of the outlet's (new guid and link), as wires do it
        version = title.split("-", 1)[0].replace(" ", "") if title.startswith("UPDATE") else ""
        item = _item(outlet, title, minutes_ago, version)
        self.server.set(f"/{_slug(outlet)}.xml", rss(outlet, [item]))

    async def run(self, steps: list[list[tuple[str, str, float]]]) -> None:
        async with open_runtime(self.cfg) as rt:
            await startup(rt)
            for step in steps:
                for outlet, title, minutes_ago in step:
                    self.publish(outlet, title, minutes_ago)
                await poll_cycle(rt, all_feeds=True)
                await deliver_pending(rt)


def _shown(m: dict[str, Any]) -> str:
    return m["text"] + " " + json.dumps(m.get("blocks") or [], ensure_ascii=False)


def _updates(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages if m["thread_ts"] and "Update" in _shown(m)]


FLOODS = {"name": "floods", "terms": ["flooding", "floods"]}


def test_each_change_of_the_headline_figure_gets_one_update_reply_with_its_diff(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    desk = Desk(tmp_path, feed_server, slack, FLOODS)
    steps = [
        [("Reuters", "Floods kill 12 in southern Brazil", 30)],
        [("Reuters", "Floods kill 40 in southern Brazil", 30)],  # retitled, same item
        [("Reuters", "Floods kill 55 in southern Brazil", 30)],
    ]
    asyncio.run(desk.run(steps))
    (card,) = [m for m in slack.view("#floods") if not m["thread_ts"]]
    updates = _updates(slack)
    assert len(updates) == 2, [_shown(m) for m in slack.messages]
    assert all(u["thread_ts"] == card["ts"] for u in updates)
    assert "kill 12 → kill 40" in _shown(updates[0])
    assert "kill 40 → kill 55" in _shown(updates[1])
    # the retitle of the copy the card announced is news: sent to the channel as well
    assert all(u["broadcast"] for u in updates)
    assert {m["ts"] for m in slack.view("#floods")} == {card["ts"], *(u["ts"] for u in updates)}
    # and the card itself shows the current headline
    final = [u for u in slack.updates if u["ts"] == card["ts"]][-1]
    assert "Floods kill 55" in _shown(final) and "kill 12" not in _shown(final)


def test_plain_copies_are_also_reported_by_never_updates(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    desk = Desk(tmp_path, feed_server, slack, FLOODS)
    title = "Floods kill 12 in southern Brazil"
    steps = [[("Reuters", title, 60)], *[[(o, title, 50 - i)] for i, o in enumerate(OUTLETS[1:])]]
    asyncio.run(desk.run(steps))
    (card,) = [m for m in slack.view("#floods")]
    replies = card["replies"]
    assert len(replies) == len(OUTLETS) - 1
    assert not _updates(slack)
    assert all("Also reported by" in _shown(r) for r in replies)


def test_an_outlets_own_update_n_is_an_update_and_another_outlets_is_a_copy(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """A wire's "UPDATE 2" is a new item in its own numbering: from the outlet that
    already carries the story it is a development; the same prefix on a copy from an
    outlet new to the story is that outlet's numbering, not news."""
    desk = Desk(tmp_path, feed_server, slack, FLOODS)
    steps = [
        [("Reuters", "Floods kill 12 in southern Brazil", 60)],
        [("AFP", "UPDATE 1-Floods kill 12 in southern Brazil", 50)],
        [("Reuters", "UPDATE 2-Floods kill 12 in southern Brazil", 10)],
    ]
    asyncio.run(desk.run(steps))
    (card,) = slack.view("#floods")
    kinds = ["Update" in _shown(r) for r in card["replies"]]
    assert kinds == [False, True], [_shown(r) for r in card["replies"]]
    assert "UPDATE 2-Floods" in _shown(card["replies"][1])
    assert "*Reuters*" in _shown(card["replies"][1])


def test_the_card_says_who_had_it_first_and_single_source_until_a_second_outlet(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    desk = Desk(tmp_path, feed_server, slack, FLOODS)
    title = "Floods kill 12 in southern Brazil"
    asyncio.run(desk.run([[("Reuters", title, 30)], [("AFP", title, 24)]]))
    (card,) = slack.view("#floods")
    first = card["versions"][0]
    assert "single source" in first and "First: *Reuters*" in first
    latest = _shown([u for u in slack.updates if u["ts"] == card["ts"]][-1])
    assert "single source" not in latest
    assert "First: *Reuters*" in latest and "second outlet after 6 min" in latest


ESCALATE = {
    **FLOODS,
    "escalate": {"outlets": 5, "within": "15m", "channel": "#breaking", "mention": "@here"},
}


@pytest.mark.parametrize(
    ("minutes_ago", "escalates"),
    [
        ([40, 37, 34, 31, 28, 26], True),  # five within 12 minutes (then a sixth)
        ([40, 37, 34, 31], False),  # four only
        ([75, 60, 45, 30, 15], False),  # five spread over an hour
    ],
    ids=["five-within-15m", "four", "five-over-an-hour"],
)
def test_escalation_posts_once_when_the_story_crosses_the_rule(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    minutes_ago: list[float],
    escalates: bool,
) -> None:
    desk = Desk(tmp_path, feed_server, slack, ESCALATE)
    title = "Floods kill 12 in southern Brazil"
    steps = [[(OUTLETS[i], title, m)] for i, m in enumerate(minutes_ago)]
    asyncio.run(desk.run(steps))
    (card,) = slack.view("#floods")
    posted = slack.view("#breaking")
    if not escalates:
        assert posted == []
        return
    assert len(posted) == 1  # once, though a sixth outlet came after
    shown = _shown(posted[0])
    assert posted[0]["text"].startswith("<!here>")
    assert "5 outlets within 15m" in shown and "Floods kill 12" in shown
    cid = slack.channel_id("#floods")
    assert f"https://fake.slack.test/archives/{cid}/p{card['ts'].replace('.', '')}" in shown


@pytest.mark.parametrize(
    ("minutes_ago", "escalates"),
    [([40, 37, 34, 31, 28], True), ([75, 60, 45, 30, 15], False)],
    ids=["five-within-15m", "five-over-an-hour"],
)
def test_replay_and_explain_report_the_decision_the_daemon_took(
    tmp_path: Path,
    feed_server: FeedServer,
    slack: FakeSlack,
    minutes_ago: list[float],
    escalates: bool,
) -> None:
    desk = Desk(tmp_path, feed_server, slack, ESCALATE)
    title = "Floods kill 12 in southern Brazil"
    asyncio.run(desk.run([[(OUTLETS[i], title, m)] for i, m in enumerate(minutes_ago)]))
    assert bool(slack.view("#breaking")) == escalates
    cfg = str(tmp_path / "config")
    out = wirewatch("replay", "--since", "1d", "--json", "--config", cfg)
    assert out.returncode == 0, out.stderr
    (floods,) = json.loads(out.stdout)["watchlists"]
    assert floods["escalated"] == (1 if escalates else 0)
    if escalates:
        assert (
            "5 outlets within 12 min (rule: 5 outlets within 15m)"
            in floods["escalations"][0]["why"]
        )
    text = wirewatch("replay", "--since", "1d", "--config", cfg).stdout
    assert ("1 stories would escalate" in text) == escalates
    shown = wirewatch("explain", "--entry", "1", "--json", "--config", cfg)
    assert shown.returncode == 0, shown.stderr
    why = json.loads(shown.stdout)["escalation"]["floods"]
    assert why.startswith("escalated at" if escalates else "not escalated: at most")
    plain = wirewatch("explain", "--entry", "1", "--config", cfg).stdout
    assert "floods: story " + why in plain


def test_a_hostile_title_cannot_ping_through_an_update_or_an_escalation(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    desk = Desk(tmp_path, feed_server, slack, ESCALATE)
    evil = "Floods kill 12 <!channel> in southern Brazil"
    steps = [[(OUTLETS[i], evil, 30 - i)] for i in range(5)]
    steps.append([("Reuters", "Floods kill 40 <!everyone> in southern Brazil", 30)])
    asyncio.run(desk.run(steps))
    for m in slack.messages:
        body = _shown(m)
        assert "<!channel>" not in body and "<!everyone>" not in body


def test_the_rule_check_says_when_and_why_a_story_escalated_or_did_not() -> None:
    from datetime import UTC, datetime, timedelta

    from monitor.match.escalation import check
    from monitor.match.schema import Escalation

    rule = Escalation(outlets=5, within=900, channel="#breaking")
    t0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    at = [t0 + timedelta(minutes=m) for m in (0, 3, 6, 9, 12, 14)]
    crossed = check(at, rule)
    assert crossed.crossed and crossed.at == at[4] and crossed.span == 12 * 60
    assert "escalated at 2026-12-05 09:12 UTC: 5 outlets within 12 min" in crossed.describe()
    four = check(at[:4], rule)
    assert not four.crossed and "at most 4 of 4 outlets" in four.describe()
    spread = check([t0 + timedelta(minutes=15 * i) for i in range(5)], rule)
    assert not spread.crossed and spread.best == 2


def test_audit_finds_the_channels_as_the_outbox_says_after_updates_and_escalations(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """A retitle's reply sent to the channel is a reply, not a second card; an
    escalation is its channel's top-level message: the audit counts both as shown."""
    desk = Desk(tmp_path, feed_server, slack, ESCALATE)
    title = "Floods kill 12 in southern Brazil"
    steps: list[list[tuple[str, str, float]]] = [[(OUTLETS[i], title, 30 - i)] for i in range(5)]
    steps.append([("Reuters", "Floods kill 40 in southern Brazil", 30)])
    asyncio.run(desk.run(steps))
    assert len(slack.view("#breaking")) == 1 and _updates(slack)
    env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.base_url}
    out = wirewatch("audit", "--config", str(tmp_path / "config"), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the channels show what the outbox says" in out.stdout
    assert "#breaking" in out.stdout and "#floods" in out.stdout


def _mute(db: Path, **fields: Any) -> None:
    import sqlite3
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    row = {
        "kind": "story",
        "story_id": None,
        "watchlist": None,
        "term": None,
        "created_by": "U0TEST",
        "created_at": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_at": (now + timedelta(hours=24)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        **fields,
    }
    with sqlite3.connect(db) as conn:
        conn.execute(
            f"INSERT INTO mutes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )


def test_a_muted_story_gets_no_more_replies_and_a_muted_term_no_alert(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    desk = Desk(tmp_path, feed_server, slack, {**ESCALATE, "terms": ["floods", "landslide"]})
    title = "Floods kill 12 in southern Brazil"
    asyncio.run(desk.run([[("Reuters", title, 30)]]))
    (card,) = slack.view("#floods")
    db = tmp_path / "data" / "wirewatch.db"
    _mute(db, kind="story", story_id=1)
    _mute(db, kind="term", watchlist="floods", term="landslide")
    steps = [[(OUTLETS[i], title, 29 - i)] for i in range(1, 6)]
    steps.append([("NHK", "Landslide buries village in Peru", 5)])  # only the muted term
    steps.append([("CNA", "Floods and landslide hit Peru after record rain", 4)])
    asyncio.run(desk.run(steps))
    floods = slack.view("#floods")
    assert floods[0]["ts"] == card["ts"] and floods[0]["replies"] == []  # muted: no replies
    assert slack.view("#breaking") == []  # nor an escalation
    shown = " ".join(_shown(m) for m in floods)
    assert "Landslide buries village" not in shown  # its only term is muted
    assert "Floods and landslide hit Peru" in shown  # another term still alerts
    cfg = str(tmp_path / "config")
    listed = wirewatch("mutes", "--config", cfg)
    assert listed.returncode == 0, listed.stderr
    assert "story 1: Floods kill 12" in listed.stdout and "'landslide'" in listed.stdout
    assert "U0TEST" in listed.stdout
    data = json.loads(wirewatch("mutes", "--json", "--config", cfg).stdout)["mutes"]
    assert [m["kind"] for m in data] == ["story", "term"]
    assert wirewatch("mutes", "rm", str(data[0]["id"]), "--config", cfg).returncode == 0
    gone = wirewatch("mutes", "rm", str(data[0]["id"]), "--config", cfg)
    assert gone.returncode == 1 and "no mute" in gone.stderr
    assert "story 1" not in wirewatch("mutes", "--config", cfg).stdout
