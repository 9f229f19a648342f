"""deploy/constraints.txt pins every package a plain install of Wirewatch pulls in, so an
image rebuilt next month gets the versions the tests ran with (README, Deploying)."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _runtime_closure(dist: str) -> set[str]:
    """Names of ``dist``'s installed runtime dependencies, recursively, with the extras a
    requirement asks for (``sqlalchemy[asyncio]`` brings greenlet) but not ``dist``'s own."""
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(dist, "")]
    while todo:
        name, extra = todo.pop()
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            dep = canonicalize_name(req.name)
            for wanted in ["", *sorted(req.extras)]:
                if (dep, wanted) not in seen:
                    seen.add((dep, wanted))
                    todo.append((dep, wanted))
    return {name for name, _extra in seen}


def test_constraints_pin_every_runtime_dependency() -> None:
    pinned: dict[str, str] = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            pinned[canonicalize_name(m.group(1))] = m.group(2)
    missing = sorted(_runtime_closure("wirewatch") - set(pinned))
    assert not missing, f"deploy/constraints.txt lacks {missing}: regenerate it (README)"
