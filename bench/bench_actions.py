"""Issue 17: button-to-effect time of the desk's buttons over Slack Socket Mode.

Run by hand:  .venv/bin/python bench/bench_actions.py [--stories 40]

The local Slack Web API server (tests/fakeslack.py) and the local Socket Mode WebSocket
server (tests/fakesocket.py) run in their own process; Wirewatch's socket-mode client
(slack-sdk's aiohttp client, ``monitor.deliver.socket``, wired to
``monitor.scheduler.actions`` as the daemon wires it) connects to them over 127.0.0.1.
One feed carries ``--stories`` distinct stories, each matching its own watchlist term,
so that every click does its full work (a new mute, a first acknowledgement). Clicks go
one at a time, each after the previous one's effect:

* *Mute story* / *Mute term 24h*: envelope sent by the server → the ``mutes`` row
  committed (``apply_action`` returned);
* *Acknowledge*: envelope sent → the card's ``chat.update`` received by the Slack stand-in.

Times are wall-clock (``time.time()``) across the two processes of one machine. Floors
measured in the same run: the envelope's ack round trip (sent → ack back, the least a
click can take), and the real notifier's ``chat.update`` from call to arrival at the
stand-in (the Acknowledge floor is the two added).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from common import machine, percentile, table

CHANNEL = "#desk"
SUBJECTS = ["Senate", "Regulator", "Central bank", "Court", "Union", "Ministry", "Airline"]
VERBS = ["approves", "blocks", "delays", "questions", "backs", "rejects", "reviews"]
OBJECTS = ["merger", "budget", "tariffs", "pipeline", "strike deal", "vaccine plan", "fleet"]


# --------------------------------------------------------------------------- fakes


def _fakes_process(conn: Connection) -> None:
    from tests.fakeslack import FakeSlack
    from tests.fakesocket import FakeSocketMode

    with FakeSlack() as slack, FakeSocketMode() as sock:
        slack.socket_url = sock.url
        conn.send((slack.base_url, slack.token, slack.app_token))
        while True:
            cmd, arg = conn.recv()
            if cmd == "cards":
                cards = [m for m in slack.view(CHANNEL) if not m["thread_ts"]]
                conn.send([{k: m[k] for k in ("channel", "channel_id", "ts", "text", "blocks")}
                           for m in cards])  # fmt: skip
            elif cmd == "connected":
                sock.wait_connected(10)
                conn.send(True)
            elif cmd == "click":
                card, action, term = arg
                conn.send(sock.click(card, action, term=term))
            elif cmd == "sent":  # (wall-clock send time, ack round trip)
                rtt = sock.wait_ack(arg)
                conn.send((sock.sent_wall[arg], rtt))
            elif cmd in ("updated", "update_times"):  # when chat.updates of this ts arrived
                times = [
                    c["time"]
                    for c in slack.calls
                    if c["method"] == "chat.update" and c["payload"].get("ts") == arg
                ]
                if cmd == "update_times":
                    conn.send(times)
                else:
                    conn.send(min(times) if times else None)
            else:
                conn.send(None)
                return


class Fakes:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_fakes_process, args=(child,), daemon=True)
        self.proc.start()
        self.base_url, self.token, self.app_token = self.conn.recv()

    def ask(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        return self.conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self.proc.join(5)


# --------------------------------------------------------------------------- run


def write_config(root: Path, url: str, stories: int) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    settings = {
        "database_url": f"sqlite:///{root / 'data' / 'wirewatch.db'}",
        "log_level": "WARNING",
        "delivery": {"per_channel_interval": "0s", "burst_max": 1_000_000},
    }
    feeds = [{"name": "wire", "source": "Wire", "url": url}]
    watchlists = [{"name": "desk", "channel": CHANNEL, "terms": [tag(i) for i in range(stories)]}]
    (cfg / "settings.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    (cfg / "feeds.yaml").write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    (cfg / "watchlists.yaml").write_text(yaml.safe_dump({"watchlists": watchlists}), "utf-8")
    return cfg


def tag(i: int) -> str:
    return f"Project{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}x"


def items(stories: int) -> list[dict[str, str]]:
    out = []
    now = datetime.now(UTC)
    for i in range(stories):
        s, v, o = SUBJECTS[i % 7], VERBS[i // 7 % 7], OBJECTS[(i * 3 + i // 49) % 7]
        title = f"{s} {v} {o} {tag(i)} after {i + 2} hours of talks in {1990 + i}"
        out.append(
            {
                "title": title,
                "link": f"https://wire.example/{i}",
                "guid": f"wire-{i}",
                "description": f"Item {i}: {title}. More on {tag(i)} follows.",
                "pubDate": format_datetime(now - timedelta(minutes=i)),
            }
        )
    return out


async def update_floor(fakes: Fakes, n: int = 40) -> float:
    """Median time from the real notifier's ``chat.update`` call to its arrival at the
    Slack stand-in (what the Acknowledge figure measures up to), on one card."""
    from monitor.deliver.slack import SlackBotNotifier
    from monitor.models import AlertMessage

    notifier = SlackBotNotifier(fakes.token, default_channel="#floor", base_url=fakes.base_url)
    msg = AlertMessage(
        alert_id=1, story_id=1, watchlist="floor", channel="#floor", severity="info",
        title="Floor story", link="https://outlet.example/floor", source="Bench Outlet",
        published=None, summary="A realistic summary sentence. " * 4,
        matched_terms=("floor",), actions=True,
    )  # fmt: skip
    times = []
    try:
        sent = await notifier.send(msg)
        assert sent.ok and sent.ts, sent
        for _ in range(n):
            t = time.time()
            result = await notifier.update(msg, sent.ts)
            assert result.ok, result
            times.append(fakes.ask("update_times", sent.ts)[-1] - t)
    finally:
        await notifier.aclose()
    return percentile(times, 50)


async def run(fakes: Fakes, root: Path, stories: int) -> dict[str, list[float]]:
    from monitor.config import load_config
    from monitor.deliver.socket import SlackSocket
    from monitor.models import DeskAction
    from monitor.outbox import deliver_pending
    from monitor.pipeline import poll_cycle
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import startup
    from monitor.scheduler.actions import apply_action
    from tests.feedserver import FeedServer, rss

    out: dict[str, list[float]] = {"mute_story": [], "mute_term": [], "ack": [], "rtt": []}
    with FeedServer() as server:
        server.set("/wire.xml", rss("Wire", items(stories)))
        cfg = load_config(
            write_config(root, server.url("/wire.xml"), stories),
            env={
                "SLACK_BOT_TOKEN": fakes.token,
                "SLACK_APP_TOKEN": fakes.app_token,
                "SLACK_API_URL": fakes.base_url,
            },
        )
        async with open_runtime(cfg) as rt:
            await startup(rt)
            await poll_cycle(rt, all_feeds=True)
            await deliver_pending(rt)
            cards = fakes.ask("cards")
            if len(cards) < stories // 2:
                raise SystemExit(f"only {len(cards)} cards for {stories} stories")
            done: dict[tuple[str, int | None], float] = {}
            landed = asyncio.Event()

            async def on_action(action: DeskAction) -> None:
                await apply_action(rt, action)
                done[(str(action.kind), action.alert_id)] = time.time()
                landed.set()

            sock = SlackSocket(
                cfg.settings.slack.app_token or "", on_action, base_url=fakes.base_url
            )
            await sock.start()
            try:
                await asyncio.to_thread(fakes.ask, "connected")
                for card in cards:
                    alert = _alert(card)
                    for action in ("mute_story", "mute_term"):
                        landed.clear()
                        eid = fakes.ask("click", (card, action, None))
                        await asyncio.wait_for(landed.wait(), 10)
                        sent, rtt = fakes.ask("sent", eid)
                        out[action].append(done[(action, alert)] - sent)
                        out["rtt"].append(rtt)
                    eid = fakes.ask("click", (card, "ack", None))
                    deadline = time.time() + 10
                    updated = None
                    while updated is None and time.time() < deadline:
                        updated = fakes.ask("updated", card["ts"])
                        if updated is None:
                            await asyncio.sleep(0.001)
                    if updated is None:
                        raise SystemExit(f"card {card['ts']}: not updated within 10 s")
                    sent, rtt = fakes.ask("sent", eid)
                    out["ack"].append(updated - sent)
                    out["rtt"].append(rtt)
                    await asyncio.sleep(0.05)  # (the re-render's bookkeeping settles)
            finally:
                await sock.aclose()
    return out


def _alert(card: dict[str, Any]) -> int:
    import json

    for block in card["blocks"]:
        if block["type"] == "actions":
            return int(json.loads(block["elements"][0]["value"])["alert"])
    raise SystemExit("a card without buttons")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stories", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    fakes = Fakes()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = asyncio.run(update_floor(fakes))
            result = asyncio.run(run(fakes, Path(tmp), args.stories))
    finally:
        fakes.stop()
    rtt = percentile(result["rtt"], 50)
    rows = []
    for label, key, floor_s in (
        ("Mute story: sent → mute committed", "mute_story", rtt),
        ("Mute term 24h: sent → mute committed", "mute_term", rtt),
        ("Acknowledge: sent → card's chat.update", "ack", rtt + base),
    ):
        values = [v * 1000 for v in result[key]]
        p50, p99 = percentile(values, 50), percentile(values, 99)
        rows.append((label, len(values), p50, p99, max(values), f"{p50 / (floor_s * 1000):.1f}x"))
    print(f"machine: {machine()}")
    print(
        f"floors: envelope sent → ack back, median {rtt * 1000:.2f} ms; "
        f"chat.update call → arrival, median {base * 1000:.2f} ms"
    )
    print(table(["button-to-effect (ms)", "clicks", "p50", "p99", "max", "p50 / floor"], rows))


if __name__ == "__main__":
    main()
