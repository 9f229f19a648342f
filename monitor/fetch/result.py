"""What ``fetch`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.fetch.errors import FetchErrorKind


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One fetch's outcome. On failure ``error``/``error_kind`` say what went wrong and
    ``body`` is None; on a 304 ``not_modified`` is set and ``etag``/``last_modified``
    are the ones to store. ``permanent_redirect`` is the new URL when every redirect hop
    was permanent (301/308); ``retry_after`` is the wait a 429 or 503 asked for."""

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
    error_kind: FetchErrorKind | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True for a usable answer: a body to parse or a 304."""
        return self.error is None
