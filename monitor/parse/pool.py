"""Parsing off the event loop: ``parse_in_pool`` and ``ParsePool`` run ``parse_feed`` in
worker processes with a hard timeout; the pool's workers also match watchlists and do
dedupe's first step beside the parse."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from datetime import datetime
from typing import Any

import feedparser

from monitor.dedupe import prepare
from monitor.dedupe.embed import load_in_background
from monitor.match import Matcher, compile_watchlists
from monitor.match.schema import Watchlist
from monitor.parse.dispatch import parse_feed
from monitor.parse.result import ParseResult, failed
from monitor.parse.speedups import install_speedups


async def _run(
    executor: Executor, limit_s: float, call: functools.partial[ParseResult]
) -> tuple[ParseResult, str]:
    """Submit ``call`` to ``executor`` and answer within ``limit_s`` (time queued in the
    executor included)."""
    loop = asyncio.get_running_loop()
    try:
        future = executor.submit(call)
    except (BrokenProcessPool, RuntimeError) as exc:  # broken, or shut down
        return failed(f"parser pool unavailable: {exc}"), "broken"
    done: asyncio.Future[None] = loop.create_future()
    future.add_done_callback(lambda _f: _wake(loop, done))
    return await _outcome(future, done, limit_s)


async def _outcome(
    future: Future[ParseResult], done: asyncio.Future[None], limit_s: float
) -> tuple[ParseResult, str]:
    """The answer for a parse handed to an executor: ``future``'s result, or why there
    is none. ``done`` completes when ``future`` does; the timeout counts from now."""
    try:
        async with asyncio.timeout(limit_s):
            await done
    except TimeoutError:
        future.cancel()  # (stops it only if it has not started)
        return failed(f"parse timed out after {limit_s:g}s"), "timeout"
    try:
        return future.result(), "ok"
    except BrokenProcessPool:
        return failed("parser pool broken (a worker process died)"), "broken"
    except CancelledError:  # cancelled by a shutdown
        return failed("parser pool unavailable: shut down"), "broken"
    except RuntimeError as exc:
        return failed(f"parser pool unavailable: {exc}"), "broken"


def _wake(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    """Complete ``done`` on its loop (from any thread); nothing if the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, done, None)


async def parse_in_pool(
    executor: Executor,
    body: bytes,
    headers: Mapping[str, str],
    *,
    url: str,
    feed: str,
    source: str,
    feed_tags: tuple[str, ...] = (),
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the worker, not for the caller
) -> ParseResult:
    """Run ``parse_feed`` in ``executor`` with a hard timeout (which includes time queued
    behind other parses). Never raises for parser problems.

    On timeout the awaiting coroutine returns at once with ``error="parse timed out after
    Ns"``; the worker itself keeps running the parse until it finishes, because an executor
    cannot interrupt a task. To reclaim it, call ``terminate_workers(executor)`` and create
    a new pool, or use ``ParsePool``, which does exactly that.
    """
    call = functools.partial(
        parse_feed,
        body,
        dict(headers),
        url=url,
        feed=feed,
        source=source,
        feed_tags=tuple(feed_tags),
    )
    result, _status = await _run(executor, timeout, call)
    return result


# each ParsePool executor's process table (filled as workers start), kept so that a pool
# already shut down by a watchlist reload can still have a runaway worker killed
_POOL_PROCESSES: weakref.WeakKeyDictionary[ProcessPoolExecutor, dict[int, Any]] = (
    weakref.WeakKeyDictionary()
)


def terminate_workers(executor: ProcessPoolExecutor) -> None:
    """Kill the worker processes of ``executor`` (Python 3.11 has no public API for it) and
    shut it down; futures still running in it fail with ``BrokenProcessPool``."""
    # (shutdown() drops the executor's own reference: the one kept at creation remains)
    processes = dict(getattr(executor, "_processes", None) or _POOL_PROCESSES.get(executor) or {})
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        process.join(timeout=5)


# the worker's compiled watchlists and the pool generation they belong to
_WORKER_MATCHER: tuple[int, Matcher] | None = None


def _process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        return state in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _exit_with(owner: int, every: float = 1.0) -> None:
    """Watch the process that owns the pool; when it is gone (killed with SIGKILL, or
    by the OOM killer: nothing of it ran to shut the pool down) end this worker too.
    A worker waits for its next task forever otherwise, and with it the forkserver:
    a whole pool of processes left under PID 1 by every killed run."""

    def watch() -> None:
        while not _process_gone(owner):
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def _warm_up(
    watchlists: tuple[Watchlist, ...] | None = None, generation: int = 0, owner: int = 0
) -> None:
    """Runs in each worker at start: import and compile costs are paid once, not per
    parse. ``owner``: the pid of the process using the pool; the worker ends with it."""
    global _WORKER_MATCHER
    if owner:
        _exit_with(owner)
    # Ctrl-C in a terminal reaches the whole process group: the daemon handles it and
    # shuts the pool down; workers must not die mid-parse with a traceback of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_speedups()
    feedparser.parse(b"<rss version='2.0'><channel><title>x</title></channel></rss>")
    # prepare computes each title's vector once the model (tens of MB) is in memory: it
    # loads beside the first parses instead of holding up the pool's start
    load_in_background()
    if watchlists is not None:
        _WORKER_MATCHER = (generation, compile_watchlists(watchlists))


def _ready() -> None:
    """A no-op task: returns once a worker has started (and run ``_warm_up``)."""


def _parse_and_match(
    body: bytes, headers: dict[str, str], prepare_chars: int | None = None, **kwargs: Any
) -> ParseResult:
    """``parse_feed``, then, here in the worker, the watchlists matched against each entry
    and the first step of story dedupe (``monitor.dedupe.prepare``: title key, summary cut
    to ``prepare_chars``, compact guard features): both are pure functions of the entry,
    and doing them beside the
    parse takes them off the single process that dedupes and stores."""
    result = parse_feed(body, headers, **kwargs)
    if not result.entries:
        return result
    if prepare_chars is not None:
        prepared = tuple(
            prepare(e.title, e.summary, e.source, prepare_chars, features=True)
            for e in result.entries
        )
        result = replace(result, prepared=prepared)
    worker = _WORKER_MATCHER
    if worker is None:
        return result
    generation, matcher = worker
    hits = tuple(tuple(matcher.match_entry(e)) for e in result.entries)
    return replace(result, hits=hits, generation=generation)


class _Refused(Exception):
    """An executor refused a parse (its pool is broken or shut down)."""

    def __init__(self, executor: ProcessPoolExecutor, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.executor = executor
        self.cause = cause


class _Task:
    """One parse waiting for, or running in, a worker (``ParsePool``)."""

    __slots__ = ("abandoned", "call", "done", "loop", "started")

    def __init__(self, call: functools.partial[ParseResult], loop: asyncio.AbstractEventLoop):
        self.call = call
        self.loop = loop
        # set (from the dispatching thread) when handed to a worker: (executor, future)
        self.started: asyncio.Future[tuple[ProcessPoolExecutor, Future[ParseResult]]] = (
            loop.create_future()
        )
        self.done: asyncio.Future[None] = loop.create_future()
        self.abandoned = False  # the caller gave up before a worker took it


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    """Set an asyncio future's result or exception unless it is already settled (on its
    loop, via ``call_soon_threadsafe``)."""
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class ParsePool:
    """A process pool for parsing, with a hard timeout per parse that does not count time
    spent waiting for a free worker. A parse that overruns is answered with an error and
    its pool is killed and replaced, so a pathological feed cannot pin a worker; parses
    that were running in the killed pool are retried once in the new one.

    At most ``workers`` parses are handed to the executor at once (so each starts at once
    and its timeout measures the parse, not a queue). The next waiting parse is handed
    over from the executor's own thread the moment one finishes, not when the event loop
    gets round to it: a loop busy storing a batch would otherwise leave workers idle."""

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = 30.0,
        max_field_chars: int = 20_000,
        start_method: str = "forkserver",
        watchlists: Sequence[Watchlist] | None = None,
        prepare_chars: int | None = None,
    ) -> None:
        self.workers = workers
        self.prepare_chars = prepare_chars
        self.timeout = timeout
        self.max_field_chars = max_field_chars
        self.restarts = 0
        # results carry the generation of the watchlists they were matched with; it
        # changes with every set_watchlists, so a caller can tell stale hits apart
        self.generation = 1
        self._watchlists = tuple(watchlists) if watchlists is not None else None
        self._context = multiprocessing.get_context(start_method)
        self._executor = self._new_executor()
        # (re-entrant: a future that is already done runs its callback, _finished, at once)
        self._lock = threading.RLock()
        self._closed = False
        self._waiting: collections.deque[_Task] = collections.deque()
        self._running = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_warm_up,
            initargs=(self._watchlists, self.generation, os.getpid()),
        )
        processes = getattr(executor, "_processes", None)
        if isinstance(processes, dict):
            _POOL_PROCESSES[executor] = processes
        return executor

    def start(self) -> None:
        """Start the workers now and wait until they are ready (blocking; call once at
        start-up), so the first parses' timeouts do not include process start-up."""
        futures = [self._executor.submit(_ready) for _ in range(self.workers)]
        for future in futures:
            future.result()

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        """Match with these watchlists from now on (hot reload): new workers compile them;
        parses already running finish in the old workers, their results marked with the
        old generation."""
        with self._lock:  # (no hand-over in between: it reads self._executor)
            self._watchlists = tuple(watchlists)
            self.generation += 1
            old = self._executor
            self._executor = self._new_executor()
        old.shutdown(wait=False)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Kill the workers of ``broken`` (a parse overran there, or it broke), and start
        a new pool if it is the current one. An older pool (replaced by a watchlist
        reload) is killed too: its runaway parse would otherwise keep a worker slot."""
        with self._lock:
            current = self._executor is broken
            if current:
                self._executor = self._new_executor()
                self.restarts += 1
        terminate_workers(broken)

    async def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        url: str,
        feed: str,
        source: str,
        feed_tags: tuple[str, ...] = (),
        now: datetime | None = None,
    ) -> ParseResult:
        call = functools.partial(
            _parse_and_match,
            body,
            dict(headers),
            prepare_chars=self.prepare_chars,
            url=url,
            feed=feed,
            source=source,
            feed_tags=tuple(feed_tags),
            max_field_chars=self.max_field_chars,
            now=now,
        )
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            task = _Task(call, loop)
            with self._lock:
                if self._running < self.workers:
                    self._hand_over(task)
                else:
                    self._waiting.append(task)
            try:
                executor, future = await task.started
            except asyncio.CancelledError:
                task.abandoned = True
                raise
            except _Refused as exc:  # the executor would not take it: broken or shut
                if self._closed or attempt:
                    return failed(f"parser pool unavailable: {exc.cause}")
                self._replace(exc.executor)  # (that one: a newer pool may be fine)
                continue
            result, status = await _outcome(future, task.done, self.timeout)
            if status == "timeout":
                self._replace(executor)
                return result
            if status == "broken" and attempt == 0 and not self._closed:
                self._replace(executor)
                continue
            return result
        return result  # pragma: no cover - the loop always returns

    def _hand_over(self, task: _Task) -> None:
        """Submit ``task`` to the current executor (``self._lock`` held)."""
        executor = self._executor
        try:
            future = executor.submit(task.call)
        except (BrokenProcessPool, RuntimeError) as exc:
            with contextlib.suppress(RuntimeError):  # (the caller's loop is closed)
                task.loop.call_soon_threadsafe(_settle, task.started, _Refused(executor, exc))
            return
        self._running += 1
        with contextlib.suppress(RuntimeError):
            task.loop.call_soon_threadsafe(_settle, task.started, (executor, future))
        future.add_done_callback(lambda _f: self._finished(task))

    def _finished(self, task: _Task) -> None:
        """A parse ended (in the executor's thread): hand the next waiting one over."""
        with self._lock:
            self._running -= 1
            while self._waiting:
                nxt = self._waiting.popleft()
                if not nxt.abandoned:
                    self._hand_over(nxt)
                    break
        _wake(task.loop, task.done)

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: let running parses finish (``wait=True``) or kill them.
        Parses still waiting for a worker are answered with an error."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for task in waiting:
            with contextlib.suppress(RuntimeError):
                gone = _Refused(self._executor, RuntimeError("the parser pool was closed"))
                task.loop.call_soon_threadsafe(_settle, task.started, gone)
        if wait:
            self._executor.shutdown(wait=True, cancel_futures=True)
        else:
            terminate_workers(self._executor)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
