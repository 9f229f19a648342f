"""Issue 17, quiet hours and scheduled digests per watchlist: end to end over real
sockets (feed server, Slack stand-in) with a clock the test moves, and the pure
functions that say when a hold ends (midnight, daylight saving)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from monitor.config import load_config
from monitor.holds import hold_until, longest_hold, next_digest, quiet_end, rehold
from monitor.match.schema import Digest, Quiet, Watchlist
from monitor.models import AlertKind
from monitor.outbox import deliver_pending, next_due_in
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import Runtime, open_runtime
from monitor.scheduler import Reloader, apply_reload, startup
from monitor.store.ops import queue
from monitor.store.tables import AlertRow
from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import write_config

OUTLETS = ["Reuters", "AFP", "AP", "BBC", "DW"]

# stories far enough apart that each is its own story
STORIES = [
    (
        "Flooding closes schools across Kent after record rainfall",
        "Councils in Kent shut dozens of primary schools as rivers burst their banks.",
    ),
    (
        "Rescue crews reach stranded drivers as flooding hits Valencia motorways",
        "Spanish emergency services used helicopters to lift motorists off car roofs.",
    ),
    (
        "Insurers count cost of flooding in Queensland sugar towns",
        "Claims from cane growers are expected to top last year's cyclone season.",
    ),
    (
        "Flooding forces evacuation of Jakarta hospital wards",
        "Patients were moved to upper floors as water entered the basement generators.",
    ),
    (
        "Farmers in Punjab lose wheat harvest to flooding",
        "Agriculture officials estimate that a fifth of the winter crop is under water.",
    ),
]

QUIET = {"from": "22:00", "to": "07:00", "tz": "Europe/London"}


def _utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def _shown(m: dict[str, Any]) -> str:
    return str(m["text"]) + " " + json.dumps(m.get("blocks") or [], ensure_ascii=False)


class Room:
    """Feeds that outlets fill, a Slack stand-in, and a clock the test moves; each
    ``life`` is one run of Wirewatch (a restart is a new one on the same database)."""

    def __init__(
        self,
        tmp_path: Path,
        feed_server: FeedServer,
        slack: FakeSlack,
        watchlists: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        self.server, self.slack, self.now = feed_server, slack, now
        self.items: dict[str, list[dict[str, str]]] = {o: [] for o in OUTLETS}
        feeds = []
        for outlet in OUTLETS:
            feed_server.set(self._path(outlet), rss(outlet, []))
            feeds.append(
                {"name": outlet, "source": outlet, "url": feed_server.url(self._path(outlet))}
            )
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": slack.base_url,
            "SLACK_CHANNEL": "#desk",
        }
        self.cfg = load_config(write_config(tmp_path, feeds=feeds, watchlists=watchlists), env=env)

    @staticmethod
    def _path(outlet: str) -> str:
        return f"/{outlet.lower()}.xml"

    def clock(self) -> datetime:
        return self.now

    def publish(self, outlet: str, story: int) -> None:
        """``outlet`` carries story ``story`` (of STORIES), published a minute ago."""
        title, summary = STORIES[story]
        self.items[outlet].append(
            {
                "title": title,
                "link": f"https://{outlet.lower()}.example/story-{story}",
                "guid": f"{outlet.lower()}-story-{story}",
                "description": summary,
                "pubDate": format_datetime(self.now - timedelta(minutes=1)),
            }
        )
        self.server.set(self._path(outlet), rss(outlet, self.items[outlet]))

    def life(self) -> Any:
        return open_runtime(self.cfg, clock=self.clock)

    async def tick(self, rt: Runtime, at: datetime | None = None) -> None:
        """Move the clock to ``at``, poll every feed and deliver what is due."""
        if at is not None:
            self.now = at
        await poll_cycle(rt, all_feeds=True)
        for _ in range(3):  # (an escalation waits a pass for the card it links)
            await deliver_pending(rt)

    def top(self, channel: str) -> list[dict[str, Any]]:
        return self.slack.view(channel)


async def _rows(rt: Runtime) -> list[AlertRow]:
    async with rt.sessions() as session:
        return list((await session.exec(select(AlertRow).order_by(AlertRow.id))).all())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- quiet hours


def test_quiet_hours_hold_the_cards_then_release_them_as_one_digest(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    wl = {"name": "floods", "terms": ["flooding"], "channel": "#floods", "quiet": QUIET}
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 1, 14, 23, 0))

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            for i, outlet in enumerate(OUTLETS[:3]):
                room.publish(outlet, i)
            await room.tick(rt)
            assert room.top("#floods") == []
            # (queued, held for the end of the quiet hours: 07:00 GMT)
            rows = await _rows(rt)
            assert len(rows) == 3
            assert {r.next_attempt_at.astimezone(UTC) for r in rows} == {_utc(2026, 1, 15, 7)}
            assert await next_due_in(rt) is None  # (nothing waits for a retry)
            async with rt.sessions() as session:  # (not an outbox stuck for hours)
                held = (await queue(session)).oldest
            assert held is not None and held.astimezone(UTC) == _utc(2026, 1, 15, 7)
            await room.tick(rt, _utc(2026, 1, 15, 6, 59, 59))
            assert room.top("#floods") == []
            await room.tick(rt, _utc(2026, 1, 15, 7, 0))

    asyncio.run(go())
    (digest,) = room.top("#floods")
    shown = _shown(digest)
    assert "Digest: 3 alerts" in shown
    assert all(STORIES[i][0] in shown for i in range(3))


def test_a_single_card_held_by_quiet_hours_goes_out_as_a_card_when_they_end(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    # summer: London is on BST, the quiet hours end at 06:00 UTC
    wl = {"name": "floods", "terms": ["flooding"], "channel": "#floods", "quiet": QUIET}
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 7, 1, 21, 30))

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)
            await room.tick(rt)
            assert room.top("#floods") == []
            await room.tick(rt, _utc(2026, 7, 2, 5, 59))
            assert room.top("#floods") == []
            await room.tick(rt, _utc(2026, 7, 2, 6, 0))

    asyncio.run(go())
    (card,) = room.top("#floods")
    assert "Digest" not in _shown(card) and STORIES[0][0] in _shown(card)


def test_an_escalation_passes_through_quiet_hours_with_its_card(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    wl = {
        "name": "floods",
        "terms": ["flooding"],
        "channel": "#floods",
        "quiet": QUIET,
        "escalate": {"outlets": 3, "within": "15m", "channel": "#breaking"},
    }
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 1, 14, 23, 0))

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)
            room.publish("BBC", 4)  # another story, one outlet: it stays held
            await room.tick(rt)
            room.publish("AFP", 0)
            await room.tick(rt, room.now + timedelta(minutes=2))
            assert room.top("#floods") == [] and room.top("#breaking") == []
            room.publish("AP", 0)  # the third outlet within 15 minutes, at 23:04
            await room.tick(rt, room.now + timedelta(minutes=2))

    asyncio.run(go())
    (escalation,) = room.top("#breaking")
    (card,) = room.top("#floods")  # the escalating story's card, linked; not the other
    assert STORIES[0][0] in _shown(card) and STORIES[4][0] not in _shown(card)
    cid = slack.channel_id("#floods")
    assert f"/archives/{cid}/p{card['ts'].replace('.', '')}" in _shown(escalation)
    assert "3 outlets within 15m" in _shown(escalation)


def test_a_restart_in_the_middle_of_quiet_hours_loses_nothing(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    wl = {"name": "floods", "terms": ["flooding"], "channel": "#floods", "quiet": QUIET}
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 1, 14, 23, 0))

    async def first() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)
            room.publish("AFP", 1)
            await room.tick(rt)

    async def second() -> None:
        async with room.life() as rt:
            await startup(rt)  # (a restart's clean-up leaves the holds as they are)
            await room.tick(rt, _utc(2026, 1, 15, 3, 0))
            room.publish("AP", 2)
            await room.tick(rt, _utc(2026, 1, 15, 3, 30))
            assert room.top("#floods") == []

    async def third() -> None:
        async with room.life() as rt:
            await startup(rt)
            await room.tick(rt, _utc(2026, 1, 15, 7, 0, 1))

    asyncio.run(first())
    assert room.top("#floods") == []
    asyncio.run(second())  # stopped at 01:00, started again at 03:00
    asyncio.run(third())
    (digest,) = room.top("#floods")
    assert all(STORIES[i][0] in _shown(digest) for i in range(3))


def test_a_reload_that_removes_the_quiet_hours_lets_the_held_cards_out(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    wl = {"name": "floods", "terms": ["flooding"], "channel": "#floods", "quiet": QUIET}
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 1, 14, 23, 0))
    env = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_API_URL": slack.base_url,
        "SLACK_CHANNEL": "#desk",
    }

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)
            await room.tick(rt)
            assert room.top("#floods") == []  # held till 07:00
            feeds = [f.model_dump(mode="json") for f in room.cfg.feeds]
            loose = {"name": "floods", "terms": ["flooding"], "channel": "#floods"}
            path = write_config(tmp_path, feeds=feeds, watchlists=[loose])
            reloader = Reloader(load=lambda: load_config(path, env=env), files=[path])
            assert await apply_reload(rt, reloader)
            await room.tick(rt, _utc(2026, 1, 14, 23, 1))

    asyncio.run(go())
    (card,) = room.top("#floods")
    assert STORIES[0][0] in _shown(card)


def test_a_reload_only_ever_shortens_a_hold() -> None:
    now = _utc(2026, 1, 14, 23, 0)
    quiet = Watchlist(name="q", terms=["x"], quiet=Quiet.model_validate(QUIET))
    loose = Watchlist(name="l", terms=["x"])
    seven = _utc(2026, 1, 15, 7, 0)
    held = [
        (1, "q", "new", _utc(2026, 1, 15, 6, 0)),
        (2, "l", "new", seven),
        (3, "gone", "new", seven),
    ]
    # 1: the new quiet hours would hold it longer than it was told: it keeps its time;
    # 2: its watchlist has no hold any more: due now; 3: its watchlist is gone: as it was
    assert rehold(held, {"q": quiet, "l": loose}, now) == {2: now}


def test_held_alerts_do_not_block_other_watchlists_in_the_same_channel(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    quiet = {"name": "floods", "terms": ["Kent", "Valencia"], "channel": "#desk", "quiet": QUIET}
    loud = {"name": "asia", "terms": ["Jakarta", "Punjab"], "channel": "#desk"}
    room = Room(tmp_path, feed_server, slack, [quiet, loud], _utc(2026, 1, 14, 23, 0))

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)  # floods: held (queued first)
            await room.tick(rt)
            room.publish("AFP", 3)  # asia: out at once, past the held card
            room.publish("AP", 0)  # a copy of the held story: held with it
            await room.tick(rt, room.now + timedelta(minutes=5))
            assert [STORIES[3][0] in _shown(m) for m in room.top("#desk")] == [True]
            room.publish("BBC", 4)
            await room.tick(rt, room.now + timedelta(minutes=5))
            assert len(room.top("#desk")) == 2
            await room.tick(rt, _utc(2026, 1, 15, 7, 0))

    asyncio.run(go())
    top = room.top("#desk")
    assert len(top) == 3
    card = top[-1]
    assert STORIES[0][0] in _shown(card) and "Digest" not in _shown(card)
    # the copy queued while it was held is on the card, not a reply
    assert card["replies"] == [] and "AP" in _shown(card)


# --------------------------------------------------------------------------- digests


def test_a_digest_every_hour_gathers_the_hours_stories_into_one_message(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    wl = {"name": "floods", "terms": ["flooding"], "channel": "#floods", "digest": {"every": "1h"}}
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 5, 4, 10, 5))

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)
            await room.tick(rt)
            room.publish("AFP", 1)
            await room.tick(rt, _utc(2026, 5, 4, 10, 20))
            room.publish("AP", 2)
            room.publish("DW", 0)  # a copy of a story still held: on its line
            await room.tick(rt, _utc(2026, 5, 4, 10, 40))
            await room.tick(rt, _utc(2026, 5, 4, 10, 59, 59))
            assert room.top("#floods") == []
            await room.tick(rt, _utc(2026, 5, 4, 11, 0))
            assert len(room.top("#floods")) == 1
            # after the digest: a copy threads under it at once, a new story waits
            room.publish("BBC", 0)
            room.publish("BBC", 3)
            await room.tick(rt, _utc(2026, 5, 4, 11, 10))
            (digest,) = room.top("#floods")
            assert len(digest["replies"]) == 1
            await room.tick(rt, _utc(2026, 5, 4, 12, 0))

    asyncio.run(go())
    digest, card = room.top("#floods")
    shown = _shown(digest)
    assert "Digest: 3 alerts" in shown
    assert all(STORIES[i][0] in shown for i in range(3))
    assert "BBC" in _shown(digest["replies"][0])
    assert STORIES[3][0] in _shown(card) and "Digest" not in _shown(card)
    # the copy queued while its story was held is not a reply of its own
    assert len([m for m in slack.messages if m["thread_ts"]]) == 1


def test_a_daily_digest_at_a_local_time_follows_the_time_zone(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    wl = {
        "name": "floods",
        "terms": ["flooding"],
        "channel": "#floods",
        "digest": {"at": "08:00", "tz": "Europe/London"},
    }
    # summer: 08:00 in London is 07:00 UTC
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 7, 1, 7, 30))

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            for i, outlet in enumerate(OUTLETS[:4]):
                room.publish(outlet, i)
            await room.tick(rt)
            await room.tick(rt, _utc(2026, 7, 2, 6, 59, 59))
            assert room.top("#floods") == []
        async with room.life() as rt:  # (a restart before the digest)
            await startup(rt)
            await room.tick(rt, _utc(2026, 7, 2, 7, 0))

    asyncio.run(go())
    (digest,) = room.top("#floods")
    assert "Digest: 4 alerts" in _shown(digest)


# --------------------------------------------------------------------------- pure functions

LONDON_QUIET = Quiet.model_validate(QUIET)


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (_utc(2026, 1, 14, 21, 59), None),
        (_utc(2026, 1, 14, 22, 0), _utc(2026, 1, 15, 7, 0)),  # from is in
        (_utc(2026, 1, 14, 23, 30), _utc(2026, 1, 15, 7, 0)),  # across midnight
        (_utc(2026, 1, 15, 6, 59), _utc(2026, 1, 15, 7, 0)),
        (_utc(2026, 1, 15, 7, 0), None),  # to is out
        (_utc(2026, 7, 1, 21, 30), _utc(2026, 7, 2, 6, 0)),  # 22:30 BST → 07:00 BST
        (_utc(2026, 7, 1, 20, 59), None),  # 21:59 BST
        # spring forward (29 March, 01:00 GMT → 02:00 BST): a night an hour shorter
        (_utc(2026, 3, 28, 23, 0), _utc(2026, 3, 29, 6, 0)),
        (_utc(2026, 3, 29, 5, 59), _utc(2026, 3, 29, 6, 0)),
        # fall back (25 October, 02:00 BST → 01:00 GMT): a night an hour longer
        (_utc(2026, 10, 24, 21, 0), _utc(2026, 10, 25, 7, 0)),  # 22:00 BST
        (_utc(2026, 10, 25, 6, 30), _utc(2026, 10, 25, 7, 0)),
    ],
)
def test_quiet_end(now: datetime, end: datetime | None) -> None:
    assert quiet_end(LONDON_QUIET, now) == end


def test_quiet_hours_within_a_day() -> None:
    lunch = Quiet.model_validate({"from": "12:00", "to": "14:00", "tz": "Asia/Tokyo"})
    assert quiet_end(lunch, _utc(2026, 1, 14, 3, 0)) == _utc(2026, 1, 14, 5, 0)  # 12:00 JST
    assert quiet_end(lunch, _utc(2026, 1, 14, 5, 0)) is None
    assert quiet_end(lunch, _utc(2026, 1, 14, 2, 59)) is None


def test_every_is_aligned_so_a_restart_keeps_the_schedule() -> None:
    hourly = Digest.model_validate({"every": "1h"})
    assert next_digest(hourly, _utc(2026, 5, 4, 10, 5)) == _utc(2026, 5, 4, 11)
    assert next_digest(hourly, _utc(2026, 5, 4, 11)) == _utc(2026, 5, 4, 12)  # strictly after
    odd = Digest.model_validate({"every": "7m"})
    start = _utc(2026, 5, 4, 10, 0)
    times = {next_digest(odd, start + timedelta(seconds=s)) for s in range(0, 7 * 60, 13)}
    assert len(times) <= 2 and all(int(t.timestamp()) % 420 == 0 for t in times)


@pytest.mark.parametrize(
    ("at", "now", "due"),
    [
        ("08:00", _utc(2026, 1, 14, 7, 0), _utc(2026, 1, 14, 8, 0)),  # GMT
        ("08:00", _utc(2026, 7, 1, 6, 0), _utc(2026, 7, 1, 7, 0)),  # BST
        ("08:00", _utc(2026, 7, 1, 7, 0), _utc(2026, 7, 2, 7, 0)),  # just gone: tomorrow
        # the day the clocks go forward: 23 hours to the next 08:00
        ("08:00", _utc(2026, 3, 28, 8, 30), _utc(2026, 3, 29, 7, 0)),
        # the day they go back: 25 hours
        ("08:00", _utc(2026, 10, 24, 7, 30), _utc(2026, 10, 25, 8, 0)),
        # 01:30 does not exist on 29 March: it happens an hour later by the clock
        ("01:30", _utc(2026, 3, 29, 0, 0), _utc(2026, 3, 29, 1, 30)),
        # 01:30 happens twice on 25 October: the first time
        ("01:30", _utc(2026, 10, 24, 23, 0), _utc(2026, 10, 25, 0, 30)),
        ("00:00", _utc(2026, 1, 14, 23, 59), _utc(2026, 1, 15, 0, 0)),  # midnight
    ],
)
def test_next_daily_digest_in_london(at: str, now: datetime, due: datetime) -> None:
    digest = Digest.model_validate({"at": at, "tz": "Europe/London"})
    assert next_digest(digest, now) == due


def test_hold_until_combines_digest_and_quiet_hours_and_never_holds_escalations() -> None:
    wl = Watchlist.model_validate(
        {"name": "w", "terms": ["x"], "digest": {"every": "1h"}, "quiet": QUIET}
    )
    late = _utc(2026, 1, 14, 22, 30)
    assert hold_until(wl, AlertKind.ESCALATION, late) == late
    # the 23:00 digest falls in the quiet hours: it goes at their end
    assert hold_until(wl, AlertKind.NEW, late) == _utc(2026, 1, 15, 7, 0)
    assert hold_until(wl, AlertKind.FOLLOWUP, late) == _utc(2026, 1, 15, 7, 0)
    noon = _utc(2026, 1, 14, 12, 10)
    assert hold_until(wl, AlertKind.NEW, noon) == _utc(2026, 1, 14, 13, 0)
    assert hold_until(wl, AlertKind.FOLLOWUP, noon) == noon  # replies are not digested
    assert longest_hold(wl) >= 3600 + 9 * 3600
    plain = Watchlist.model_validate({"name": "p", "terms": ["x"]})
    assert hold_until(plain, AlertKind.NEW, noon) == noon and longest_hold(plain) == 0


def test_at_is_a_time_of_day() -> None:
    assert Digest.model_validate({"at": "08:00"}).at == time(8, 0)


def test_a_digest_days_ahead_survives_the_start_up_clamp_of_far_ahead_due_times(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    """Start-up makes due now what lies further ahead than any delay Wirewatch sets (a
    clock that was ahead): a digest's time is such a delay, not a wrong clock."""
    wl = {"name": "floods", "terms": ["flooding"], "channel": "#floods", "digest": {"every": "3d"}}
    room = Room(tmp_path, feed_server, slack, [wl], _utc(2026, 5, 4, 10, 5))
    due = next_digest(Digest.model_validate({"every": "3d"}), room.now)
    assert due - room.now > timedelta(days=2)

    async def go() -> None:
        async with room.life() as rt:
            await startup(rt)
            room.publish("Reuters", 0)
            room.publish("AFP", 1)
            await room.tick(rt)
        async with room.life() as rt:
            await startup(rt)
            await room.tick(rt, room.now + timedelta(hours=1))
            assert room.top("#floods") == []
            assert {r.next_attempt_at.astimezone(UTC) for r in await _rows(rt)} == {due}
            await room.tick(rt, due)

    asyncio.run(go())
    (digest,) = room.top("#floods")
    assert "Digest: 2 alerts" in _shown(digest)
