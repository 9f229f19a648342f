"""Looking at raw bytes before feedparser does: overlong fields cut
(``cap_field_lengths``), HTML pages and JSON Feeds recognised, and the charset feedparser
is told (``effective_headers``)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

from monitor.parse.entries import AUTHOR_FIELD_CHARS

_AUTHOR_RUN = re.compile(
    rb"(<(?:[A-Za-z_][\w.-]*:)?(?:author|creator|contributor|publisher|managingEditor|webMaster"
    rb"|name|email|owner)\b[^<>]*>(?:<!\[CDATA\[)?)([^<>\]]{%d,})" % (AUTHOR_FIELD_CHARS + 1)
)
_TAIL = 32


def _utf8_floor(data: bytes, end: int) -> int:
    """Largest index <= end that is not inside a UTF-8 multi-byte sequence."""
    i = end
    while i > 0 and i > end - 4 and 0x80 <= data[i] <= 0xBF:
        i -= 1
    return i


def _cut(run: bytes, keep: int, tail: int) -> bytes:
    head_end = _utf8_floor(run, keep)
    amp = run.rfind(b"&", max(0, head_end - 12), head_end)
    if amp != -1 and b";" not in run[amp:head_end]:
        head_end = amp  # do not cut inside an entity reference
    if tail:
        tail_start = len(run) - tail
        while tail_start < len(run) and 0x80 <= run[tail_start] <= 0xBF:
            tail_start += 1
        return run[:head_end] + b"..." + run[tail_start:]
    return run[:head_end] + b"..."


def cap_field_lengths(body: bytes, max_field_chars: int) -> bytes:
    """Cut overlong runs of text (see the module docstring). Linear in ``len(body)``."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]:
        return body  # UTF-16/32: byte-level cutting would break code units
    if len(body) > max_field_chars:
        # the look-behind anchors each attempt at the start of a run: without it the
        # engine retries from every position inside a long-but-not-too-long run (quadratic)
        long_run = re.compile(rb"(?<![^<>])[^<>]{%d,}" % (max_field_chars + _TAIL + 4))
        body = long_run.sub(lambda m: _cut(m.group(0), max_field_chars, _TAIL), body)
    return _AUTHOR_RUN.sub(lambda m: m.group(1) + _cut(m.group(2), AUTHOR_FIELD_CHARS, 0), body)


# --------------------------------------------------------------------------- sniffing

_PROLOG = re.compile(
    rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!(?![dD][oO][cC][tT][yY][pP][eE]\s+html)[^>]*>)", re.S
)
_FIRST_TAG = re.compile(rb"\s*<(!doctype\s+html|[a-z][\w:.-]*)", re.I)
_HTML_ROOTS = frozenset({b"html", b"head", b"body", b"!doctype html"})


def strip_bom(body: bytes) -> bytes:
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if body.startswith(bom):
            return body[len(bom) :]
    return body


def _head_ascii(body: bytes, n: int = 4096) -> bytes:
    head = strip_bom(body[: n * 2])
    if b"\x00" in head[:8]:
        head = head.replace(b"\x00", b"")  # UTF-16/32: good enough for tag sniffing
    return head[:n]


def looks_like_html(body: bytes) -> bool:
    head = _head_ascii(body)
    pos = 0
    while True:
        m = _PROLOG.match(head, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    first = _FIRST_TAG.match(head, pos)
    if not first:
        return False
    name = re.sub(rb"\s+", b" ", first.group(1).lower())
    return name in _HTML_ROOTS


def looks_like_json(body: bytes, content_type: str) -> bool:
    lead = _head_ascii(body, 64).lstrip()
    if lead.startswith(b"{"):
        return True
    return "json" in content_type and not lead.startswith(b"<")


# --------------------------------------------------------------------------- charsets

_SINGLE_BYTE = ("us-ascii", "ascii", "latin", "iso8859", "iso-8859", "cp125", "windows-125")


def _charset_of(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            value = value.strip().strip("\"'").strip()
            return value or None
    return None


def effective_headers(headers: Mapping[str, str], body: bytes, url: str) -> dict[str, str]:
    """Headers to give feedparser: see "Charsets" in the module docstring."""
    lower = {k.lower(): v for k, v in headers.items()}
    charset = _charset_of(lower.get("content-type", ""))
    chosen: str | None = None
    has_bom = body.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if charset and not has_bom:
        try:
            name = codecs.lookup(charset).name
        except LookupError:
            name = ""
        if name:
            try:
                body.decode(name)
            except UnicodeDecodeError:
                name = ""  # the header lies; let the document and sniffing decide
        if name and name != "utf-8" and name.startswith(_SINGLE_BYTE) and not body.isascii():
            try:
                body.decode("utf-8")
                name = "utf-8"  # valid non-ASCII UTF-8 is almost never latin-1 text
            except UnicodeDecodeError:
                pass
        chosen = name or None
    # no Content-Location: feedparser would resolve every URI against it (much of its
    # time on a typical feed); entry links are resolved against the feed URL in ``entry_link``
    out = {"content-type": "application/xml" + (f"; charset={chosen}" if chosen else "")}
    if "content-language" in lower:
        out["content-language"] = lower["content-language"]
    return out
