"""Where feed-health messages go: Slack's ``slack.ops_channel`` (with the bot token the
alerts use), or the console. Takes one line of text, returns a ``DeliveryResult``.

Feed names and errors are untrusted (a server's reason phrase, a feed's URL): the text
is stripped of control characters and, for Slack, escaped, so it can neither ping nor
disguise a link.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol, TextIO

from slack_sdk.errors import SlackApiError

from monitor.deliver.base import DeliveryResult, Notifier, network_error
from monitor.deliver.console import ConsoleNotifier
from monitor.deliver.slack import SlackBotNotifier, escape
from monitor.normalize import clean

PREFIX = "[feed health]"


class OpsSink(Protocol):
    name: str

    async def post(self, text: str) -> DeliveryResult: ...


class SlackOps:
    name = "slack"

    def __init__(self, bot: SlackBotNotifier, channel: str) -> None:
        self.bot, self.channel = bot, channel

    async def post(self, text: str) -> DeliveryResult:
        body = f":rotating_light: *{PREFIX}* {escape(clean(text))}"
        try:
            resp = await self.bot.client.chat_postMessage(
                channel=self.channel,
                text=body,
                unfurl_links=False,
                unfurl_media=False,
                link_names=False,
            )
        except SlackApiError as exc:
            return DeliveryResult(ok=False, error=str(exc.response.get("error") or exc)[:200])
        except Exception as exc:  # network: the message stays due and is retried
            return DeliveryResult(ok=False, error=network_error(exc, "Slack"))
        return DeliveryResult(ok=True, ts=str(resp.get("ts")))


class ConsoleOps:
    name = "console"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    async def post(self, text: str) -> DeliveryResult:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        try:
            self.stream.write(f"{PREFIX} {stamp} {clean(text)}\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:
            return DeliveryResult(ok=False, error=f"console: {exc}"[:200])
        return DeliveryResult(ok=True)


def ops_sink(ops_channel: str | None, notifiers: Mapping[str, Notifier]) -> OpsSink:
    """Slack's ops channel when one is set and a bot token is configured, else the
    console (the alerts' console stream when alerts print there)."""
    bot = notifiers.get("slack")
    if ops_channel and isinstance(bot, SlackBotNotifier):
        return SlackOps(bot, ops_channel)
    console = notifiers.get("console")
    return ConsoleOps(console.stream if isinstance(console, ConsoleNotifier) else sys.stdout)
