"""The fetch stage: a feed URL + the validators stored from its last answer (ETag,
Last-Modified) + ``FetchLimits`` → a ``FetchResult`` (body and headers, a 304, or an
error with its kind). HTTP with aiohttp: conditional GET, limits, politeness.

``fetch`` never raises for network or HTTP problems: the result's ``error`` and
``error_kind`` say what went wrong. The modules: ``request`` does one GET (redirects
followed by hand, status codes, validators), ``body`` reads the body under a size cap
(decompressing it here), ``client`` holds the limits, request headers and the shared
session, ``errors`` the kinds of failure, ``result`` what comes back.
"""

from __future__ import annotations

from monitor.fetch.body import human_size
from monitor.fetch.client import ACCEPT, ACCEPT_ENCODING, FetchLimits, make_session
from monitor.fetch.errors import FetchErrorKind
from monitor.fetch.request import fetch, parse_retry_after
from monitor.fetch.result import FetchResult

__all__ = [
    "ACCEPT",
    "ACCEPT_ENCODING",
    "FetchErrorKind",
    "FetchLimits",
    "FetchResult",
    "fetch",
    "human_size",
    "make_session",
    "parse_retry_after",
]
