"""Suggestion events: shown, used, thumbs up, thumbs down for knowledge-base answers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``suggestion_events``."""
    op.create_table(
        "suggestion_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("suggestion_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("article_id", sa.String(length=128), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "event IN ('shown', 'used', 'thumbs_up', 'thumbs_down')",
            name=op.f("ck_suggestion_events_event"),
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_suggestion_events_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestion_events")),
    )
    op.create_index(
        op.f("ix_suggestion_events_suggestion_id"), "suggestion_events", ["suggestion_id"]
    )
    op.create_index(
        op.f("ix_suggestion_events_conversation_id"), "suggestion_events", ["conversation_id"]
    )
    op.create_index(op.f("ix_suggestion_events_created_at"), "suggestion_events", ["created_at"])


def downgrade() -> None:
    """Drop ``suggestion_events``."""
    op.drop_table("suggestion_events")
