"""Watchlist YAML schema: pydantic v2 models, no file I/O.

The config loader turns YAML into plain data and calls ``WatchlistFile.model_validate``.
Every problem is raised on the node that is wrong (so a pydantic error ``loc`` points at
the offending YAML node) with a message quoting the offending text. Built-in pydantic
messages are rewritten to the same style: ``unknown key "sevrity" (did you mean
"severity"?)`` instead of "Extra inputs are not permitted".

Schema (see the README section "Watchlists")::

    watchlists:
      - name: korea
        channel: "#alerts"        # optional; default channel when absent
        severity: info            # info | high | critical
        min_sources: 1            # alert once N distinct outlets carry the story
        followups: thread         # thread | suppress
        fields: [title, summary]  # where terms are searched (default)
        feeds: [bbc]              # optional scope by feed name ...
        tags: [asia]              # ... or by feed tag (either one puts a feed in scope)
        terms:                    # any of these (implicit OR)
          - Kim Jong Un
          - {phrase: Kim Jong Un, aliases: [KJU], fields: [title]}
          - {regex: '\\bICBMs?\\b'}
          - {near: [Kim, Putin], within: 10}
          - {all: [Kim Jong Un, {not: drill}]}
          - {any: [missile, rocket]}
        all: [...]                # every one of these must match as well
        not: [...]                # none of these may match
        escalate: {outlets: 5, within: 15m, channel: "#breaking", mention: "@here"}
        digest: {every: 1h}       # or {at: "08:00", tz: Europe/London}
        quiet: {from: "22:00", to: "07:00", tz: Europe/London}
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor.durations import parse_duration
from monitor.match.words import term_words
from monitor.normalize import fold

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_NAMES",
    "FOLLOWUPS",
    "SEVERITIES",
    "FieldName",
    "Followups",
    "Severity",
    "Term",
    "TermKind",
    "Watchlist",
    "WatchlistFile",
    "yaml_text",
]

FieldName = Literal["title", "summary", "content", "author", "categories", "feed", "url"]
Severity = Literal["info", "high", "critical"]
Followups = Literal["thread", "suppress"]
TermKind = Literal["phrase", "regex", "near", "all", "any", "not"]

FIELD_NAMES: tuple[FieldName, ...] = (
    "title",
    "summary",
    "content",
    "author",
    "categories",
    "feed",
    "url",
)
DEFAULT_FIELDS: tuple[FieldName, ...] = ("title", "summary")
SEVERITIES: tuple[Severity, ...] = ("info", "high", "critical")
FOLLOWUPS: tuple[Followups, ...] = ("thread", "suppress")
_KINDS: tuple[TermKind, ...] = ("phrase", "regex", "near", "all", "any", "not")


def _q(text: object, limit: int = 80) -> str:
    """Quote user text for an error message (shortened when long)."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return f'"{s}"'


def _err(kind: str, msg: str) -> PydanticCustomError:
    # The message goes through the context so braces in user text (regex "\d{3}") are safe.
    return PydanticCustomError(f"wirewatch_{kind}", "{msg}", {"msg": msg, "wirewatch": True})


# ---------------------------------------------------------------------------
# scalar validators


def yaml_text(value: object) -> str | None:
    """A YAML scalar as a watchlist reads a name or a word: numbers as text, stripped;
    None for what it refuses (booleans, empty text, lists...). ``_text`` says why."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    return value.strip() or None if isinstance(value, str) else None


def _text(what: str) -> Callable[[Any], Any]:
    """Before-validator: YAML scalar to stripped, non-empty text."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise _err(
                "boolean",
                f"{what} is the YAML boolean {str(value).lower()}: unquoted yes/no/on/off/"
                "true/false are booleans in YAML; put the word in quotes",
            )
        text = yaml_text(value)
        if text is None and isinstance(value, str):
            raise _err("empty", f"empty {what} {_q(value)}")
        return value if text is None else text  # (not a scalar: the schema says so)

    return check


def _words(what: str) -> Callable[[str], str]:
    """After-validator: text must contain at least one searchable word."""

    def check(value: str) -> str:
        if not term_words(value):
            raise _err(
                "no_words",
                f"{what} {_q(value)} has no letters or digits to match",
            )
        return value

    return check


def _choice(what: str, allowed: tuple[str, ...]) -> Callable[[Any], Any]:
    """Before-validator for a Literal: a clear message quoting the bad value."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value.strip().lower(), allowed, n=1)
            if close:
                hint = f' (did you mean "{close[0]}"?)'
        raise _err(
            f"unknown_{what}", f"unknown {what} {_q(value)}{hint}; allowed: {', '.join(allowed)}"
        )

    return check


def _fields_nonempty(value: tuple[FieldName, ...] | None) -> tuple[FieldName, ...] | None:
    if value is not None and not value:
        raise _err(
            "empty_fields", "fields is empty: list at least one of " + ", ".join(FIELD_NAMES)
        )
    return value


def _at_least_one(value: int, what: str) -> int:
    if value < 1:
        raise _err("too_small", f"{what} must be at least 1 (got {value})")
    return value


Text = Annotated[str, BeforeValidator(_text("value"))]
Name = Annotated[str, BeforeValidator(_text("name"))]
Alias = Annotated[str, BeforeValidator(_text("alias")), AfterValidator(_words("alias"))]
FieldItem = Annotated[FieldName, BeforeValidator(_choice("field", FIELD_NAMES))]
Fields = Annotated[tuple[FieldItem, ...], AfterValidator(_fields_nonempty)]
SeverityItem = Annotated[Severity, BeforeValidator(_choice("severity", SEVERITIES))]
FollowupsItem = Annotated[Followups, BeforeValidator(_choice("followups", FOLLOWUPS))]


# ---------------------------------------------------------------------------
# friendlier built-in errors


def _friendly(err: Any, model: type[BaseModel]) -> InitErrorDetails:
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"])
    if ctx.get("wirewatch"):
        etype = PydanticCustomError(err["type"], "{msg}", dict(ctx))
        return InitErrorDetails(type=etype, loc=loc, input=err["input"])
    allowed = sorted(f.alias or n for n, f in model.model_fields.items())
    msg = err["msg"]
    etype_name = err["type"]
    if etype_name == "extra_forbidden" and loc:
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        msg = f"unknown key {_q(key)}{hint}; allowed here: {', '.join(allowed)}"
        etype_name = "wirewatch_unknown_key"
    elif etype_name == "missing" and loc:
        msg = f"missing required key {_q(loc[-1])}"
        etype_name = "wirewatch_missing_key"
    elif etype_name in ("tuple_type", "list_type", "set_type", "frozen_set_type"):
        msg = f"expected a list, got {_describe_input(err['input'])}"
    elif etype_name in ("model_type", "dict_type", "model_attributes_type"):
        msg = f"expected a mapping (key: value), got {_describe_input(err['input'])}"
    elif etype_name == "string_type":
        msg = f"expected text, got {_describe_input(err['input'])}"
    elif err["input"] is None or isinstance(err["input"], str | int | float | bool):
        msg = f"{msg} (got {json.dumps(err['input'], ensure_ascii=False)})"
    etype = PydanticCustomError(etype_name, "{msg}", {"msg": msg, "wirewatch": True})
    return InitErrorDetails(type=etype, loc=loc, input=err["input"])


def _describe_input(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {_q(value)}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {json.dumps(value, default=str)}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="wrap")
    @classmethod
    def _rewrite_errors(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            details = [_friendly(e, cls) for e in exc.errors()]
            raise ValidationError.from_exception_data(exc.title, details) from None


# ---------------------------------------------------------------------------
# terms


def _no_not(what: str) -> Callable[[Term], Term]:
    def check(term: Term) -> Term:
        if term.kind == "not":
            raise _err(
                "misplaced_not",
                f"a not term is only meaningful inside all: (here, {what}, it would match "
                f"every entry without {term.not_.describe() if term.not_ else 'it'}); "
                "use all: [..., {not: ...}] or the watchlist's not: list",
            )
        return term

    return check


def _phrase_only(term: Term) -> Term:
    if term.kind != "phrase":
        raise _err(
            "near_item",
            f"near items must be plain phrases (text or {{phrase, aliases}}), got a {term.kind} "
            f"term {term.describe()}",
        )
    return term


class Term(_Strict):
    """One term. A plain string is shorthand for ``{phrase: <string>}``.

    Exactly one of ``phrase``, ``regex``, ``near``, ``all``, ``any``, ``not`` is set.
    ``fields`` overrides the watchlist's fields for this term (and, on a group, for the
    terms inside it that do not set their own).
    """

    phrase: Annotated[str, AfterValidator(_words("term"))] | None = None
    aliases: tuple[Alias, ...] = ()
    regex: str | None = None
    near: tuple[NearItem, ...] | None = None
    within: int | None = None
    all_: tuple[Term, ...] | None = Field(default=None, alias="all")
    any_: tuple[OrTerm, ...] | None = Field(default=None, alias="any")
    not_: NotTerm | None = Field(default=None, alias="not")
    fields: Fields | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, bool):
            _text("term")(data)
        if isinstance(data, str | int | float):
            text = _text("term")(data)
            _words("term")(text)
            return {"phrase": text}
        if data is None:
            raise _err("empty", "empty term (null)")
        if not isinstance(data, dict) and not isinstance(data, BaseModel):
            raise _err(
                "term_type",
                f"a term is text or a mapping with one of {', '.join(_KINDS)}; "
                f"got {type(data).__name__} {_q(data)}",
            )
        return data

    @field_validator("phrase", mode="before")
    @classmethod
    def _phrase_text(cls, value: Any) -> Any:
        return _text("term")(value)

    @field_validator("regex", mode="before")
    @classmethod
    def _regex_text(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise _err("empty", f"empty regex {_q(value)}")
        return value

    @field_validator("regex")
    @classmethod
    def _regex_valid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise _err("invalid_regex", f"invalid regex {_q(value)}: {exc}") from None
        if compiled.search("") is not None:
            raise _err(
                "regex_matches_empty",
                f"regex {_q(value)} matches empty text, so it would match every entry",
            )
        folded = [c for c in value if c.isalpha() and fold(c) != c.lower()]
        if folded:
            raise _err(
                "regex_accents",
                f"regex {_q(value)} contains {_q(''.join(folded))}, but regexes run on "
                f"folded text (lower case, no accents); write {_q(fold(value))} instead",
            )
        return value

    @field_validator("near")
    @classmethod
    def _near_two(cls, value: tuple[Term, ...] | None) -> tuple[Term, ...] | None:
        if value is not None and len(value) < 2:
            raise _err("near_items", f"near needs at least two phrases, got {len(value)}")
        return value

    @field_validator("within")
    @classmethod
    def _within_positive(cls, value: int | None) -> int | None:
        return None if value is None else _at_least_one(value, "within (words)")

    @field_validator("all_", "any_")
    @classmethod
    def _group_nonempty(cls, value: tuple[Term, ...] | None) -> tuple[Term, ...] | None:
        if value is not None and not value:
            raise _err("empty_group", "empty group: list at least one term")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Term:
        present = [k for k in _KINDS if getattr(self, _ATTR[k]) is not None]
        if not present:
            raise _err("no_kind", f"a term needs one of: {', '.join(_KINDS)}")
        if len(present) > 1:
            raise _err(
                "many_kinds",
                f"a term has exactly one of {', '.join(_KINDS)}; this one has "
                + " and ".join(present)
                + ": split it into separate terms",
            )
        if self.aliases and self.phrase is None:
            raise _err("aliases", "aliases belong to a phrase term (phrase: ..., aliases: [...])")
        if self.within is not None and self.near is None:
            raise _err("within", "within only applies to a near term")
        if self.all_ is not None and all(t.kind == "not" for t in self.all_):
            raise _err(
                "all_negative",
                "all: needs at least one term that is not a not: (only exclusions would "
                "match every entry)",
            )
        return self

    @property
    def kind(self) -> TermKind:
        for k in _KINDS:
            if getattr(self, _ATTR[k]) is not None:
                return k
        raise AssertionError("validated Term without a kind")  # pragma: no cover

    @property
    def near_within(self) -> int:
        return 10 if self.within is None else self.within

    def describe(self, limit: int = 80) -> str:
        """Short human description: ``"Kim Jong Un"``, ``regex "\\bICBM\\b"``, ..."""
        kind = self.kind
        if kind == "phrase":
            text = _q(self.phrase, limit)
        elif kind == "regex":
            text = "regex " + _q(self.regex, limit)
        elif kind == "near":
            items = " near ".join(t.describe(limit) for t in self.near or ())
            text = f"{items} (within {self.near_within} words)"
        elif kind == "not":
            text = "not " + (self.not_.describe(limit) if self.not_ else "")
        else:
            children = self.all_ if kind == "all" else self.any_
            text = f"{kind} of (" + ", ".join(t.describe(limit) for t in children or ()) + ")"
        if len(text) > limit * 2:
            text = text[: limit * 2 - 1] + "…"
        return text


_ATTR: dict[str, str] = {
    "phrase": "phrase",
    "regex": "regex",
    "near": "near",
    "all": "all_",
    "any": "any_",
    "not": "not_",
}

# Items of an any-of list (watchlist terms, any:) may not be bare exclusions; nor may
# the watchlist's not: list or a not: term contain another not.
OrTerm = Annotated[Term, AfterValidator(_no_not("in an any-of list"))]
NotTerm = Annotated[Term, AfterValidator(_no_not("inside not"))]
NearItem = Annotated[Term, AfterValidator(_phrase_only)]


# ---------------------------------------------------------------------------
# the desk: escalation, scheduled digests, quiet hours


def _duration(what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            seconds = parse_duration(value, allow_none=False)
        except ValueError as exc:
            raise _err(f"bad_{what}", f"{what}: {exc}") from None
        if not seconds:
            raise _err(f"bad_{what}", f"{what} must be longer than 0 (got {_q(value)})")
        return seconds

    return check


def _clock(what: str) -> Callable[[Any], Any]:
    """Before-validator: ``"08:00"`` (24-hour clock) to a time of day."""

    def check(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            return time(value // 60, value % 60)  # (YAML 1.1 reads 08:00 as 480)
        m = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*", str(value))
        if m is None or isinstance(value, bool):
            raise _err(f"bad_{what}", f'{what} must be a time of day like "08:00", got {_q(value)}')
        return time(int(m.group(1)), int(m.group(2)))

    return check


def _zone(value: Any) -> Any:
    try:
        ZoneInfo(str(value).strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise _err(
            "bad_tz", f"unknown time zone {_q(value)} (use a name like Europe/London or UTC)"
        ) from None
    return str(value).strip()


def _mention(value: Any) -> Any:
    """``@here``, ``@channel``, or a Slack mention as Slack writes it (``<@U123>``,
    ``<!subteam^S123>``); anything else would be posted as plain text."""
    text = str(value).strip()
    if text in ("", "@here", "@channel") or re.fullmatch(r"<(@[UW]|!subteam\^S)[A-Z0-9]+>", text):
        return text
    raise _err(
        "bad_mention",
        f"mention must be @here, @channel, <@USERID> or <!subteam^GROUPID>, got {_q(value)}",
    )


Seconds = Annotated[float, BeforeValidator(_duration("within"))]
Zone = Annotated[str, BeforeValidator(_zone)]


class Escalation(_Strict):
    """Post once to ``channel`` when ``outlets`` distinct outlets carry a story within
    ``within`` seconds of each other (linking the story's thread)."""

    outlets: int
    within: Seconds
    channel: Annotated[str, BeforeValidator(_text("channel"))]
    mention: Annotated[str, BeforeValidator(_mention)] = ""

    @field_validator("outlets")
    @classmethod
    def _two_or_more(cls, value: int) -> int:
        if value < 2:
            raise _err("too_small", f"escalate.outlets must be at least 2 (got {value})")
        return value


class Digest(_Strict):
    """Collect the watchlist's stories into one message ``every`` so often, or daily
    ``at`` a time of day in ``tz``."""

    every: Annotated[float, BeforeValidator(_duration("every"))] | None = None
    at: Annotated[time, BeforeValidator(_clock("at"))] | None = None
    tz: Zone = "UTC"

    @model_validator(mode="after")
    def _one_schedule(self) -> Digest:
        if (self.every is None) == (self.at is None):
            raise _err(
                "digest_schedule", 'digest needs exactly one of every: (1h) or at: ("08:00")'
            )
        return self


class Quiet(_Strict):
    """Hold the watchlist's alerts (escalations excepted) from ``from_`` to ``to``, local
    time in ``tz``; they go out when the quiet hours end."""

    from_: Annotated[time, BeforeValidator(_clock("from"))] = Field(alias="from")
    to: Annotated[time, BeforeValidator(_clock("to"))]
    tz: Zone = "UTC"

    @model_validator(mode="after")
    def _not_empty(self) -> Quiet:
        if self.from_ == self.to:
            raise _err("quiet_empty", "quiet: from and to are the same time")
        return self


# ---------------------------------------------------------------------------
# watchlists


class Watchlist(_Strict):
    """One watchlist. Matches an entry when the entry's feed is in scope, any of
    ``terms`` matches (when given), every clause of ``all`` matches and none of ``not``."""

    name: Name
    channel: Annotated[str, BeforeValidator(_text("channel"))] | None = None
    severity: SeverityItem = "info"
    min_sources: int = 1
    followups: FollowupsItem = "thread"
    fields: Fields = DEFAULT_FIELDS
    feeds: tuple[Annotated[str, BeforeValidator(_text("feed name"))], ...] = ()
    tags: tuple[Annotated[str, BeforeValidator(_text("tag"))], ...] = ()
    # where this watchlist's alerts go; empty = every configured sink
    sinks: tuple[Literal["slack", "webhook", "console"], ...] = ()
    terms: tuple[OrTerm, ...] = ()
    all_: tuple[Term, ...] = Field(default=(), alias="all")
    not_: tuple[NotTerm, ...] = Field(default=(), alias="not")
    escalate: Escalation | None = None
    digest: Digest | None = None
    quiet: Quiet | None = None

    @field_validator("min_sources")
    @classmethod
    def _min_sources(cls, value: int) -> int:
        return _at_least_one(value, "min_sources")

    @model_validator(mode="after")
    def _has_terms(self) -> Watchlist:
        if not self.terms and not any(t.kind != "not" for t in self.all_):
            raise _err(
                "no_terms",
                f"watchlist {_q(self.name)} has nothing to match: give terms: or all: "
                "(with at least one term that is not a not:)",
            )
        return self


class WatchlistFile(_Strict):
    """The watchlists YAML document. Duplicate names are checked by the config loader."""

    watchlists: tuple[Watchlist, ...] = ()


Term.model_rebuild()
Escalation.model_rebuild()
Digest.model_rebuild()
Quiet.model_rebuild()
Watchlist.model_rebuild()
WatchlistFile.model_rebuild()
