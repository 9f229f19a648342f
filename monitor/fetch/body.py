"""Reading a response body under a size cap.

Bodies are streamed (the session has ``auto_decompress=False``) and decompressed here
with zlib's ``max_length``, so both the bytes on the wire and the decompressed bytes are
capped at ``FetchLimits.max_bytes``: a gzip bomb stops at the cap without inflating.
"""

from __future__ import annotations

import zlib

import aiohttp

from monitor.fetch.errors import FetchErrorKind, FetchFailure

_CHUNK = 64 * 1024


def human_size(n: int) -> str:
    """``10485760`` → ``"10 MB"``; small values in bytes."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


async def read_body(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The decoded body, or ``FetchFailure`` when it is over ``max_bytes`` (as sent or
    decompressed) or its Content-Encoding is unsupported or corrupt."""
    too_large = FetchFailure(
        FetchErrorKind.TOO_LARGE, f"response larger than {human_size(max_bytes)}"
    )
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    inflater = Inflater(encoding, max_bytes) if encoding not in ("", "identity") else None
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


class Inflater:
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
            raise FetchFailure(
                FetchErrorKind.ENCODING, f"unsupported Content-Encoding {encoding!r}"
            )

    def feed(self, chunk: bytes) -> bytes:
        try:
            return self._inflate(chunk)
        except zlib.error as exc:
            raise FetchFailure(
                FetchErrorKind.ENCODING, f"bad {self.encoding} data: {exc}"
            ) from None

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
                raise FetchFailure(
                    FetchErrorKind.TOO_LARGE, f"response larger than {human_size(self.cap)}"
                )
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
            raise FetchFailure(
                FetchErrorKind.ENCODING, f"bad {self.encoding} data: {exc}"
            ) from None
        self.produced += len(tail)
        if not self._zlib.eof:
            raise FetchFailure(FetchErrorKind.ENCODING, f"truncated {self.encoding} data")
        return tail
