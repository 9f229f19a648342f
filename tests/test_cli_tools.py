"""Operator commands: explain, replay, feeds (health, add, export), outbox."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.pipeline import poll_cycle
from monitor.pipeline.runtime import open_runtime
from monitor.scheduler import Daemon, startup
from tests.feedserver import FeedServer, rss
from tests.util import pubdate, seed_feeds, wirewatch, write_config

ROOT = Path(__file__).resolve().parents[1]


def _polled(tmp_path: Path, server: FeedServer) -> Path:
    for path, body in seed_feeds().items():
        server.set(path, body)
    cfg = write_config(
        tmp_path,
        feeds=[
            {"name": "cna", "source": "CNA", "url": server.url("/cna.xml"), "tags": ["asia"]},
            {"name": "aj", "source": "Al Jazeera", "url": server.url("/aj.xml")},
        ],
    )
    res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    return cfg


def test_explain_text_match_and_non_match_json(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a"}])
    res = wirewatch(
        "explain", "--config", str(cfg), "--json", "--text", "KIM JONG-UN's missile test"
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["matched"] == ["korea"]
    res = wirewatch("explain", "--config", str(cfg), "--json", "--text", "Rasputin's kimchi")
    assert json.loads(res.stdout)["matched"] == []
    # what a regex found is quoted back: without the escape sequences it may hold
    wide = write_config(
        tmp_path / "wide",
        feeds=[{"name": "a", "url": "http://127.0.0.1:9/a"}],
        watchlists=[{"name": "k", "terms": [{"regex": "kim.{0,40}"}]}],
    )
    res = wirewatch("explain", "--config", str(wide), "--text", "Kim \x1b]0;PWN\x07\u202eyes")
    assert res.returncode == 0 and 'found "Kim yes"' in res.stdout, res.stdout
    res = wirewatch("explain", "--config", str(cfg), "--text", "Kim Jong Un meets Putin")
    assert res.returncode == 0 and "korea" in res.stdout and "Kim Jong Un" in res.stdout


def test_explain_stored_entry_and_feeds_health(tmp_path: Path, feed_server: FeedServer) -> None:
    cfg = _polled(tmp_path, feed_server)
    res = wirewatch("explain", "--config", str(cfg), "--json", "--entry", "1")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["matched"] == ["korea"]
    res = wirewatch("explain", "--config", str(cfg), "--entry", "999")
    assert res.returncode == 2 and "no entry" in res.stderr
    res = wirewatch("feeds", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines()[1:]}
    assert set(lines) == {"cna", "aj"} and " ok " in lines["cna"]


def test_replay_reports_difference_from_live_config(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    cfg = _polled(tmp_path, feed_server)
    candidate = tmp_path / "new.yaml"
    candidate.write_text(
        "watchlists:\n  - name: korea\n    terms: [Kim Jong Un]\n"
        "  - name: disasters\n    terms: [flood, floods]\n"
    )
    res = wirewatch(
        "replay", "--since", "7d", "--config", str(cfg), "--watchlists", str(candidate), "--json"
    )
    assert res.returncode == 0, res.stderr
    by = {w["watchlist"]: w for w in json.loads(res.stdout)["watchlists"]}
    assert by["korea"]["stories"] == 1 and by["korea"]["added"] == 0
    assert by["disasters"]["stories"] == 1 and by["disasters"]["added"] == 1
    assert "Libya" in by["disasters"]["added_samples"][0]
    res = wirewatch("replay", "--since", "7d", "--config", str(cfg), "--watchlists", str(candidate))
    assert "disasters: 1 stories would alert" in res.stdout


def test_feeds_add_discovers_from_html_and_export_roundtrips(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    for path, body in seed_feeds().items():
        feed_server.set(path, body)
    feed_server.set(
        "/home.html",
        '<html><head><link rel="alternate" type="application/rss+xml" href="/aj.xml">'
        "</head><body>hi</body></html>",
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    cfg = write_config(tmp_path, feeds=[{"name": "cna", "url": feed_server.url("/cna.xml")}])
    res = wirewatch(
        "feeds", "add", feed_server.url("/home.html"), "--tag", "world", "--config", str(cfg)
    )
    assert res.returncode == 0, res.stderr
    assert feed_server.url("/aj.xml") in res.stdout
    check = wirewatch("check", "--config", str(cfg))
    assert "2 feeds" in check.stdout
    res = wirewatch("feeds", "add", feed_server.url("/missing"), "--config", str(cfg))
    assert res.returncode == 1 and "404" in res.stderr

    opml = wirewatch("feeds", "export", "--config", str(cfg)).stdout
    path = tmp_path / "out.opml"
    path.write_text(opml)
    res = wirewatch("check", "--config", str(cfg), "--feeds", str(path))
    assert res.returncode == 0 and "2 feeds" in res.stdout, res.stderr


def test_feeds_add_tries_every_linked_feed_and_takes_an_empty_one(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """The page's first feed link is dead: the next one is tried. A valid feed without
    items yet is added (with a note); a `feeds: []` file gets a proper list."""
    feed_server.set(
        "/page.html",
        '<html><head><link rel="alternate" type="application/rss+xml" href="/old.xml">'
        '<link rel="alternate" type="application/atom+xml" href="/new.xml"></head></html>',
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    feed_server.set(
        "/new.xml",
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>Fresh Outlet</title>'
        "<id>urn:x</id><updated>2024-01-01T00:00:00Z</updated></feed>",
    )
    cfg = write_config(tmp_path, feeds=[])
    (cfg / "feeds.yaml").write_text("# my feeds\nfeeds: []\n", encoding="utf-8")
    res = wirewatch("feeds", "add", feed_server.url("/page.html"), "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert feed_server.url("/new.xml") in res.stdout and "0 entries" in res.stdout
    assert "no items yet" in res.stderr
    assert len(feed_server.hits("/old.xml")) == 1  # tried first, 404
    text = (cfg / "feeds.yaml").read_text(encoding="utf-8")
    assert text.startswith("# my feeds\nfeeds:\n")
    assert [(f.name, f.url) for f in load_config(cfg).feeds] == [
        ("fresh-outlet", feed_server.url("/new.xml"))
    ]
    res = wirewatch("feeds", "add", feed_server.url("/old.xml"), "--config", str(cfg))
    assert res.returncode == 1 and "404" in res.stderr


def test_feeds_export_then_import_gives_back_the_same_feeds(tmp_path: Path) -> None:
    feeds = [
        {
            "name": "bbc-world",
            "source": "BBC News",
            "url": "https://feeds.bbci.co.uk/news/world/rss.xml",
            "tags": ["world"],
        },
        {
            "name": "bbc-asia",
            "source": "BBC News",
            "url": "https://feeds.bbci.co.uk/news/world/asia/rss.xml",
            "tags": ["asia", "world"],
            "interval": "10m",
        },
        {"name": "reuters", "url": "https://example.com/reuters.xml", "enabled": False},
        {"name": 'q&a "<x>"', "source": "Q & A", "url": "https://example.com/x?a=1&b=2"},
    ]
    watchlists = [
        {"name": "bbc", "terms": ["Kim Jong Un"], "feeds": ["bbc-world", "reuters"]},
        {"name": "asia", "terms": ["Seoul"], "tags": ["asia"]},
    ]
    cfg = write_config(tmp_path, feeds=feeds, watchlists=watchlists)
    res = wirewatch("feeds", "export", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert 'text="BBC News"' in res.stdout and 'category="asia,world"' in res.stdout
    path = tmp_path / "out.opml"
    path.write_text(res.stdout, encoding="utf-8")

    original = load_config(cfg).feeds
    imported = load_config(cfg, feeds_file=path).feeds
    assert imported == original
    assert [(f.name, f.outlet, f.enabled, f.interval) for f in imported][:3] == [
        ("bbc-world", "BBC News", True, None),
        ("bbc-asia", "BBC News", True, 600.0),
        ("reuters", "reuters", False, None),
    ]
    res = wirewatch("check", "--config", str(cfg), "--feeds", str(path))
    assert res.returncode == 0, res.stderr
    assert "ok: 4 feeds (3 enabled), 2 watchlists" in res.stdout

    # `feeds import` writes them into another install's YAML, comments kept; a second
    # import adds nothing; a name already taken there gets a suffix
    other = write_config(tmp_path / "other", feeds=[], watchlists=[{"name": "w", "terms": ["x"]}])
    (other / "feeds.yaml").write_text(
        "# my own feeds\nfeeds:\n  - name: reuters\n    url: https://example.com/mine.xml\n"
    )
    res = wirewatch("feeds", "import", str(path), "--config", str(other))
    assert res.returncode == 0, res.stderr
    assert "imported 4 feeds" in res.stdout
    text = (other / "feeds.yaml").read_text(encoding="utf-8")
    assert text.startswith("# my own feeds\nfeeds:\n  - name: reuters\n")
    got = load_config(other).feeds
    assert got[0].url == "https://example.com/mine.xml"
    renamed = {"reuters": "reuters-2"}
    assert [f.model_copy(update={"name": renamed.get(f.name, f.name)}) for f in original] == got[1:]
    res = wirewatch("feeds", "import", str(path), "--config", str(other))
    assert res.returncode == 0 and "imported 0 feeds" in res.stdout
    assert "4 already configured" in res.stdout


def test_feeds_import_writes_where_the_feeds_are_read_from(tmp_path: Path) -> None:
    """Into feeds.yml when that is the config's feeds file (not a new feeds.yaml that
    would hide it), a bare list there too; refused when the feeds live in OPML; long
    intervals kept exactly."""
    cfg = write_config(tmp_path, feeds=[], watchlists=[{"name": "w", "terms": ["x"]}])
    (cfg / "feeds.yaml").unlink()
    (cfg / "feeds.yml").write_text("- name: mine\n  url: https://example.com/mine.xml\n")
    opml = tmp_path / "in.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="Weekly" xmlUrl="https://example.com/weekly.xml" interval="1209600"/>'
        "</body></opml>"
    )
    res = wirewatch("feeds", "import", str(opml), "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert not (cfg / "feeds.yaml").exists()
    assert [(f.name, f.interval) for f in load_config(cfg).feeds] == [
        ("mine", None),
        ("Weekly", 1209600.0),
    ]
    (cfg / "feeds.yml").unlink()
    (cfg / "feeds.opml").write_text(opml.read_text())
    res = wirewatch("feeds", "import", str(opml), "--config", str(cfg))
    assert res.returncode == 2 and "feeds.opml is not a YAML feeds file" in res.stderr


def _feeds_table(cfg: Path) -> dict[str, list[str]]:
    """`wirewatch feeds`: the health table's cells, by feed name."""
    res = wirewatch("feeds", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    return {ln.split()[0]: ln.split() for ln in res.stdout.splitlines()[1:]}


def _hourly(server: FeedServer, path: str, hours_ago: list[float]) -> str:
    items = [
        {"title": f"Item {h}", "guid": f"{path}-{h}", "pubDate": pubdate(h)} for h in hours_ago
    ]
    server.set(path, rss(path, items))
    return server.url(path)


def test_feeds_health_flags_a_feed_silent_for_five_usual_gaps(
    tmp_path: Path, feed_server: FeedServer, db_url: str
) -> None:
    """Silence is judged from the entries' dates: an hourly feed whose newest item is 7 h
    old is silent, 2 h old is not; three items are too few to judge; a daily feed's
    first-poll backlog counts per day over the days it was published. (On every storage
    backend: the history query uses window functions.)"""
    cfg = write_config(
        tmp_path,
        settings={"database_url": db_url},
        feeds=[
            {"name": "quiet", "url": _hourly(feed_server, "/quiet", [7 + i for i in range(10)])},
            {"name": "hourly", "url": _hourly(feed_server, "/hourly", [2 + i for i in range(10)])},
            {"name": "young", "url": _hourly(feed_server, "/young", [7, 8, 9])},
            {
                "name": "daily",
                "url": _hourly(feed_server, "/daily", [12 + 24 * i for i in range(20)]),
            },
        ],
    )
    res = wirewatch("once", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    rows = _feeds_table(cfg)
    assert {name: row[1] for name, row in rows.items()} == {
        "quiet": "silent",
        "hourly": "ok",
        "young": "ok",
        "daily": "ok",
    }
    assert rows["daily"][-1] == "1.0"  # 7 items dated in the last week, not 20 today


def test_feeds_table_shows_new_and_removed_feeds_and_writes_nothing(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """A feed added to the config since the last run is `new` (with its pinned interval),
    one taken out is `removed`; looking does not change what the daemon will do."""
    a = _hourly(feed_server, "/a", [1, 2, 3])
    b = _hourly(feed_server, "/b", [1, 2, 3])
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": a}, {"name": "b", "url": b}])
    assert wirewatch("once", "--config", str(cfg)).returncode == 0
    db = tmp_path / "data" / "wirewatch.db"
    edited = write_config(
        tmp_path / "edited",
        settings={"database_url": f"sqlite:///{db}"},
        feeds=[{"name": "b", "url": b}, {"name": "c", "url": b + "?c", "interval": "10m"}],
    )

    def stored() -> list[tuple[str, int]]:
        with sqlite3.connect(db) as conn:
            return list(conn.execute("SELECT name, enabled FROM feeds ORDER BY name"))

    before = stored()
    rows = _feeds_table(edited)
    assert {name: row[1] for name, row in rows.items()} == {
        "a": "removed",
        "b": "ok",
        "c": "new",
    }
    assert rows["c"][4] == "10m"
    assert stored() == before == [("a", 1), ("b", 1)]


def test_operator_mistakes_get_a_reason(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, feeds=[{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    assert wirewatch("once", "--config", str(cfg)).returncode == 0  # (makes the database)
    res = wirewatch("outbox", "retry", "999", "--config", str(cfg))
    assert res.returncode == 2 and "alert 999 not re-queued: there is no such alert" in res.stderr
    res = wirewatch("outbox", "retry", "1", "--failed", "--config", str(cfg))
    assert res.returncode == 2 and "either an alert ID or --failed, not both" in res.stderr
    res = wirewatch("outbox", "retry", "--config", str(cfg))
    assert res.returncode == 2 and "either an alert ID or --failed, one of them" in res.stderr
    res = wirewatch("once", "--log-level", "LOUD", "--config", str(cfg))
    assert res.returncode == 2 and "'LOUD' is not one of DEBUG, INFO" in res.stderr
    res = wirewatch("once", "--deliver-timeout", "-5", "--config", str(cfg))
    assert res.returncode == 2 and "deliver-timeout" in res.stderr


def test_the_daemon_logs_a_feed_going_silent_once_and_its_return(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's hourly health check: a warning the first time an hourly feed is found
    7 h silent, nothing the next hour, a note once it publishes again."""
    cfg_dir = write_config(
        tmp_path,
        feeds=[
            {"name": "quiet", "url": _hourly(feed_server, "/quiet", [7 + i for i in range(10)])},
            {"name": "hourly", "url": _hourly(feed_server, "/hourly", [2 + i for i in range(10)])},
        ],
    )

    async def main() -> list[str]:
        async with open_runtime(load_config(cfg_dir, env={}), notifiers={}) as rt:
            await startup(rt)
            daemon = Daemon(rt)
            await poll_cycle(rt, all_feeds=True)
            caplog.clear()
            await daemon._health()
            await daemon._health()  # an hour later: still silent, not reported again
            first = [r.getMessage() for r in caplog.records]
            _hourly(feed_server, "/quiet", [0.1, *(7 + i for i in range(10))])
            await poll_cycle(rt, all_feeds=True)
            caplog.clear()
            await daemon._health()
            return [*first, *(r.getMessage() for r in caplog.records)]

    with caplog.at_level(logging.INFO, logger="wirewatch.daemon"):
        messages = asyncio.run(main())
    assert messages == [
        "feed quiet: silent, no new item for 7.0 h (it usually publishes every 1.0 h)",
        "feed quiet: no longer silent",
    ]


def test_cluster_command_prints_id_tab_story(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    rows = [
        {
            "id": "a1",
            "title": "Magnitude 6.1 earthquake strikes off Japan's northeast coast",
            "source": "AFP",
            "published": "2026-01-02T10:00:00Z",
        },
        {
            "id": "a2",
            "title": "UPDATE 1-Magnitude 6.1 earthquake strikes off Japan's "
            "northeast coast - Reuters",
            "source": "Reuters",
        },
        {
            "id": "b1",
            "title": "Magnitude 7.1 earthquake strikes off Japan's northeast coast",
            "source": "NHK",
        },
        {"id": 7, "title": "Kim Jong Un meets Putin at space centre", "source": "CNA"},
        {"id": 8, "title": "Kim Jong Un meets Xi at space centre", "source": "CNA"},
    ]
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = wirewatch("cluster", str(items), "--config", str(tmp_path / "none"))
    assert res.returncode == 0, res.stderr
    out = [line.split("\t") for line in res.stdout.splitlines()]
    assert out == [["a1", "a1"], ["a2", "a1"], ["b1", "b1"], ["7", "7"], ["8", "8"]]
    items.write_text('{"id": 1, "title": "ok"}\n{not json\n')
    res = wirewatch("cluster", str(items), "--config", str(tmp_path / "none"))
    assert res.returncode == 2 and "line 2" in res.stderr
    # ids are printed without the escape sequences a hostile input file may carry
    hostile = {"id": "x\x1b]0;PWN\x07\u202ey", "title": "Kim Jong Un meets Putin"}
    items.write_text(json.dumps(hostile) + "\n", encoding="utf-8")
    res = wirewatch("cluster", str(items), "--config", str(tmp_path / "none"))
    assert res.returncode == 0 and res.stdout == "xy\txy\n", res.stdout
    # the story column is an id too (its first item's): cleaned the same, so a tab in an
    # id cannot add a column and both columns still join
    items.write_text(json.dumps({"id": "a\tb\x1b[31m", "title": "Kim meets Putin"}) + "\n")
    res = wirewatch("cluster", str(items), "--config", str(tmp_path / "none"))
    assert res.returncode == 0 and res.stdout == "a b\ta b\n", repr(res.stdout)
