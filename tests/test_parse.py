"""parse_feed / parse_in_pool / ParsePool / discover_feed_links."""

from __future__ import annotations

import asyncio
import codecs
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.discover import discover_feed_links
from monitor.fetch import FetchLimits, fetch, make_session
from monitor.models import Entry
from monitor.normalize import canonical_url
from monitor.parse import (
    ParsePool,
    ParseResult,
    body_digest,
    cap_field_lengths,
    entry_link,
    fast_date,
    install_speedups,
    parse_feed,
    parse_in_pool,
    remove_speedups,
)
from tests.feedserver import FeedServer, rss

FIXTURES = Path(__file__).parent / "fixtures"
URL = "https://news.example.com/feeds/world.xml"
RSS_HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}


def parse(body: bytes | str, headers: dict[str, str] | None = None, **kw: Any) -> ParseResult:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return parse_feed(
        body,
        RSS_HEADERS if headers is None else headers,
        url=URL,
        feed="world",
        source="Example News",
        **kw,
    )


def test_entities_and_html_are_reduced_to_plain_text() -> None:
    body = rss(
        "T",
        [
            {
                "title": "Kim &amp; Putin: &lt;b&gt;talks&lt;/b&gt; &#8212; day&#160;2",
                "link": "https://news.example.com/a",
                "description": "&lt;p&gt;North Korea&amp;#39;s leader "
                "&lt;script&gt;x()&lt;/script&gt;met &lt;a href='/x'&gt;Putin&lt;/a&gt;.&lt;/p&gt;",
            },
            {
                "title": "<![CDATA[Missile <i>test</i> &amp; reaction]]>",
                "link": "https://news.example.com/b",
            },
            {"title": "Rates &lt; 5% as markets rise", "link": "https://news.example.com/c"},
        ],
    )
    result = parse(body)
    assert result.error is None
    a, b, c = result.entries
    assert a.title == "Kim & Putin: talks — day 2"
    assert a.summary == "North Korea's leader met Putin."
    assert b.title == "Missile test & reaction"
    assert c.title == "Rates < 5% as markets rise"  # plain text keeps its "<"


def test_links_are_canonical_and_relative_links_resolved() -> None:
    result = parse(
        rss(
            "T",
            [
                {
                    "title": "a",
                    "link": "https://News.Example.com/a?utm_source=rss&amp;id=7&amp;fbclid=z#top",
                },
                {"title": "b", "link": "/world/story-2?utm_medium=feed"},
                {"title": "c", "link": "story-3.html"},
            ],
        )
    )
    assert [e.link for e in result.entries] == [
        "https://news.example.com/a?id=7",
        "https://news.example.com/world/story-2",
        "https://news.example.com/feeds/story-3.html",
    ]


def test_guid_falls_back_to_link_then_to_a_content_hash() -> None:
    items = [
        {"title": "with guid", "guid": "urn:uuid:1234", "link": "https://x.example/1"},
        {"title": "link only", "link": "https://x.example/2?utm_campaign=c"},
        {"title": "nothing else", "description": "just text"},
        {"title": "nothing else 2", "description": "just text"},
    ]
    first = parse(rss("T", items)).entries
    again = parse(rss("T", items)).entries
    assert first[0].guid == "urn:uuid:1234"
    assert first[1].guid == "https://x.example/2"
    assert first[2].guid.startswith("sha1:") and first[2].guid == again[2].guid
    assert first[2].guid != first[3].guid


def test_duplicate_guids_within_one_feed_are_kept_once() -> None:
    item = {"title": "same", "guid": "g1"}
    assert len(parse(rss("T", [item, item, {"title": "other", "guid": "g2"}])).entries) == 2


def test_dates_become_aware_utc() -> None:
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><id>urn:a</id>
<updated>2023-09-13T00:00:00Z</updated>
<entry><title>updated only</title><id>urn:1</id><link href="https://a.example/1"/>
<updated>2023-09-13T12:30:00+02:00</updated></entry></feed>"""
    entry = parse(atom, {"content-type": "application/atom+xml"}).entries[0]
    assert entry.published == datetime(2023, 9, 13, 10, 30, tzinfo=UTC)
    rss_entry = parse(rss("T", [{"title": "x", "pubDate": "Wed, 13 Sep 2023 10:00:00 +0900"}]))
    assert rss_entry.entries[0].published == datetime(2023, 9, 13, 1, 0, tzinfo=UTC)
    no_date = parse(rss("T", [{"title": "x"}])).entries[0]
    assert no_date.published is None


def test_dates_more_than_a_day_in_the_future_are_dropped() -> None:
    body = rss(
        "T",
        [
            {"title": "soon", "guid": "1", "pubDate": "Wed, 13 Sep 2023 14:00:00 GMT"},
            {"title": "bogus", "guid": "2", "pubDate": "Sat, 16 Sep 2023 10:00:00 GMT"},
        ],
    )
    headers = {**RSS_HEADERS, "date": "Wed, 13 Sep 2023 10:00:00 GMT"}
    soon, bogus = parse(body, headers).entries
    assert soon.published == datetime(2023, 9, 13, 14, 0, tzinfo=UTC)
    assert bogus.published is None
    explicit = parse(body, now=datetime(2023, 9, 20, tzinfo=UTC)).entries
    assert explicit[1].published == datetime(2023, 9, 16, 10, 0, tzinfo=UTC)


def test_entry_fields_source_feed_tags_author_categories_content() -> None:
    body = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>T</title>
<item><title>x</title><link>https://e.example/x</link>
<content:encoded><![CDATA[<p>Full <em>text</em> here</p>]]></content:encoded>
<dc:creator>Jane Doe</dc:creator><category>World</category><category>Asia</category>
<category>World</category></item></channel></rss>"""
    entry = parse(body, feed_tags=("asia", "wire")).entries[0]
    assert (entry.feed, entry.source, entry.feed_tags) == (
        "world",
        "Example News",
        ("asia", "wire"),
    )
    assert entry.content == "Full text here"
    assert entry.summary == "Full text here"  # no description: summary from content
    assert entry.author == "Jane Doe"
    assert entry.categories == ("World", "Asia")


def test_malformed_feed_keeps_recovered_entries_and_records_the_problem() -> None:
    result = parse((FIXTURES / "bozo.xml").read_bytes())
    assert [e.title for e in result.entries] == ["First story & more", "Second story"]
    assert result.error is not None and "malformed" in result.error
    assert not result.is_html


def test_overlong_author_is_cut_before_feedparser_and_parses_fast() -> None:
    # feedparser's e-mail regex is quadratic: 20,000 characters already take ~3 s
    body = rss("T", [{"title": "x", "link": "https://e.example/1"}]).replace(
        "<title>x</title>", "<title>x</title><author>" + "a." * 100_000 + "</author>"
    )
    started = time.perf_counter()
    result = parse(body)
    assert time.perf_counter() - started < 1.0
    assert result.entries[0].title == "x"
    assert len(result.entries[0].author) <= 200


def test_overlong_text_is_truncated_and_parses_fast() -> None:
    description = "word " * 400_000  # 2 MB with no tag in it
    started = time.perf_counter()
    result = parse(rss("T", [{"title": "big", "description": description}]), max_field_chars=5000)
    assert time.perf_counter() - started < 1.5
    assert result.entries[0].title == "big"
    assert 1000 < len(result.entries[0].summary) <= 5000


def test_field_cap_keeps_markup_intact() -> None:
    attr = b'<item><link href="https://e.example/' + b"x" * 50_000 + b'" rel="alternate"/>'
    capped = cap_field_lengths(attr + b"<title>" + b"t" * 50_000 + b"</title></item>", 1000)
    assert capped.count(b"<") == 5 and capped.endswith(b"</title></item>")
    assert b'rel="alternate"/>' in capped and len(capped) < 3000
    # a long but not overlong run must not be touched (and must not be slow)
    mid = b"<p>" + b"y" * 999 + b"</p>"
    assert cap_field_lengths(mid * 200, 1000) == mid * 200


# --- encodings ----------------------------------------------------------------------

LATIN1_FEED = (
    rss("Café", [{"title": "Crème brûlée à Zürich", "guid": "1"}])
    .replace('encoding="utf-8"', 'encoding="iso-8859-1"')
    .encode("latin-1")
)
UTF8_FEED = rss("Café", [{"title": "Crème brûlée à Zürich", "guid": "1"}]).encode("utf-8")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (LATIN1_FEED, "application/rss+xml; charset=utf-8"),  # header lies: bytes are latin-1
        (UTF8_FEED, "text/xml; charset=iso-8859-1"),  # header lies: bytes are UTF-8
        (UTF8_FEED, "text/xml"),  # RFC 3023 would say US-ASCII
        (UTF8_FEED, "text/html; charset=utf-8"),
        (UTF8_FEED, "application/octet-stream"),
        (LATIN1_FEED, "text/xml"),
        (LATIN1_FEED, "application/xml; charset=latin-1"),
        (UTF8_FEED, "application/rss+xml; charset=no-such-charset"),
        (
            codecs.BOM_UTF16_LE
            + UTF8_FEED.decode().replace('"utf-8"', '"utf-16"').encode("utf-16-le"),
            "application/rss+xml; charset=utf-8",
        ),
    ],
    ids=[
        "latin1-as-utf8",
        "utf8-as-latin1",
        "text/xml",
        "text/html",
        "octet",
        "latin1-text/xml",
        "latin1-right",
        "unknown-charset",
        "utf16-bom",
    ],
)
def test_wrong_or_missing_charset_does_not_lose_or_garble_the_feed(
    body: bytes, content_type: str
) -> None:
    result = parse(body, {"content-type": content_type})
    assert [e.title for e in result.entries] == ["Crème brûlée à Zürich"]
    assert result.meta.title == "Café"


def test_html_page_instead_of_a_feed_names_the_feeds_it_links() -> None:
    result = parse((FIXTURES / "page.html").read_bytes(), {"content-type": "text/html"})
    assert result.is_html and result.entries == []
    assert result.error is not None and result.error.startswith("not a feed (HTML page)")
    assert "https://news.example.com/world/rss.xml" in result.error


def test_json_feed() -> None:
    result = parse((FIXTURES / "feed.json").read_bytes(), {"content-type": "application/feed+json"})
    assert result.error is None and result.meta.title == "JSON Wire"
    first, second = result.entries
    assert first.guid == "https://json.example.org/2023/kim-putin"
    assert first.link == "https://json.example.org/2023/kim-putin?ref=x"
    assert first.title == "Kim Jong Un meets Putin at space facility"
    assert first.summary == "Leaders meet at Vostochny."
    assert first.content == "North Korea's leader Kim Jong Un met Putin."
    assert first.published == datetime(2023, 9, 13, 1, 0, tzinfo=UTC)
    assert (first.author, first.categories) == ("Wire Desk", ("Asia", "Russia"))
    assert second.guid == "42" and second.title.startswith("A second item")
    assert second.published == datetime(2023, 9, 13, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty response body"),
        (b"   \n", "empty response body"),
        (b'{"version": "x", "items": [', "invalid JSON"),
        (b'{"hello": "world"}', "items"),
        (b"just some text", "not a feed"),
        (b"<?xml version='1.0'?><note><to>x</to></note>", "not a feed"),
    ],
)
def test_non_feeds_are_errors_not_crashes(body: bytes, needle: str) -> None:
    result = parse(body)
    assert result.entries == [] and result.error is not None and needle in result.error


def test_channel_hints_ttl_and_syndication_period() -> None:
    body = (
        rss("T", [], extra_channel="<ttl>15</ttl>")
        .replace(
            '<rss version="2.0">',
            '<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">',
        )
        .replace(
            "<ttl>",
            "<sy:updatePeriod>hourly</sy:updatePeriod>"
            "<sy:updateFrequency>2</sy:updateFrequency><ttl>",
        )
    )
    meta = parse(body).meta
    assert (meta.ttl_minutes, meta.update_period_minutes, meta.version) == (15, 30.0, "rss20")


def test_a_url_shaped_body_is_never_fetched(feed_server: FeedServer) -> None:
    feed_server.set("/trap", rss("trap", [{"title": "should never be fetched"}]))
    result = parse(feed_server.url("/trap").encode())
    assert result.entries == [] and result.error
    assert feed_server.hits("/trap") == []


# --- over the real server -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "check"),
    [
        (
            LATIN1_FEED,
            "application/rss+xml; charset=utf-8",
            lambda r: r.entries[0].title == "Crème brûlée à Zürich",
        ),
        (
            (FIXTURES / "page.html").read_bytes(),
            "text/html; charset=utf-8",
            lambda r: r.is_html and r.error and not r.entries,
        ),
        (
            (FIXTURES / "feed.json").read_bytes(),
            "application/feed+json",
            lambda r: len(r.entries) == 2 and r.error is None,
        ),
    ],
    ids=["wrong-charset", "html-page", "json-feed"],
)
def test_fetch_then_parse(
    feed_server: FeedServer, body: bytes, content_type: str, check: Callable[[ParseResult], bool]
) -> None:
    feed_server.set("/f", body, headers={"Content-Type": content_type}, gzip=True)

    async def go() -> ParseResult:
        async with make_session(FetchLimits()) as session:
            fetched = await fetch(session, feed_server.url("/f"))
        assert fetched.body is not None, fetched.error
        return parse_feed(
            fetched.body, fetched.headers, url=fetched.final_url, feed="f", source="F"
        )

    assert check(asyncio.run(go()))


# --- off the event loop ---------------------------------------------------------------


class _NeverExecutor(Executor):
    """An executor whose tasks never finish: stands in for a hung worker."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()


def test_parse_in_pool_times_out_instead_of_hanging() -> None:
    started = time.perf_counter()
    result = asyncio.run(
        parse_in_pool(_NeverExecutor(), b"<rss/>", {}, url=URL, feed="f", source="s", timeout=0.2)
    )
    assert time.perf_counter() - started < 1.0
    assert result.error == "parse timed out after 0.2s" and result.entries == []


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=2) as pool:
        yield pool


def test_parse_in_pool_parses_in_another_process(process_pool: ProcessPoolExecutor) -> None:
    body = rss("T", [{"title": f"item {i}", "guid": str(i)} for i in range(5)]).encode()
    result = asyncio.run(
        parse_in_pool(
            process_pool, body, RSS_HEADERS, url=URL, feed="f", source="s", feed_tags=("t",)
        )
    )
    assert [e.title for e in result.entries] == [f"item {i}" for i in range(5)]
    assert result.entries[0].feed_tags == ("t",)


def test_parse_pool_kills_an_overrunning_parse_and_keeps_working() -> None:
    huge = rss(
        "T",
        [{"title": f"item {i}", "description": "text " * 100, "guid": str(i)} for i in range(6000)],
    ).encode()
    small = rss("T", [{"title": "fine", "guid": "1"}]).encode()

    async def go() -> tuple[ParseResult, ParseResult, int]:
        with ParsePool(workers=1, timeout=10) as pool:
            await pool.parse(small, RSS_HEADERS, url=URL, feed="f", source="s")  # worker started
            pool.timeout = 0.3
            slow = await pool.parse(huge, RSS_HEADERS, url=URL, feed="f", source="s")
            pool.timeout = 10
            after = await pool.parse(small, RSS_HEADERS, url=URL, feed="f", source="s")
            return slow, after, pool.restarts

    slow, after, restarts = asyncio.run(go())
    assert slow.error == "parse timed out after 0.3s"
    assert restarts == 1
    assert [e.title for e in after.entries] == ["fine"]


def test_parse_pool_timeout_counts_from_the_start_of_each_parse() -> None:
    """Six parses at once on one worker: each waits for the ones before it (the last
    for five parses), and its timeout (3x the slowest of two parses timed in that same
    worker) still only measures its own parse, so none times out, nothing is restarted
    and every result is the right one. Were the timeout counted from the hand-over, the
    fourth to sixth parses would time out. The margins are ratios of a parse measured in
    the worker itself, so a slow or busy machine slows both sides alike."""
    body = _items_body(1500)
    n = 6

    async def go() -> tuple[list[ParseResult], int]:
        with ParsePool(workers=1, timeout=60) as pool:
            await pool.parse(b"<rss/>", RSS_HEADERS, url=URL, feed="w", source="s")  # started
            one = 0.0
            for _ in range(2):
                t0 = time.monotonic()
                await pool.parse(body, RSS_HEADERS, url=URL, feed="t", source="s")
                one = max(one, time.monotonic() - t0)
            pool.timeout = 3 * one
            results = await asyncio.gather(
                *(
                    pool.parse(body, RSS_HEADERS, url=URL, feed=f"f{i}", source="s")
                    for i in range(n)
                )
            )
            return list(results), pool.restarts

    results, restarts = asyncio.run(go())
    assert [r.error for r in results] == [None] * n
    assert [len(r.entries) for r in results] == [1500] * n
    assert [r.entries[0].feed for r in results] == [f"f{i}" for i in range(n)]
    assert restarts == 0


def _items_body(n: int) -> bytes:
    return rss(
        "T",
        [{"title": f"item {i}", "description": "text " * 100, "guid": str(i)} for i in range(n)],
    ).encode()


def test_parse_pool_retries_every_parse_of_a_worker_that_died() -> None:
    """A worker killed mid-parse (SIGKILL) breaks its pool: the pool is replaced once, and
    every parse that was running or waiting is retried in the new one and succeeds."""
    body = _items_body(3000)

    async def go() -> tuple[list[ParseResult], int, int]:
        with ParsePool(workers=2, timeout=30) as pool:
            pool.start()
            tasks = [
                asyncio.create_task(
                    pool.parse(body, RSS_HEADERS, url=URL, feed=f"f{i}", source="s")
                )
                for i in range(4)
            ]
            await asyncio.sleep(0.15)
            processes = getattr(pool._executor, "_processes", None) or {}
            os.kill(next(iter(processes)), signal.SIGKILL)
            results = await asyncio.gather(*tasks)
            return list(results), pool.restarts, pool._running

    results, restarts, running = asyncio.run(go())
    assert [(r.error, len(r.entries)) for r in results] == [(None, 3000)] * 4
    assert restarts == 1 and running == 0


def test_a_parse_that_overruns_after_a_reload_frees_its_worker_slot() -> None:
    """A watchlist reload moves new parses to a new pool while an old one still runs;
    when that one overruns, its old worker is killed, so the next parse does not wait
    for it to finish."""
    big, small = _items_body(30000), _items_body(5)

    async def go() -> tuple[ParseResult, ParseResult, float]:
        with ParsePool(workers=1, timeout=10) as pool:
            pool.start()
            pool.timeout = 0.5
            slow = asyncio.create_task(pool.parse(big, RSS_HEADERS, url=URL, feed="a", source="s"))
            await asyncio.sleep(0.1)
            pool.set_watchlists([])  # hot reload while the slow parse runs
            first = await slow
            # room for the new pool's worker to finish starting on a loaded machine; the
            # runaway parse would hold the slot for seconds more (about 8 s of parsing)
            pool.timeout = 5.0
            t0 = time.monotonic()
            after = await pool.parse(small, RSS_HEADERS, url=URL, feed="b", source="s")
            return first, after, time.monotonic() - t0

    first, after, waited = asyncio.run(go())
    assert first.error == "parse timed out after 0.5s"
    assert after.error is None and len(after.entries) == 5
    assert waited < 3.0  # not the seconds the runaway parse still needed


# --- discovery ------------------------------------------------------------------------


def test_discover_feed_links_from_a_page() -> None:
    links = discover_feed_links((FIXTURES / "page.html").read_bytes(), "https://news.example.com/")
    assert links == [
        "https://news.example.com/world/rss.xml",
        "https://news.example.com/atom.xml",
        "https://cdn.example.com/feed.json",
    ]


def test_discover_without_base_tag_and_odd_input() -> None:
    html = (
        '<html><head><link rel="alternate feed" type="application/rss+xml; charset=utf-8" '
        'href="feed://example.org/rss"><link rel=alternate type=application/atom+xml '
        'href="../atom"><link rel="alternate" type="application/rss+xml" '
        'href="javascript:alert(1)"></head>'
    )
    assert discover_feed_links(html, "https://example.org/a/b/page") == [
        "http://example.org/rss",
        "https://example.org/a/atom",
    ]
    assert discover_feed_links(b"\xff\xfe<<<not html", "https://x.example/") == []


# --------------------------------------------------------------------------- speed-ups

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _feedparser_date(value: str) -> Any:
    """What feedparser's own date handlers (without ours) make of ``value``."""
    import feedparser.datetimes

    for handler in feedparser.datetimes._date_handlers:
        if handler is fast_date:
            continue
        try:
            parsed = handler(value)
        except (KeyError, OverflowError, ValueError, AttributeError):
            continue
        if parsed and len(parsed) == 9:
            return parsed
    return None


def _utc(value: Any) -> datetime:
    return datetime(*value[:6], tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tue, 27 May 2025 10:00:00 GMT", datetime(2025, 5, 27, 10, 0, tzinfo=UTC)),
        ("Tue, 27 May 2025 10:00:00 UT", datetime(2025, 5, 27, 10, 0, tzinfo=UTC)),
        ("Tue, 27 May 2025 10:00:00 Z", datetime(2025, 5, 27, 10, 0, tzinfo=UTC)),
        ("Tue, 27 May 2025 10:00:00 EST", datetime(2025, 5, 27, 15, 0, tzinfo=UTC)),
        ("Tue, 27 May 2025 10:00:00 PDT", datetime(2025, 5, 27, 17, 0, tzinfo=UTC)),
        ("Tuesday, 27 May 2025 23:30:00 +0530", datetime(2025, 5, 27, 18, 0, tzinfo=UTC)),
        ("27 May 2025 01:15:00 -0800", datetime(2025, 5, 27, 9, 15, tzinfo=UTC)),
        ("Tue, 27 May 2025 10:00:00 +05:30", datetime(2025, 5, 27, 4, 30, tzinfo=UTC)),
        ("Sun, 1 Jun 2025 00:10 +0100", datetime(2025, 5, 31, 23, 10, tzinfo=UTC)),  # no seconds
        ("Wed, 31 Dec 2025 23:00:00 -0500", datetime(2026, 1, 1, 4, 0, tzinfo=UTC)),
        ("2025-05-27T10:00:00Z", datetime(2025, 5, 27, 10, 0, tzinfo=UTC)),
        ("2025-05-27T10:00:00.123456+05:30", datetime(2025, 5, 27, 4, 30, tzinfo=UTC)),
        ("2025-05-27T10:00-08:00", datetime(2025, 5, 27, 18, 0, tzinfo=UTC)),
        ("2025-05-27 10:00:00", datetime(2025, 5, 27, 10, 0, tzinfo=UTC)),  # no zone: UTC
        ("2025-05-27t10:00:00z", datetime(2025, 5, 27, 10, 0, tzinfo=UTC)),
        ("2025-05-27", datetime(2025, 5, 27, tzinfo=UTC)),
    ],
)
def test_fast_date_handler_agrees_with_feedparser(text: str, expected: datetime) -> None:
    fast = fast_date(text)
    assert fast is not None
    assert _utc(fast) == expected
    assert fast == _feedparser_date(text)  # the very tuple feedparser would have produced


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "Tue, 27 May 2025",  # feedparser assumes midnight: its handlers decide
        "27 May 25 10:00 GMT",  # two-digit year
        "Tue, 27 May 2025 10:00:00 CEST",  # a zone feedparser does not know
        "Tue, 32 May 2025 10:00:00 GMT",  # no such day
        "Tue, 27 May 2025 24:00:00 GMT",
        "2025-05-27T10:00:00+0530",  # feedparser reads this one its own way
        "2025-13-01T00:00:00Z",
        "Tue May 27 10:00:00 2025",  # asctime
        "2025-05-27T10:00:00+05:30 extra",
    ],
)
def test_other_dates_fall_through_to_feedparsers_handlers(text: str) -> None:
    import feedparser.datetimes

    assert fast_date(text) is None
    install_speedups()
    assert feedparser.datetimes._parse_date(text) == _feedparser_date(text)


_DAYS = st.sampled_from(["", "Mon, ", "Tue, ", "Thursday, ", "sat ", "Sun,"])
_ZONES = st.sampled_from(
    ["GMT", "UT", "UTC", "Z", "EST", "edt", "PST", "a", "M", "MEST", "XYZ", "+0000", "-0330"]
)
_ZONES |= st.sampled_from(["+05:30", "-1200", "+1400", "+9999", ""])


@settings(max_examples=400, deadline=None)
@given(
    day_name=_DAYS,
    day=st.integers(0, 32),
    month=st.sampled_from(["Jan", "feb", "MAR", "June", "Sept", "Oct", "Dec", "Foo"]),
    year=st.integers(1, 9999),
    hour=st.integers(0, 25),
    minute=st.integers(0, 61),
    second=st.none() | st.integers(0, 61),
    zone=_ZONES,
    iso=st.booleans(),
    sep=st.sampled_from(["T", "t", " "]),
    frac=st.sampled_from(["", ".5", ".123456"]),
)
def test_fast_date_is_feedparser_or_nothing(
    day_name: str,
    day: int,
    month: str,
    year: int,
    hour: int,
    minute: int,
    second: int | None,
    zone: str,
    iso: bool,
    sep: str,
    frac: str,
) -> None:
    secs = "" if second is None else f":{second:02d}"
    if iso:
        iso_zone = "Z" if zone == "Z" else (zone if zone[:1] in "+-" else "")
        text = f"{year:04d}-{day % 13:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}{secs}"
        text += (frac if secs else "") + iso_zone
    else:
        text = f"{day_name}{day} {month} {year:04d} {hour}:{minute:02d}{secs} {zone}".strip()
    fast = fast_date(text)
    assert fast is None or fast == _feedparser_date(text), text


@pytest.fixture
def plain_feedparser() -> Iterator[None]:
    remove_speedups()
    try:
        yield
    finally:
        install_speedups()


def _raw(body: bytes) -> tuple[Any, str]:
    import feedparser

    result = feedparser.parse(
        body,
        response_headers={"content-type": "application/xml"},
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    exc = result.pop("bozo_exception", None)
    return result, f"{type(exc).__name__}: {exc}"


def test_speedups_change_no_feedparser_output_on_its_own_corpus(plain_feedparser: None) -> None:
    corpus = DATA / "feeds" / "feedparser-tests"
    files = sorted(p for p in corpus.rglob("*.xml") if p.is_file())
    if not files:
        pytest.skip(f"feedparser corpus not present at {corpus}")
    bodies = [p.read_bytes() for p in files]
    plain = [_raw(body) for body in bodies]
    assert install_speedups()
    fast = [_raw(body) for body in bodies]
    differ = [
        str(p.relative_to(corpus)) for p, a, b in zip(files, plain, fast, strict=True) if a != b
    ]
    assert differ == []
    assert sum(len(r["entries"]) for r, _ in fast) > 1000  # the corpus was really parsed


def test_speedups_change_no_parse_result_on_real_news_feeds(plain_feedparser: None) -> None:
    captures = sorted((DATA / "captures" / "gesab001").glob("*/*.xml"))
    if not captures:
        pytest.skip(f"captures not present under {DATA / 'captures' / 'gesab001'}")
    sample = captures[::6]  # every outlet at least once across the days, within the time budget
    bodies = [p.read_bytes() for p in sample]
    plain = [parse(b, speedups=False) for b in bodies]
    raw_plain = [_raw(b) for b in bodies]
    assert install_speedups()
    assert [parse(b) for b in bodies] == plain
    assert [_raw(b) for b in bodies] == raw_plain
    assert sum(len(r.entries) for r in plain) > 300


@pytest.mark.parametrize(
    "href",
    [
        "https://News.Example.com:443/a/b?utm_source=rss&x=1#frag",
        "http://news.example.com/a/../b",
        "https://news.example.com/a;jsessionid=1",
        "https://news.example.com/a;",
        "https://news.example.com/a?",
        "http:///no-host",
        "https://[::1]/v6",
        "https://bücher.example/x",
        "HTTPS://NEWS.EXAMPLE.COM/Up",
        "/relative/path?q=1",
        "//cdn.example.com/x",
        "feed://news.example.com/rss",
    ],
)
def test_link_fast_path_matches_urljoin_then_canonical(href: str) -> None:
    for base in (URL, "http://news.example.com/", "https://x.example/a;b/feed"):
        try:
            joined = urljoin(base, href.replace("feed://", "http://", 1))
        except ValueError:
            joined = ""
        expected = (
            canonical_url(joined) if joined.lower().startswith(("http://", "https://")) else ""
        )
        assert entry_link(href, base) == expected


def test_parse_result_survives_the_trip_back_from_a_worker() -> None:
    body = rss(
        "T",
        [
            {"title": f"Story {i}", "link": f"https://news.example.com/{i}", "description": "x"}
            for i in range(5)
        ],
    )
    for candidate in (parse(body), parse((FIXTURES / "bozo.xml").read_bytes())):
        copy = pickle.loads(pickle.dumps(candidate, protocol=pickle.HIGHEST_PROTOCOL))
        assert copy == candidate
        assert copy.entries and all(isinstance(e, Entry) for e in copy.entries)


def test_body_digest() -> None:
    a = body_digest(b"<rss>1</rss>")
    assert a == body_digest(b"<rss>1</rss>")
    assert a != body_digest(b"<rss>2</rss>")
    assert len(a) == 32 and int(a, 16) >= 0


def test_pool_workers_match_watchlists_and_follow_a_reload() -> None:
    """The parse workers match each entry with the pool's watchlists; after
    ``set_watchlists`` results carry the new generation and the new watchlists' hits, so
    the pipeline never uses hits from before a reload."""
    from monitor.dedupe import prepare
    from monitor.match.schema import WatchlistFile

    def lists(terms: list[str]) -> list[Any]:
        return list(
            WatchlistFile.model_validate({"watchlists": [{"name": "w", "terms": terms}]}).watchlists
        )

    body = rss(
        "X",
        [
            {"title": "Kim Jong Un meets Putin", "link": "https://x.example/1", "guid": "1"},
            {"title": "Flooding in Lagos", "link": "https://x.example/2", "guid": "2"},
        ],
    ).encode()

    async def run() -> None:
        pool_args: dict[str, Any] = {"watchlists": lists(["Kim Jong Un"]), "prepare_chars": 300}
        with ParsePool(workers=1, timeout=10, **pool_args) as pool:
            pool.start()
            first = await pool.parse(body, {}, url="https://x.example/f", feed="x", source="X")
            # dedupe's first step, done in the worker, equals doing it here; the title's
            # vector is left empty while the worker's model is still loading (the index then
            # computes the same vector itself)
            here = [
                prepare(e.title, e.summary, e.source, 300, features=True) for e in first.entries
            ]
            assert first.prepared is not None
            assert [p[:3] for p in first.prepared] == [p[:3] for p in here]
            assert all(p[3] in (b"", q[3]) for p, q in zip(first.prepared, here, strict=True))
            assert first.generation == pool.generation == 1
            assert first.hits is not None
            assert [[h.watchlist for h in hs] for hs in first.hits] == [["w"], []]
            assert first.hits[0][0].words == ("Kim Jong Un",)
            pool.set_watchlists(lists(["flooding"]))
            second = await pool.parse(body, {}, url="https://x.example/f", feed="x", source="X")
            assert second.generation == pool.generation == 2
            assert second.hits is not None
            assert [[h.watchlist for h in hs] for hs in second.hits] == [[], ["w"]]

    asyncio.run(run())
