"""feeds: the URL as configured, and the publisher's interval hints kept across 304s

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:05:00

``config_url``: the URL the YAML gave when it was last synced. ``url`` is where the feed
is polled, which a permanent redirect changes; comparing the YAML with ``config_url``
(not with ``url``) tells an edited config from a moved feed.

``ttl_minutes``, ``update_period_minutes``, ``cadence_s``: what the last full body said
about how often to poll (RSS ``<ttl>``, ``sy:updatePeriod``/``sy:updateFrequency``) and the
publishing cadence learned from it, so that a 304, which has no body, keeps the feed's
interval instead of falling back to the default.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ttl_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("update_period_minutes", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cadence_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("cadence_s")
        batch_op.drop_column("update_period_minutes")
        batch_op.drop_column("ttl_minutes")
        batch_op.drop_column("config_url")
