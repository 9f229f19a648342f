"""Logging for ``run`` and ``once``: text or one JSON object per line, on stderr.

Log lines quote what feeds and servers send (titles, reason phrases), so escape
sequences and control characters are stripped; and they may quote configuration, so
the configured secrets, and anything shaped like a Slack token, a Slack webhook URL or
a password in a URL, are redacted before a line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from monitor.normalize import strip_unsafe

if TYPE_CHECKING:
    from monitor.config import AppConfig


class SafeFormatter(logging.Formatter):
    """Log lines may quote feed-supplied text (titles, server reason phrases): strip
    escape sequences and control characters so nothing reaches the terminal raw."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_unsafe(super().format(record)).replace("\r", "")


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class LocalTimeFormatter(SafeFormatter):
    """Log times as ISO 8601 with their UTC offset: a log read in another time zone, or
    beside Slack's times, is not an hour off."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        return when.isoformat(timespec="milliseconds")


# (a database URL's password; Slack tokens and webhook URLs wherever they appear)
_SECRET_SHAPES = re.compile(
    r"(?<=://)([^/:@\s]*):[^@/\s]+(?=@)|xox[abposr]-[0-9A-Za-z-]+"
    r"|https://hooks\.slack\.com/[^\s\"']+"
)


class Redactor:
    """Secrets never reach the log: the configured ones by value, and anything shaped
    like a Slack token, a Slack webhook URL or a password in a URL."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len))[::-1]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _SECRET_SHAPES.sub(
            lambda m: f"{m.group(1)}:[redacted]" if m.group(1) is not None else "[redacted]", text
        )


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one object per line (``time`` with its UTC offset, ``level``,
    ``logger``, ``message``, and ``feed``, ``story_id``, ``alert_id``, ``entry_id`` where
    the line is about one)."""

    IDS = ("feed", "story_id", "alert_id", "entry_id", "slack_user", "mute_id")

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        obj: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(strip_unsafe(record.getMessage())),
        }
        for key in self.IDS:
            value = getattr(record, key, None)
            if value is not None:
                obj[key] = value
        if record.exc_info:
            obj["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(obj, ensure_ascii=False, default=str)


class TextFormatter(LocalTimeFormatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


_LOG_FORMATS = ("text", "json")


def secrets_of(cfg: AppConfig) -> tuple[str, ...]:
    s = cfg.settings
    return tuple(
        v
        for v in (
            s.slack.bot_token,
            s.slack.app_token,
            s.slack.webhook_url,
            s.webhook.url,
            s.webhook.secret,
        )
        if v
    )


def setup_logging(level: str, fmt: str = "text", secrets: tuple[str, ...] = ()) -> None:
    if level.upper() not in _LEVELS:
        typer.echo(f"error: --log-level: {level!r} is not one of {', '.join(_LEVELS)}", err=True)
        raise typer.Exit(2)
    if fmt not in _LOG_FORMATS:
        typer.echo(f"error: --log-format: {fmt!r} is not one of text, json", err=True)
        raise typer.Exit(2)
    handler = logging.StreamHandler(sys.stderr)
    redact = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # (slack_sdk logs each of its own HTTP retries at INFO; the outbox's warning says it)
    for noisy in ("apscheduler", "aiosqlite", "asyncio", "alembic", "slack_sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
