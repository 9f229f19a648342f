"""Configuration: YAML files + environment → validated, typed objects.

This is the only module that reads environment variables. Errors are collected and
raised together as :class:`ConfigError`, each naming file, line, field and problem.
"""

from __future__ import annotations

import contextlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.durations import parse_duration
from monitor.match.schema import Watchlist, yaml_text
from monitor.yamlsrc import ConfigError, YamlDoc, load_yaml

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "AppConfig",
    "ConfigError",
    "FeedConfig",
    "Settings",
    "load_config",
    "parse_duration",
]

# stored entries are what a regenerated guid or link is recognised by for 7 days
MIN_RETENTION_S = 8 * 86400.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(v: object) -> float:
    secs = parse_duration(v, allow_none=False)
    if secs is None:  # (YAML null)
        raise ValueError("a duration is required here")
    return secs


class PollSettings(_Strict):
    default_interval: float = 300.0
    min_interval: float = 60.0
    max_interval: float = 3600.0
    concurrency: int = Field(default=20, ge=1, le=1000)
    per_host: int = Field(default=2, ge=1, le=100)
    per_host_spacing: float = 1.0
    tick: float = 5.0
    lease: float = 300.0
    parse_timeout: float = 30.0
    parse_workers: int = Field(default=2, ge=1, le=64)

    @field_validator(
        "default_interval",
        "min_interval",
        "max_interval",
        "per_host_spacing",
        "tick",
        "lease",
        "parse_timeout",
        mode="before",
    )
    @classmethod
    def _dur(cls, v: object) -> float:
        return _seconds(v)


class FetchSettings(_Strict):
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)

    @field_validator("connect_timeout", "read_timeout", "total_timeout", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float:
        return _seconds(v)


class DedupeSettings(_Strict):
    window: float = 48 * 3600.0

    @field_validator("window", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float:
        return _seconds(v)


# where a Slack alert goes when neither its watchlist, SLACK_CHANNEL nor settings name a
# channel (the README's Slack set-up creates this one); `check` warns when it is used
DEFAULT_CHANNEL = "#news-alerts"


class SlackSettings(_Strict):
    channel: str = DEFAULT_CHANNEL
    # feed-health messages (a feed failing, silent, disabled, moved, and recovered);
    # printed on the console when no channel is set or no bot token
    ops_channel: str | None = None
    bot_token: str | None = None
    # app-level token (xapp-): Slack Socket Mode, so that the buttons on a card work
    # without a public URL; without it cards have no buttons
    app_token: str | None = None
    webhook_url: str | None = None
    api_url: str | None = None


class WebhookSettings(_Strict):
    url: str | None = None
    secret: str | None = None


class DeliverySettings(_Strict):
    per_channel_interval: float = 1.0
    max_backoff: float = 600.0
    burst_max: int = Field(default=10, ge=1)
    burst_window: float = 60.0
    batch: int = Field(default=50, ge=1)

    @field_validator("per_channel_interval", "max_backoff", "burst_window", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float:
        return _seconds(v)


class HealthSettings(_Strict):
    failures: int = Field(default=5, ge=1, le=1000)  # consecutive failures: "failing"


def parse_http_address(value: str) -> tuple[str, int]:
    """``127.0.0.1:9108``, ``[::1]:9108`` or ``:9108`` (all addresses) → (host, port)."""
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]*):(\d{1,5})", value.strip())
    if m is None or not 0 <= int(m.group(2)) <= 65535:
        raise ValueError(f"not an address: {value!r} (use HOST:PORT, e.g. 127.0.0.1:9108)")
    return m.group(1).strip("[]") or "0.0.0.0", int(m.group(2))


class Settings(_Strict):
    database_url: str = "sqlite:///data/wirewatch.db"
    max_age: float | None = 24 * 3600.0
    retention: float | None = 30 * 86400.0  # stories untouched this long are pruned
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    poll: PollSettings = PollSettings()
    fetch: FetchSettings = FetchSettings()
    dedupe: DedupeSettings = DedupeSettings()
    slack: SlackSettings = SlackSettings()
    webhook: WebhookSettings = WebhookSettings()
    delivery: DeliverySettings = DeliverySettings()
    health: HealthSettings = HealthSettings()
    # /healthz /readyz /metrics served on HOST:PORT by the daemon; off when empty
    http: str = ""

    @field_validator("http")
    @classmethod
    def _http(cls, v: str) -> str:
        if v.strip():
            parse_http_address(v)
        return v.strip()

    @field_validator("max_age", "retention", mode="before")
    @classmethod
    def _age(cls, v: object) -> float | None:
        return parse_duration(v)


class FeedConfig(_Strict):
    name: str = Field(min_length=1)
    url: str
    source: str = ""
    interval: float | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v.strip())
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v.strip()

    @field_validator("interval", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float | None:
        return parse_duration(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for tag in v:
            if "," in tag:  # OPML's category attribute separates tags with commas
                raise ValueError(f"a tag cannot contain a comma: {tag!r} (give two tags)")
        return v

    @property
    def outlet(self) -> str:
        return self.source or self.name


class _FeedsFile(_Strict):
    feeds: list[FeedConfig] = []


class _WatchlistsFile(_Strict):
    watchlists: list[Watchlist] = []


@dataclass
class AppConfig:
    settings: Settings
    feeds: list[FeedConfig]
    watchlists: list[Watchlist]
    files: list[Path] = field(default_factory=list)
    feeds_file: Path | None = None  # the file the feeds were read from
    # SLACK_CHANNEL was set in this process's environment (which a shell running a
    # one-off command may not share with the daemon)
    channel_from_env: bool = False
    # a relative SQLite path used to be relative to the current directory: where it
    # points from there, when a database exists there and none where it points now
    old_database: Path | None = None

    def summary(self) -> str:
        terms = sum(_count_terms(w) for w in self.watchlists)
        enabled = sum(1 for f in self.feeds if f.enabled)
        return (
            f"ok: {len(self.feeds)} feeds ({enabled} enabled), "
            f"{len(self.watchlists)} watchlists, {terms} terms"
        )

    def warnings(self) -> list[str]:
        """What is valid but probably not meant: nothing to poll or to match, an
        interval under the minimum, Slack alerts going to a channel nobody chose."""
        out: list[str] = []
        feeds_file = self.feeds_file or "the feeds file"
        if not self.feeds:
            out.append(f"{feeds_file}: no feeds: nothing will be polled")
        elif not any(f.enabled for f in self.feeds):
            out.append(f"{feeds_file}: every feed is disabled: nothing will be polled")
        if not self.watchlists:
            watch = next((p for p in self.files if "watchlist" in p.name), "the watchlists file")
            out.append(f"{watch}: no watchlists: nothing will alert")
        poll = self.settings.poll
        least = _dur_text(poll.min_interval)
        if poll.default_interval < poll.min_interval:
            out.append(
                f"poll.default_interval {_dur_text(poll.default_interval)} is under "
                f"poll.min_interval {least}: feeds without hints are polled every {least}"
            )
        for f in self.feeds:
            if f.interval is not None and f.interval < poll.min_interval:
                out.append(
                    f"{feeds_file}: feed {f.name!r}: interval {_dur_text(f.interval)} is under "
                    f"poll.min_interval {least}: a pinned interval is kept, so it is polled "
                    f"every {_dur_text(f.interval)} (is that meant?)"
                )
        slack = self.settings.slack
        if slack.bot_token and "channel" not in slack.model_fields_set:
            unset = [w.name for w in self.watchlists if not w.channel]
            if unset:
                out.append(
                    f"watchlist{'s' if len(unset) > 1 else ''} {', '.join(unset)} name no "
                    "channel and neither SLACK_CHANNEL nor slack.channel in the settings is "
                    f"set: their Slack alerts go to the default {slack.channel}"
                )
        if slack.app_token and not slack.bot_token:
            out.append(
                "SLACK_APP_TOKEN is set without SLACK_BOT_TOKEN: the buttons (Mute story, "
                "Mute term, Acknowledge) are only on cards the bot posts, so there are none"
            )
        return out


def _dur_text(seconds: float) -> str:
    """``90s``, ``5m``, ``1.5h``, ``2d``: a duration as the config files write them."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _count_terms(w: Watchlist) -> int:
    n = 0
    for attr in ("terms", "all_", "not_"):
        value = getattr(w, attr, None)
        if isinstance(value, list | tuple):
            n += len(value)
    return n


def _problems(doc: YamlDoc, exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[str]:
    out = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        fields = ".".join(str(p) for p in loc if _is_doc_part(doc, loc, p))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {str(loc[-1])!r}"
        out.append(f"{doc.where(loc)}: {fields or '(top level)'}: {msg}")
    return out


def _is_doc_part(doc: YamlDoc, loc: tuple[str | int, ...], part: str | int) -> bool:
    # keep only parts that are real document keys/indices, not pydantic union tags
    idx = loc.index(part)
    return loc[: idx + 1] in doc.lines or isinstance(part, int) or idx == len(loc) - 1


def _load_settings(path: Path | None, errors: list[str]) -> Settings:
    if path is None or not path.exists():
        return Settings()
    try:
        doc = load_yaml(path)
    except ConfigError as exc:
        errors.extend(exc.problems)
        return Settings()
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        errors.append(f"{path}:1: expected a mapping of settings")
        return Settings()
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors.extend(_problems(doc, exc))
        return Settings()


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    slack = settings.slack.model_copy(
        update={
            k: v
            for k, v in {
                "bot_token": env.get("SLACK_BOT_TOKEN") or None,
                "app_token": env.get("SLACK_APP_TOKEN") or None,
                "channel": env.get("SLACK_CHANNEL") or None,
                "webhook_url": env.get("SLACK_WEBHOOK_URL") or None,
                "api_url": env.get("SLACK_API_URL") or None,
                "ops_channel": env.get("SLACK_OPS_CHANNEL") or None,
            }.items()
            if v is not None
        }
    )
    webhook = settings.webhook.model_copy(
        update={
            k: v
            for k, v in {
                "url": env.get("WIREWATCH_WEBHOOK_URL") or None,
                "secret": env.get("WIREWATCH_WEBHOOK_SECRET") or None,
            }.items()
            if v is not None
        }
    )
    update: dict[str, Any] = {"slack": slack, "webhook": webhook}
    if env.get("WIREWATCH_DATABASE_URL"):
        update["database_url"] = env["WIREWATCH_DATABASE_URL"]
    return settings.model_copy(update=update)


def _database_url_problem(url: str) -> str | None:
    """Why ``url`` names no database Wirewatch can use (SQLite or PostgreSQL), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError:
        return f"not a database URL: {url!r} (use sqlite:///PATH or postgresql://HOST/DB)"
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        return (
            f"unsupported database {backend!r}: Wirewatch stores in SQLite (sqlite:///PATH) "
            "or PostgreSQL (postgresql://HOST/DB)"
        )
    if backend == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        # what was seen is what stops an item alerting twice: a database that ends
        # with the process would alert everything again on every run
        return (
            f"{url!r} is an in-memory SQLite database, which is lost when the process "
            "exits, so every item would alert again on every run: give a file, "
            "sqlite:///PATH"
        )
    return None


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def resolve_database_url(url: str, base: Path) -> str:
    """``url`` with a relative SQLite path made absolute against ``base`` (the config
    directory), so every command run from anywhere on one config uses one database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # (reported by _database_url_problem)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return url
    path = Path(parsed.database).expanduser()
    if path.is_absolute():
        return url
    resolved = Path(os.path.normpath(base.absolute() / path))
    return parsed.set(database=str(resolved)).render_as_string(hide_password=False)


def free_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``, ... : the first not in ``taken``."""
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _name_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "feed").removeprefix("www.").removeprefix("feeds.")
    path = re.sub(r"[^a-z0-9]+", "-", parts.path.lower()).strip("-")
    return f"{host}-{path}"[:80].rstrip("-") if path else host


def load_feeds_file(
    path: Path, errors: list[str], *, named: tuple[set[str], set[str]] | None = None
) -> list[FeedConfig]:
    """The feeds of one file (YAML, OPML or a newsboat-style URL list); its problems,
    each with file and line, go to ``errors``. ``named``: (names, tags) to which the
    names and tags of every YAML feed are added, invalid ones included, so that a
    watchlist naming an invalid feed is not also told the feed does not exist."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return []
    head = raw.lstrip()[:200].lower()
    if head.startswith(b"<?xml") or head.startswith(b"<opml"):
        return _load_opml(path, raw, errors)
    text = raw.decode("utf-8", errors="replace")
    first = next(
        (ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), ""
    )
    if re.match(r'^(https?://|"query:|exec:|filter:)', first):
        return _load_url_list(path, text, errors)
    loaded = _list_document(path, "feeds", errors)
    if loaded is None:
        return []
    doc, data = loaded
    for i, item in enumerate(data.get("feeds") or []):
        if isinstance(item, str):
            data["feeds"][i] = {"url": item}
            item = data["feeds"][i]
        if isinstance(item, dict) and "name" not in item and isinstance(item.get("url"), str):
            item["name"] = _name_from_url(item["url"])
    try:
        feeds = _FeedsFile.model_validate(data).feeds
        valid = list(enumerate(feeds))
    except ValidationError as exc:
        errors.extend(_problems(doc, exc))
        # the feeds valid on their own still get the checks below, and are returned:
        # the watchlists' feed and tag checks judge against them
        valid = _valid_on_their_own(data.get("feeds"), FeedConfig)
        feeds = [f for _, f in valid]
    # names are checked on every item, valid or not: one pass reports every problem
    seen: dict[str, int] = {}
    for i, item in _named_items(data.get("feeds")):
        name, tags = item["name"], item.get("tags")
        if name in seen:
            errors.append(
                f"{doc.where(('feeds', i, 'name'))}: feeds.{i}.name: duplicate feed name "
                f"{name!r} (first at line {doc.line_for(('feeds', seen[name], 'name'))})"
            )
        seen.setdefault(name, i)
        if named is not None:
            named[0].add(name)
            if isinstance(tags, list):
                named[1].update(t for t in tags if isinstance(t, str))
    # one feed under two names would be fetched twice and count as two outlets
    urls: dict[str, tuple[int, str]] = {}
    for i, f in valid:
        if f.url in urls:
            at, first_name = urls[f.url]
            errors.append(
                f"{doc.where(('feeds', i, 'url'))}: feeds.{i}.url: the same URL as feed "
                f"{first_name!r} (line {doc.line_for(('feeds', at, 'url'))})"
            )
        urls.setdefault(f.url, (i, f.name))
    return feeds


def _load_url_list(path: Path, text: str, errors: list[str]) -> list[FeedConfig]:
    """newsboat-style urls file: ``URL ["tag" ...] ["~Title"]`` one per line, # comments.
    newsboat's own query, exec and filter feeds (``"query:Unread:unread = \\"yes\\""``,
    ``exec:cmd``, ``filter:script:URL``) are not feeds to fetch: they are skipped."""
    feeds: list[FeedConfig] = []
    names: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url, *rest = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', line)
        if url.strip('"').startswith(("query:", "exec:", "filter:")):
            continue
        tags = [t.strip('"').replace('\\"', '"') for t in rest]
        title = next((t[1:] for t in tags if t.startswith("~")), "")
        tags = [t for t in tags if t and not t.startswith(("~", "!"))]
        name = free_name(title or _name_from_url(url), names)
        names.add(name)
        try:
            feeds.append(FeedConfig(name=name, url=url, source=title, tags=tuple(tags)))
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            errors.append(f"{path}:{lineno}: {msg}")
    return feeds


def _load_opml(path: Path, raw: bytes, errors: list[str]) -> list[FeedConfig]:
    """Feeds from OPML: ``<outline xmlUrl=…>``; enclosing folders and the OPML 2.0
    ``category`` attribute become tags. ``wirewatch feeds export`` also writes ``name``
    (the feed's Wirewatch name), ``interval`` and ``enabled="false"``, so its files read
    back unchanged; OPML from other readers is named after each outline's title."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        errors.append(f"{path}:{exc.position[0]}: invalid OPML: {exc}")
        return []
    outlines: list[tuple[ET.Element, str, str, tuple[str, ...]]] = []

    def visit(node: ET.Element, tags: tuple[str, ...]) -> None:
        for child in node.findall("outline"):
            url = child.get("xmlUrl") or child.get("xmlurl")
            title = (child.get("title") or child.get("text") or "").strip()
            if url:
                cats = tuple(c.strip() for c in (child.get("category") or "").split(",") if c)
                outlines.append((child, url, title, tuple(dict.fromkeys((*tags, *cats)))))
            else:
                visit(child, (*tags, title) if title else tags)

    body = root.find("body")
    visit(body if body is not None else root, ())
    # explicit names first, so a title-derived name never takes one of them
    explicit = [(o.get("name") or "").strip() for o, *_ in outlines]
    names: set[str] = set()
    for given, (_, url, title, _tags) in zip(explicit, outlines, strict=True):
        if given and given in names:
            errors.append(f"{path}: outline {title or url!r}: duplicate feed name {given!r}")
        if given:
            names.add(given)
    feeds: list[FeedConfig] = []
    for given, (outline, url, title, tags) in zip(explicit, outlines, strict=True):
        name = given
        if not name:
            name = free_name(title or _name_from_url(url), names)
            names.add(name)
        try:
            feed = {
                "name": name,
                "url": url,
                "source": "" if title == given else title,
                "tags": tags,
                "interval": outline.get("interval"),
                "enabled": _opml_enabled(outline),
            }
            feeds.append(FeedConfig.model_validate(feed))
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            errors.append(f"{path}: outline {title or url!r}: {msg}")
    return feeds


def _opml_enabled(outline: ET.Element) -> bool:
    """``enabled="false"`` (as exported) or ``isDisabled="true"`` turn a feed off."""
    enabled = (outline.get("enabled") or "").strip().lower()
    disabled = (outline.get("isDisabled") or "").strip().lower()
    return enabled not in {"false", "0", "no", "off"} and disabled not in {"true", "1", "yes"}


def _list_document(
    path: Path, key: str, errors: list[str]
) -> tuple[YamlDoc, dict[str, Any]] | None:
    """A YAML file holding ``key: [...]`` (or just the bare list)."""
    try:
        doc = load_yaml(path)
    except ConfigError as exc:
        errors.extend(exc.problems)
        return None
    data = doc.data
    if isinstance(data, list):
        data = {key: data}
    if data is None:
        data = {key: []}
    if not isinstance(data, dict):
        errors.append(f"{path}:1: expected '{key}:' with a list of {key}")
        return None
    if key not in data and data:
        # (a watchlist written at the top level, `korea:` in place of `- name: korea`)
        first = str(next(iter(data)))
        errors.append(
            f"{path}:{doc.line_for((first,))}: expected a top-level `{key}:` list; found `{first}:`"
        )
        return None
    return doc, data


def _load_watchlists(
    path: Path,
    errors: list[str],
    known_feeds: set[str] | None = None,
    known_tags: set[str] | None = None,
) -> list[Watchlist]:
    loaded = _list_document(path, "watchlists", errors)
    if loaded is None:
        return []
    doc, data = loaded
    try:
        watchlists = _WatchlistsFile.model_validate(data).watchlists
    except ValidationError as exc:
        errors.extend(_problems(doc, exc))
        watchlists = []
    # the checks below run on every watchlist, valid on its own or not, so one pass of
    # `wirewatch check` lists every problem, not the schema's first
    first: dict[str, int] = {}
    for i, item in _named_items(data.get("watchlists"), yaml_text):
        name = item["name"]
        if name in first:
            errors.append(
                f"{doc.where(('watchlists', i, 'name'))}: watchlists.{i}.name: duplicate "
                f"watchlist name {name!r} (first at line "
                f"{doc.line_for(('watchlists', first[name], 'name'))})"
            )
        first.setdefault(name, i)
        for key, known, problem in (
            ("feeds", known_feeds, "unknown feed"),
            ("tags", known_tags, "no feed has tag"),
        ):
            refs = item.get(key)
            if known is None or not isinstance(refs, list):
                continue
            for j, raw in enumerate(refs):
                ref = yaml_text(raw)  # (as the watchlist schema reads it)
                if ref is not None and ref not in known:
                    errors.append(
                        f"{doc.where(('watchlists', i, key, j))}: watchlists.{i}.{key}.{j}: "
                        f"{problem} {ref!r} (watchlist {name!r})"
                    )
    return watchlists


def _named_items(
    items: object, read: Callable[[object], str | None] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """The items of a YAML list that are mappings with a ``name``, by index: a string
    name as is, or, with ``read``, the name as ``read`` reads it (the schema's own
    reading of a scalar; items whose name it rejects are left out)."""
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        name = read(name) if read is not None else name if isinstance(name, str) else None
        if name is not None:
            out.append((i, {**item, "name": name}))
    return out


def _valid_on_their_own(items: object, model: type[M]) -> list[tuple[int, M]]:
    """After a document failed validation (its problems already reported): the items of
    its list that are valid on their own, by index."""
    valid: list[tuple[int, M]] = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        with contextlib.suppress(ValidationError):
            valid.append((i, model.model_validate(item)))
    return valid


def _first_existing(directory: Path, *names: str) -> Path | None:
    for name in names:
        candidate = directory / name
        if candidate.exists():
            return candidate
    return None


def _load_lists(
    directory: Path, feeds_path: Path | None, watch_path: Path | None, errors: list[str]
) -> tuple[list[FeedConfig], list[Watchlist]]:
    """The feeds and the watchlists, each valid one of them (problems into ``errors``);
    watchlist scopes are checked against every feed name and tag, invalid feeds' too."""
    feeds: list[FeedConfig] = []
    watchlists: list[Watchlist] = []
    scope: tuple[set[str], set[str]] = (set(), set())  # names and tags, invalid feeds' too
    if feeds_path is None:
        errors.append(f"{directory}/feeds.yaml: no feeds file (use --feeds FILE)")
    else:
        feeds = load_feeds_file(feeds_path, errors, named=scope)
    if watch_path is None:
        errors.append(f"{directory}/watchlists.yaml: no watchlists file (use --watchlists FILE)")
    else:
        watchlists = _load_watchlists(
            watch_path,
            errors,
            scope[0] | {f.name for f in feeds},
            scope[1] | {t for f in feeds for t in f.tags},
        )
    return feeds, watchlists


def _check_settings(settings: Settings, settings_path: Path | None, errors: list[str]) -> None:
    """Settings that are valid one by one but not together."""
    if settings.poll.min_interval > settings.poll.max_interval:
        errors.append(f"{settings_path}: poll.min_interval is larger than poll.max_interval")
    least = max(MIN_RETENTION_S, settings.dedupe.window + 86400)
    if settings.retention is not None and settings.retention < least:
        errors.append(
            f"{settings_path}: retention must be at least {least / 86400:g}d (the dedupe "
            "window plus a day, and the week a regenerated guid is recognised in), or none"
        )


def _place_database(
    settings: Settings, directory: Path, where: str, *, moved: bool, errors: list[str]
) -> tuple[Settings, Path | None]:
    """The database URL checked (a problem is reported as ``where``) and a relative
    SQLite path resolved against the config directory; with ``moved``, also the SQLite
    file an older version would have used (relative to the current directory) when it
    exists and the resolved one does not."""
    problem = _database_url_problem(settings.database_url)
    if problem:
        errors.append(f"{where}: {problem}")
        return settings, None
    url = settings.database_url
    settings = settings.model_copy(update={"database_url": resolve_database_url(url, directory)})
    old_database = None
    if url != settings.database_url and moved:
        before = _sqlite_file(resolve_database_url(url, Path.cwd()))
        now = _sqlite_file(settings.database_url)
        if before and now and before != now and before.exists() and not now.exists():
            old_database = before
    return settings, old_database


def load_config(
    config_dir: Path | str = "config",
    *,
    feeds_file: Path | str | None = None,
    watchlists_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    database_url: str | None = None,
) -> AppConfig:
    """Load ``settings.yaml``, ``feeds.yaml`` and ``watchlists.yaml`` from ``config_dir``
    (each replaceable by an explicit file), apply environment overrides, validate all,
    and raise :class:`ConfigError` listing every problem.

    A relative SQLite path in the settings or ``WIREWATCH_DATABASE_URL`` is relative to
    the config directory; ``database_url`` (``--database``), given on a command line,
    overrides both and is relative to the current directory."""
    env = os.environ if env is None else env
    directory = Path(config_dir)
    errors: list[str] = []
    if not directory.is_dir() and (feeds_file is None or watchlists_file is None):
        errors.append(f"{directory}: config directory not found")
    settings_path = _first_existing(directory, "settings.yaml", "settings.yml")
    settings = _apply_env(_load_settings(settings_path, errors), env)
    feeds_path = (
        Path(feeds_file)
        if feeds_file
        else _first_existing(directory, "feeds.yaml", "feeds.yml", "feeds.opml", "urls")
    )
    watch_path = (
        Path(watchlists_file)
        if watchlists_file
        else _first_existing(directory, "watchlists.yaml", "watchlists.yml")
    )
    feeds, watchlists = _load_lists(directory, feeds_path, watch_path, errors)
    _check_settings(settings, settings_path, errors)
    if database_url is not None:
        settings = settings.model_copy(
            update={"database_url": resolve_database_url(database_url, Path.cwd())}
        )
    where = (
        "--database"
        if database_url is not None
        else "WIREWATCH_DATABASE_URL"
        if env.get("WIREWATCH_DATABASE_URL")
        else f"{settings_path or directory / 'settings.yaml'}: database_url"
    )
    settings, old_database = _place_database(
        settings, directory, where, moved=database_url is None, errors=errors
    )
    if errors:
        raise ConfigError(errors)
    files = [p for p in (settings_path, feeds_path, watch_path) if p is not None]
    return AppConfig(
        settings=settings,
        feeds=feeds,
        watchlists=watchlists,
        files=files,
        feeds_file=feeds_path,
        channel_from_env=bool(env.get("SLACK_CHANNEL")),
        old_database=old_database,
    )
