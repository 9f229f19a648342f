"""The daemon's HTTP endpoints (aiohttp's server), for probes and Prometheus:

* ``/healthz``: the process is alive and its event loop is not blocked;
* ``/readyz``: the database answers, the scheduler ticked within 3 ticks and the
  configuration (as last read) is valid;
* ``/metrics``: Prometheus text (``monitor.metrics``), its gauges read from the
  database at each scrape.

Off unless ``--http HOST:PORT`` (or ``http:`` in settings.yaml) is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

# generate_latest writes the 0.0.4 text format, which every Prometheus reads
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from monitor.health import overdue_after
from monitor.pipeline.runtime import Runtime
from monitor.store.ops import ping, queue, schedule

log = logging.getLogger("wirewatch.http")

BEAT_S = 0.5  # the loop watcher's period
BLOCKED_S = 5.0  # a loop that did not run the watcher for this long is blocked
DB_TIMEOUT_S = 3.0  # /readyz and /metrics give the database this long to answer


@dataclass
class Probe:
    """What the daemon tells the endpoints (times on the loop's monotonic clock)."""

    last_tick: float | None = None
    tick_lag: float = 0.0
    config_error: str | None = None  # the last reload's problem; None when valid
    beat: float | None = None  # the loop watcher's last run


class OpsServer:
    def __init__(self, rt: Runtime, probe: Probe, host: str, port: int) -> None:
        self.rt, self.probe, self.host, self.port = rt, probe, host, port
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> str:
        """Listen; returns the base URL (with the port chosen when 0 was given)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        self._watcher = asyncio.create_task(self._watch_loop(), name="loop watcher")
        return self.url

    async def _within(self, work: Coroutine[Any, Any, None], seconds: float) -> bool:
        """Run ``work`` (database reads) for at most ``seconds``: False when it has not
        finished by then. It is never cancelled, only left to finish on its own: a
        query cancelled half-way can leave its pooled connection unusable, and the next
        task to take that connection would wait forever (seen with asyncpg under load,
        when the loop was busy for longer than the timeout)."""
        task = asyncio.ensure_future(work)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if not done:
            return False
        task.result()  # (its error, if any)
        return True

    async def close(self) -> None:
        if self._checks:
            await asyncio.wait(self._checks, timeout=DB_TIMEOUT_S * 2)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.probe.beat = loop.time()
            await asyncio.sleep(BEAT_S)

    async def _healthz(self, _request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        beat = self.probe.beat
        if beat is not None and now - beat > BLOCKED_S:
            return web.Response(status=503, text=f"loop blocked for {now - beat:.1f} s\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems: list[str] = []
        lines: list[str] = []
        try:
            if await self._within(self._ping(), DB_TIMEOUT_S):
                lines.append("database: ok")
            else:
                problems.append(f"database: no answer within {DB_TIMEOUT_S:g} s")
        except Exception as exc:
            problems.append(f"database: unreachable ({type(exc).__name__})")
        tick = self.rt.config.settings.poll.tick
        last = self.probe.last_tick
        now = asyncio.get_running_loop().time()
        if last is None:
            problems.append("scheduler: not ticked yet")
        elif now - last > 3 * tick:
            problems.append(f"scheduler: last tick {now - last:.0f} s ago (tick {tick:g} s)")
        else:
            lines.append(f"scheduler: last tick {now - last:.1f} s ago")
        if self.probe.config_error:
            problems.append(f"config: invalid ({self.probe.config_error})")
        else:
            lines.append("config: ok")
        body = "\n".join([*problems, *lines]) + "\n"
        return web.Response(status=503 if problems else 200, text=body)

    async def _metrics(self, _request: web.Request) -> web.Response:
        try:  # (the counters are worth serving without the database's gauges)
            if not await self._within(self.refresh(), DB_TIMEOUT_S):
                log.warning("metrics: the database did not answer in time; gauges not updated")
        except Exception as exc:
            log.warning("metrics: could not read the queue from the database: %s", exc)
        return web.Response(
            body=self.rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def _ping(self) -> None:
        async with self.rt.sessions() as session:
            await ping(session)

    async def refresh(self) -> None:
        """The gauges the database holds: queued alerts per sink and the oldest one's
        age, feeds overdue; and the tick lag the daemon measured."""
        m, rt = self.rt.metrics, self.rt
        now = rt.clock()
        async with rt.sessions() as session:
            q = await queue(session)
            sched = await schedule(
                session, now=now, grace=overdue_after(rt.config.settings.poll.tick)
            )
        for sink in {*rt.notifiers, *q.pending}:
            m.alerts_pending.labels(sink).set(q.pending.get(sink, 0))
        m.oldest_pending.set(_age(q.oldest, now))
        m.feeds_overdue.set(sched.overdue)
        m.tick_lag.set(self.probe.tick_lag)


def _age(when: datetime | None, now: datetime) -> float:
    if when is None:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (now - when).total_seconds())
