"""Delivery of proactive messages: outbox queueing state and leased claims on outbound messages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00

- ``outbox.queued_at``: when the dispatcher handed the message to a worker queue (null: not
  queued); ``outbox.last_attempt_at``: when a worker last tried it. An index on ``sent_at`` keeps
  the queue-health summary ("sent in the last hour") cheap on a large outbox.
- ``channel_outbound.claimed_at`` and ``attempts``: a send claims its row (a lease) before the
  REST call; a retry after a crash finds the claim, waits for the lease to run out and looks the
  message up at the platform before sending again (see ``bot.channels.outbound``).

Only new columns (nullable, or with a server default) and an index: no batch copies on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the queueing columns of the outbox and the claim columns of outbound messages."""
    op.add_column("outbox", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at"])
    op.add_column(
        "channel_outbound", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "channel_outbound",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )


def downgrade() -> None:
    """Back to 0005: drop the claim and queueing columns."""
    op.drop_column("channel_outbound", "attempts")
    op.drop_column("channel_outbound", "claimed_at")
    op.drop_index("ix_outbox_sent_at", table_name="outbox")
    op.drop_column("outbox", "last_attempt_at")
    op.drop_column("outbox", "queued_at")
