"""fetch() against a real local HTTP server: one row per server behaviour."""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from monitor import __version__
from monitor.fetch import FetchErrorKind, FetchLimits, FetchResult, fetch, make_session
from tests.feedserver import (
    FeedServer,
    drip_handler,
    raw_handler,
    redirect_handler,
    rss,
    stream_handler,
)

FEED = rss("Fixture", [{"title": "Kim Jong Un meets Putin", "link": "http://example.invalid/a"}])
FEED_BYTES = FEED.encode()
SMALL = FetchLimits(max_bytes=1024 * 1024, total_timeout=5)
HTTP_DATE = "Wed, 13 Sep 2023 10:00:00 GMT"


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def feed_server(server: FeedServer) -> FeedServer:
    """One server for the module (shutting one down costs 0.5 s), fresh routes per test."""
    with server._lock:
        server.routes.clear()
        server.requests.clear()
    return server


def run_fetch(url: str, limits: FetchLimits | None = None, **kwargs: Any) -> FetchResult:
    limits = limits or FetchLimits()

    async def go() -> FetchResult:
        async with make_session(limits) as session:
            return await fetch(session, url, limits=limits, **kwargs)

    return asyncio.run(go())


@dataclass
class Case:
    name: str
    setup: Callable[[FeedServer], object]
    kwargs: dict[str, Any] = field(default_factory=dict)
    limits: FetchLimits = field(default_factory=FetchLimits)
    expect: dict[str, Any] = field(default_factory=dict)
    error_contains: str | None = None
    max_elapsed: float = 5.0


def _chain(server: FeedServer, statuses: list[int]) -> None:
    """/f -> /r1 -> /r2 ... with the given redirect statuses, ending at a feed."""
    paths = ["/f"] + [f"/r{i}" for i in range(1, len(statuses) + 1)]
    for i, status in enumerate(statuses):
        server.set(paths[i], handler=redirect_handler(paths[i + 1], status))
    server.set(paths[-1], FEED)


def _bomb() -> bytes:
    member = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MB of zeros -> ~65 KB
    return member * 16  # 16 gzip members: 1 GB once inflated, ~1 MB on the wire


def _deflate_bomb(raw: bool) -> bytes:
    """256 MB of zeros as one deflate stream (zlib-wrapped, or raw): ~250 KB on the wire."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15 if raw else 15)
    return c.compress(bytes(256 << 20)) + c.flush()


def _in(seconds: int) -> str:
    """An HTTP date ``seconds`` from now (the server's own Date header is the reference)."""
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


CASES = [
    Case(
        "200",
        lambda s: s.set("/f", FEED, etag='"v1"', last_modified=HTTP_DATE),
        expect={
            "status": 200,
            "body": FEED_BYTES,
            "etag": '"v1"',
            "last_modified": HTTP_DATE,
            "not_modified": False,
            "error": None,
        },
    ),
    Case(
        "304 by ETag",
        lambda s: s.set("/f", FEED, etag='"v1"'),
        kwargs={"etag": '"v1"'},
        expect={"status": 304, "body": None, "not_modified": True, "etag": '"v1"', "error": None},
    ),
    Case(
        "304 by Last-Modified",
        lambda s: s.set("/f", FEED, last_modified=HTTP_DATE),
        kwargs={"last_modified": HTTP_DATE},
        expect={"status": 304, "body": None, "not_modified": True, "last_modified": HTTP_DATE},
    ),
    Case(
        "stale ETag gets 200",
        lambda s: s.set("/f", FEED, etag='"v2"'),
        kwargs={"etag": '"v1"'},
        expect={"status": 200, "body": FEED_BYTES, "not_modified": False, "etag": '"v2"'},
    ),
    Case(
        "302 temporary keeps URL",
        lambda s: _chain(s, [302]),
        expect={"status": 200, "body": FEED_BYTES, "permanent_redirect": None, "final_url": "/r1"},
    ),
    Case(
        "307 temporary keeps URL",
        lambda s: _chain(s, [307]),
        expect={"status": 200, "permanent_redirect": None, "final_url": "/r1"},
    ),
    Case(
        "301 permanent",
        lambda s: _chain(s, [301]),
        expect={"status": 200, "body": FEED_BYTES, "permanent_redirect": "/r1", "final_url": "/r1"},
    ),
    Case(
        "308 then 301: permanent to the end",
        lambda s: _chain(s, [308, 301]),
        expect={"status": 200, "permanent_redirect": "/r2", "final_url": "/r2"},
    ),
    Case(
        "301 then 302: permanent part only",
        lambda s: _chain(s, [301, 302]),
        expect={"status": 200, "permanent_redirect": "/r1", "final_url": "/r2"},
    ),
    Case(
        "302 then 301: not permanent",
        lambda s: _chain(s, [302, 301]),
        expect={"status": 200, "permanent_redirect": None, "final_url": "/r2"},
    ),
    Case(
        "redirect loop",
        lambda s: (
            s.set("/f", handler=redirect_handler("/g", 301)),
            s.set("/g", handler=redirect_handler("/f", 302)),
        ),
        expect={"error_kind": "redirect", "body": None, "permanent_redirect": None},
        error_contains="redirect loop",
    ),
    Case(
        "too many redirects",
        lambda s: _chain(s, [302] * 6),
        limits=FetchLimits(max_redirects=5),
        expect={"error_kind": "redirect", "body": None},
        error_contains="too many redirects",
    ),
    Case(
        "exactly max redirects is fine",
        lambda s: _chain(s, [302] * 5),
        limits=FetchLimits(max_redirects=5),
        expect={"status": 200, "body": FEED_BYTES},
    ),
    Case(
        "410 gone",
        lambda s: s.set("/f", "gone", status=410),
        expect={"status": 410, "error_kind": "gone", "body": None},
        error_contains="HTTP 410",
    ),
    Case(
        "429 Retry-After seconds",
        lambda s: s.set("/f", "slow down", status=429, headers={"Retry-After": "120"}),
        expect={"status": 429, "error_kind": "ratelimited", "retry_after": 120.0},
    ),
    Case(
        "429 Retry-After HTTP date",
        lambda s: s.set("/f", "slow down", status=429, headers={"Retry-After": _in(300)}),
        expect={
            "status": 429,
            "error_kind": "ratelimited",
            "retry_after": pytest.approx(300, abs=2),
        },
    ),
    Case(
        "503 Retry-After",
        lambda s: s.set("/f", "maintenance", status=503, headers={"Retry-After": "60"}),
        expect={"status": 503, "error_kind": "http", "retry_after": 60.0},
        error_contains="HTTP 503",
    ),
    Case(
        "500",
        lambda s: s.set("/f", "boom", status=500),
        expect={"status": 500, "error_kind": "http", "body": None, "retry_after": None},
        error_contains="HTTP 500",
    ),
    Case(
        "404",
        lambda s: s.set("/f", "nope", status=404),
        expect={"status": 404, "error_kind": "http"},
        error_contains="HTTP 404",
    ),
    Case(
        "slow drip hits the total-time cap",
        lambda s: s.set("/f", handler=drip_handler(FEED_BYTES, 0.05)),
        limits=FetchLimits(total_timeout=1, read_timeout=5),
        expect={"error_kind": "timeout", "body": None},
        error_contains="timed out after 1s",
        max_elapsed=2.5,
    ),
    Case(
        "50 MB body with Content-Length: size cap",
        lambda s: s.set("/f", handler=stream_handler(50 << 20)),
        limits=SMALL,
        expect={"error_kind": "too_large", "body": None},
        error_contains="response larger than 1 MB",
        max_elapsed=2,
    ),
    Case(
        "50 MB body streamed without length: size cap while streaming",
        lambda s: s.set("/f", handler=stream_handler(50 << 20, content_length=False)),
        limits=SMALL,
        expect={"error_kind": "too_large", "body": None},
        error_contains="response larger than 1 MB",
        max_elapsed=2,
    ),
    Case(
        "gzip bomb (1 GB of zeros) stopped at the cap",
        lambda s: s.set("/f", handler=raw_handler(200, _bomb(), {"Content-Encoding": "gzip"})),
        limits=FetchLimits(max_bytes=5 << 20),
        expect={"error_kind": "too_large", "body": None},
        error_contains="response larger than 5 MB",
        max_elapsed=3,
    ),
    *(
        Case(
            f"deflate bomb ({kind}, 256 MB of zeros) stopped at the cap",
            lambda s, raw=raw: s.set(
                "/f",
                handler=raw_handler(200, _deflate_bomb(raw), {"Content-Encoding": "deflate"}),
            ),
            limits=FetchLimits(max_bytes=5 << 20),
            expect={"error_kind": "too_large", "body": None},
            error_contains="response larger than 5 MB",
            max_elapsed=3,
        )
        for kind, raw in (("zlib", False), ("raw", True))
    ),
    Case(
        "gzip-encoded feed",
        lambda s: s.set("/f", FEED, gzip=True),
        expect={"status": 200, "body": FEED_BYTES, "error": None},
    ),
    Case(
        "multi-member gzip feed",
        lambda s: s.set(
            "/f",
            handler=raw_handler(
                200,
                gzip.compress(FEED_BYTES[:100]) + gzip.compress(FEED_BYTES[100:]),
                {"Content-Encoding": "gzip"},
            ),
        ),
        expect={"status": 200, "body": FEED_BYTES},
    ),
    Case(
        "gzip feed followed by trailing bytes (ignored, as gzip -d does)",
        lambda s: s.set(
            "/f",
            handler=raw_handler(
                200,
                gzip.compress(FEED_BYTES) + b"\n<!-- cache 0.2s -->\n",
                {"Content-Encoding": "gzip"},
            ),
        ),
        expect={"status": 200, "body": FEED_BYTES, "error": None},
    ),
    Case(
        "deflate with zlib header",
        lambda s: s.set(
            "/f",
            handler=raw_handler(200, zlib.compress(FEED_BYTES), {"Content-Encoding": "deflate"}),
        ),
        expect={"status": 200, "body": FEED_BYTES},
    ),
    Case(
        "raw deflate",
        lambda s: s.set(
            "/f",
            handler=raw_handler(
                200, zlib.compress(FEED_BYTES, wbits=-15), {"Content-Encoding": "deflate"}
            ),
        ),
        expect={"status": 200, "body": FEED_BYTES},
    ),
    Case(
        "corrupt gzip",
        lambda s: s.set(
            "/f", handler=raw_handler(200, b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"})
        ),
        expect={"error_kind": "encoding", "body": None},
    ),
    Case(
        "brotli, never asked for, is refused",
        lambda s: s.set(
            "/f", handler=raw_handler(200, b"\x8b\x03\x80x\x03", {"Content-Encoding": "br"})
        ),
        expect={"error_kind": "encoding"},
        error_contains="'br'",
    ),
    Case(
        "unknown Content-Encoding",
        lambda s: s.set("/f", handler=raw_handler(200, FEED_BYTES, {"Content-Encoding": "zstd"})),
        expect={"error_kind": "encoding"},
        error_contains="zstd",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_server_behaviours(feed_server: FeedServer, case: Case) -> None:
    case.setup(feed_server)
    result = run_fetch(feed_server.url("/f"), case.limits, **case.kwargs)
    for key, want in case.expect.items():
        got = getattr(result, key)
        if key in ("final_url", "permanent_redirect") and isinstance(want, str):
            want = feed_server.url(want)
        assert got == want, f"{key}: {got!r} != {want!r} ({result.error})"
    if case.error_contains:
        assert result.error is not None and case.error_contains in result.error
    assert result.url == feed_server.url("/f")
    assert result.elapsed < case.max_elapsed


def test_request_headers_name_wirewatch_and_prefer_feeds(feed_server: FeedServer) -> None:
    feed_server.set("/f", FEED, etag='"v1"', last_modified=HTTP_DATE)
    run_fetch(feed_server.url("/f"), etag='"v0"', last_modified="Tue, 12 Sep 2023 10:00:00 GMT")
    (req,) = feed_server.hits("/f")
    headers = {k.lower(): v for k, v in req.headers.items()}
    assert headers["user-agent"].startswith(f"Wirewatch/{__version__}")
    assert "application/rss+xml" in headers["accept"]
    assert "gzip" in headers["accept-encoding"]
    assert headers["if-none-match"] == '"v0"'
    assert headers["if-modified-since"] == "Tue, 12 Sep 2023 10:00:00 GMT"


def test_304_without_validators_in_response_keeps_ours(feed_server: FeedServer) -> None:
    feed_server.set("/f", handler=raw_handler(304))
    result = run_fetch(feed_server.url("/f"), etag='"v1"', last_modified=HTTP_DATE)
    assert result.not_modified and result.body is None
    assert (result.etag, result.last_modified) == ('"v1"', HTTP_DATE)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_fetch(f"http://127.0.0.1:{port}/feed")
    assert result.error_kind == "connect"
    assert result.status is None and result.body is None
    assert result.error and "127.0.0.1" in result.error


def test_dns_failure_for_invalid_tld_is_fast_and_offline() -> None:
    result = run_fetch("http://no-such-host.invalid/feed.xml")
    assert result.error_kind == "dns"
    assert result.error == (
        "DNS lookup failed for host no-such-host.invalid: .invalid never resolves"
    )
    assert result.elapsed < 0.5


class _FailingResolver(AbstractResolver):
    def __init__(self, errno: int, reason: str) -> None:
        self.error = OSError(errno, reason)

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        raise self.error

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("errno", "reason"),
    [
        (socket.EAI_NONAME, "Name or service not known"),
        (socket.EAI_AGAIN, "Temporary failure in name resolution"),
    ],
)
def test_dns_failure_reported_with_the_resolvers_reason(errno: int, reason: str) -> None:
    async def go() -> FetchResult:
        connector = aiohttp.TCPConnector(resolver=_FailingResolver(errno, reason))
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            return await fetch(session, "http://news.example.com/rss")

    result = asyncio.run(go())
    assert result.error_kind == "dns"
    assert result.error == f"DNS lookup failed for host news.example.com: {reason}"


def test_tls_error_is_recorded_with_reason(feed_server: FeedServer) -> None:
    feed_server.set("/f", FEED)
    # a plain-HTTP port spoken to in TLS: the handshake fails
    result = run_fetch(feed_server.url("/f").replace("http://", "https://"))
    assert result.error_kind == "tls", result.error
    assert result.error and result.error.startswith("TLS error:")


def test_unsupported_scheme_is_an_error_not_an_exception() -> None:
    result = run_fetch("ftp://example.com/feed.xml")
    assert result.error_kind == "url" and result.body is None


def test_redirect_to_a_404_is_an_error_without_permanent_redirect(feed_server: FeedServer) -> None:
    feed_server.set("/f", handler=redirect_handler("/missing", 301))
    result = run_fetch(feed_server.url("/f"))
    assert result.status == 404 and result.error_kind == "http"
    assert result.permanent_redirect is None


def test_many_feeds_concurrently_share_one_session(feed_server: FeedServer) -> None:
    for i in range(40):
        feed_server.set(f"/f{i}", rss(f"F{i}", [{"title": f"item {i}"}]))

    async def go() -> list[FetchResult]:
        limits = FetchLimits()
        async with make_session(limits, limit=10, limit_per_host=4) as session:
            return await asyncio.gather(
                *(fetch(session, feed_server.url(f"/f{i}"), limits=limits) for i in range(40))
            )

    results = asyncio.run(go())
    assert [r.status for r in results] == [200] * 40
    assert all(f"item {i}".encode() in (r.body or b"") for i, r in enumerate(results))


def test_gzip_bomb_memory_stays_near_the_cap(feed_server: FeedServer) -> None:
    import tracemalloc

    bomb = _bomb()
    feed_server.set("/f", handler=raw_handler(200, bomb, {"Content-Encoding": "gzip"}))
    tracemalloc.start()
    try:
        result = run_fetch(feed_server.url("/f"), FetchLimits(max_bytes=5 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_kind == "too_large"
    assert peak < 40 << 20, f"peak {peak / 2**20:.0f} MB while refusing a 1 GB bomb"


def test_error_kinds_keep_the_names_stored_and_scraped() -> None:
    # feeds.last_error_kind and the kind label of wirewatch_fetch_errors_total hold these
    # strings: renaming one would split a feed's history and break dashboards
    assert sorted(FetchErrorKind) == [
        "connect",
        "dns",
        "encoding",
        "gone",
        "http",
        "parse",
        "protocol",
        "ratelimited",
        "redirect",
        "timeout",
        "tls",
        "too_large",
        "url",
    ]
    assert f"{FetchErrorKind.TOO_LARGE}" == str(FetchErrorKind.TOO_LARGE) == "too_large"
