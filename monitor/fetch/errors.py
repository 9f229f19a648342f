"""The kinds of fetch failure, and how aiohttp's exceptions map onto them.

``fetch`` raises none of them: they come back as ``FetchResult.error_kind``, with a
reason a person can act on in ``error``. A failed poll records its kind on the feed
(``feeds.last_error_kind``) and counts it in ``wirewatch_fetch_errors_total{kind}``: the
values are stored and scraped, so they never change.

FetchErrorKind
├── URL          not http(s), no host, or malformed
├── DNS          the host does not resolve (``.invalid`` fails without a lookup)
├── CONNECT      connect refused or reset, connection closed, other socket errors
├── TLS          handshake failed, certificate not valid
├── TIMEOUT      connect or read timed out, or the whole fetch passed ``total_timeout``
├── PROTOCOL     a malformed HTTP response or body framing
├── REDIRECT     a loop, more than ``max_redirects`` hops, or a bad ``Location``
├── HTTP         any other status outside 2xx and 304 (a 503 keeps its Retry-After)
│   ├── RATELIMITED  429 (keeps its Retry-After)
│   └── GONE         410: disables the feed
├── TOO_LARGE    over ``max_bytes``, as sent or decompressed
├── ENCODING     an unsupported Content-Encoding, or corrupt gzip/deflate data
└── PARSE        not from ``fetch``: the body did not parse (set by the poll; kept as a
                 note when entries were recovered from a malformed feed)

Retries: ``fetch`` makes one attempt. Every kind but GONE is retried at the feed's next
poll, which backs off as failures repeat (``intervals.next_interval``) and is never
sooner than a Retry-After. GONE (and any 410) disables the feed until the feeds file
gives it a new URL. Whatever the kind, ``health.failures`` failed polls in a row make
the feed "failing" (``health.feed_state``).
"""

from __future__ import annotations

import ssl
from enum import StrEnum

import aiohttp
from yarl import URL


class FetchErrorKind(StrEnum):
    """What went wrong with a feed's poll (see the tree above)."""

    URL = "url"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    REDIRECT = "redirect"
    HTTP = "http"
    RATELIMITED = "ratelimited"
    GONE = "gone"
    TOO_LARGE = "too_large"
    ENCODING = "encoding"
    PARSE = "parse"


class FetchFailure(Exception):
    """Internal: a fetch failure with its kind and human reason. ``fetch`` turns it into
    a ``FetchResult``; it never reaches the caller."""

    def __init__(self, kind: FetchErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def classify(exc: aiohttp.ClientError, url: str) -> tuple[FetchErrorKind, str]:
    """The kind and reason for an aiohttp error raised while fetching ``url``."""
    host = URL(url).host or url
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        # the resolver's reason tells "no such host" from "resolver unreachable, retry"
        return FetchErrorKind.DNS, f"DNS lookup failed for host {host}: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            FetchErrorKind.TLS,
            f"TLS error: certificate for {host} not valid: {exc.certificate_error}",
        )
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorSSLError):
        return FetchErrorKind.TLS, f"TLS error: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return FetchErrorKind.TIMEOUT, f"connect to {host} timed out"
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return FetchErrorKind.TIMEOUT, f"read from {host} timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ssl.SSLError):
            return FetchErrorKind.TLS, f"TLS error: {_os_reason(exc)}"
        return FetchErrorKind.CONNECT, f"cannot connect to {host}: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return FetchErrorKind.CONNECT, f"{host} closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return FetchErrorKind.PROTOCOL, f"bad HTTP response from {host}: {exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchErrorKind.URL, f"invalid URL: {exc}"
    return FetchErrorKind.CONNECT, f"{type(exc).__name__}: {exc}"


def _os_reason(exc: aiohttp.ClientError) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is not None:
        return getattr(os_error, "strerror", None) or str(os_error) or type(os_error).__name__
    return str(exc) or type(exc).__name__
