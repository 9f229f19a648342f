"""The ``wirewatch`` command line. The only place (with :mod:`monitor.pipeline.runtime`) that
builds the engine, the HTTP client and the notifiers.

One module per command group, each registering its commands on the shared typer app
of :mod:`monitor.cli.app` when it is imported here: ``check``, ``daemon`` (run),
``once``, ``stories`` (cluster, explain, replay), ``status``, ``audit``, ``feeds``,
``outbox`` and ``mutes``. Importing the package loads only typer and the standard library; a
command imports the database, HTTP and Slack libraries when it runs.

Exit codes: 0 ok; 1 could not run (database unreachable, internal error);
2 invalid configuration or usage.
"""

from __future__ import annotations

# imported for their commands, which they register on the app
from monitor.cli import (  # noqa: F401
    audit,
    check,
    daemon,
    feeds,
    mutes,
    once,
    outbox,
    status,
    stories,
)
from monitor.cli.app import app, main

# `wirewatch --help` lists the commands in this order (then the groups: feeds, outbox)
_ORDER = ("check", "run", "once", "cluster", "explain", "status", "replay", "audit")
app.registered_commands.sort(
    key=lambda c: (
        _ORDER.index(c.callback.__name__)
        if c.callback is not None and c.callback.__name__ in _ORDER
        else len(_ORDER)
    )
)

__all__ = ["app", "main"]
