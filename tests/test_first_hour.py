"""A newcomer's first hour and an operator's first crash (issue 14): the paths beside the
basic flow, each through the `wirewatch` command as a user runs it (real subprocesses,
the local feed server, the local Slack stand-in)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer, drip_handler, rss
from tests.util import pubdate, seed_feeds, serve_seed, wirewatch, write_config

ROOT = Path(__file__).resolve().parents[1]


def _slack_env(slack: FakeSlack, **more: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.base_url, **more}


def _dead_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/api/"


# --------------------------------------------------------------------------- crash and restart


def _live_in_group(pgid: int) -> list[str]:
    """Processes of a process group still running (zombies are not)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(stat.parent.name)
    return live


@contextlib.contextmanager
def _once_in_flight(tmp_path: Path, server: FeedServer) -> Iterator[subprocess.Popen[str]]:
    """A `wirewatch once` caught mid-cycle: its parse workers up (the seed feeds parsed)
    and a slow feed still downloading, so its lease is held. In its own process group,
    killed with whatever is left of the group at the end."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc to watch child processes")
    feeds = serve_seed(server)
    server.set("/slow.xml", handler=drip_handler(b"<rss>" + b" " * 200, 0.5))
    feeds.append({"name": "slow", "url": server.url("/slow.xml")})
    cfg = write_config(tmp_path, feeds=feeds)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "once", "--config", str(cfg)],
        env=full,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        db = tmp_path / "data" / "wirewatch.db"
        while time.monotonic() < deadline:
            if server.hits("/slow.xml") and db.exists():
                with contextlib.suppress(sqlite3.Error), sqlite3.connect(db) as conn:
                    stored = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
                    if stored:
                        break
            time.sleep(0.1)
        else:
            pytest.fail("the once never got to storing entries")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_once_stopped_by_sigterm_cleans_up_and_says_so(tmp_path: Path) -> None:
    """cron's `timeout` sends SIGTERM: once stops through its clean-up (leases released,
    workers shut down), says what happened and exits 143; the next run polls everything."""
    with FeedServer() as server, _once_in_flight(tmp_path, server) as proc:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "stopped by SIGTERM" in err and "Traceback" not in err
        deadline = time.monotonic() + 5
        while _live_in_group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live_in_group(proc.pid) == [], "processes left running after once"
        server.set("/slow.xml", rss("slow", [{"title": "x", "guid": "x"}]))
        res = wirewatch("once", "--config", str(tmp_path / "config"))
    assert res.returncode == 0, res.stderr
    assert "polled 3 feeds (0 failed)" in res.stderr


def test_the_workers_of_a_killed_once_end_with_it(tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, `timeout -k`) runs no clean-up at all: the parse workers
    and the forkserver must still not outlive the process."""
    with FeedServer() as server, _once_in_flight(tmp_path, server) as proc:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "once had no child processes to check"
        proc.kill()
        deadline = time.monotonic() + 10
        while _live_in_group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _live_in_group(proc.pid) == [], "workers left running after a killed once"


def test_a_killed_once_leaves_no_lease_behind_on_sqlite(tmp_path: Path) -> None:
    """The file lock proves a SQLite file's last user is dead: its leases are taken over
    at start (the next once used to poll 0 feeds for 5 minutes, silently)."""
    with FeedServer() as server:
        with _once_in_flight(tmp_path, server) as proc:
            proc.kill()
        server.set("/slow.xml", rss("slow", [{"title": "x", "guid": "x"}]))
        res = wirewatch("once", "--config", str(tmp_path / "config"))
    assert res.returncode == 0, res.stderr
    assert "polled 3 feeds (0 failed)" in res.stderr
    assert re.search(r"took over \d+ feed leases? left by \S+:\d+, which ended", res.stderr)


def test_postgres_leases_held_by_another_node_are_named(tmp_path: Path, pg_url: str) -> None:
    """Sharing PostgreSQL, a process cannot tell a dead owner from a busy one: `feeds`
    and the start-up say whose leases they are and until when."""
    import asyncpg

    with FeedServer() as server:
        cfg = write_config(tmp_path, feeds=serve_seed(server), settings={"database_url": pg_url})
        # (a read-only command makes no tables in an empty server database either)
        res = wirewatch("feeds", "--config", str(cfg))
        assert res.returncode == 1 and "error: no Wirewatch database at " in res.stderr
        assert wirewatch("once", "--config", str(cfg)).returncode == 0
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)

        async def lease() -> None:
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute(
                    "UPDATE feeds SET lease_owner = 'node7:4242', lease_until = $1, "
                    "next_due = now() - interval '1 minute'",
                    until,
                )
            finally:
                await conn.close()

        asyncio.run(lease())
        table = wirewatch("feeds", "--config", str(cfg))
        again = wirewatch("once", "--config", str(cfg))
    assert table.returncode == 0, table.stderr
    note = f"2 feeds leased by node7:4242 until {until:%Y-%m-%d %H:%M:%S}Z"
    assert note in table.stdout
    assert again.returncode == 0 and note in again.stderr, again.stderr
    assert "polled 0 feeds" in again.stderr


def test_an_in_memory_sqlite_database_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    for url in ("sqlite://", "sqlite:///:memory:"):
        res = wirewatch("once", "--config", str(cfg), env={"WIREWATCH_DATABASE_URL": url})
        assert res.returncode == 2, res.stderr
        assert "WIREWATCH_DATABASE_URL: " in res.stderr
        assert "in-memory SQLite database" in res.stderr and "every run" in res.stderr


# --------------------------------------------------------------------------- one database


def test_a_relative_sqlite_path_is_relative_to_the_config_directory(tmp_path: Path) -> None:
    with FeedServer() as server:
        cfg = write_config(
            tmp_path / "srv", feeds=serve_seed(server), settings={"database_url": "sqlite:///ww.db"}
        )
        here = tmp_path / "elsewhere"
        here.mkdir()
        assert wirewatch("once", "--config", str(cfg), cwd=here).returncode == 0
        assert (cfg / "ww.db").exists() and not (here / "ww.db").exists()
        other = tmp_path / "another"
        other.mkdir()
        res = wirewatch("feeds", "--config", str(cfg), cwd=other)
    assert res.returncode == 0, res.stderr
    states = {ln.split()[0]: ln.split()[1] for ln in res.stdout.splitlines()[1:]}
    assert states == {"aljazeera": "ok", "cna": "ok"}
    assert not (other / "ww.db").exists()
    # an install from before, whose database lies where the old rule (the current
    # directory) put it: not a new empty database that alerts everything again
    old = tmp_path / "old"
    cfg = write_config(old, feeds=[], settings={"database_url": "sqlite:///data/ww.db"})
    (old / "data").mkdir()
    sqlite3.connect(old / "data" / "ww.db").close()
    res = wirewatch("once", "--config", str(cfg), cwd=old)
    assert res.returncode == 1
    assert res.stderr.startswith(
        f"error: no database at {cfg / 'data' / 'ww.db'}, but one at {old / 'data' / 'ww.db'}: "
        "a relative SQLite path is now relative to the config directory"
    ), res.stderr
    assert not (cfg / "data").exists()


def test_read_only_commands_never_create_a_database(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    db = tmp_path / "data" / "wirewatch.db"
    for args in (
        ["feeds"],
        ["outbox"],
        ["outbox", "retry", "3"],
        ["replay", "--since", "7d"],
        ["explain", "--entry", "1"],
    ):
        res = wirewatch(*args, "--config", str(cfg))
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert res.stderr.startswith(f"error: no database at {db} "), (args, res.stderr)
        assert not db.exists() and not db.parent.exists(), args
    # --database names another one (a relative path: from where the command runs)
    res = wirewatch("feeds", "--config", str(cfg), "--database", "sqlite:///x.db", cwd=tmp_path)
    assert res.returncode == 1 and f"no database at {tmp_path / 'x.db'} " in res.stderr


def test_an_unwritable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}],
        settings={"database_url": f"sqlite:///{blocker / 'wirewatch.db'}"},
    )
    res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 1
    assert res.stderr == (
        f"error: cannot use the database {blocker / 'wirewatch.db'}: {blocker} is a file, "
        "not a directory\n"
    )
    # a database file that cannot be written (as `chattr +i` makes it even for root)
    cfg = write_config(tmp_path / "ro", feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    assert wirewatch("once", "--config", str(cfg)).returncode == 0
    db = tmp_path / "ro" / "data" / "wirewatch.db"
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here to make a file read-only for root")
    try:
        res = wirewatch("once", "--config", str(cfg))
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert res.returncode == 1
    assert res.stderr == f"error: cannot write the database {db}: Operation not permitted\n"


# --------------------------------------------------------------------------- delivery set-up


def test_the_default_channel_is_the_readmes_and_check_warns_about_it(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'channel: "#news-alerts"' in readme
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        res = wirewatch("check", "--config", str(cfg), env=_slack_env(slack))
        assert res.returncode == 0, res.stderr
        assert (
            "warning: watchlist korea name no channel and neither SLACK_CHANNEL nor "
            "slack.channel in the settings is set: their Slack alerts go to the default "
            "#news-alerts\n"
        ) in res.stderr
        res = wirewatch("check", "--config", str(cfg), env=_slack_env(slack, SLACK_CHANNEL="#desk"))
        assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
        res = wirewatch("once", "--config", str(cfg), env=_slack_env(slack))
        assert res.returncode == 0, res.stderr
        assert [m["channel"] for m in slack.messages] == ["#news-alerts"]


def test_a_token_slack_rejects_stops_once_and_run_with_alerts_kept(tmp_path: Path) -> None:
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(tmp_path, feeds=serve_seed(server), settings={"poll": {"tick": "1s"}})
        # alerts queued while Slack was away ...
        down = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": _dead_url()}
        wirewatch("once", "--config", str(cfg), "--deliver-timeout", "0", env=down)
        wrong = {"SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_API_URL": slack.base_url}
        message = "Slack rejected the token (invalid_auth): check SLACK_BOT_TOKEN"
        started = time.monotonic()
        res = wirewatch("once", "--config", str(cfg), env=wrong)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert time.monotonic() - started < 20  # (not one failing post a second)
        run = wirewatch("run", "--config", str(cfg), env=wrong, timeout=60)
        assert run.returncode == 2 and message in run.stderr, run.stderr
        # ... are still queued, not failed: the right token sends them
        listing = wirewatch("outbox", "--config", str(cfg))
        assert re.search(r"^\s+\d+ pending ", listing.stdout, re.M), listing.stdout
        assert not re.search(r"^\s+\d+ failed ", listing.stdout, re.M), listing.stdout
        assert slack.messages == []
        res = wirewatch("once", "--config", str(cfg), env=_slack_env(slack))
        assert res.returncode == 0, res.stderr
        assert len(slack.messages) == 1


def test_once_fails_when_alerts_are_queued_and_none_delivered(tmp_path: Path) -> None:
    with FeedServer() as server:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        down = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": _dead_url()}
        res = wirewatch("once", "--config", str(cfg), "--deliver-timeout", "0", env=down)
        assert res.returncode == 1, res.stderr
        assert res.stderr.endswith("error: no alert could be delivered; they stay queued\n")
        # nothing new and nothing queued for it: a quiet run is a good run
        res = wirewatch("once", "--config", str(cfg))
        assert res.returncode == 0, res.stderr


def test_the_console_is_neither_paced_nor_digested(tmp_path: Path) -> None:
    items = [
        {
            "title": f"Kim Jong Un inspects factory number {n} in {city}",
            "guid": f"g{n}",
            "link": f"https://example.org/{n}",
            "pubDate": pubdate(1),
        }
        for n, city in enumerate(["Wonsan", "Hamhung", "Chongjin", "Sinuiju", "Kaesong"])
    ]
    with FeedServer() as server:
        server.set("/kim.xml", rss("Desk", items))
        cfg = write_config(
            tmp_path,
            feeds=[{"name": "desk", "url": server.url("/kim.xml")}],
            # Slack's pacing and digests, as configured: not for a terminal
            settings={"delivery": {"per_channel_interval": "10s", "burst_max": 2}},
        )
        started = time.monotonic()
        res = wirewatch("once", "--config", str(cfg))
        took = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    assert "Digest" not in res.stdout
    assert res.stdout.count("watchlist: korea") == 5
    assert took < 30, f"five console alerts took {took:.0f} s"  # paced: 40 s or more


def test_a_console_digest_names_the_matched_terms() -> None:
    from monitor.deliver.console import render_console
    from monitor.models import AlertMessage

    def alert(n: int) -> AlertMessage:
        return AlertMessage(
            alert_id=n,
            story_id=n,
            watchlist="korea",
            channel="",
            severity="info",
            title=f"Story {n}",
            link=f"https://example.org/{n}",
            source="Desk",
            published=None,
            summary="",
            matched_terms=("Kim Jong Un",),
            matched_words=("Kim Jong-un",),
        )

    digest = alert(1)
    digest.digest = [alert(1), alert(2)]
    assert render_console(digest).count("korea: Kim Jong Un |") == 2


def test_outbox_retry_says_where_the_alert_goes(tmp_path: Path) -> None:
    """From a shell without the daemon's environment: the alert keeps its channel, and
    the command says so in words."""
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        slack.channel_error("#alerts", "not_in_channel")
        res = wirewatch(
            "once", "--config", str(cfg), env=_slack_env(slack, SLACK_CHANNEL="#alerts")
        )
        assert "not_in_channel" in res.stderr
        with sqlite3.connect(tmp_path / "data" / "wirewatch.db") as conn:
            (alert_id,) = conn.execute(
                "SELECT id FROM alerts WHERE state = 'failed' AND kind = 'new'"
            ).fetchone()
        res = wirewatch("outbox", "retry", str(alert_id), "--config", str(cfg))
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"re-queued alert {alert_id} for #alerts; "), res.stdout
        listing = wirewatch("outbox", "--config", str(cfg)).stdout
        assert re.search(rf"^\s+{alert_id} pending .* slack\s+#alerts\s", listing, re.M), listing


# --------------------------------------------------------------------------- say why


def test_a_first_once_on_a_backlog_says_why_nothing_alerted(tmp_path: Path) -> None:
    with FeedServer() as server:
        for path, body in seed_feeds(hours_ago=48).items():
            server.set(path, body)
        feeds = [{"name": p.strip("/.xml"), "url": server.url(p)} for p in seed_feeds()]
        cfg = write_config(tmp_path, feeds=feeds)
        res = wirewatch("once", "--config", str(cfg), "--dry-run")
        assert res.returncode == 0, res.stderr
        assert (
            "2 matching entries were older than max_age 24h and not alerted "
            "(`--max-age none` to include them)\n"
        ) in res.stderr
        res = wirewatch("once", "--config", str(cfg), "--dry-run", "--max-age", "none")
        assert res.returncode == 0 and "watchlist: korea" in res.stdout
        assert "older than max_age" not in res.stderr
    # the quick start leads with that: the first thing a user sees is a watchlist working
    readme = (ROOT / "README.md").read_text()
    run = re.search(r"## The two commands.*?```sh\n(.*?)```", readme, re.S)
    assert run is not None
    command = run.group(1)
    assert command.index("wirewatch once --dry-run --max-age none") < command.index("wirewatch run")


def test_start_line_delivery_counts_and_log_times_with_zone(tmp_path: Path) -> None:
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(
            tmp_path,
            feeds=serve_seed(server),
            watchlists=[
                {"name": "korea", "terms": ["Kim Jong Un"]},
                {"name": "libya", "terms": ["Libya"], "channel": "#africa"},
            ],
            settings={"poll": {"tick": "1s"}},
        )
        env = _slack_env(slack, SLACK_CHANNEL="#alerts")
        db = tmp_path / "data" / "wirewatch.db"
        res = wirewatch("once", "--config", str(cfg), "--dry-run", env=env)
        dry = r"alerts → console; db sqlite:///\S+ \(a dry run, on a copy\)\n"
        assert re.match(dry, res.stderr), res.stderr
        beat = tmp_path / "alive"
        full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "WIREWATCH_"))}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor",
                "run",
                "--config",
                str(cfg),
                "--heartbeat",
                str(beat),
            ],
            env={**full, **env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            slack.wait_for(2, timeout=30)
            time.sleep(2)
            assert time.time() - beat.stat().st_mtime < 5  # (what the Docker HEALTHCHECK reads)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"alerts → slack #africa, #alerts; db sqlite:///{db}\n" in err
    assert re.search(r"delivered [23] alerts \([01] listed in their story's first alert\)", err)
    first = err.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d INFO ", first), first


def test_check_warns_about_what_is_valid_but_not_meant(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "fast", "url": "https://a.example/x", "interval": "10s"}],
        watchlists="watchlists: []\n",
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert f"warning: {cfg / 'watchlists.yaml'}: no watchlists: nothing will alert" in res.stderr
    assert (
        f"warning: {cfg / 'feeds.yaml'}: feed 'fast': interval 10s is under poll.min_interval "
        "1m: a pinned interval is kept, so it is polled every 10s (is that meant?)"
    ) in res.stderr
    (cfg / "feeds.yaml").write_text("feeds: []\n")
    res = wirewatch("check", "--config", str(cfg))
    assert f"warning: {cfg / 'feeds.yaml'}: no feeds: nothing will be polled" in res.stderr


def test_explain_hits_once_and_entry_ids_can_be_found(tmp_path: Path) -> None:
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(tmp_path, feeds=serve_seed(server)[:1])
        res = wirewatch(
            "explain", "--config", str(cfg), "--text", "Kim Jong Un fires a ballistic missile"
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout == (
            "korea: MATCH (terms: Kim Jong Un, ballistic missile)\n"
            '  + terms[0] "Kim Jong Un": found "Kim Jong Un" in title at words 1–3\n'
            '  + terms[1] "ballistic missile": found "ballistic missile" in title at words '
            "6–7\n"
        )
        alert = wirewatch("once", "--config", str(cfg))
        entry = re.search(r"^  entry:     (\d+)$", alert.stdout, re.M)
        assert entry is not None, alert.stdout
        title = (
            "Kim Jong Un vows closer North Korea-Russia ties after meeting Putin at space facility"
        )
        res = wirewatch("explain", "--config", str(cfg), "--text", title)
        assert res.stdout.startswith(
            f"stored with this title: entry {entry.group(1)} (cna) (wirewatch explain --entry ID)\n"
        ), res.stdout
        res = wirewatch("explain", "--config", str(cfg), "--entry", entry.group(1))
        assert res.stdout.startswith(f'entry {entry.group(1)}: "{title}" (feed cna, CNA)\n')
        # a Slack alert carries the entry id in its metadata
        cfg2 = write_config(tmp_path / "slack", feeds=serve_seed(server)[:1])
        wirewatch("once", "--config", str(cfg2), env=_slack_env(slack))
        payload = slack.messages[0]["metadata"]["event_payload"]
        assert payload["entry_id"] == int(entry.group(1))  # (the first entry of its database)


def test_yaml_errors_speak_the_users_language(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "https://a.example/x"}])
    wl = cfg / "watchlists.yaml"
    wl.write_text("watchlists:\n  - name: korea\n\tterms: [Kim]\n")
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    assert f"{wl}:3: tabs are not allowed in YAML (line 3): indent with spaces" in res.stderr
    wl.write_text("korea:\n  terms: [Kim Jong Un]\n")
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    assert f"{wl}:1: expected a top-level `watchlists:` list; found `korea:`" in res.stderr


def test_help_is_plain_and_loads_nothing_heavy() -> None:
    commands = [
        [],
        ["check"],
        ["run"],
        ["once"],
        ["cluster"],
        ["explain"],
        ["replay"],
        ["feeds"],
        ["feeds", "add"],
        ["feeds", "import"],
        ["feeds", "export"],
        ["outbox"],
        ["outbox", "retry"],
    ]
    for args in commands:
        res = wirewatch(*args, "--help")
        assert res.returncode == 0, (args, res.stderr)
        text = res.stdout
        assert not re.search(r"<(str|int|float|path|list|bool)\b|\{[A-Za-z_.\[\]]+\}", text), text
        body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("Usage:"))
        assert not re.search(r"\.\.\.$", body, re.M), text  # no summary cut off
    # what --help and check load: not the database, HTTP and Slack libraries
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, monitor.cli; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'sqlalchemy', 'alembic', 'aiohttp', 'slack_sdk', 'sqlmodel', 'feedparser', "
            "'pydantic', 'apscheduler'}))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


# --------------------------------------------------------------------------- content


def test_html_in_a_text_plain_field_is_read_as_html(tmp_path: Path) -> None:
    atom = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>Times</title><id>t</id>'
        "<updated>2026-01-01T00:00:00Z</updated>"
        "<entry><title>Kim Jong Un visits a factory</title><id>e1</id>"
        '<link href="https://example.org/e1"/>'
        f"<updated>{datetime.now(UTC) - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}</updated>"
        '<summary type="text">&lt;p&gt;The leader toured the plant.&lt;/p&gt;'
        "&lt;p&gt;More &lt;a href=&quot;https://example.org&quot;&gt;here&lt;/a&gt;.&lt;/p&gt;"
        "</summary></entry></feed>"
    )
    with FeedServer() as server:
        server.set("/times.xml", atom, headers={"Content-Type": "application/atom+xml"})
        cfg = write_config(tmp_path, feeds=[{"name": "times", "url": server.url("/times.xml")}])
        res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "  summary:   The leader toured the plant. More here.\n" in res.stdout, res.stdout
    # a plain-text field that only mentions a < b stays as written
    from monitor.parse import text_of

    assert text_of("a < b and c > d", {"type": "text/plain"}) == "a < b and c > d"


def test_silence_is_told_in_minutes_under_an_hour(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's hourly health check on a feed that publishes every 10 minutes and
    has been quiet for 4 hours ("every 0.0 h" said nothing)."""
    import logging

    from monitor.config import load_config
    from monitor.pipeline import poll_cycle
    from monitor.pipeline.runtime import open_runtime
    from monitor.scheduler import Daemon, startup

    with FeedServer() as server:
        items = [
            {"title": f"Item {i}", "guid": f"q{i}", "pubDate": pubdate(4 + i / 6)}
            for i in range(30)
        ]
        server.set("/quiet.xml", rss("quiet", items))
        cfg_dir = write_config(tmp_path, feeds=[{"name": "quiet", "url": server.url("/quiet.xml")}])

        async def main() -> list[str]:
            async with open_runtime(load_config(cfg_dir, env={}), notifiers={}) as rt:
                await startup(rt)
                await poll_cycle(rt, all_feeds=True)
                caplog.clear()
                await Daemon(rt)._health()
                return [r.getMessage() for r in caplog.records]

        with caplog.at_level(logging.INFO, logger="wirewatch.daemon"):
            messages = asyncio.run(main())
    assert messages == [
        "feed quiet: silent, no new item for 4.0 h (it usually publishes every 10 min)"
    ]


def test_a_timeout_without_a_message_gets_a_reason(tmp_path: Path) -> None:
    from monitor.deliver.slack import SlackBotNotifier
    from monitor.models import AlertMessage

    async def send(base_url: str) -> str | None:
        notifier = SlackBotNotifier(
            "xoxb-test-token", default_channel="#a", base_url=base_url, timeout=1
        )
        try:
            msg = AlertMessage(
                alert_id=1,
                story_id=1,
                watchlist="w",
                channel="#a",
                severity="info",
                title="t",
                link="https://example.org/",
                source="s",
                published=None,
                summary="",
                matched_terms=(),
                matched_words=(),
            )
            return (await notifier.send(msg)).error
        finally:
            await notifier.aclose()

    with FakeSlack() as slack:
        slack.hold_answers(3)
        error = asyncio.run(send(slack.base_url))
    assert error is not None
    assert error == "timeout: no answer from Slack in time", error


# --------------------------------------------------------------------------- deploy


def test_deploy_files_do_what_the_readme_says() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    assert "COPY config" not in dockerfile  # mounted, not baked in
    assert re.search(r"pip install .*-c deploy/constraints.txt", dockerfile)
    pins = (ROOT / "deploy" / "constraints.txt").read_text().split()
    for package in ("feedparser", "apscheduler", "sqlmodel", "rapidfuzz", "slack-sdk"):
        assert any(re.match(rf"{package}==\d", p, re.I) for p in pins), package
    unit = (ROOT / "deploy" / "wirewatch.service").read_text()
    assert re.search(r"^RestartPreventExitStatus=2$", unit, re.M)
    assert re.search(r"^StateDirectory=wirewatch$", unit, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "## Deploying" in readme
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    for needed in ("useradd", "/etc/wirewatch/env", "docker run", "StateDirectory"):
        assert needed in section, needed
    yaml.safe_load((ROOT / "config" / "settings.yaml").read_text())
