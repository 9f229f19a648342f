"""One conditional GET of a feed: redirects, status codes, validators.

* Redirects are followed by hand (``allow_redirects=False``) so that a chain of permanent
  redirects (301/308) can be reported to the caller, which updates the stored feed URL,
  while temporary ones (302/303/307) keep it. Loops and over-long chains are errors.
* One ``asyncio.timeout`` covers the whole fetch (all redirects and the body), so a server
  dripping one byte a second cannot hold a poll slot longer than ``total_timeout``.
* Host names under ``.invalid`` (RFC 6761) fail as DNS errors without a lookup.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from monitor.fetch.body import read_body
from monitor.fetch.client import ACCEPT, ACCEPT_ENCODING, FetchLimits, client_timeout
from monitor.fetch.errors import FetchErrorKind, FetchFailure, classify
from monitor.fetch.result import FetchResult

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_DEFAULT_LIMITS = FetchLimits()


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limits: FetchLimits = _DEFAULT_LIMITS,
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
        kind, reason = FetchErrorKind.TIMEOUT, f"timed out after {limits.total_timeout:g}s"
    except FetchFailure as exc:
        kind, reason = exc.kind, exc.reason
    except aiohttp.ClientError as exc:
        kind, reason = classify(exc, state.final_url)
    except (OSError, ValueError, UnicodeError) as exc:  # odd URLs, socket errors
        kind, reason = FetchErrorKind.CONNECT, f"{type(exc).__name__}: {exc}"
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
    timeout = client_timeout(limits)
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
                    raise FetchFailure(
                        FetchErrorKind.REDIRECT, f"bad redirect location: {exc}"
                    ) from None
                if str(target) in seen:
                    raise FetchFailure(FetchErrorKind.REDIRECT, "redirect loop")
                if hops > limits.max_redirects:
                    raise FetchFailure(
                        FetchErrorKind.REDIRECT,
                        f"too many redirects (more than {limits.max_redirects})",
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
                kind = {410: FetchErrorKind.GONE, 429: FetchErrorKind.RATELIMITED}.get(
                    status, FetchErrorKind.HTTP
                )
                reason = f"HTTP {status}" + (f" {resp.reason}" if resp.reason else "")
                raise FetchFailure(kind, reason)
            body = await read_body(resp, limits.max_bytes)
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
        raise FetchFailure(
            FetchErrorKind.URL, f"unsupported URL scheme {parsed.scheme or '(none)'!r}"
        )
    host = (parsed.host or "").rstrip(".").lower()
    if not host:
        raise FetchFailure(FetchErrorKind.URL, "URL has no host")
    if host == "invalid" or host.endswith(".invalid"):  # RFC 6761: never resolves
        raise FetchFailure(
            FetchErrorKind.DNS, f"DNS lookup failed for host {host}: .invalid never resolves"
        )
    return parsed


def _lower_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


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
