"""messages: what each posted message shows

Revision ID: 0004_messages
Revises: 0003
Create Date: 2026-12-05 05:30:00

``messages``: one row per message Wirewatch posted (a card, a digest part, a thread
reply) with its ``ts``; ``message_alerts``: the alerts each one shows, in order. An edit
re-renders a message from its whole set, so editing a digest keeps every line.
``alerts.check_failures``: reconciliation lookups Slack refused (a row no longer stays
``sending`` for good when the history cannot be read).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_messages"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("parent_ts", sa.String(length=64), nullable=True),
        sa.Column("group_ts", sa.String(length=64), nullable=True),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("rendered_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sink", "channel", "ts", name="uq_messages_channel_ts"),
    )
    op.create_index("ix_messages_group", "messages", ["sink", "channel", "group_ts"])
    op.create_table(
        "message_alerts",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("message_id", "alert_id"),
    )
    op.create_index(
        op.f("ix_message_alerts_alert_id"), "message_alerts", ["alert_id"], unique=False
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("check_failures", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("check_failures")
    op.drop_index(op.f("ix_message_alerts_alert_id"), table_name="message_alerts")
    op.drop_table("message_alerts")
    op.drop_index("ix_messages_group", table_name="messages")
    op.drop_table("messages")
