"""Orchestration of a poll: fetch → parse → store → dedupe → match → outbox.

Takes the feeds that are due (from the store) and returns what happened to each
(:class:`CycleReport`); on the way it writes entries, stories, matches and queued
alerts. The stages themselves take data and return data; this package is where they
are sequenced and where network, storage and clock are touched (Miniflux's
``RefreshFeed`` shape):

- :mod:`.poll`: which feeds are due, fetch and parse within the limits, write back.
- :mod:`.feedstate`: what one poll leaves on its feed (validators, errors, next due).
- :mod:`.ingest`: one transaction per batch of polls; known entries and regenerated
  guids sorted out.
- :mod:`.fold`: new entries into stories, matches and queued alerts.
- :mod:`.index`: the in-memory story index kept in step with the database.
- :mod:`.runtime`: the process's services and the state ingest and delivery own.
"""

from __future__ import annotations

from monitor.pipeline.index import catch_up, load_index
from monitor.pipeline.ingest import stored_entry
from monitor.pipeline.poll import CycleReport, HostGate, Poller, PollReport, poll_cycle, poll_feed

__all__ = [
    "CycleReport",
    "HostGate",
    "PollReport",
    "Poller",
    "catch_up",
    "load_index",
    "poll_cycle",
    "poll_feed",
    "stored_entry",
]
