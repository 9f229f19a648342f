"""Speed-ups for feedparser 6.0 (``install_speedups``): faster date parsing and dict
access in place of feedparser's own, with identical results; ``remove_speedups`` undoes
them."""

from __future__ import annotations

import copy
import re
import time
from datetime import datetime, timedelta
from typing import Any

import feedparser

#
# feedparser stays the parser of every feed; these make the same feedparser cheaper without
# changing one field of its output (tests/test_parse.py compares raw feedparser results with
# and without them over feedparser's own fixture corpus and the captured news feeds):
#
# * a fast date handler, registered at the front of feedparser's list through its public
#   ``registerDateHandler``: the common RFC 822 and W3C-DTF/ISO 8601 shapes, computed exactly
#   as feedparser's own handlers compute them; anything else returns ``None`` and falls
#   through to feedparser's handlers unchanged;
# * ``FeedParserDict.get`` / ``__getitem__`` / ``__contains__`` skip the alias table for keys
#   that have no alias (every key feedparser itself looks up while parsing), and a
#   ``__deepcopy__`` does what ``copy._reconstruct`` does without the generic machinery;
# * feedparser's ``_urljoin`` returns at once when there is no base URI (we never send
#   Content-Location): ``urllib.parse.urljoin("", uri)`` is ``uri``.
#
# They are installed once per process by ``parse_feed`` (and in each ``ParsePool`` worker at
# start), and only for the feedparser versions they were checked against.

_SPEEDUP_VERSIONS = ("6.0.",)
_RFC822_ZONES = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0,
    "adt": -3, "ast": -4, "at": -4, "edt": -4, "est": -5, "et": -5,
    "cdt": -5, "cst": -6, "ct": -6, "mdt": -6, "mst": -7, "mt": -7,
    "pdt": -7, "pst": -8, "pt": -8, "a": -1, "n": 1, "m": -12, "y": 12,
    "met": 1, "mest": 2,
}  # fmt: skip
_MONTH_NUM = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_RFC822 = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?[ \t]+)?"
    r"([0-9]{1,2})[ \t]+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[ \t]+([0-9]{4})"
    r"[ \t]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?"
    r"[ \t]+(?:([+-])([0-9]{2}):?([0-9]{2})|([a-z]{1,4}))",
    re.ASCII | re.IGNORECASE,
)
_W3DTF = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[tT ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?"
    r"(?:([zZ])|([+-])([0-9]{2}):([0-9]{2}))?)?",
    re.ASCII,
)


def _utc_tuple(
    year: int, month: int, day: int, hour: int, minute: int, second: int, offset_min: int
) -> time.struct_time | None:
    try:
        stamp = datetime(year, month, day, hour, minute, second)
        return (stamp - timedelta(minutes=offset_min)).utctimetuple()
    except (ValueError, OverflowError):
        return None  # feedparser's handlers get their turn


def fast_date(value: str) -> time.struct_time | None:
    """A date handler for feedparser: RFC 822 (``Tue, 27 May 2025 10:00:00 GMT``, named
    zones, numeric offsets, missing seconds) and W3C-DTF/ISO 8601 (``2025-05-27T10:00:00Z``,
    ``±hh:mm`` offsets, fractions, space separator, date only). Returns exactly what
    feedparser's own handlers return for those strings, and ``None`` for anything else so
    that feedparser's handlers are tried."""
    m = _W3DTF.fullmatch(value)
    if m:
        y, mo, d, h, mi, s, _z, sign, oh, om = m.groups()
        offset = 0
        if sign:
            offset = int(oh) * 60 + int(om)
            offset = -offset if sign == "-" else offset
        return _utc_tuple(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), offset)
    m = _RFC822.fullmatch(value)
    if m:
        d, mon, y, h, mi, s, sign, oh, om, zone = m.groups()
        if sign:
            offset = int(oh) * 60 + int(om)
            offset = -offset if sign == "-" else offset
        else:
            hours = _RFC822_ZONES.get(zone.lower())
            if hours is None:
                return None
            offset = hours * 60
        month = _MONTH_NUM[mon.lower()]
        return _utc_tuple(int(y), month, int(d), int(h), int(mi), int(s or 0), offset)
    return None


_ALIASED: frozenset[str] = frozenset()
_ORIGINALS: dict[str, Any] = {}


def _fpd_get(self: dict[str, Any], key: str, default: Any = None) -> Any:
    if key in _ALIASED:
        return _ORIGINALS["get"](self, key, default)
    return dict.get(self, key, default)


def _fpd_getitem(self: dict[str, Any], key: str) -> Any:
    if key in _ALIASED:
        return _ORIGINALS["__getitem__"](self, key)
    return dict.__getitem__(self, key)


def _fpd_contains(self: dict[str, Any], key: object) -> bool:
    if key in _ALIASED:
        return bool(_ORIGINALS["__contains__"](self, key))
    return dict.__contains__(self, key)


_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _fpd_deepcopy(self: dict[str, Any], memo: dict[int, Any]) -> Any:
    """What ``copy.deepcopy`` does for a FeedParserDict (``copy._reconstruct`` with the
    state and dict items of ``__reduce_ex__(4)``), minus the generic machinery."""
    cls = type(self)
    new = cls.__new__(cls)
    memo[id(self)] = new
    state = getattr(self, "__dict__", None)
    if state:
        new.__dict__.update(copy.deepcopy(state, memo))
    for key, value in dict.items(self):
        if type(value) not in _ATOMIC:
            value = copy.deepcopy(value, memo)
        new[key if type(key) in _ATOMIC else copy.deepcopy(key, memo)] = value
    return new


def _make_fast_urljoin(original: Any) -> Any:
    def _urljoin(base: Any, uri: Any) -> Any:
        if base == "" and type(uri) is str and "://" not in uri:
            return uri  # urljoin("", uri) is uri, and feedparser's fix-up needs a "://"
        return original(base, uri)

    return _urljoin


def install_speedups() -> bool:
    """Make feedparser cheaper in this process (see above); idempotent. Returns whether the
    speed-ups are active (False for a feedparser version they were not checked against)."""
    global _ALIASED
    if _ORIGINALS:
        return True
    if not str(getattr(feedparser, "__version__", "")).startswith(_SPEEDUP_VERSIONS):
        return False
    from feedparser import mixin
    from feedparser.util import FeedParserDict

    _ALIASED = frozenset(FeedParserDict.keymap) | {
        "category", "enclosures", "license", "updated", "updated_parsed"
    }  # fmt: skip
    for name in ("get", "__getitem__", "__contains__"):
        _ORIGINALS[name] = FeedParserDict.__dict__[name]
    _ORIGINALS["_urljoin"] = mixin._urljoin
    FeedParserDict.get = _fpd_get
    FeedParserDict.__getitem__ = _fpd_getitem
    FeedParserDict.__contains__ = _fpd_contains
    FeedParserDict.__deepcopy__ = _fpd_deepcopy
    mixin._urljoin = _make_fast_urljoin(_ORIGINALS["_urljoin"])
    feedparser.registerDateHandler(fast_date)
    return True


def remove_speedups() -> None:
    """Undo ``install_speedups`` (for comparisons and tests)."""
    if not _ORIGINALS:
        return
    from feedparser import datetimes, mixin
    from feedparser.util import FeedParserDict

    for name in ("get", "__getitem__", "__contains__"):
        setattr(FeedParserDict, name, _ORIGINALS.pop(name))
    del FeedParserDict.__deepcopy__
    mixin._urljoin = _ORIGINALS.pop("_urljoin")
    handlers = datetimes._date_handlers
    while fast_date in handlers:
        handlers.remove(fast_date)
