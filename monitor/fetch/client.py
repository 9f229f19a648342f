"""What every fetch sends and the session it shares: the limits, the request headers,
and an aiohttp session with connection caps and no automatic decompression."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from monitor import __version__

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
# no "br": brotli's decoder cannot bound its output per call the way zlib's max_length
# does (one small chunk can expand to gigabytes before a size check runs), and feeds
# are small and compress well with gzip; a server that sends br anyway gets an error
ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True, slots=True)
class FetchLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = f"Wirewatch/{__version__} (+https://github.com/wirewatch/wirewatch)"


def make_session(
    limits: FetchLimits, *, limit: int = 50, limit_per_host: int = 4
) -> aiohttp.ClientSession:
    """A session for ``fetch``: global and per-host connection limits, our User-Agent,
    no automatic decompression (``fetch`` decompresses with a size cap). Create it inside
    the running event loop and close it when done."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        headers={"User-Agent": limits.user_agent},
        timeout=client_timeout(limits),
        max_line_size=16 * 1024,
        max_field_size=16 * 1024,
    )


def client_timeout(limits: FetchLimits) -> aiohttp.ClientTimeout:
    """Per-request connect and read timeouts; the total is ``fetch``'s own
    ``asyncio.timeout``, which also covers redirects and the body."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=limits.connect_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=limits.read_timeout,
    )
