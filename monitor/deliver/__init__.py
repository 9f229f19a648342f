"""Alert sinks behind one ``Notifier`` protocol: Slack (bot token or incoming webhook),
a signed generic JSON webhook, and the console."""

from __future__ import annotations

from monitor.deliver.base import DeliveryResult, LookupFailed, Notifier
from monitor.deliver.console import ConsoleNotifier, render_console
from monitor.deliver.slack import (
    SlackBotNotifier,
    SlackWebhookNotifier,
    render_messages,
    render_slack,
    render_slack_digest,
    render_update,
)
from monitor.deliver.webhook import WebhookNotifier

__all__ = [
    "ConsoleNotifier",
    "DeliveryResult",
    "LookupFailed",
    "Notifier",
    "SlackBotNotifier",
    "SlackWebhookNotifier",
    "WebhookNotifier",
    "render_console",
    "render_messages",
    "render_slack",
    "render_slack_digest",
    "render_update",
]
