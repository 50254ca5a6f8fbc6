"""Channels: inbound events taken in, opt-outs, outbound messages and their delivery status.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00

- ``channel_inbound``: every Telegram update and Twilio message a webhook took in; the unique
  (channel, external_id) makes a redelivered event processed once.
- ``channel_opt_outs``: STOP / START per (channel, address).
- ``channel_outbound``: messages sent (or refused) on a channel, with the Twilio SID and the
  current delivery status; ``channel_delivery_events``: the status callbacks, once per status.
- ``channel_callback_payloads``: Telegram button payloads longer than callback data allows.

Only new tables, so no batch copies are needed on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INBOUND_STATUS_CHECK = "status IN ('received', 'done', 'failed')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the channel tables."""
    op.create_table(
        "channel_inbound",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("received_at"),
        _timestamp("processed_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(_INBOUND_STATUS_CHECK, name=op.f("ck_channel_inbound_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_inbound")),
        sa.UniqueConstraint(
            "channel", "external_id", name=op.f("uq_channel_inbound_channel_external_id")
        ),
    )
    op.create_index(
        "ix_channel_inbound_channel_address_received",
        "channel_inbound",
        ["channel", "address", "received_at"],
    )

    op.create_table(
        "channel_opt_outs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        _timestamp("opted_out_at", nullable=True),
        _timestamp("opted_in_at", nullable=True),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_opt_outs")),
        sa.UniqueConstraint("channel", "address", name=op.f("uq_channel_opt_outs_channel_address")),
    )

    op.create_table(
        "channel_outbound",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("content_sid", sa.String(length=64), nullable=True),
        sa.Column("content_variables", sa.JSON(), nullable=True),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("twilio_sid", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_channel_outbound_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
            name=op.f("fk_channel_outbound_outbox_id_outbox"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_outbound")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_channel_outbound_idempotency_key")),
        sa.UniqueConstraint("twilio_sid", name=op.f("uq_channel_outbound_twilio_sid")),
    )
    op.create_index(
        op.f("ix_channel_outbound_conversation_id"), "channel_outbound", ["conversation_id"]
    )
    op.create_index(op.f("ix_channel_outbound_outbox_id"), "channel_outbound", ["outbox_id"])
    op.create_index(
        "ix_channel_outbound_channel_address_created",
        "channel_outbound",
        ["channel", "address", "created_at"],
    )

    op.create_table(
        "channel_delivery_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbound_id", sa.Integer(), nullable=True),
        sa.Column("message_sid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        _timestamp("received_at"),
        sa.ForeignKeyConstraint(
            ["outbound_id"],
            ["channel_outbound.id"],
            name=op.f("fk_channel_delivery_events_outbound_id_channel_outbound"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_delivery_events")),
        sa.UniqueConstraint(
            "message_sid", "status", name=op.f("uq_channel_delivery_events_message_sid_status")
        ),
    )
    op.create_index(
        op.f("ix_channel_delivery_events_outbound_id"), "channel_delivery_events", ["outbound_id"]
    )

    op.create_table(
        "channel_callback_payloads",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_channel_callback_payloads")),
    )


def downgrade() -> None:
    """Back to 0003: drop the channel tables (their history is lost)."""
    op.drop_table("channel_callback_payloads")
    op.drop_table("channel_delivery_events")
    op.drop_table("channel_outbound")
    op.drop_table("channel_opt_outs")
    op.drop_table("channel_inbound")
