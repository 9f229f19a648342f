"""Slack rendering (Block Kit within Slack's limits, escaped feed text) and two Slack sinks.

Safety rules the renderer keeps:

* Every piece of feed text (title, summary, outlet, matched words) is stripped of control
  and bidi characters and escaped ``&`` -> ``&amp;``, ``<`` -> ``&lt;``, ``>`` -> ``&gt;``.
  Slack only turns text into a mention or a link through ``<...>`` markup, so a title such
  as ``<!channel>`` or ``<https://evil|click>`` shows literally and can neither ping nor
  disguise a link. Bare ``@here``/``@channel`` words do not ping either: messages are posted
  with ``link_names=False``. The only mentions in a message are the ones added for
  severity (``high`` -> ``<!here>``, ``critical`` -> ``<!channel>``).
* Link targets are used only when they are ``http``/``https`` URLs with a host; ``|``, ``<``,
  ``>``, quotes, spaces and control characters are percent-encoded and ``&`` escaped.
* Limits: at most 50 blocks, 3,000 characters per section text, 2,000 per field, 150 per
  header, about 3,000 for the fallback ``text``. Long text is cut with an ellipsis, never
  rejected; a digest is split across as many messages as it needs and never drops an item.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from monitor.deliver.base import DeliveryResult, LookupFailed, network_error
from monitor.deliver.diff import describe_change
from monitor.health import span
from monitor.models import AlertKind, AlertMessage
from monitor.normalize import ANSI, UNSAFE, clean, truncate

__all__ = [
    "ACTION_ACK",
    "ACTION_MUTE_STORY",
    "ACTION_MUTE_TERM",
    "EVENT_TYPE",
    "PERMANENT_ERRORS",
    "REQUEUED",
    "SlackBotNotifier",
    "SlackWebhookNotifier",
    "action_buttons",
    "clean",
    "error_hint",
    "escape",
    "render_messages",
    "render_slack",
    "render_slack_digest",
    "render_update",
    "rendered_hash",
    "safe_url",
    "when",
]

Blocks = list[dict[str, Any]]
Rendered = tuple[str, Blocks]

DEFAULT_BASE_URL = "https://slack.com/api/"
EVENT_TYPE = "wirewatch_alert"

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_HEADER = 150
MAX_TEXT = 3000
TITLE_LIMIT = 400
SUMMARY_LIMIT = 600
DIGEST_ITEM_LIMIT = 900
DIGEST_ITEMS_PER_MESSAGE = 20
MAX_URL = 2000

MENTIONS = {"high": "<!here>", "critical": "<!channel>"}
# an escalation rule's ``mention`` as Slack writes it (the schema admits only these
# and ids already in Slack's own form)
RULE_MENTIONS = {"@here": "<!here>", "@channel": "<!channel>"}
SEVERITY_LABEL = {"high": ":large_orange_circle: High", "critical": ":red_circle: Critical"}

# Slack error codes retrying cannot fix. Anything else (internal_error, fatal_error,
# service_unavailable, request_timeout, unknown codes) is treated as transient.
# a channel gone or a token refused: a post fails as a history lookup does
_CHANNEL_OR_TOKEN_ERRORS = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "channel_is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
    }
)
PERMANENT_ERRORS = _CHANNEL_OR_TOKEN_ERRORS | frozenset(
    {
        "not_in_channel",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "ekm_access_denied",
        "team_access_not_granted",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "msg_too_long",
        "msg_blocks_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "invalid_arg_name",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "metadata_must_be_sent_from_app",
        "too_many_attachments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "invalid_channel",
        "action_prohibited",
        "invalid_payload",
        "invalid_token",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "user_not_found",
        "posting_to_general_channel_denied",
    }
)

_WS = re.compile(r"\s+")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


# --------------------------------------------------------------------------- text safety


def escape(value: str) -> str:
    """Slack mrkdwn escaping of feed text (after ``clean``)."""
    return clean(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_trunc(value: str, limit: int) -> str:
    """Escaped text no longer than ``limit`` characters *after* escaping."""
    text = clean(value)
    budget = limit
    while True:
        out = escape(truncate(text, budget))
        if len(out) <= limit or budget <= 1:
            return out[:limit]
        budget -= max(1, len(out) - limit)


def safe_url(url: str) -> str | None:
    """A link target safe inside ``<url|label>``, or ``None`` when it is not an
    http(s) URL with a host (``javascript:``, ``data:``, relative, overlong...)."""
    url = ANSI.sub("", (url or "").strip())
    if not url or len(url) > MAX_URL:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    out: list[str] = []
    for ch in url:
        if ch in '|<> "`\\' or ord(ch) < 0x21 or 0x7F <= ord(ch) <= 0x9F or UNSAFE.match(ch):
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out).replace("&", "&amp;")


def _link(url: str, label: str, limit: int = TITLE_LIMIT) -> str:
    """``<url|label>`` with escaped label, or just the escaped label when the URL is unsafe."""
    text = _esc_trunc(label, limit) or "(untitled)"
    target = safe_url(url)
    return f"<{target}|{text}>" if target else text


def when(published: datetime | None) -> str:
    if published is None:
        return "unknown"
    if published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return published.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_FIELD]}]}


def _join_within(items: Sequence[str], limit: int, sep: str = ", ") -> str:
    """Join as many items as fit in ``limit``, then "and N more"."""
    out: list[str] = []
    used = 0
    for i, item in enumerate(items):
        more = len(items) - i - 1
        tail = f"{sep}and {more} more" if more else ""
        if used + len(sep) * bool(out) + len(item) + len(tail) > limit:
            return sep.join(out) + f"{sep if out else ''}and {len(items) - i} more"
        out.append(item)
        used += len(item) + len(sep) * (len(out) > 1)
    return sep.join(out)


# --------------------------------------------------------------------------- rendering


def _matched(msg: AlertMessage, limit: int) -> str:
    terms = ", ".join(f"*{escape(t)}*" for t in msg.matched_terms) or "—"
    words = [w for w in msg.matched_words if w and w not in msg.matched_terms]
    if words:
        terms += " (as " + ", ".join(f"“{escape(w)}”" for w in words) + ")"
    if len(terms) > limit:
        terms = _esc_trunc(", ".join(msg.matched_terms), limit)
    return terms


def _outlets(msg: AlertMessage) -> list[str]:
    seen: set[tuple[str, str]] = set()
    out: list[str] = []
    for ref in msg.sources:
        key = (ref.source, ref.link)
        if key in seen:
            continue
        seen.add(key)
        out.append(_link(ref.link, ref.source or ref.link, 100))
    return out


def _fallback(prefix: str, body: str) -> str:
    return (prefix + body)[:MAX_TEXT]


def render_slack(msg: AlertMessage) -> Rendered:
    """(fallback text, blocks) for one alert: a card, the short thread reply of a
    follow-up or an update, an escalation; a digest renders its first part (use
    ``render_messages`` for all parts)."""
    if msg.digest:
        return render_slack_digest(msg.digest)[0]
    if msg.kind == AlertKind.FOLLOWUP:
        return _render_followup(msg)
    if msg.kind == AlertKind.UPDATE:
        return _render_development(msg)
    if msg.kind == AlertKind.ESCALATION:
        return _render_escalation(msg, None)
    return _render_alert(msg, carried=False)


def render_update(msg: AlertMessage) -> Rendered:
    """The parent message re-rendered for ``chat.update``: as ``render_slack`` plus
    "Carried by N outlets: A, B, C"."""
    return _render_alert(msg, carried=True)


def render_messages(msg: AlertMessage) -> list[Rendered]:
    """Every Slack message ``msg`` needs: one, or several for a long digest."""
    if msg.digest:
        return render_slack_digest(msg.digest)
    return [render_slack(msg)]


def _render_alert(msg: AlertMessage, *, carried: bool) -> Rendered:
    mention = MENTIONS.get(msg.severity, "")
    label = SEVERITY_LABEL.get(msg.severity)
    headline = f"*{_link(msg.link, msg.title)}*"
    first = f"{mention} {headline}" if mention else headline
    if label:
        first += f"\n{label}"
    fields = [
        f"*Outlet*\n{_esc_trunc(msg.source, 300) or '—'}",
        f"*Published*\n{when(msg.published)}",
        f"*Watchlist*\n{_esc_trunc(msg.watchlist, 300)}",
        f"*Matched*\n{_matched(msg, MAX_FIELD - 20)}",
    ]
    blocks: Blocks = [
        _section(first),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    summary = _esc_trunc(msg.summary, SUMMARY_LIMIT)
    if summary:
        blocks.append(_section(summary))
    outlets = _outlets(msg)
    if carried or len(outlets) > 1:
        n = max(len(outlets), 1)
        noun = "outlet" if n == 1 else "outlets"
        lead = f"Carried by {n} {noun}: "
        blocks.append(_context(lead + _join_within(outlets, MAX_FIELD - len(lead) - 5)))
    provenance = _provenance(msg)
    if provenance:
        blocks.append(_context(provenance))
    if msg.acked_by:
        at = f" at {when(msg.acked_at)}" if msg.acked_at else ""
        blocks.append(_context(f":white_check_mark: Acknowledged by {_who(msg.acked_by)}{at}"))
    if msg.actions:
        blocks.append(action_buttons(msg))
    text = _fallback(
        f"{mention} " if mention else "",
        f"[{escape(msg.watchlist)}] {_esc_trunc(msg.title, TITLE_LIMIT)} — "
        f"{_esc_trunc(msg.source, 200)} {safe_url(msg.link) or ''}".rstrip(),
    )
    return text, blocks


# the buttons' action ids (``monitor.deliver.socket`` reads them back)
ACTION_MUTE_STORY = "wirewatch.mute_story"
ACTION_MUTE_TERM = "wirewatch.mute_term"
ACTION_ACK = "wirewatch.ack"
ACTIONS_BLOCK = "wirewatch.actions"
TERM_BUTTONS = 3  # one "Mute term 24h" button per matched term up to this; then a menu
MAX_BUTTON_TEXT = 75  # Slack's limits: a button's text, an option's text and value
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100
MAX_BUTTON_VALUE = 2000


def _value(**ids: object) -> str:
    return json.dumps(ids, ensure_ascii=False, separators=(",", ":"))


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, MAX_BUTTON_TEXT), "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def action_buttons(msg: AlertMessage) -> dict[str, Any]:
    """The card's ``actions`` block: *Mute story*, *Mute term 24h* (one button per
    matched watchlist term up to three, a menu of them beyond) and *Acknowledge*. Each
    value is JSON naming the alert, story, watchlist and term it acts on."""
    ids: dict[str, object] = {"alert": msg.alert_id, "story": msg.story_id}
    elements: list[dict[str, Any]] = [
        _button("Mute story", ACTION_MUTE_STORY, _value(**ids)),
    ]
    # (the term as the watchlist writes it is what a mute matches; the label is cleaned)
    terms = [t for t in msg.matched_terms if clean(t)]
    if len(terms) <= TERM_BUTTONS:
        for i, term in enumerate(terms):
            name = clean(term)
            label = f"Mute “{name}” 24h" if len(terms) > 1 else f"Mute term “{name}” 24h"
            value = _value(**ids, watchlist=msg.watchlist, term=term)
            if len(value) <= MAX_BUTTON_VALUE:
                elements.append(_button(label, f"{ACTION_MUTE_TERM}:{i}", value))
    else:
        # an option's value holds at most 150 characters: the watchlist comes from the
        # alert, and a term too long to fit is not offered
        options: list[dict[str, Any]] = []
        for term in terms:
            value = _value(alert=msg.alert_id, term=term)
            if len(value) > MAX_OPTION_VALUE or len(options) >= MAX_OPTIONS:
                continue
            text = {"type": "plain_text", "text": truncate(clean(term), MAX_OPTION_TEXT)}
            options.append({"text": text, "value": value})
        if options:
            elements.append(
                {
                    "type": "static_select",
                    "action_id": ACTION_MUTE_TERM,
                    "placeholder": {"type": "plain_text", "text": "Mute term 24h"},
                    "options": options,
                }
            )
    elements.append(_button("Acknowledge", ACTION_ACK, _value(**ids), style="primary"))
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": elements}


def _who(user: str) -> str:
    """A Slack user id as a mention (``<@U123>``); anything else as escaped text."""
    return f"<@{user}>" if re.fullmatch(r"[UW][A-Z0-9]{2,20}", user) else escape(user)


def _provenance(msg: AlertMessage) -> str:
    """Who had the story first and when, and how fast a second outlet followed; a story
    carried by one outlet is labelled ``single source``."""
    dated = sorted((r for r in msg.sources if r.when is not None), key=lambda r: r.when or 0)
    outlets = {r.source for r in msg.sources} or {msg.source}
    if not dated:
        return "single source" if len(outlets) <= 1 else ""
    first = dated[0]
    line = f"First: *{_esc_trunc(first.source, 100)}* {when(first.when)}"
    if len(outlets) <= 1:
        return f"single source · {line}"
    second = next((r for r in dated[1:] if r.source != first.source), None)
    if second is not None and second.when is not None and first.when is not None:
        gap = (second.when - first.when).total_seconds()
        line += f" · second outlet after {span(max(0.0, gap))}"
    return line


def _render_development(msg: AlertMessage) -> Rendered:
    """An update reply: what changed in the headline (old → new), by whom and when."""
    old, new = msg.change or (msg.parent_title, msg.title)
    change = _esc_trunc(describe_change(old, new), MAX_SECTION - 600)
    who = _esc_trunc(msg.source, 200) or "an outlet"
    story = ""
    if msg.parent_in_digest and msg.parent_title:
        story = f"On *{_esc_trunc(msg.parent_title, TITLE_LIMIT)}*: "
    line = (
        f"{story}:arrows_counterclockwise: *Update* from *{who}* · {when(msg.published)}\n"
        f"{change}\n{_link(msg.link, new)}"
    )
    text = _fallback(story, f"Update from {who}: {_esc_trunc(describe_change(old, new), 600)}")
    return text, [_section(line)]


def _render_escalation(msg: AlertMessage, permalink: str | None) -> Rendered:
    """The one post to an escalation channel: the story, the rule it crossed, and a
    link to its thread."""
    mention = RULE_MENTIONS.get(msg.mention, msg.mention)
    head = f":rotating_light: *Escalated* ({escape(msg.rule)}): *{_link(msg.link, msg.title)}*"
    first = f"{mention} {head}" if mention else head
    outlets = _outlets(msg)
    lines = [first]
    if outlets:
        lead = f"Carried by {len(outlets)} outlets: "
        lines.append(lead + _join_within(outlets, MAX_SECTION - 800))
    url = safe_url(permalink or "")
    if url:
        lines.append(f"<{url}|Original thread>")
    provenance = _provenance(msg)
    blocks: Blocks = [_section("\n".join(lines))]
    if provenance:
        blocks.append(_context(provenance))
    text = _fallback(
        f"{mention} " if mention else "",
        f"Escalated ({escape(msg.rule)}): {_esc_trunc(msg.title, TITLE_LIMIT)}",
    )
    return text, blocks


def _render_followup(msg: AlertMessage) -> Rendered:
    # under a digest the thread holds the copies of many stories: each reply names its own
    story = ""
    if msg.parent_in_digest and msg.parent_title:
        story = f"On *{_esc_trunc(msg.parent_title, TITLE_LIMIT)}*: "
    outlets = _outlets(msg)
    if len(outlets) > 1:  # several outlets batched into one reply
        names = ", ".join(_esc_trunc(r.source, 100) for r in msg.sources)
        line = story + "also reported by " + _join_within(outlets, MAX_SECTION - 40 - len(story))
        text = _fallback(story, f"Also reported by {names}")
        return text, [_section(line if story else line[0].upper() + line[1:])]
    who = _esc_trunc(msg.source, 200) or "another outlet"
    line = f"Also reported by *{who}*: {_link(msg.link, msg.title)} · {when(msg.published)}"
    text = _fallback(story, f"Also reported by {who}: {_esc_trunc(msg.title, TITLE_LIMIT)}")
    return text, [_section(story + line if story else line)]


def _digest_item(item: AlertMessage) -> str:
    extra = len(_outlets(item)) - 1
    more = f" (+{extra} outlet{'s' if extra > 1 else ''})" if extra > 0 else ""
    tail = (
        f" — {_esc_trunc(item.source, 100)}{more} · {when(item.published)}"
        f" · _{_esc_trunc(item.watchlist, 100)}_: {_matched(item, 300)}"
    )
    head = f"• *{_link(item.link, item.title, DIGEST_ITEM_LIMIT - len(tail) - 30)}*"
    return (head + tail)[:MAX_SECTION]


def render_slack_digest(
    msgs: Sequence[AlertMessage], *, per_message: int = DIGEST_ITEMS_PER_MESSAGE
) -> list[Rendered]:
    """A digest of ``msgs`` split across messages: every item appears exactly once, each
    linked with its outlet; each message stays within Slack's block and text limits."""
    per_message = max(1, min(per_message, MAX_BLOCKS - 3))
    chunks = [list(msgs[i : i + per_message]) for i in range(0, len(msgs), per_message)]
    order = ["info", "high", "critical"]
    top = max((m.severity for m in msgs), key=lambda s: order.index(s) if s in order else 0)
    mention = MENTIONS.get(top, "")
    watchlists = sorted({clean(m.watchlist) for m in msgs})
    about = ", ".join(watchlists) if len(watchlists) <= 3 else f"{len(watchlists)} watchlists"
    out: list[Rendered] = []
    for n, chunk in enumerate(chunks, start=1):
        part = f" (part {n}/{len(chunks)})" if len(chunks) > 1 else ""
        header = truncate(f"Digest: {len(msgs)} alerts · {about}{part}", MAX_HEADER)
        blocks: Blocks = [{"type": "header", "text": {"type": "plain_text", "text": header}}]
        if mention and n == 1:
            blocks.append(_section(f"{mention} {len(msgs)} alerts in a burst"))
        blocks.extend(_section(_digest_item(m)) for m in chunk)
        titles = "; ".join(_esc_trunc(m.title, 120) for m in chunk)
        prefix = f"{mention} " if mention and n == 1 else ""
        text = _fallback(prefix, f"Wirewatch digest{part}: {len(msgs)} alerts — {titles}")
        out.append((text, blocks))
    return out


def rendered_hash(text: str, blocks: Blocks | None) -> str:
    """A short fingerprint of what a message shows (its fallback text and blocks)."""
    raw = json.dumps([text, blocks or []], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------- error mapping


def _retry_after(headers: Mapping[str, Any] | None) -> float:
    value: Any = None
    if headers:
        for k, v in headers.items():
            if str(k).lower() == "retry-after":
                value = v[0] if isinstance(v, list | tuple) and v else v
                break
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0


# how `wirewatch outbox retry` marks the reason of a row it re-queued
REQUEUED = "re-queued by hand; before: "

# what to do about the permanent errors an operator can fix
_HINTS = {
    "invalid_auth": "check SLACK_BOT_TOKEN",
    "not_authed": "set SLACK_BOT_TOKEN",
    "account_inactive": "the bot's token is revoked: set a new SLACK_BOT_TOKEN",
    "token_revoked": "set a new SLACK_BOT_TOKEN",
    "token_expired": "set a new SLACK_BOT_TOKEN",
    "channel_not_found": "fix SLACK_CHANNEL or the watchlist's, then retry",
    "not_in_channel": "invite the bot to the channel (/invite @bot)",
    "is_archived": "the channel is archived: unarchive it or pick another",
    "channel_is_archived": "the channel is archived: unarchive it or pick another",
    "missing_scope": "give the Slack app the chat:write scope and reinstall it",
}


# errors a history lookup shares with the post it checks for: that post cannot have
# gone out, and sending again only reports the error (nothing can be doubled)
_POST_FAILS_TOO = _CHANNEL_OR_TOKEN_ERRORS | {"thread_not_found"}
# answers Slack gives when busy or broken for a moment (retried, never counted)
_TRANSIENT_ANSWERS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_LOOKUP_HINTS = {
    "missing_scope": "give the Slack app channels:history and groups:history, reinstall it",
    "not_in_channel": "invite the bot to the channel (/invite @bot)",
    "unknown_method": "SLACK_API_URL does not serve conversations.history: check it",
    "not_allowed_token_type": "SLACK_BOT_TOKEN must be a bot token (xoxb-)",
}


def lookup_hint(error: str) -> str:
    """``error`` from a history lookup, with what to do about it when known."""
    hint = _LOOKUP_HINTS.get(error)
    return f"{error} ({hint})" if hint else error


def error_hint(error: str) -> str:
    """``error`` with what to do about it when it is a Slack error an operator can fix
    (``invalid_auth`` -> ``invalid_auth: check SLACK_BOT_TOKEN``; also after the
    ``wirewatch outbox retry`` mark, ``REQUEUED``); otherwise unchanged."""
    hint = _HINTS.get(error.removeprefix(REQUEUED))
    return f"{error}: {hint}" if hint else error


def _from_status(
    status: int, code: str | None, headers: Mapping[str, Any] | None
) -> DeliveryResult:
    """Map an HTTP status and Slack error code to a failed DeliveryResult."""
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return DeliveryResult(ok=False, error="ratelimited", retry_after=_retry_after(headers))
    if status >= 500 or status == 408:
        return DeliveryResult(ok=False, error=code or f"http_{status}")
    if code in PERMANENT_ERRORS:
        return DeliveryResult(ok=False, error=code, permanent=True)
    if code is None and 400 <= status < 500:
        return DeliveryResult(ok=False, error=f"http_{status}", permanent=True)
    return DeliveryResult(ok=False, error=code or f"http_{status}")


def from_api_error(exc: SlackApiError) -> DeliveryResult:
    """What a Slack Web API error means for the outbox (retry when, give up, ...); the
    Socket Mode client reads its ``apps.connections.open`` errors the same way."""
    resp = exc.response
    data = getattr(resp, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    status = int(getattr(resp, "status_code", 0) or 0)
    return _from_status(status, code, getattr(resp, "headers", None))


def _from_exception(exc: BaseException) -> DeliveryResult:
    """Network failure. A refused connection never reached Slack; anything later
    (reset, disconnect, timeout) may have, so the outcome is uncertain."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DeliveryResult(ok=False, error=f"connection refused: {exc.os_error or exc}"[:200])
    return DeliveryResult(ok=False, error=network_error(exc, "Slack"), uncertain=True)


# what a call over the network may raise besides SlackApiError
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def connect_retry_handler(
    retries: int = 2, interval: float = 0.25
) -> AsyncConnectionErrorRetryHandler:
    """slack-sdk retry handler for connections that never opened (safe to repeat: the
    request did not reach Slack). Disconnects after sending are *not* retried here, since
    Slack may have posted; the outbox reconciles those with ``find_sent``."""
    return AsyncConnectionErrorRetryHandler(
        max_retry_count=retries,
        interval_calculator=FixedValueRetryIntervalCalculator(interval),
        error_types=[aiohttp.ClientConnectorError],
    )


def _metadata(
    msg: AlertMessage, part: int | None = None, parts: int | None = None
) -> dict[str, Any]:
    """Message metadata. Digest parts also carry ``part``/``parts`` and the ``alert_ids``
    of the items they list, so each item's alert can be reconciled on its own."""
    payload: dict[str, Any] = {"alert_id": msg.alert_id, "story_id": msg.story_id}
    if msg.entry_id is not None:  # (what `wirewatch explain --entry ID` takes)
        payload["entry_id"] = msg.entry_id
    if part is not None and parts is not None:
        per = DIGEST_ITEMS_PER_MESSAGE  # as render_slack_digest chunks them
        payload["part"] = part
        payload["parts"] = parts
        payload["alert_ids"] = [m.alert_id for m in msg.digest[part * per : (part + 1) * per]]
    return {"event_type": EVENT_TYPE, "event_payload": payload}


# --------------------------------------------------------------------------- bot notifier


def _session_if_loop_running(timeout: float) -> aiohttp.ClientSession | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    # slack-sdk applies its own timeout only to sessions it creates itself
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


class SlackBotNotifier:
    """Slack via a bot token (``chat:write``; ``channels:history``/``groups:history`` for
    crash reconciliation; ``channels:read`` to resolve channel names after a restart).

    One attempt per call; 429s, 5xx and network errors come back as transient results
    for the outbox to reschedule. Only connections that were refused outright are
    retried in place (twice, 0.25 s apart)."""

    name = "slack"

    def __init__(
        self,
        token: str,
        *,
        default_channel: str,
        base_url: str | None = None,
        client: AsyncWebClient | None = None,
        timeout: float = 15,
        connect_retries: int = 2,
    ) -> None:
        self.default_channel = default_channel
        self.client = client or AsyncWebClient(
            token=token,
            base_url=base_url or DEFAULT_BASE_URL,
            timeout=max(1, round(timeout)),  # (the session's own timeout is the one used)
            retry_handlers=[connect_retry_handler(connect_retries)],
            # one pooled HTTP session for every call (without it slack-sdk opens and
            # closes a session per request: a new connection and TLS handshake each time)
            session=_session_if_loop_running(timeout),
        )
        self._channel_ids: dict[str, str] = {}
        # (channel, alert_id) -> {part index: ts} for digests sent only in part
        self._digest_progress: dict[tuple[str, int], dict[int, str]] = {}

    def _channel(self, msg: AlertMessage) -> str:
        return msg.channel or self.default_channel

    async def check_token(self) -> DeliveryResult:
        """``auth.test``: whether Slack accepts the token. A rejection (``invalid_auth``,
        ``token_revoked``, ...) is ``permanent``; Slack unreachable is a transient
        failure (alerts queue until it answers)."""
        try:
            await self.client.auth_test()
        except SlackApiError as exc:
            return from_api_error(exc)
        except NETWORK_ERRORS as exc:
            return _from_exception(exc)
        return DeliveryResult(ok=True)

    async def send(self, msg: AlertMessage) -> DeliveryResult:
        channel = self._channel(msg)
        thread_ts = msg.thread_ts if msg.kind.threaded else None
        parts = render_messages(msg)
        if msg.kind == AlertKind.ESCALATION:
            parts = [_render_escalation(msg, await self._permalink(msg))]
        if len(parts) == 1 and not msg.digest:
            text, blocks = parts[0]
            result = await self._post(
                channel, text, blocks, thread_ts, _metadata(msg), broadcast=msg.broadcast
            )
            return replace(result, parts=(result.ts,)) if result.ok and result.ts else result
        key = (channel, msg.alert_id)
        done = self._digest_progress.setdefault(key, {})
        result = DeliveryResult(ok=True)
        for i, (text, blocks) in enumerate(parts):
            if i in done:
                continue
            result = await self._post(
                channel, text, blocks, thread_ts, _metadata(msg, i, len(parts))
            )
            if not result.ok:
                # the parts already out are reported, so that their stories are marked
                # shown and only the others are sent again
                first = 0
                while first in done:
                    first += 1
                return replace(result, parts=tuple(done[j] for j in range(first)))
            done[i] = result.ts or ""
        self._digest_progress.pop(key, None)
        return DeliveryResult(
            ok=True,
            ts=done.get(0),
            channel=result.channel,
            parts=tuple(done[i] for i in range(len(parts))),
        )

    async def _permalink(self, msg: AlertMessage) -> str | None:
        """A link to the message announcing the story (``chat.getPermalink``); None when
        there is none or Slack will not say (the escalation goes out without it)."""
        if not msg.thread_ts or not msg.parent_channel:
            return None
        try:
            resp = await self.client.chat_getPermalink(
                channel=msg.parent_channel, message_ts=msg.thread_ts
            )
        except (SlackApiError, *NETWORK_ERRORS):
            return None
        link = resp.get("permalink")
        return str(link) if link else None

    async def _post(
        self,
        channel: str,
        text: str,
        blocks: Blocks,
        thread_ts: str | None,
        metadata: dict[str, Any],
        *,
        broadcast: bool = False,
    ) -> DeliveryResult:
        extra: dict[str, Any] = {"reply_broadcast": True} if broadcast and thread_ts else {}
        try:
            resp = await self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                thread_ts=thread_ts,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
                link_names=False,
                **extra,
            )
        except SlackApiError as exc:
            return from_api_error(exc)
        except NETWORK_ERRORS as exc:
            return _from_exception(exc)
        channel_id = str(resp.get("channel") or "") or None
        if channel_id:
            self._channel_ids[channel] = channel_id
        return DeliveryResult(ok=True, ts=str(resp.get("ts")), channel=channel_id)

    async def update(self, msg: AlertMessage, ts: str, part: int = 0) -> DeliveryResult:
        """``chat.update`` replaces the whole message: it is re-rendered from everything
        it shows, a card from its story, a digest part from all of its lines."""
        try:
            channel = await self._resolve(self._channel(msg))
        except LookupFailed as exc:
            return DeliveryResult(ok=False, error=str(exc)[:200])
        if msg.digest:
            rendered = render_slack_digest(msg.digest)
            if not 0 <= part < len(rendered):
                return DeliveryResult(ok=False, error=f"no part {part} in this digest")
            text, blocks = rendered[part]
            metadata = _metadata(msg, part, len(rendered))
        else:
            text, blocks = render_update(msg)
            metadata = _metadata(msg)
        try:
            resp = await self.client.chat_update(
                channel=channel, ts=ts, text=text, blocks=blocks, metadata=metadata
            )
        except SlackApiError as exc:
            return from_api_error(exc)
        except NETWORK_ERRORS as exc:
            return _from_exception(exc)
        return DeliveryResult(ok=True, ts=str(resp.get("ts") or ts), channel=channel)

    async def _resolve(self, channel: str) -> str:
        """Channel id for ``channel`` (history and chat.update need ids): ids pass through,
        names come from earlier posts or ``conversations.list``; unknown names are returned
        unchanged (Slack will answer channel_not_found)."""
        if _CHANNEL_ID.match(channel):
            return channel
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        wanted = channel.lstrip("#")
        cursor: str | None = None
        try:
            for _ in range(50):
                resp = await self.client.conversations_list(
                    types="public_channel,private_channel", limit=1000, cursor=cursor
                )
                for ch in resp.get("channels") or []:
                    if ch.get("name") == wanted and ch.get("id"):
                        self._channel_ids[channel] = str(ch["id"])
                        return str(ch["id"])
                cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except SlackApiError as exc:
            result = from_api_error(exc)
            if not result.permanent:
                raise LookupFailed(f"conversations.list: {result.error}") from exc
        except NETWORK_ERRORS as exc:
            raise LookupFailed(f"conversations.list: {exc}") from exc
        return channel

    async def find_sent(self, msg: AlertMessage, since: datetime) -> str | None:
        """Look for our metadata (``event_type`` ``wirewatch_alert``, ``alert_id``) in the
        channel (or, for a follow-up, its thread) from ``since`` minus five minutes of clock
        skew. Raises ``LookupFailed`` when Slack cannot be asked (transient); returns ``None``
        when the answer is a permanent error, so that ``send`` reports it.

        For a digest sent only in part, remembers which parts exist so the next ``send``
        posts only the missing ones, and returns ``None`` until every part is there."""
        channel = await self._resolve(self._channel(msg))
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        oldest = f"{(since - timedelta(minutes=5)).timestamp():.6f}"
        found: dict[int, str] = {}
        cursor: str | None = None
        try:
            for _ in range(50):
                if msg.kind.threaded and msg.thread_ts:
                    resp = await self.client.conversations_replies(
                        channel=channel,
                        ts=msg.thread_ts,
                        oldest=oldest,
                        limit=200,
                        include_all_metadata=True,
                        cursor=cursor,
                    )
                else:
                    resp = await self.client.conversations_history(
                        channel=channel,
                        oldest=oldest,
                        limit=200,
                        include_all_metadata=True,
                        cursor=cursor,
                    )
                for m in resp.get("messages") or []:
                    md = m.get("metadata") or {}
                    payload = md.get("event_payload") or {}
                    if md.get("event_type") != EVENT_TYPE:
                        continue
                    if str(payload.get("alert_id")) != str(msg.alert_id):
                        items = payload.get("alert_ids") or []
                        if msg.digest or str(msg.alert_id) not in map(str, items):
                            continue
                        found.setdefault(-1, str(m.get("ts")))  # inside someone's digest
                        continue
                    part = int(payload.get("part") or 0)
                    ts = str(m.get("ts"))
                    if part not in found or float(ts) < float(found[part]):
                        found[part] = ts
                cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor or not resp.get("has_more", True):
                    break
        except SlackApiError as exc:
            result = from_api_error(exc)
            if result.error in _POST_FAILS_TOO:
                return None  # a post would fail the same way: sending reports it
            method = "conversations.replies" if msg.kind.threaded else "conversations.history"
            answered = result.retry_after is None and not (result.error or "").startswith("http_5")
            raise LookupFailed(
                f"{method}: {lookup_hint(result.error or '')}",
                permanent=answered and result.error not in _TRANSIENT_ANSWERS,
            ) from exc
        except NETWORK_ERRORS as exc:
            raise LookupFailed(f"history: {type(exc).__name__}: {exc}") from exc
        if not found:
            return None
        if not msg.digest:
            return found.get(0) or found.get(-1) or min(found.values(), key=float)
        parts = len(render_messages(msg))
        if all(i in found for i in range(parts)):
            self._digest_progress.pop((self._channel(msg), msg.alert_id), None)
            return found[0]
        self._digest_progress[(self._channel(msg), msg.alert_id)] = dict(found)
        return None

    async def read_channel(
        self, channel: str, oldest: datetime, threads: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """What ``channel`` shows from ``oldest`` on, for ``wirewatch audit``: top-level
        messages (``conversations.history``, with metadata), oldest first, each with
        ``replies`` (``conversations.replies``) when it has a thread; ``threads`` are
        more thread ts to read (replies under messages older than ``oldest``). Raises
        ``LookupFailed`` when Slack cannot be read."""
        cid = await self._resolve(channel)
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        after = f"{oldest.timestamp():.6f}"
        top = await self._pages("conversations_history", channel=cid, oldest=after)
        top.sort(key=lambda m: float(m.get("ts") or 0))
        wanted = {str(m.get("ts")) for m in top if m.get("reply_count") or m.get("thread_ts")}
        wanted.update(threads)
        by_ts = {str(m.get("ts")): m for m in top}
        for ts in sorted(wanted, key=float):
            thread = await self._pages("conversations_replies", channel=cid, ts=ts, missing_ok=True)
            replies = [r for r in thread if str(r.get("ts")) != ts]
            parent = by_ts.get(ts)
            if parent is None:  # an older parent: kept for its replies, not as shown
                parent = {"ts": ts, "older": True}
                parent.update(next((r for r in thread if str(r.get("ts")) == ts), {}))
                parent["older"] = True
                by_ts[ts] = parent
                top.insert(0, parent)
            parent["replies"] = sorted(replies, key=lambda r: float(r.get("ts") or 0))
        return top

    async def _pages(
        self, method: str, *, missing_ok: bool = False, **args: Any
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        call = getattr(self.client, method)
        hiccups = 0
        for _ in range(1000):
            try:
                resp = await call(limit=200, include_all_metadata=True, cursor=cursor, **args)
            except SlackApiError as exc:
                result = from_api_error(exc)
                if result.retry_after is not None:  # rate limited: wait as asked, go on
                    await asyncio.sleep(min(result.retry_after, 60.0))
                    continue
                if not result.permanent and hiccups < 3:  # a 5xx: a moment, then again
                    hiccups += 1
                    await asyncio.sleep(0.5 * hiccups)
                    continue
                if missing_ok and result.error == "thread_not_found":
                    return out
                name = method.replace("_", ".")
                raise LookupFailed(f"{name}: {lookup_hint(result.error or '')}") from exc
            except NETWORK_ERRORS as exc:
                raise LookupFailed(f"{method.replace('_', '.')}: {exc}") from exc
            out.extend(m for m in resp.get("messages") or [] if isinstance(m, dict))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or not resp.get("has_more", True):
                break
        return out

    async def aclose(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None and not session.closed:
            await session.close()


# --------------------------------------------------------------------------- webhook notifier


class SlackWebhookNotifier:
    """Slack via an incoming webhook. Webhooks return no ``ts``: no threads, no edits and no
    reconciliation. Follow-ups ("also reported by") are skipped (reported ok) rather than
    posted as new top-level messages, keeping one message per story."""

    name = "slack-webhook"

    def __init__(
        self, url: str, *, client: AsyncWebhookClient | None = None, timeout: int = 15
    ) -> None:
        self.client = client or AsyncWebhookClient(
            url, timeout=timeout, retry_handlers=[connect_retry_handler()]
        )
        self._digest_progress: dict[int, set[int]] = {}

    async def send(self, msg: AlertMessage) -> DeliveryResult:
        if msg.kind == "followup" and not msg.digest:
            return DeliveryResult(ok=True)
        parts = render_messages(msg)
        done = self._digest_progress.setdefault(msg.alert_id, set())
        for i, (text, blocks) in enumerate(parts):
            if i in done:
                continue
            try:
                resp = await self.client.send(
                    text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
                )
            except NETWORK_ERRORS as exc:
                return _from_exception(exc)
            if resp.status_code != 200:
                code = clean(str(resp.body or ""))[:100] or None
                return _from_status(resp.status_code, code, resp.headers)
            done.add(i)
        self._digest_progress.pop(msg.alert_id, None)
        return DeliveryResult(ok=True)

    async def update(self, msg: AlertMessage, ts: str, part: int = 0) -> DeliveryResult:
        return DeliveryResult(ok=True)

    async def find_sent(self, msg: AlertMessage, since: datetime) -> str | None:
        return None

    async def aclose(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None and not session.closed:
            await session.close()
