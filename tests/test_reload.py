"""Hot reload of watchlists while the daemon runs: a bad file is reported with file:line
and the last good config keeps working; a good file takes effect without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, rss
from tests.util import pubdate, write_config

ROOT = Path(__file__).resolve().parents[1]


def _wait(pred: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _item(i: int, title: str) -> dict[str, str]:
    return {
        "title": title,
        "link": f"https://x.example/{i}",
        "guid": f"x-{i}",
        "description": "",
        "pubDate": pubdate(),
    }


def test_reload_bad_then_good_watchlists_and_sighup(
    tmp_path: Path, feed_server: FeedServer, slack: FakeSlack
) -> None:
    items = [_item(1, "Kim Jong Un opens new hospital in Pyongyang")]
    feed_server.set("/x.xml", rss("X", items))
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "x", "url": feed_server.url("/x.xml"), "interval": "1s"}],
        watchlists=[{"name": "korea", "terms": ["Kim Jong Un"]}],
        settings={"poll": {"tick": "1s", "min_interval": "1s"}},
    )
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update({"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.base_url})
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            env=env,
            cwd=ROOT,
            stderr=err,
            start_new_session=True,
        )
    try:
        slack.wait_for(1, timeout=30)
        watch = cfg / "watchlists.yaml"
        watch.write_text("watchlists:\n  - name: russia\n    terms:\n      - regex: 'Pu(tin'\n")
        _wait(lambda: "reload failed" in log.read_text())
        text = log.read_text()
        assert f"{watch}:4" in text and "Pu(tin" in text
        # still running on the last good config: a new Kim story alerts
        items.append(_item(2, "Kim Jong Un inspects missile launch site in Sohae"))
        feed_server.set("/x.xml", rss("X", items))
        slack.wait_for(2, timeout=30)

        watch.write_text("watchlists:\n  - name: russia\n    terms: [Putin]\n")
        _wait(lambda: "configuration reloaded" in log.read_text())
        items.append(_item(3, "Putin hosts summit in Vladivostok"))
        items.append(_item(4, "Kim Jong Un visits fish farm in Sinpo"))
        feed_server.set("/x.xml", rss("X", items))
        slack.wait_for(3, timeout=30)
        time.sleep(2)
        titles = [m["text"] for m in slack.messages]
        assert len(titles) == 3, titles
        assert "Putin hosts summit" in titles[-1]

        before = log.read_text().count("configuration reloaded")
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: log.read_text().count("configuration reloaded") > before)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
