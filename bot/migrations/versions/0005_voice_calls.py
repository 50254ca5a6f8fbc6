"""Voice line: the state of calls to the outage line and their status callbacks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 09:00:00

- ``voice_calls``: one row per Twilio ``CallSid``: the step the call is at, its language,
  postcode, the outages and promise told, the handoff, the last TwiML answered (replayed for a
  webhook delivered twice) and the latest call status.
- ``voice_call_events``: call status callbacks, once per (call, status).

Only new tables, so no batch copies are needed on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LANGUAGE_CHECK = "language IN ('nl', 'en')"
_STEP_CHECK = "step IN ('language', 'known_postcode', 'postcode', 'menu', 'done', 'transferred')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the voice tables."""
    op.create_table(
        "voice_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=32), nullable=True),
        sa.Column("called", sa.String(length=32), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("postcode_on_file", sa.String(length=7), nullable=True),
        sa.Column("postcode", sa.String(length=7), nullable=True),
        sa.Column("outage_ids", sa.JSON(), nullable=False),
        sa.Column("promise_said", sa.Text(), nullable=True),
        sa.Column("subscription_ids", sa.JSON(), nullable=False),
        sa.Column("handoff_id", sa.Integer(), nullable=True),
        sa.Column("transfer_reason", sa.String(length=32), nullable=True),
        sa.Column("last_twiml", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        _timestamp("started_at"),
        _timestamp("updated_at"),
        _timestamp("ended_at", nullable=True),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_voice_calls_language")),
        sa.CheckConstraint(_STEP_CHECK, name=op.f("ck_voice_calls_step")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_voice_calls_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_voice_calls_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
            name=op.f("fk_voice_calls_handoff_id_handoffs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_calls")),
        sa.UniqueConstraint("call_sid", name=op.f("uq_voice_calls_call_sid")),
    )
    op.create_index(op.f("ix_voice_calls_customer_id"), "voice_calls", ["customer_id"])
    op.create_index(op.f("ix_voice_calls_conversation_id"), "voice_calls", ["conversation_id"])
    op.create_index(op.f("ix_voice_calls_handoff_id"), "voice_calls", ["handoff_id"])
    op.create_index("ix_voice_calls_caller_started", "voice_calls", ["caller", "started_at"])

    op.create_table(
        "voice_call_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("sequence_number", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        _timestamp("received_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_call_events")),
        sa.UniqueConstraint(
            "call_sid", "status", name=op.f("uq_voice_call_events_call_sid_status")
        ),
    )


def downgrade() -> None:
    """Back to 0004: drop the voice tables (call records are lost)."""
    op.drop_table("voice_call_events")
    op.drop_table("voice_calls")
