"""the wire desk: update and escalation details, acknowledgements, mutes

Revision ID: 0006_desk
Revises: 0005_ops
Create Date: 2026-12-05 09:00:00

``alerts.detail``: what an update reply or an escalation says beyond its entry (the
headline before and after, the rule crossed), as JSON. ``alerts.acked_by`` and
``acked_at``: who acknowledged a story's card from Slack, and when. ``mutes``: a story or
a watchlist term silenced from Slack (or the CLI) until it expires.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_desk"
down_revision = "0005_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("acked_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "mutes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=True),
        sa.Column("watchlist", sa.String(length=200), nullable=True),
        sa.Column("term", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mutes_expires_at", "mutes", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_mutes_expires_at", table_name="mutes")
    op.drop_table("mutes")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("acked_at")
        batch.drop_column("acked_by")
        batch.drop_column("detail")
