"""``cluster``, ``explain`` and ``replay``: what the daemon would make of entries,
without polling or sending anything.

``cluster`` folds a file of items into stories with the daemon's dedupe; ``explain``
shows, per watchlist, whether a text or a stored entry matches and why; ``replay`` runs
a changed watchlists file over the stored entries and compares it with the live one.
They only read the database, and never create one.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli.app import (
    AsJson,
    ConfigDir,
    Database,
    FeedsFile,
    WatchFile,
    app,
    database_exists,
    load,
    open_session,
    require_database,
    run_coro,
)
from monitor.normalize import clean, strip_unsafe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from monitor.config import AppConfig
    from monitor.match import Explanation, Matcher
    from monitor.match.escalation import EscalationCheck
    from monitor.models import Entry


@app.command(short_help="Cluster entries into stories as the daemon does.")
def cluster(
    items: Annotated[
        Path,
        typer.Argument(
            metavar="ITEMS.jsonl", help="JSONL: id, title, summary, published, source, url"
        ),
    ],
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Cluster entries into stories with exactly the daemon's dedupe; prints id<TAB>story_id."""
    from monitor.cluster import cluster_lines
    from monitor.pipeline.runtime import dedupe_config

    cfg = _load_lenient(config, feeds, watchlists)
    dcfg = dedupe_config(cfg)
    try:
        stream = sys.stdin if str(items) == "-" else items.open(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: {items}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    out = sys.stdout
    try:
        for item_id, story_id in cluster_lines(stream, dcfg):
            # both columns are ids from the input file (a story is named by its first
            # item): cleaned alike, so no escape sequence or tab gets through and the
            # columns still join
            out.write(f"{clean(item_id)}\t{clean(story_id)}\n")
    except ValueError as exc:
        typer.echo(f"error: {items}: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _load_lenient(config: Path, feeds: Path | None, watchlists: Path | None) -> AppConfig:
    """Commands that need only settings work without feeds/watchlists files."""
    if not config.is_dir() and feeds is None and watchlists is None:
        from monitor.config import AppConfig, Settings

        return AppConfig(settings=Settings(), feeds=[], watchlists=[])
    return load(config, feeds, watchlists)


@app.command(short_help="Show whether a text or stored entry matches, and why.")
def explain(
    text: Annotated[
        str | None, typer.Option("--text", metavar="TEXT", help="Text to test (as a title).")
    ] = None,
    entry: Annotated[
        int | None,
        typer.Option("--entry", metavar="ID", help="A stored entry's id (--text lists them)."),
    ] = None,
    summary: Annotated[
        str,
        typer.Option(
            "--summary", metavar="TEXT", help="Summary text; --text is then the title only."
        ),
    ] = "",
    feed: Annotated[
        str, typer.Option("--feed", metavar="NAME", help="Feed name for scope checks.")
    ] = "",
    as_json: AsJson = False,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Show, per watchlist, whether a text or stored entry matches and why. With --text,
    stored entries with that title are listed with their ids."""
    from monitor.match import compile_watchlists, explain_json, format_explanations

    if (text is None) == (entry is None):
        typer.echo("error: give exactly one of --text or --entry", err=True)
        raise typer.Exit(2)
    cfg = load(config, feeds, watchlists, database)
    if feed and all(f.name != feed for f in cfg.feeds):
        typer.echo(f"error: --feed {feed!r}: no such feed in the config", err=True)
        raise typer.Exit(2)
    matcher = compile_watchlists(cfg.watchlists)
    head: list[str] = []
    tail: list[str] = []
    about: dict[str, Any] = {}
    if text is not None:
        # the text stands for both title and summary unless a summary is given
        fields = {"title": text, "summary": summary or text, "feed": feed}
        tags = next((f.tags for f in cfg.feeds if f.name == feed), ())
        expls = matcher.explain(fields, feed=feed, feed_tags=tags)
        if database_exists(cfg):
            found = run_coro(_entries_titled(cfg, text), cfg.settings.database_url)
            if found:
                head.append(
                    "stored with this title: "
                    + ", ".join(f"entry {i} ({clean(name)})" for i, name in found)
                    + " (wirewatch explain --entry ID)"
                )
    else:
        assert entry is not None
        require_database(cfg)
        found_entry = run_coro(_stored(cfg, entry), cfg.settings.database_url)
        if found_entry is None:
            typer.echo(f"error: no entry with id {entry}", err=True)
            raise typer.Exit(2)
        stored, outlets = found_entry
        outlet = f", {stored.source}" if stored.source and stored.source != stored.feed else ""
        head.append(f'entry {entry}: "{stored.title}" (feed {stored.feed}{outlet})')
        about = {"entry": {"id": entry, "title": stored.title, "feed": stored.feed}}
        expls = matcher.explain_entry(stored)
        escalations = _escalations(matcher, expls, outlets)
        if escalations:
            about["escalation"] = {name: c.describe() for name, c in escalations.items()}
            tail = [f"{name}: story {c.describe()}" for name, c in escalations.items()]
    if as_json:
        payload = {**about, **explain_json(expls)}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:  # what was found quotes the entry (or --text) as it is: made safe to print
        lines = [*head, format_explanations(expls), *tail]
        typer.echo(strip_unsafe("\n".join(lines)))


def _escalations(
    matcher: Matcher, expls: Sequence[Explanation], outlets: dict[str, datetime]
) -> dict[str, EscalationCheck]:
    """For each matching watchlist with an ``escalate`` rule: whether the entry's story
    crossed it (its outlets' first copies), when and why."""
    from monitor.match.escalation import check

    out: dict[str, EscalationCheck] = {}
    for e in expls:
        wl = matcher.watchlists.get(e.watchlist)
        if e.matched and wl is not None and wl.escalate is not None:
            out[e.watchlist] = check(list(outlets.values()), wl.escalate)
    return out


async def _stored(cfg: AppConfig, entry_id: int) -> tuple[Entry, dict[str, datetime]] | None:
    """The stored entry, and its story's outlets with their first copies' times."""
    from monitor.pipeline import stored_entry
    from monitor.store.entries import entry_and_feed, outlets_of_stories

    async with open_session(cfg) as session:
        found = await entry_and_feed(session, entry_id)
        if found is None:
            return None
        story = found[0].story_id
        outlets = (await outlets_of_stories(session, [story])).get(story, {}) if story else {}
        return stored_entry(*found), outlets


async def _entries_titled(cfg: AppConfig, title: str) -> list[tuple[int, str]]:
    """(id, feed name) of the stored entries titled ``title`` (newest first, at most 10)."""
    from monitor.store.entries import entries_titled

    async with open_session(cfg) as session:
        return await entries_titled(session, title.strip(), limit=10)


@app.command(short_help="Dry-run a watchlist change over stored entries.")
def replay(
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="How far back: e.g. 7d, 48h.")
    ] = "7d",
    as_json: AsJson = False,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Run a watchlists file over stored entries: per watchlist, how many stories would
    alert, with samples, and the difference from the live config. Sends nothing."""
    from monitor.config import parse_duration
    from monitor.match import compile_watchlists
    from monitor.replay import format_replay
    from monitor.replay import replay as run_replay

    candidate_cfg = load(config, feeds, watchlists, database)
    live_cfg = load(config, feeds, None, database) if watchlists is not None else candidate_cfg
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        typer.echo(f"error: --since: {exc}", err=True)
        raise typer.Exit(2) from None
    if seconds is None:
        seconds = 3650 * 86400.0
    require_database(candidate_cfg)
    entries = run_coro(_stored_entries(candidate_cfg, seconds), candidate_cfg.settings.database_url)
    report = run_replay(
        entries,
        compile_watchlists(candidate_cfg.watchlists),
        compile_watchlists(live_cfg.watchlists),
    )
    if as_json:
        payload = {"entries": len(entries), "watchlists": [r.to_dict() for r in report]}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        typer.echo(format_replay(report, seconds / 86400, len(entries)))


async def _stored_entries(cfg: AppConfig, seconds: float) -> list[Any]:
    from monitor.pipeline import stored_entry
    from monitor.replay import StoredEntry
    from monitor.store.entries import entries_in_stories_since
    from monitor.store.feeds import list_feeds

    since = datetime.now(UTC) - timedelta(seconds=seconds)
    async with open_session(cfg) as session:
        feeds = {f.id: f for f in await list_feeds(session)}
        return [
            StoredEntry(row.story_id or 0, stored_entry(row, feeds.get(row.feed_id)), row.seen_at)
            for row in await entries_in_stories_since(session, since)
        ]
