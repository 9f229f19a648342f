"""Durations as the config files write them: ``90``, ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object, *, allow_none: bool = True) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``; ``None`` for ``"none"``
    (which a setting that must have a duration refuses: ``allow_none=False``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        if value.strip().lower() in {"none", "off", "never", "null"}:
            if allow_none:
                return None
            raise ValueError(f"{value!r} is not allowed here: this setting needs a duration")
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
    hint = "90s, 30m, 24h, 7d or none" if allow_none else "90s, 30m, 24h or 7d"
    raise ValueError(f"not a duration: {value!r} (use e.g. {hint})")
