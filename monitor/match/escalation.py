"""Whether a story crosses its watchlist's ``escalate`` rule: ``outlets`` different
outlets whose first copies came out within ``within`` of each other. Pure: takes the
outlets' first-copy times, returns the decision and why (ingest, ``replay`` and
``explain`` share it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.health import span
from monitor.match.schema import Escalation


def describe_rule(rule: Escalation) -> str:
    """``"5 outlets within 15m"``."""
    within = rule.within
    for unit, size in (("h", 3600), ("m", 60)):
        if within >= size and within % size == 0:
            return f"{rule.outlets} outlets within {within / size:g}{unit}"
    return f"{rule.outlets} outlets within {within:g}s"


@dataclass(frozen=True, slots=True)
class EscalationCheck:
    """The rule (as text), how many outlets carry the story, the most of them within
    the rule's span of each other, and, once crossed, when (the first copy that completed
    a window) and how long that window was."""

    rule: str
    needed: int
    outlets: int
    best: int
    at: datetime | None = None
    span: float | None = None

    @property
    def crossed(self) -> bool:
        return self.at is not None

    def describe(self) -> str:
        if self.at is not None and self.span is not None:
            return (
                f"escalated at {self.at:%Y-%m-%d %H:%M} UTC: {self.needed} outlets within "
                f"{span(self.span)} (rule: {self.rule})"
            )
        return (
            f"not escalated: at most {self.best} of {self.outlets} outlets within the "
            f"rule's span (rule: {self.rule})"
        )


def check(times: Sequence[datetime], rule: Escalation) -> EscalationCheck:
    """The rule applied to the outlets' first-copy times (any order)."""
    ts = sorted(times)
    n = rule.outlets
    best, lo = 0, 0
    at: datetime | None = None
    span: float | None = None
    for hi, t in enumerate(ts):
        while (t - ts[lo]).total_seconds() > rule.within:
            lo += 1
        best = max(best, hi - lo + 1)
        if at is None and hi - lo + 1 >= n:
            at, span = t, (t - ts[hi - n + 1]).total_seconds()
    if at is not None:
        best = max(best, n)
    return EscalationCheck(describe_rule(rule), n, len(ts), best, at, span)
