"""Model-based test of delivery (issue 13): random sequences of new stories, copies of
known stories, bursts over the digest threshold, Slack faults, kills and restarts, and
reloads that move a watchlist to another channel, against the local Slack Web API
server over real sockets with the real slack-sdk client. After the queue drains, what
the channel shows must hold:

* every alerted story appears exactly once at top level, as a card or a digest line;
* every copy is in its story's thread, or counted on its card or line;
* nothing once visible has been erased (every version of every message is kept);
* no alert is both ``failed`` and visible;
* ``wirewatch audit`` agrees.

The webhook and console sinks run under the same sequences: nothing lost or doubled.

Stories and copies are written to the store as the pipeline queues them (a story's
alert for its watchlist's current channel; a copy's alert threads under that alert, in
its channel), not fetched and parsed: what is under test is delivery, and a poll per
step would leave room for a few dozen examples instead of hundreds.

Examples: 300 for Slack in CI (``WIREWATCH_MODEL_EXAMPLES`` sets it, e.g. 5000 by
hand; the webhook and console runs take a third and a sixth of it). A failure prints
the shrunk sequence of steps. Each run prints how many sequences were checked to the
end (``-s`` shows it): ``model slack: 5000 sequences checked, 31874 steps``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlmodel import col, select

from monitor.cli.channel_audit import run_audit
from monitor.config import AppConfig, load_config
from monitor.deliver.console import ConsoleNotifier
from monitor.deliver.slack import SlackBotNotifier
from monitor.deliver.webhook import WebhookNotifier
from monitor.outbox import deliver_pending, reconcile
from monitor.pipeline.runtime import Runtime, open_runtime
from monitor.store.tables import AlertRow, EntryRow, FeedRow, StoryRow
from tests.fakeslack import FakeSlack
from tests.util import write_config

EXAMPLES = int(os.environ.get("WIREWATCH_MODEL_EXAMPLES", "300"))
WATCHLISTS = ("alpha", "beta")
FAULTS = ("ratelimited", "server_error", "drop", "accept_drop", "accept_timeout")
CLIENT_TIMEOUT = 0.2  # seconds; an "accept_timeout" answers after HANG
HANG = 0.3
MAX_OFFSET = 180.0  # the test clock stays within find_sent's tolerance of Slack's ts
_LINK = re.compile(r"<(https://[^|<>]+)\|")


class World:
    """What one test run shares across examples: the Slack stand-in, a migrated
    database to copy, a scratch directory."""

    slack: FakeSlack
    template: Path
    scratch: Path


WORLD = World()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    scratch = Path(tempfile.mkdtemp(prefix="ww-model-"))
    with FakeSlack() as slack:
        WORLD.slack, WORLD.scratch = slack, scratch
        WORLD.template = _template(scratch / "template")
        yield WORLD
    shutil.rmtree(scratch, ignore_errors=True)


def _config(root: Path, channels: dict[str, str], env: dict[str, str]) -> AppConfig:
    settings_ = {
        "delivery": {"burst_max": 3, "burst_window": "20s", "max_backoff": "2s"},
    }
    wls = [{"name": n, "terms": [n], "channel": channels[n]} for n in WATCHLISTS]
    path = write_config(root, feeds=[], watchlists=wls, settings=settings_)
    return load_config(path, env=env)


def _template(root: Path) -> Path:
    """A migrated database with one feed, copied for each example."""
    cfg = _config(root, {n: f"#{n}-0" for n in WATCHLISTS}, {})

    async def make() -> None:
        async with (
            open_runtime(cfg, start_pool=False, notifiers={}) as rt,
            rt.sessions() as s,
        ):
            now = datetime.now(UTC)
            s.add(FeedRow(name="wire", url="https://wire.example/feed", created_at=now))
            await s.commit()

    asyncio.run(make())
    return root / "data"


class Model(RuleBasedStateMachine):
    """One example: a fresh database, an empty Slack, a runtime that steps restart."""

    SINK: ClassVar[str] = "slack"

    def __init__(self) -> None:
        super().__init__()
        self.slack = WORLD.slack
        self.slack.reset_faults()
        self.slack.clear()
        self.root = Path(tempfile.mkdtemp(dir=WORLD.scratch))
        shutil.copytree(WORLD.template, self.root / "data")
        self.channels = {n: f"#{n}-0" for n in WATCHLISTS}
        self.moves = 0
        self.kills = 0  # of them, cut off in the middle of a delivery
        self.steps = 0
        self.offset = 0.0
        self.console = io.StringIO()
        self.stories: list[tuple[int, str, int]] = []  # (story id, watchlist, alert id)
        self.copies: list[tuple[int, int, str]] = []  # (alert id, parent alert id, link)
        self.n = 0
        self.titles: dict[int, int] = {}  # entry id -> its number in its title
        self.pending_titles: list[int] = []
        self.loop = asyncio.new_event_loop()
        self.stack: AsyncExitStack | None = None
        self.rt: Runtime | None = None
        self._run(self._open())

    # ---------------------------------------------------------------- plumbing

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _clock(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def _env(self) -> dict[str, str]:
        return {"SLACK_BOT_TOKEN": self.slack.token or "", "SLACK_API_URL": self.slack.base_url}

    async def _open(self) -> None:
        cfg = _config(self.root, self.channels, self._env())
        sinks: dict[str, Any]
        if self.SINK == "slack":
            sinks = {
                "slack": SlackBotNotifier(
                    self.slack.token or "",
                    default_channel="#alpha-0",
                    base_url=self.slack.base_url,
                    timeout=CLIENT_TIMEOUT,
                )
            }
        elif self.SINK == "webhook":
            sinks = {
                "webhook": WebhookNotifier(self.slack.hook_url, secret=None, timeout=CLIENT_TIMEOUT)
            }
        else:
            sinks = {"console": ConsoleNotifier(self.console)}
        self.stack = AsyncExitStack()
        self.rt = await self.stack.enter_async_context(
            open_runtime(cfg, clock=self._clock, start_pool=False, notifiers=sinks)
        )

    async def _stop_tasks(self) -> None:
        """Everything the process was doing stops where it is (channel drains too)."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close(self) -> None:
        if self.stack is not None:
            await self.stack.aclose()
        self.stack = self.rt = None

    @property
    def runtime(self) -> Runtime:
        assert self.rt is not None
        return self.rt

    async def _story(self, watchlist: str, count: int) -> None:
        """``count`` new stories matching ``watchlist``, queued as the pipeline does."""
        now = self._clock()
        async with self.runtime.sessions() as s:
            for _ in range(count):
                self.n += 1
                story = StoryRow(
                    title=f"{watchlist} story {self.n}", link="", created_at=now, updated_at=now
                )
                s.add(story)
                await s.flush()
                entry = self._entry(story.id or 0, f"Outlet {self.n}", now)
                s.add(entry)
                await s.flush()
                self.titles[entry.id or 0] = self.pending_titles.pop()
                alert = self._alert(story.id or 0, entry.id or 0, watchlist, "new", None, now)
                alert.channel = self.channels[watchlist]
                s.add(alert)
                await s.flush()
                self.stories.append((story.id or 0, watchlist, alert.id or 0))
            await s.commit()
        self.runtime.delivery.wakeup.set()

    def _entry(self, story_id: int, outlet: str, now: datetime) -> EntryRow:
        self.n += 1
        self.pending_titles.append(self.n)
        return EntryRow(
            feed_id=1,
            guid=f"g{self.n}",
            link=f"https://wire.example/{self.n}/",
            title=f"Item {self.n} of story {story_id} <b>&",
            summary="",
            source=outlet,
            seen_at=now,
            story_id=story_id,
        )

    def _alert(
        self, story_id: int, entry_id: int, wl: str, kind: str, parent: int | None, now: datetime
    ) -> AlertRow:
        return AlertRow(
            story_id=story_id,
            entry_id=entry_id,
            watchlist=wl,
            sink=self.SINK,
            channel="",
            kind=kind,
            parent_id=parent,
            next_attempt_at=now,
            created_at=now,
            terms=json.dumps([wl]),
        )

    async def _copy(self, which: int) -> None:
        story_id, wl, parent_id = self.stories[which % len(self.stories)]
        now = self._clock()
        async with self.runtime.sessions() as s:
            parent = await s.get(AlertRow, parent_id)
            assert parent is not None
            entry = self._entry(story_id, f"Copyist {self.n}", now)
            s.add(entry)
            await s.flush()
            self.titles[entry.id or 0] = self.pending_titles.pop()
            alert = self._alert(story_id, entry.id or 0, wl, "followup", parent_id, now)
            alert.channel = parent.channel  # a copy threads where its story is
            s.add(alert)
            await s.flush()
            self.copies.append((alert.id or 0, parent_id, entry.link))
            await s.commit()

    async def _deliver(self) -> None:
        await reconcile(self.runtime)  # (rows a kill or a timeout left in "sending")
        await deliver_pending(self.runtime)

    async def _rows(self) -> list[AlertRow]:
        async with self.runtime.sessions() as s:
            return list((await s.exec(select(AlertRow).order_by(col(AlertRow.id)))).all())

    # ---------------------------------------------------------------- steps

    @rule(watchlist=st.sampled_from(WATCHLISTS))
    def new_story(self, watchlist: str) -> None:
        self._run(self._story(watchlist, 1))

    @rule(watchlist=st.sampled_from(WATCHLISTS), count=st.integers(4, 24))
    def burst(self, watchlist: str, count: int) -> None:
        self._run(self._story(watchlist, count))

    @precondition(lambda self: self.stories)
    @rule(which=st.integers(0, 1000))
    def copy_of_known_story(self, which: int) -> None:
        self._run(self._copy(which))

    @rule(fault=st.sampled_from(FAULTS), times=st.integers(1, 3))
    def slack_fault(self, fault: str, times: int) -> None:
        self.slack.inject(*[fault] * times, retry_after=0.0, hang=HANG)

    @rule()
    def deliver(self) -> None:
        self._run(self._deliver())

    @rule()
    def kill_and_restart(self) -> None:
        """The process dies (in the middle of a delivery, if one is running: cut off at
        once) and starts again with nothing in memory."""

        async def kill() -> None:
            # cut off while a request is in flight (its answer held back): the moment a
            # real kill loses; a cut inside a database call would leave this process's
            # SQLite lock held, which a real kill releases
            if self.SINK == "console":  # (no request to cut: a restart between steps)
                await self._close()
                await self._open()
                return
            self.slack.inject("accept_timeout", hang=HANG)
            try:
                await asyncio.wait_for(self._deliver(), timeout=CLIENT_TIMEOUT / 2)
            except TimeoutError:
                self.kills += 1
            await self._stop_tasks()
            await self._close()
            await self._open()

        self._run(kill())

    @rule(watchlist=st.sampled_from(WATCHLISTS))
    def reload_moves_watchlist(self, watchlist: str) -> None:
        self.moves += 1
        self.channels[watchlist] = f"#{watchlist}-{self.moves}"
        self.runtime.swap_config(_config(self.root, self.channels, self._env()))

    @rule(seconds=st.sampled_from([3.0, 21.0]))
    def time_passes(self, seconds: float) -> None:
        self.offset = min(MAX_OFFSET, self.offset + seconds)

    @invariant()
    def nothing_failed(self) -> None:
        self.steps += 1  # invariants run once at the start and after every step
        # every fault here is one Slack recovers from: nothing may be given up on
        rows = self._run(self._rows())
        failed = [(r.id, r.last_error) for r in rows if r.state == "failed"]
        assert not failed, failed

    # ---------------------------------------------------------------- the end

    def teardown(self) -> None:
        try:
            self._run(self._drain())
            self._check()
            CHECKED[self.SINK] += 1
            STEPS[self.SINK] += self.steps
        finally:
            self._run(self._stop_tasks())
            self._run(self._close())
            self.loop.run_until_complete(asyncio.sleep(0.01))
            self.loop.close()
            shutil.rmtree(self.root, ignore_errors=True)

    async def _drain(self) -> None:
        for _ in range(60):
            await self._deliver()
            rows = await self._rows()
            if all(r.state in ("sent", "failed") for r in rows):
                return
            self.offset += 2.5  # (retries are due within max_backoff)
        raise AssertionError(f"the outbox did not drain: {[(r.id, r.state) for r in rows]}")

    def _check(self) -> None:
        rows = self._run(self._rows())
        assert all(r.state == "sent" for r in rows), [(r.id, r.state) for r in rows]
        if self.SINK == "slack":
            self._check_channel(rows)
        elif self.SINK == "webhook":
            self._check_webhook(rows)
        else:
            self._check_console(rows)

    def _check_channel(self, rows: list[AlertRow]) -> None:
        link = self._links(rows)
        everything = [m for ch in self._channels() for m in self.slack.view(ch)]
        top: Counter[str] = Counter()
        for m in everything:
            top.update(set(_LINK.findall(_shown(m))))
        for _, _, aid in self.stories:
            assert top[link[aid]] == 1, f"story of alert {aid} shown {top[link[aid]]} times"
        for aid, parent, copy_link in self.copies:
            home = self._message_of(everything, link[parent])
            assert home is not None, f"copy {aid}: its story is not in the channel"
            elsewhere = [m["ts"] for m in everything if m is not home and copy_link in _shown(m)]
            assert not elsewhere, f"copy {aid} shown at top level outside its story: {elsewhere}"
            replies = " ".join(_shown(r) for r in home["replies"])
            line = next((ln for ln in _lines(home) if f"<{link[parent]}|" in ln), "")
            # counted: a card lists every outlet; a digest line shows "(+N outlets)"
            counted = copy_link in _shown(home) or re.search(r"\(\+\d+ outlets?\)", line)
            assert f"<{copy_link}|" in replies or counted, f"copy {aid} not shown"
        for m in self.slack.messages:  # nothing once visible erased
            last = set(_LINK.findall(m["versions"][-1]))
            for earlier in m["versions"][:-1]:
                gone = set(_LINK.findall(earlier)) - last
                assert not gone, f"an edit of {m['ts']} erased {gone}"
        self.slack.reset_faults()  # (faults the sequence queued but no request drew)
        report = self._run(run_audit(self.runtime, since=datetime.now(UTC) - timedelta(hours=1)))
        assert not report.errors and not report.problems, [d.line() for d in report.problems]

    def _channels(self) -> set[str]:
        return {m["channel"] for m in self.slack.messages}

    @staticmethod
    def _message_of(messages: list[dict[str, Any]], link: str) -> dict[str, Any] | None:
        return next((m for m in messages if f"<{link}|" in _shown(m)), None)

    def _links(self, rows: list[AlertRow]) -> dict[int, str]:
        async def read() -> dict[int, str]:
            async with self.runtime.sessions() as s:
                entries = {e.id: e.link for e in (await s.exec(select(EntryRow))).all()}
            return {r.id or 0: entries[r.entry_id] for r in rows}

        out: dict[int, str] = self._run(read())
        return out

    def _check_webhook(self, rows: list[AlertRow]) -> None:
        # a receiver dedupes on X-Wirewatch-Delivery: each alert must reach it under one
        # delivery id (retries repeat it), and every alert must reach it
        # (a copy may travel in its story's "sources" or in a batch of copies' sources)
        under: dict[int, set[str]] = {}
        carried: dict[str, set[str]] = {}  # copy link -> deliveries listing it
        for body in self.slack.hooks:
            for item in [body, *(body.get("digest") or [])]:
                under.setdefault(int(item["alert_id"]), set()).add(str(body["_delivery"]))
                for ref in item.get("sources") or []:
                    carried.setdefault(ref["link"], set()).add(str(body["_delivery"]))
        link = self._links(rows)
        for r in rows:
            got = under.get(r.id or 0) or (
                carried.get(link[r.id or 0]) if r.kind != "new" else None
            )
            assert got, f"alert {r.id} ({r.kind}) never reached the receiver"
            if r.kind == "new":
                assert len(got) == 1, f"alert {r.id} delivered as {sorted(got)}"

    def _check_console(self, rows: list[AlertRow]) -> None:
        # a terminal keeps no record to reconcile with: an alert printed by a process
        # killed before it recorded the print is printed again (never lost); that is
        # the only way one may show twice
        # (a copy's line names its story under it: "(story: …)", not a print of it)
        lines = self.console.getvalue().splitlines()
        out = "\n".join(ln for ln in lines if not ln.strip().startswith("(story:"))
        twice = 0
        for r in rows:
            title = f"Item {self.titles[r.entry_id]} of story {r.story_id}"
            n = out.count(title + " ")
            if (r.last_error or "").startswith("shown in the parent"):
                # a copy queued before its story was printed: its outlet is listed there
                assert f"Copyist {self.titles[r.entry_id] - 1}" in out, f"copy {r.id} not shown"
                continue
            assert n >= 1, f"alert {r.id} never printed"
            assert n <= 2, f"alert {r.id} printed {n} times"
            twice += n - 1
        assert twice <= self.kills, f"{twice} alerts printed twice with {self.kills} kills"


def _shown(m: dict[str, Any]) -> str:
    return (m.get("text") or "") + "\n" + json.dumps(m.get("blocks") or [], ensure_ascii=False)


def _lines(m: dict[str, Any]) -> list[str]:
    return [json.dumps(b, ensure_ascii=False) for b in m.get("blocks") or []]


class WebhookModel(Model):
    SINK = "webhook"


class ConsoleModel(Model):
    SINK = "console"


def _settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, examples),
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )


CHECKED: Counter[str] = Counter()  # sequences whose invariants were checked, per sink
STEPS: Counter[str] = Counter()


def _run_model(model: type[Model], examples: int) -> None:
    CHECKED[model.SINK] = STEPS[model.SINK] = 0
    run_state_machine_as_test(model, settings=_settings(examples))
    print(f"model {model.SINK}: {CHECKED[model.SINK]} sequences checked, {STEPS[model.SINK]} steps")
    assert CHECKED[model.SINK] >= 1


def test_what_the_channel_shows_under_generated_sequences(world: World) -> None:
    _run_model(Model, EXAMPLES)


def test_webhook_sink_loses_and_doubles_nothing_under_generated_sequences(world: World) -> None:
    _run_model(WebhookModel, EXAMPLES // 3)


def test_console_sink_loses_and_doubles_nothing_under_generated_sequences(world: World) -> None:
    _run_model(ConsoleModel, EXAMPLES // 6)
