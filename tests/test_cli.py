"""The `wirewatch` command as a user runs it: real subprocesses, real sockets."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakeslack import FakeSlack
from tests.feedserver import FeedServer
from tests.util import serve_seed, wirewatch, write_config

ROOT = Path(__file__).resolve().parents[1]


def test_check_ok_prints_summary(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "ok: 1 feeds" in res.stdout and "1 watchlists" in res.stdout and "2 terms" in res.stdout


def test_shipped_example_config_is_valid() -> None:
    res = wirewatch("check")
    assert res.returncode == 0, res.stderr
    assert "watchlists" in res.stdout


def test_check_reports_file_line_and_exits_2(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}],
        watchlists=(
            "watchlists:\n"
            "  - name: korea\n"
            "    terms:\n"
            "      - Kim Jong Un\n"
            "      - regex: 'missile(s'\n"
            "  - name: korea\n"
            "    terms: [Putin]\n"
        ),
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    wl = str(cfg / "watchlists.yaml")
    assert f"{wl}:5:" in res.stderr and "missile(s" in res.stderr
    # in the same pass: the duplicate name of the (valid) second watchlist
    assert f"{wl}:6:" in res.stderr and "duplicate watchlist name 'korea'" in res.stderr
    (cfg / "watchlists.yaml").write_text(
        "watchlists:\n  - name: korea\n    terms: [Kim]\n  - name: korea\n    terms: [Putin]\n"
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2 and f"{wl}:4:" in res.stderr and "duplicate" in res.stderr
    # invalid on their own, both: the duplicate names and the unknown feed are still
    # reported in the same pass; a feed that exists but is invalid is not "unknown"
    res = _check(
        cfg,
        feeds="feeds:\n  - name: broken\n    url: ftp://x\n  - name: broken\n    url: notaurl\n",
        watchlists="watchlists:\n"
        "  - name: korea\n    terms: ['']\n    feeds: [nosuch, broken]\n"
        "  - name: korea\n    terms: ['.*']\n",
    )
    fd = str(cfg / "feeds.yaml")
    assert f"{fd}:4: feeds.1.name: duplicate feed name 'broken' (first at line 2)" in res.stderr
    assert f"{wl}:4: watchlists.0.feeds.0: unknown feed 'nosuch'" in res.stderr
    assert f"{wl}:5: watchlists.1.name: duplicate watchlist name 'korea'" in res.stderr
    assert "unknown feed 'broken'" not in res.stderr
    # names and references are compared as the schema reads them: 2024 is the name
    # "2024", and " broken " names the feed broken
    res = _check(
        cfg,
        feeds="feeds:\n  - name: broken\n    url: https://x.example/\n",
        watchlists="watchlists:\n"
        "  - name: 2024\n    terms: [a]\n    feeds: [' broken ']\n"
        "  - name: '2024 '\n    terms: [b]\n",
    )
    assert f"{wl}:5: watchlists.1.name: duplicate watchlist name '2024'" in res.stderr
    assert "unknown feed" not in res.stderr and "Traceback" not in res.stderr


def _check(cfg: Path, *, feeds: str, watchlists: str) -> subprocess.CompletedProcess[str]:
    """``wirewatch check`` on these feeds and watchlists files, expected to fail (2)."""
    (cfg / "feeds.yaml").write_text(feeds)
    (cfg / "watchlists.yaml").write_text(watchlists)
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2, res.stdout
    return res


def test_check_reports_one_url_under_two_names(tmp_path: Path) -> None:
    """Fetched twice and counted as two outlets for min_sources: a config error."""
    cfg = write_config(tmp_path, feeds=[], watchlists=[{"name": "w", "terms": ["x"]}])
    (cfg / "feeds.yaml").write_text(
        "feeds:\n"
        "  - name: bbc\n    url: https://feeds.example/world.xml\n"
        "  - name: other\n    url: https://feeds.example/asia.xml\n"
        "  - name: bbc-again\n    url: https://feeds.example/world.xml\n"
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    assert f"{cfg / 'feeds.yaml'}:7:" in res.stderr
    assert "the same URL as feed 'bbc' (line 3)" in res.stderr
    # a tag with a comma would come back from OPML as two tags
    (cfg / "feeds.yaml").write_text(
        "feeds:\n  - name: bbc\n    url: https://feeds.example/world.xml\n    tags: ['a,b']\n"
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2 and "a tag cannot contain a comma: 'a,b'" in res.stderr
    # one bad feed does not make the watchlists' references to the good ones errors
    (cfg / "feeds.yaml").write_text(
        "feeds:\n  - name: good\n    url: https://a.example/x.xml\n    tags: [world]\n"
        "  - name: bad\n    url: https://a.example/y.xml\n    interval: soon\n"
    )
    (cfg / "watchlists.yaml").write_text(
        "watchlists:\n  - name: w\n    terms: [x]\n    feeds: [good]\n    tags: [world]\n"
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2 and "feeds.1.interval" in res.stderr
    assert "unknown feed" not in res.stderr and "no feed has tag" not in res.stderr


def test_an_unusable_database_url_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    res = wirewatch("check", "--config", str(cfg), env={"WIREWATCH_DATABASE_URL": "mysql://x/y"})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "WIREWATCH_DATABASE_URL: unsupported database 'mysql'" in res.stderr
    (cfg / "settings.yaml").write_text("database_url: nonsense\n")
    res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{cfg / 'settings.yaml'}: database_url: not a database URL: 'nonsense'" in res.stderr


def test_a_retention_shorter_than_what_dedupe_needs_is_refused(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}], settings={}
    )
    for value, ok in (("2d", False), ("8d", True), ("none", True)):
        (cfg / "settings.yaml").write_text(f"retention: {value}\n")
        res = wirewatch("check", "--config", str(cfg))
        assert (res.returncode == 0) is ok, res.stderr
        if not ok:
            assert "retention must be at least 8d" in res.stderr


def test_a_duration_error_only_suggests_none_where_none_is_allowed(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    (cfg / "settings.yaml").write_text("max_age: soon\npoll:\n  tick: none\n  lease: abc\n")
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    settings = cfg / "settings.yaml"
    assert (
        f"{settings}:1: max_age: not a duration: 'soon' (use e.g. 90s, 30m, 24h, 7d or none)"
        in (res.stderr)
    )
    assert (
        f"{settings}:3: poll.tick: 'none' is not allowed here: this setting needs a duration"
        in (res.stderr)
    )
    assert f"{settings}:4: poll.lease: not a duration: 'abc' (use e.g. 90s, 30m, 24h or 7d)" in (
        res.stderr
    )


def test_check_reports_yaml_syntax_error_with_line(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}],
        watchlists="watchlists:\n  - name: x\n    terms: [a, b\n  - name: y\n",
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    assert str(cfg / "watchlists.yaml") + ":" in res.stderr and "syntax" in res.stderr


def _check_opml(cfg: Path, outlines: str) -> subprocess.CompletedProcess[str]:
    """``wirewatch check --feeds`` on an OPML file holding ``outlines``."""
    opml = cfg.parent / "subs.opml"
    opml.write_text(f'<?xml version="1.0"?><opml version="2.0"><body>{outlines}</body></opml>')
    return wirewatch("check", "--config", str(cfg), "--feeds", str(opml))


def test_feeds_override_accepts_opml_and_url_list(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[])
    res = _check_opml(
        cfg,
        '<outline text="News">'
        '<outline text="BBC" xmlUrl="https://feeds.bbci.co.uk/news/world/rss.xml"/>'
        '<outline text="DW" xmlUrl="https://rss.dw.com/rdf/rss-en-world"/>'
        "</outline>",
    )
    assert res.returncode == 0, res.stderr
    assert "2 feeds" in res.stdout
    urls = tmp_path / "urls"
    urls.write_text('# newsboat\nhttps://a.example/rss "world"\nhttps://b.example/atom.xml\n')
    res = wirewatch("check", "--config", str(cfg), "--feeds", str(urls))
    assert res.returncode == 0 and "2 feeds" in res.stdout
    # a real newsboat file: its query and exec feeds are skipped, escaped quotes kept whole
    urls.write_text(
        '"query:Unread:unread = \\"yes\\"" "~All unread"\n'
        'https://a.example/rss "world" "~A \\"quoted\\" title"\n'
        "exec:~/bin/local-feed.sh\n"
        "https://b.example/atom.xml\n"
    )
    res = wirewatch("check", "--config", str(cfg), "--feeds", str(urls))
    assert res.returncode == 0 and "2 feeds" in res.stdout, res.stderr


def test_opml_name_attribute_wins_and_disabled_outlines_stay_disabled(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, feeds=[], watchlists=[{"name": "w", "terms": ["x"], "feeds": ["bbc"]}]
    )
    # the explicit name keeps "bbc"; the title-named outline steps aside
    res = _check_opml(
        cfg,
        '<outline text="bbc" xmlUrl="https://a.example/1"/>'
        '<outline text="BBC News" name="bbc" xmlUrl="https://a.example/2"/>'
        '<outline text="Old" isDisabled="true" xmlUrl="https://a.example/3"/>',
    )
    assert res.returncode == 0, res.stderr
    assert "3 feeds (2 enabled)" in res.stdout
    res = _check_opml(
        cfg,
        '<outline text="A" name="bbc" xmlUrl="https://a.example/1"/>'
        '<outline text="B" name="bbc" xmlUrl="https://a.example/2"/>',
    )
    assert res.returncode == 2 and "duplicate feed name 'bbc'" in res.stderr


def test_once_posts_to_slack_and_lists_failed_feeds(tmp_path: Path) -> None:
    with FeedServer() as server, FakeSlack() as slack:
        feeds = [*serve_seed(server), {"name": "dead", "url": server.url("/missing.xml")}]
        cfg = write_config(tmp_path, feeds=feeds)
        env = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_CHANNEL": "#desk",
            "SLACK_API_URL": slack.base_url,
        }
        res = wirewatch("once", "--config", str(cfg), env=env)
        assert res.returncode == 0, res.stderr
        assert "dead" in res.stderr and "404" in res.stderr
        assert len(slack.messages) == 1
        res = wirewatch("once", "--config", str(cfg), env=env)
        assert res.returncode == 0 and len(slack.messages) == 1


def test_once_without_slack_prints_alerts_to_console(tmp_path: Path) -> None:
    with FeedServer() as server:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        res = wirewatch("once", "--config", str(cfg))
        assert res.returncode == 0, res.stderr
        assert "Kim Jong Un" in res.stdout and "korea" in res.stdout
        # the second outlet's copy, fetched in the same cycle, is listed in the first
        # alert: it counts as delivered, not as an alert left behind
        assert res.stdout.count("watchlist: korea") == 1 and "↳" not in res.stdout
        assert res.stderr.endswith(
            "polled 2 feeds (0 failed): 4 new entries, 2 alerts queued, "
            "2 delivered (1 listed in their story's first alert)\n"
        )
        # dry run on an unchanged state: nothing new to print
        res = wirewatch("once", "--config", str(cfg), "--dry-run")
        assert res.returncode == 0 and "Kim Jong Un" not in res.stdout


def test_console_follow_up_names_its_story(tmp_path: Path) -> None:
    """A later outlet's copy of a story already alerted is one line under the story it
    belongs to (a terminal has no threads; the parent may have scrolled away)."""
    with FeedServer() as server:
        feeds = serve_seed(server)
        cfg = write_config(tmp_path, feeds=feeds[:1])
        res = wirewatch("once", "--config", str(cfg))
        assert res.returncode == 0 and "outlet:    CNA" in res.stdout, res.stderr
        cfg = write_config(tmp_path, feeds=feeds)
        res = wirewatch("once", "--config", str(cfg))
        assert res.returncode == 0, res.stderr
        assert res.stdout == (
            "  ↳ also reported by Al Jazeera: North Korea's Kim Jong-un vows closer ties with "
            "Russia after meeting Putin at space centre "
            "https://www.aljazeera.com/news/2023/9/13/kim-putin\n"
            "    (story: Kim Jong Un vows closer North Korea-Russia ties after meeting Putin "
            "at space facility)\n"
        )


def test_once_names_feeds_a_410_disabled(tmp_path: Path) -> None:
    """A feed switched off by a 410 is not silently missing from the next runs' count."""
    with FeedServer() as server:
        server.set("/gone.xml", "gone", status=410)
        feeds = [*serve_seed(server), {"name": "gone", "url": server.url("/gone.xml")}]
        cfg = write_config(tmp_path, feeds=feeds)
        assert wirewatch("once", "--config", str(cfg)).returncode == 0
        res = wirewatch("once", "--config", str(cfg))
        # taken out of the config, it is no longer reported
        cfg = write_config(tmp_path, feeds=feeds[:2])
        after = wirewatch("once", "--config", str(cfg))
    assert after.returncode == 0 and "gone" not in after.stderr, after.stderr
    assert "polled 2 feeds (0 failed): " in after.stderr
    assert res.returncode == 0, res.stderr
    assert re.search(
        r"^feed disabled: gone: 410 Gone at \S+ \S+Z \(a new url for it in the config "
        r"enables it again\)$",
        res.stderr,
        re.M,
    ), res.stderr
    assert "polled 2 feeds (0 failed, 1 disabled): " in res.stderr


def test_alerts_queued_for_a_sink_no_longer_configured_are_kept_and_named(
    tmp_path: Path,
) -> None:
    """Slack taken out of the environment with alerts still queued for it: they stay
    queued (not lost, not re-sent elsewhere), the start says so, and once does not sit
    out its delivery timeout waiting for a sink it does not have."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/api/"
    with FeedServer() as server:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        slack = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": dead}
        res = wirewatch("once", "--config", str(cfg), "--deliver-timeout", "0", env=slack)
        # (queued and none delivered: once says so and exits 1, for cron to notice)
        assert res.returncode == 1 and "some alerts still queued" in res.stderr, res.stderr
        started = time.monotonic()
        res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 20  # (the delivery timeout is 30 s)
    assert re.search(r"\d alerts? queued for slack, which is not configured now", res.stderr)
    listing = wirewatch("outbox", "--config", str(cfg)).stdout
    assert " pending " in listing and " slack " in listing


def test_once_dry_run_leaves_state_untouched(tmp_path: Path) -> None:
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.base_url}
        res = wirewatch("once", "--config", str(cfg), "--dry-run", env=env)
        assert res.returncode == 0, res.stderr
        assert "Kim Jong Un" in res.stdout and slack.messages == []
        res = wirewatch("once", "--config", str(cfg), env=env)
        assert len(slack.messages) == 1


def test_dry_run_on_a_server_database_says_it_starts_from_empty(tmp_path: Path) -> None:
    """A dry run copies only a SQLite file; on PostgreSQL it never touches the server and
    says that what it prints may include alerts already sent."""
    with FeedServer() as server:
        cfg = write_config(
            tmp_path,
            feeds=serve_seed(server),
            settings={"database_url": "postgresql://nobody@127.0.0.1:1/none"},
        )
        res = wirewatch("once", "--config", str(cfg), "--dry-run")
        assert res.returncode == 0, res.stderr
        assert "Kim Jong Un" in res.stdout
        assert "dry run: the state in this database is not copied" in res.stderr
        sqlite_cfg = write_config(tmp_path / "lite", feeds=serve_seed(server))
        res = wirewatch("once", "--config", str(sqlite_cfg), "--dry-run")
    assert res.returncode == 0 and "Kim Jong Un" in res.stdout
    assert "dry run:" not in res.stderr


def test_once_exits_nonzero_when_database_unreachable(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}],
        settings={"database_url": "postgresql://nobody@127.0.0.1:1/none"},
    )
    res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 1
    assert "database" in res.stderr.lower() or "cannot run" in res.stderr


def test_once_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "ftp://x"}])
    res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 2 and "feeds.yaml:" in res.stderr and "ftp://x" in res.stderr


def _start_daemon(cfg: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``wirewatch run`` in a child process, with ``env`` as its only SLACK_ variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_daemon_alerts_stops_cleanly_and_restart_sends_nothing(tmp_path: Path) -> None:
    with FeedServer() as server, FakeSlack() as slack:
        cfg = write_config(tmp_path, feeds=serve_seed(server), settings={"poll": {"tick": "1s"}})
        env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.base_url}

        def start() -> subprocess.Popen[str]:
            return _start_daemon(cfg, env)

        proc = start()
        try:
            slack.wait_for(1, timeout=30)
            # SQLite is for one process: a second daemon or a once on the same file is
            # refused, naming the daemon that holds it; a dry run (on a copy) still works
            for command in ("once", "run"):
                res = wirewatch(command, "--config", str(cfg), env=env)
                assert res.returncode == 1, res.stderr
                assert f"is in use by wirewatch run (pid {proc.pid}, since " in res.stderr
                assert "use PostgreSQL to run several" in res.stderr
            assert wirewatch("once", "--config", str(cfg), "--dry-run", env=env).returncode == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in err
        # one story: one top-level post (the second outlet, if it arrived after the
        # post went out, is a reply in its thread)
        assert len([m for m in slack.messages if not m.get("thread_ts")]) == 1
        sent = len(slack.messages)

        polls_before = len(server.hits("/cna.xml"))
        proc = start()
        try:
            time.sleep(4)  # several ticks
        finally:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "wirewatch running" in err
        # due times survive the restart: the feeds are not polled again early ...
        assert len(server.hits("/cna.xml")) == polls_before
        # ... and nothing is sent twice
        assert len(slack.messages) == sent


def test_daemon_with_slack_down_keeps_alerts_and_says_so_when_stopped(tmp_path: Path) -> None:
    """Slack unreachable: the alerts stay queued, the log is one warning per attempt (not
    slack_sdk's own retry chatter), and stopping says how many are still queued."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/api/"
    with FeedServer() as server:
        cfg = write_config(tmp_path, feeds=serve_seed(server), settings={"poll": {"tick": "1s"}})
        proc = _start_daemon(cfg, {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": dead})
        try:
            deadline = time.monotonic() + 30
            while not (server.hits("/cna.xml") and server.hits("/aj.xml")):
                assert time.monotonic() < deadline, "the feeds were never polled"
                time.sleep(0.2)
            time.sleep(3)  # stored, and a delivery attempt or two
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "retry in" in err  # the outbox's own warning
    assert "retry handler" not in err.lower(), err
    assert re.search(r"\d+ alerts? not delivered yet: kept in the database", err), err


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _live_in_group(pgid: int) -> list[str]:
    """Processes of a process group that are still running (zombies waiting for init
    to reap them are not)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(stat.parent.name)
    return live


def test_a_stop_during_start_up_exits_cleanly_and_leaves_no_workers(tmp_path: Path) -> None:
    """SIGTERM while the daemon is still starting (its parse workers coming up): it stops
    as asked, exit 0, and no worker or forkserver is left running behind it."""
    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc to watch the daemon's child processes")
    with FeedServer() as server:
        cfg = write_config(tmp_path, feeds=serve_seed(server))
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
            env={k: v for k, v in os.environ.items() if not k.startswith("SLACK_")},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, to look for leftovers
        )
        try:
            deadline = time.monotonic() + 30
            while not _children(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _children(proc.pid), "the daemon never started its workers"
            proc.send_signal(signal.SIGTERM)  # the workers are starting up
            _out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            deadline = time.monotonic() + 5
            while _live_in_group(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _live_in_group(proc.pid) == [], "processes left running after the daemon"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def test_check_reports_unknown_feed_scope_with_line(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "bbc", "url": "http://127.0.0.1:9/a.xml", "tags": ["world"]}],
        watchlists="watchlists:\n  - name: k\n    terms: [Kim]\n    feeds: [bbc, cnn]\n"
        "    tags: [asia]\n",
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 2
    wl = str(cfg / "watchlists.yaml")
    assert f"{wl}:4:" in res.stderr and "'cnn'" in res.stderr
    assert f"{wl}:5:" in res.stderr and "'asia'" in res.stderr


def test_check_counts_all_and_not_clauses_as_terms(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}],
        watchlists=[{"name": "k", "terms": ["Kim", "Putin"], "all": ["summit"], "not": ["drill"]}],
    )
    res = wirewatch("check", "--config", str(cfg))
    assert res.returncode == 0 and "4 terms" in res.stdout, res.stdout + res.stderr
