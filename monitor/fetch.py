"""HTTP fetching of feeds with aiohttp: conditional GET, limits, politeness.

``fetch()`` never raises for network or HTTP problems: it returns a ``FetchResult`` whose
``error``/``error_kind`` say what went wrong. Design points:

* Redirects are followed by hand (``allow_redirects=False``) so that a chain of permanent
  redirects (301/308) can be reported to the caller, which updates the stored feed URL,
  while temporary ones (302/303/307) keep it. Loops and over-long chains are errors.
* Bodies are streamed with ``auto_decompress=False`` and decompressed here with zlib's
  ``max_length``, so both the bytes on the wire and the decompressed bytes are capped at
  ``FetchLimits.max_bytes``: a gzip bomb stops at the cap without inflating.
* One ``asyncio.timeout`` covers the whole fetch (all redirects and the body), so a server
  dripping one byte a second cannot hold a poll slot longer than ``total_timeout``.
* Host names under ``.invalid`` (RFC 6761) fail as DNS errors without a lookup.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from monitor import __version__

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
# no "br": brotli's decoder cannot bound its output per call the way zlib's max_length
# does (one small chunk can expand to gigabytes before a size check runs), and feeds
# are small and compress well with gzip; a server that sends br anyway gets an error
ACCEPT_ENCODING = "gzip, deflate"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = f"Wirewatch/{__version__} (+https://github.com/wirewatch/wirewatch)"


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    final_url: str
    status: int | None
    body: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    permanent_redirect: str | None = None
    retry_after: float | None = None
    error: str | None = None
    error_kind: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True for a usable answer: a body to parse or a 304."""
        return self.error is None


class _Failure(Exception):
    """Internal: a fetch failure with its kind and human reason."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


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
        timeout=_client_timeout(limits),
        max_line_size=16 * 1024,
        max_field_size=16 * 1024,
    )


def _client_timeout(limits: FetchLimits) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        connect=limits.connect_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=limits.read_timeout,
    )


def human_size(n: int) -> str:
    """``10485760`` → ``"10 MB"``; small values in bytes."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limits: FetchLimits = FetchLimits(),
) -> FetchResult:
    """GET ``url`` once (following redirects), never raising for network/HTTP problems.

    On 304 the returned ``etag``/``last_modified`` are the response's, or the ones sent
    when the server omitted them, so the caller can always store what it gets back.
    """
    started = time.monotonic()
    state = _State(url=url, final_url=url)
    try:
        async with asyncio.timeout(limits.total_timeout):
            return await _fetch(session, url, etag, last_modified, limits, state, started)
    except TimeoutError:
        kind, reason = "timeout", f"timed out after {limits.total_timeout:g}s"
    except _Failure as exc:
        kind, reason = exc.kind, exc.reason
    except aiohttp.ClientError as exc:
        kind, reason = _classify(exc, state.final_url)
    except (OSError, ValueError, UnicodeError) as exc:  # odd URLs, socket errors
        kind, reason = "connect", f"{type(exc).__name__}: {exc}"
    return FetchResult(
        url=url,
        final_url=state.final_url,
        status=state.status,
        body=None,
        headers=state.headers,
        etag=None,
        last_modified=None,
        not_modified=False,
        permanent_redirect=None,
        retry_after=state.retry_after,
        error=reason[:500],
        error_kind=kind,
        elapsed=time.monotonic() - started,
    )


@dataclass(slots=True)
class _State:
    url: str
    final_url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    etag: str | None,
    last_modified: str | None,
    limits: FetchLimits,
    state: _State,
    started: float,
) -> FetchResult:
    request_headers = {
        "Accept": ACCEPT,
        "Accept-Encoding": ACCEPT_ENCODING,
        "User-Agent": limits.user_agent,
    }
    if etag:
        request_headers["If-None-Match"] = etag
    if last_modified:
        request_headers["If-Modified-Since"] = last_modified
    current = _check_url(url)
    seen = {str(current)}
    hops = 0
    all_permanent = True  # every hop so far was 301/308
    permanent_target: str | None = None
    timeout = _client_timeout(limits)
    while True:
        state.final_url = str(current)
        async with session.get(
            current, headers=request_headers, allow_redirects=False, timeout=timeout
        ) as resp:
            state.status = resp.status
            state.headers = _lower_headers(resp.headers)
            status = resp.status
            if status in _REDIRECTS and "location" in state.headers:
                hops += 1
                try:
                    target = current.join(URL(state.headers["location"].strip()))
                    target = _check_url(str(target))
                except ValueError as exc:
                    raise _Failure("redirect", f"bad redirect location: {exc}") from None
                if str(target) in seen:
                    raise _Failure("redirect", "redirect loop")
                if hops > limits.max_redirects:
                    raise _Failure(
                        "redirect", f"too many redirects (more than {limits.max_redirects})"
                    )
                seen.add(str(target))
                if all_permanent and status in _PERMANENT:
                    permanent_target = str(target)
                else:
                    all_permanent = False
                current = target
                continue
            if status == 304:
                return FetchResult(
                    url=url,
                    final_url=str(current),
                    status=304,
                    body=None,
                    headers=state.headers,
                    etag=state.headers.get("etag") or etag,
                    last_modified=state.headers.get("last-modified") or last_modified,
                    not_modified=True,
                    permanent_redirect=permanent_target,
                    retry_after=None,
                    error=None,
                    error_kind=None,
                    elapsed=time.monotonic() - started,
                )
            if not 200 <= status < 300:
                state.retry_after = (
                    parse_retry_after(state.headers.get("retry-after"), state.headers.get("date"))
                    if status in (429, 503)
                    else None
                )
                kind = {410: "gone", 429: "ratelimited"}.get(status, "http")
                reason = f"HTTP {status}" + (f" {resp.reason}" if resp.reason else "")
                raise _Failure(kind, reason)
            body = await _read_body(resp, limits.max_bytes)
            return FetchResult(
                url=url,
                final_url=str(current),
                status=status,
                body=body,
                headers=state.headers,
                etag=state.headers.get("etag"),
                last_modified=state.headers.get("last-modified"),
                not_modified=False,
                permanent_redirect=permanent_target,
                retry_after=None,
                error=None,
                error_kind=None,
                elapsed=time.monotonic() - started,
            )


def _check_url(url: str) -> URL:
    parsed = URL(url)
    if parsed.scheme not in ("http", "https"):
        raise _Failure("url", f"unsupported URL scheme {parsed.scheme or '(none)'!r}")
    host = (parsed.host or "").rstrip(".").lower()
    if not host:
        raise _Failure("url", "URL has no host")
    if host == "invalid" or host.endswith(".invalid"):  # RFC 6761: never resolves
        raise _Failure("dns", f"DNS lookup failed for host {host}: .invalid never resolves")
    return parsed


def _lower_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


async def _read_body(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    too_large = _Failure("too_large", f"response larger than {human_size(max_bytes)}")
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    inflater = _Inflater(encoding, max_bytes) if encoding not in ("", "identity") else None
    raw = 0
    out: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        raw += len(chunk)
        if raw > max_bytes:
            raise too_large
        data = inflater.feed(chunk) if inflater is not None else chunk
        size += len(data)
        if size > max_bytes:
            raise too_large
        out.append(data)
    if inflater is not None:
        tail = inflater.finish()
        size += len(tail)
        if size > max_bytes:
            raise too_large
        out.append(tail)
    return b"".join(out)


class _Inflater:
    """Streaming gzip/deflate decoder that never produces more than ``cap + 1`` bytes in
    total, however small the compressed input (zlib ``max_length``). Bytes after the
    last gzip member that do not start another are ignored, as ``gzip -d`` does."""

    def __init__(self, encoding: str, cap: int) -> None:
        self.encoding = encoding
        self.cap = cap
        self.produced = 0
        self._first = True
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise _Failure("encoding", f"unsupported Content-Encoding {encoding!r}")

    def feed(self, chunk: bytes) -> bytes:
        try:
            return self._inflate(chunk)
        except zlib.error as exc:
            raise _Failure("encoding", f"bad {self.encoding} data: {exc}") from None

    def _inflate(self, chunk: bytes) -> bytes:
        if self._first and self.encoding == "deflate":
            self._first = False
            # "deflate" is often sent raw, without the zlib header RFC 9110 asks for
            zlib_header = (
                len(chunk) >= 2 and chunk[0] & 0x0F == 8 and (chunk[0] << 8 | chunk[1]) % 31 == 0
            )
            if not zlib_header:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        out: list[bytes] = []
        data = chunk
        while data:
            room = self.cap - self.produced + 1
            piece = self._zlib.decompress(data, room)
            self.produced += len(piece)
            out.append(piece)
            if self.produced > self.cap:
                raise _Failure("too_large", f"response larger than {human_size(self.cap)}")
            if self._zlib.eof:
                rest = self._zlib.unused_data
                if self.encoding in ("gzip", "x-gzip") and rest[:2] == b"\x1f\x8b":
                    self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)  # next gzip member
                    data = rest
                    continue
                break
            data = self._zlib.unconsumed_tail
        return b"".join(out)

    def finish(self) -> bytes:
        try:
            tail = self._zlib.flush()
        except zlib.error as exc:
            raise _Failure("encoding", f"bad {self.encoding} data: {exc}") from None
        self.produced += len(tail)
        if not self._zlib.eof:
            raise _Failure("encoding", f"truncated {self.encoding} data")
        return tail


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date
    (measured against the response's ``Date`` header when present, else the local clock)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if date:
        try:
            server_now = parsedate_to_datetime(date)
            now = server_now if server_now.tzinfo else server_now.replace(tzinfo=UTC)
        except (TypeError, ValueError, IndexError):
            pass
    return max(0.0, (when - now).total_seconds())


def _classify(exc: aiohttp.ClientError, url: str) -> tuple[str, str]:
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
