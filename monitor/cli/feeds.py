"""``feeds``: the health of every feed (the default), and the commands that change the
feeds file: ``add`` (discover a page's feed, validate it, append it), ``import`` (an
OPML file or URL list) and ``export`` (OPML).

Feeds are appended to the YAML file as block-list items, keeping its comments and
layout, and the whole configuration is loaded again before the change is kept: a file
that no longer validates is put back as it was.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.cli.app import (
    ConfigDir,
    Database,
    FeedsFile,
    WatchFile,
    ago,
    app,
    clip,
    dur,
    load,
    open_session,
    require_database,
    run_coro,
)
from monitor.normalize import clean

if TYPE_CHECKING:
    from monitor.config import AppConfig
    from monitor.health import History


feeds_app = typer.Typer(
    help="Feed health; add feeds; OPML import/export.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(feeds_app, name="feeds")


@feeds_app.callback()
def feeds_health(
    ctx: typer.Context,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
    database: Database = None,
) -> None:
    """Print the health of every feed: last success, last error, failures, interval.

    States: ok, retrying (failed fewer than health.failures times in a row), failing
    (that many or more), silent (far longer than its usual cadence without a new item),
    moved (a 301 took it to a URL the feeds file does not give yet), disabled (in the
    config, or by a 410 Gone), new (never polled yet), removed (no longer in the config;
    its history stays). The daemon tells the ops channel when a feed turns failing,
    silent, disabled or moved, and when it recovers. Read-only: the config given is compared
    with the database, not written into it."""
    if ctx.invoked_subcommand is not None:
        return
    from monitor.health import feed_state, per_day, silent

    cfg = load(config, feeds, watchlists, database)
    require_database(cfg)
    rows, history, leases = run_coro(_feed_rows(cfg), cfg.settings.database_url)
    now = datetime.now(UTC)
    configured = {f.name: f for f in cfg.feeds}
    header = (
        f"{'feed':<24} {'state':<9} {'last ok':>9} {'fails':>5} {'every':>7} {'entries':>7}"
        f" {'/day':>6}  last error"
    )
    typer.echo(header)
    for r in rows:
        h = history.get(r.id) if r.id is not None else None
        f = configured.get(r.name)
        quiet = h is not None and silent(h, now)
        state = feed_state(r, f, quiet, cfg.settings.health.failures)
        state = "disabled" if state == "off" else state
        every = r.current_interval_s or (f.interval if f is not None else None)
        typer.echo(
            f"{clip(r.name, 24):<24} {state:<9} {ago(r.last_success, now):>9} "
            f"{r.consecutive_failures:>5} {dur(every):>7} {r.entries_seen:>7} "
            f"{per_day(r, h, now):>6}  "
            f"{clip(r.disabled_reason or r.last_error or '', 80)}"
        )
    from monitor.scheduler import lease_note

    for owner, n, until in leases:  # what no other process may poll before then
        typer.echo(clean(lease_note(owner, n, until)))


async def _feed_rows(
    cfg: AppConfig,
) -> tuple[list[Any], dict[int, History], list[tuple[str, int, datetime]]]:
    """Every feed of the config (a configured feed the database has not seen yet as a
    row of its own, never stored) and every stored feed the config no longer has, by
    name; with their recent history; and the leases held now (owner, feeds, until)."""
    from monitor.store.feeds import held_leases, list_feeds
    from monitor.store.history import feed_history
    from monitor.store.tables import FeedRow

    now = datetime.now(UTC)
    async with open_session(cfg) as session:
        stored = {r.name: r for r in await list_feeds(session)}
        history = await feed_history(session, list(stored.values()), now)
        leases = await held_leases(session, now)
    rows = dict(stored)
    for f in cfg.feeds:
        if f.name not in rows:
            rows[f.name] = FeedRow(
                name=f.name, url=f.url, source=f.outlet, interval_s=f.interval, created_at=now
            )
    return [rows[name] for name in sorted(rows)], history, leases


@feeds_app.command("add", short_help="Discover, validate and add a feed.")
def feeds_add(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="A feed URL, or a web page that links to its feed."),
    ],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Feed name (unique).")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Tag (repeatable).")
    ] = None,
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Discover (via <link rel=alternate> on HTML pages) and validate a feed, then append
    it to the feeds YAML."""
    from monitor.config import free_name

    cfg = load(config, feeds, watchlists)
    target = _yaml_feeds_target(cfg, config, feeds)
    if name is not None and any(f.name == name for f in cfg.feeds):
        typer.echo(f"error: a feed is already named {name!r}; choose another --name", err=True)
        raise typer.Exit(2)
    found = run_coro(_discover(url, cfg))
    if isinstance(found, str):
        typer.echo(f"error: {found}", err=True)
        raise typer.Exit(1)
    feed_url, title, count = found
    if any(f.url == feed_url for f in cfg.feeds):
        typer.echo(f"already configured: {feed_url}")
        return

    base = name or re.sub(r"[^a-z0-9]+", "-", (title or feed_url).lower()).strip("-")[:60]
    feed_name = free_name(base or "feed", {f.name for f in cfg.feeds})
    entry: dict[str, object] = {"name": feed_name, "url": feed_url}
    if title:
        entry["source"] = title[:100]
    if tags:
        entry["tags"] = list(tags)
    _append_feeds(target, [entry], config, feeds, watchlists)
    typer.echo(f"added {feed_name}: {feed_url} ({count} entries now) to {target}")
    if not count:
        typer.echo("note: the feed is valid but has no items yet", err=True)


@feeds_app.command("import", short_help="Add the feeds of an OPML file or URL list.")
def feeds_import(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="An OPML file (or a newsboat-style urls file) to import."
        ),
    ],
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Append the feeds of an OPML export (Miniflux, FreshRSS, Feedly, newsboat, ...) to
    the feeds YAML: names, outlets, categories as tags, intervals and disabled feeds are
    kept; URLs already configured are skipped; a name already taken gets a suffix. The
    result is validated before it is kept. Nothing is fetched."""
    from monitor.config import free_name, load_feeds_file

    cfg = load(config, feeds, watchlists)
    target = _yaml_feeds_target(cfg, config, feeds)
    errors: list[str] = []
    incoming = load_feeds_file(source, errors)
    if errors:
        typer.echo("\n".join(f"error: {e}" for e in errors), err=True)
        raise typer.Exit(2)
    urls = {f.url for f in cfg.feeds}
    names = {f.name for f in cfg.feeds}
    entries: list[dict[str, object]] = []
    skipped = 0
    for f in incoming:
        if f.url in urls:
            skipped += 1
            continue
        urls.add(f.url)
        name = free_name(f.name, names)
        names.add(name)
        if name != f.name:
            typer.echo(f"renamed {f.name!r} to {name!r}: the name is taken", err=True)
        entry: dict[str, object] = {"name": name, "url": f.url}
        if f.source:
            entry["source"] = f.source
        if f.tags:
            entry["tags"] = list(f.tags)
        if f.interval:
            seconds = int(f.interval) if f.interval.is_integer() else f.interval
            entry["interval"] = f"{seconds}s"
        if not f.enabled:
            entry["enabled"] = False
        entries.append(entry)
    if entries:
        _append_feeds(target, entries, config, feeds, watchlists)
    typer.echo(
        f"imported {len(entries)} feeds into {target}"
        + (f" ({skipped} already configured, skipped)" if skipped else "")
    )


def _yaml_feeds_target(cfg: AppConfig, config: Path, feeds: Path | None) -> Path:
    """The file the feeds were read from (``--feeds``, or the one found in the config
    directory), which is where new feeds go; ``feeds.yaml`` when there was none. Only a
    YAML file is written to (exit 2 otherwise)."""
    target = feeds if feeds is not None else cfg.feeds_file or config / "feeds.yaml"
    if target.suffix.lower() not in {".yaml", ".yml"}:
        typer.echo(f"error: {target} is not a YAML feeds file; add feeds to it by hand", err=True)
        raise typer.Exit(2)
    return target


def _append_feeds(
    target: Path,
    entries: list[dict[str, object]],
    config: Path,
    feeds: Path | None,
    watchlists: Path | None,
) -> None:
    """Append ``entries`` to the feeds YAML ``target`` as block-list items (the file's
    comments and layout kept), then load the whole config again; if it does not
    validate, the file is put back as it was and the command fails."""
    from monitor.config import ConfigError, load_config

    original = target.read_text(encoding="utf-8") if target.exists() else None
    text = original or ""
    # an empty flow list ("feeds: []", what a fresh file often says) becomes a block list
    text = re.sub(r"^feeds:[ \t]*\[[ \t]*\][ \t]*(#.*)?$", "feeds:", text, flags=re.MULTILINE)
    if re.search(r"^feeds:[ \t]*\[", text, re.MULTILINE):
        typer.echo(f"error: {target} lists its feeds in [flow] style; add it by hand", err=True)
        raise typer.Exit(2)
    if re.match(r"(\s*(#.*|---[ \t]*)\n)*\s*- ", text):  # a bare list, as the loader takes
        pass
    elif not re.search(r"^feeds:", text, re.MULTILINE):
        text = text + ("" if not text or text.endswith("\n") else "\n") + "feeds:\n"
    m = re.search(r"^( *)- ", text, re.MULTILINE)  # follow the file's own list indent
    ind = m.group(1) if m else "  "
    blocks = []
    for entry in entries:
        lines = [
            f"{ind}{'- ' if i == 0 else '  '}{key}: {json.dumps(value, ensure_ascii=False)}"
            for i, (key, value) in enumerate(entry.items())
        ]
        blocks.append("\n".join(lines) + "\n")
    if not text.endswith("\n"):
        text += "\n"
    target.write_text(text + "".join(blocks), encoding="utf-8")
    try:
        load_config(config, feeds_file=feeds, watchlists_file=watchlists)
    except ConfigError as exc:  # never leave a broken file behind: put back what was there
        if original is None:
            target.unlink()
        else:
            target.write_text(original, encoding="utf-8")
        typer.echo("error: the new entries did not validate: " + "; ".join(exc.problems), err=True)
        raise typer.Exit(2) from None


async def _discover(url: str, cfg: AppConfig) -> tuple[str, str, int] | str:
    """The feed at ``url``, or the first that works of the (up to 5) feeds an HTML page
    at ``url`` links to: (feed URL, title, entries now), or why none would do. A valid
    feed with no items yet is accepted (a new feed often starts empty)."""
    from concurrent.futures import ThreadPoolExecutor

    from monitor.discover import discover_feed_links
    from monitor.fetch import FetchLimits, fetch, make_session
    from monitor.parse import parse_in_pool

    limits = FetchLimits()
    problems: list[str] = []
    async with make_session(limits) as session:
        with ThreadPoolExecutor(1) as pool:
            candidates = [url]
            page = True  # the first candidate is what the user gave; the rest it links to
            while candidates:
                current = candidates.pop(0)
                res = await fetch(session, current, limits=limits)
                if res.error or res.body is None:
                    problems.append(f"{current}: {res.error or 'no body'}")
                    page = False
                    continue
                parsed = await parse_in_pool(
                    pool, res.body, res.headers, url=res.final_url, feed="new", source="new"
                )
                found = res.permanent_redirect or current
                if parsed.entries or (parsed.error is None and parsed.meta.version):
                    return found, parsed.meta.title, len(parsed.entries)
                if parsed.is_html and page:
                    links = discover_feed_links(res.body, res.final_url)
                    if not links:
                        return f"{url}: an HTML page with no <link rel=alternate> feed"
                    candidates.extend(links[:5])
                else:
                    problems.append(f"{current}: {parsed.error or 'no entries'}")
                page = False
    return "; ".join(problems) or f"{url}: no feed found"


@feeds_app.command("export", short_help="Print the feeds as OPML.")
def feeds_export(
    config: ConfigDir = Path("config"),
    feeds: FeedsFile = None,
    watchlists: WatchFile = None,
) -> None:
    """Print the configured feeds as OPML 2.0, one flat outline per feed.

    text/title carry the outlet (what other readers show), name the Wirewatch name
    (watchlists refer to it), category the tags (comma-separated, as in OPML 2.0),
    interval a pinned poll interval in seconds and enabled="false" a disabled feed.
    --feeds FILE.opml reads all of them back: the round trip is exact.
    """
    from xml.sax.saxutils import quoteattr

    cfg = load(config, feeds, watchlists)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head><title>Wirewatch feeds</title></head>",
        "  <body>",
    ]
    for f in cfg.feeds:
        attrs = [
            ("type", "rss"),
            ("text", f.outlet),
            ("title", f.outlet),
            ("name", f.name),
            ("xmlUrl", f.url),
        ]
        if f.tags:
            attrs.append(("category", ",".join(f.tags)))
        if f.interval is not None:
            attrs.append(("interval", f"{f.interval:.3f}".rstrip("0").rstrip(".")))
        if not f.enabled:
            attrs.append(("enabled", "false"))
        out.append("    <outline " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs) + "/>")
    out += ["  </body>", "</opml>"]
    typer.echo("\n".join(out))
