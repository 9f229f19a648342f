"""How a fetch fails: the internal ``FetchFailure`` and the mapping of aiohttp's
exceptions to a kind and a reason a person can act on."""

from __future__ import annotations

import ssl

import aiohttp
from yarl import URL


class FetchFailure(Exception):
    """Internal: a fetch failure with its kind and human reason. ``fetch`` turns it into
    a ``FetchResult``; it never reaches the caller."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def classify(exc: aiohttp.ClientError, url: str) -> tuple[str, str]:
    """The kind and reason for an aiohttp error raised while fetching ``url``."""
    host = URL(url).host or url
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        # the resolver's reason tells "no such host" from "resolver unreachable, retry"
        return "dns", f"DNS lookup failed for host {host}: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "tls", f"TLS error: certificate for {host} not valid: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorSSLError):
        return "tls", f"TLS error: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timeout", f"connect to {host} timed out"
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", f"read from {host} timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ssl.SSLError):
            return "tls", f"TLS error: {_os_reason(exc)}"
        return "connect", f"cannot connect to {host}: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connect", f"{host} closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "protocol", f"bad HTTP response from {host}: {exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return "url", f"invalid URL: {exc}"
    return "connect", f"{type(exc).__name__}: {exc}"


def _os_reason(exc: aiohttp.ClientError) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is not None:
        return getattr(os_error, "strerror", None) or str(os_error) or type(os_error).__name__
    return str(exc) or type(exc).__name__
