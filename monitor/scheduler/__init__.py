"""The daemon's clock: APScheduler running short jobs (poll, deliver, reload, feed
health, retention) in one process, and the HTTP endpoints that tell from outside
whether it is alive, ready and keeping up.

Takes a :class:`~monitor.pipeline.runtime.Runtime`; runs until told to stop.

- :mod:`.daemon`: the jobs, start-up (leases, the story index) and shutdown.
- :mod:`.http`: ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

from monitor.scheduler.daemon import (
    Daemon,
    Reloader,
    apply_reload,
    lease_note,
    retain,
    startup,
)

__all__ = ["Daemon", "Reloader", "apply_reload", "lease_note", "retain", "startup"]
