"""One customer across channels: link codes, a preferred channel, and replayable inbound events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:00:00

- ``customers.preferred_channel``: where the customer wants notifications (null: on the channel
  each subscription was made on).
- ``customer_link_codes``: one-time codes (keyed hash only) that tie a Telegram chat to a phone
  number or the reverse; ``customer_link_attempts``: wrong codes per address, for the lockout.
- ``channel_inbound.payload`` and ``swept_at``: the update or form kept until the event is
  finished, so a sweep can process an event again after the process died (once, claimed by
  ``swept_at``); a partial index on events still ``received`` keeps that sweep cheap.

Only new nullable columns, new tables and an index: no batch copies on SQLite (which adds and,
since 3.35, drops plain columns in place).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECEIVED = sa.text("status = 'received'")


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Add the preferred channel, the link-code tables and the inbound payload for sweeps."""
    op.add_column("customers", sa.Column("preferred_channel", sa.String(length=16), nullable=True))

    op.add_column("channel_inbound", sa.Column("payload", sa.JSON(), nullable=True))
    op.add_column("channel_inbound", _timestamp("swept_at", nullable=True))
    op.create_index(
        "ix_channel_inbound_stuck",
        "channel_inbound",
        ["received_at"],
        sqlite_where=_RECEIVED,
        postgresql_where=_RECEIVED,
    )

    op.create_table(
        "customer_link_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at"),
        _timestamp("used_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_link_codes_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_link_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_customer_link_codes_code_hash")),
    )
    op.create_index(
        op.f("ix_customer_link_codes_customer_id"), "customer_link_codes", ["customer_id"]
    )
    op.create_index(
        op.f("ix_customer_link_codes_expires_at"), "customer_link_codes", ["expires_at"]
    )

    op.create_table(
        "customer_link_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        _timestamp("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_link_attempts")),
    )
    op.create_index(
        "ix_customer_link_attempts_channel_address_at",
        "customer_link_attempts",
        ["channel", "address", "at"],
    )


def downgrade() -> None:
    """Back to 0006: drop the link codes, the preferred channel and the inbound payloads."""
    op.drop_table("customer_link_attempts")
    op.drop_table("customer_link_codes")
    op.drop_index("ix_channel_inbound_stuck", table_name="channel_inbound")
    op.drop_column("channel_inbound", "swept_at")
    op.drop_column("channel_inbound", "payload")
    op.drop_column("customers", "preferred_channel")
