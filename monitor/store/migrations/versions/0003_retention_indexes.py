"""indexes for retention and the channel pacing query

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 14:45:00

``ix_stories_updated_at`` finds the stories the retention prune may delete without a
scan; ``ix_alerts_entry_id`` and ``ix_matches_entry_id`` serve the foreign-key checks of
deleting entries (without them each deleted entry scanned both tables);
``ix_alerts_channel_sent`` serves the outbox's recent-sends count per channel, which
otherwise read every alert ever sent.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.create_index("ix_stories_updated_at", ["updated_at"], unique=False)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alerts_channel_sent", ["sink", "channel", "state", "sent_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alerts_entry_id"), ["entry_id"], unique=False)
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_matches_entry_id"), ["entry_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matches_entry_id"))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_entry_id"))
        batch_op.drop_index("ix_alerts_channel_sent")
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_index("ix_stories_updated_at")
