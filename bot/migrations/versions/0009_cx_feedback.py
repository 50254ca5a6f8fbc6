"""The CX feedback loop: inbox states, comments, theme vectors and webhook forwards.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00

- ``feedback``: ``category``, ``state`` (new, triaged, actioned, dismissed), ``user_id`` (the
  staff author; null for customers and anonymous observations), ``anonymous`` and
  ``outage_id``, with CHECK constraints (an anonymous row can hold no user and no name).
- ``feedback_state_changes``: every move between states (who, when, from, to).
- ``feedback_comments``: the CX team's comments.
- ``feedback_embeddings``: each observation's vector per encoder version (themes).
- ``feedback_forwards``: the webhook forward of each observation and its retry state.

SQLite cannot add CHECK or FOREIGN KEY constraints to a table in place, so ``feedback`` is
copied by Alembic's batch mode there (it is small: free-text observations); PostgreSQL alters it
in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CATEGORY_CHECK = (
    "category IS NULL OR category IN "
    "('process', 'product', 'knowledge_base', 'promise', 'tooling', 'other')"
)
_STATE_CHECK = "state IN ('new', 'triaged', 'actioned', 'dismissed')"
_ANONYMOUS_CHECK = "NOT anonymous OR (user_id IS NULL AND author IS NULL)"
_FORWARD_STATUS_CHECK = "status IN ('pending', 'sending', 'sent', 'failed')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="SET NULL"
    )


def _feedback_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["feedback_id"],
        ["feedback.id"],
        name=op.f(f"fk_{table}_feedback_id_feedback"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Extend ``feedback`` and create the CX tables."""
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("category", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("state", sa.String(length=16), server_default="new", nullable=False)
        )
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("anonymous", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch.add_column(sa.Column("outage_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_feedback_user_id_users"), "users", ["user_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_foreign_key(
            op.f("fk_feedback_outage_id_outages"),
            "outages",
            ["outage_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_check_constraint(op.f("ck_feedback_category"), sa.text(_CATEGORY_CHECK))
        batch.create_check_constraint(op.f("ck_feedback_state"), sa.text(_STATE_CHECK))
        batch.create_check_constraint(op.f("ck_feedback_anonymous"), sa.text(_ANONYMOUS_CHECK))
        batch.create_index(op.f("ix_feedback_category"), ["category"])
        batch.create_index(op.f("ix_feedback_state"), ["state"])
        batch.create_index(op.f("ix_feedback_user_id"), ["user_id"])
        batch.create_index(op.f("ix_feedback_outage_id"), ["outage_id"])

    op.create_table(
        "feedback_state_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        _timestamp("changed_at"),
        _feedback_fk("feedback_state_changes"),
        _user_fk("feedback_state_changes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_state_changes")),
    )
    op.create_index(
        op.f("ix_feedback_state_changes_feedback_id"), "feedback_state_changes", ["feedback_id"]
    )

    op.create_table(
        "feedback_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _feedback_fk("feedback_comments"),
        _user_fk("feedback_comments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_comments")),
    )
    op.create_index(op.f("ix_feedback_comments_feedback_id"), "feedback_comments", ["feedback_id"])

    op.create_table(
        "feedback_embeddings",
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("encoder", sa.String(length=200), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        _timestamp("created_at"),
        _feedback_fk("feedback_embeddings"),
        sa.PrimaryKeyConstraint("feedback_id", "encoder", name=op.f("pk_feedback_embeddings")),
    )

    op.create_table(
        "feedback_forwards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("next_attempt_at"),
        _timestamp("claimed_at", nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        _timestamp("last_attempt_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("sent_at", nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(_FORWARD_STATUS_CHECK, name=op.f("ck_feedback_forwards_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_feedback_forwards_attempts")),
        _feedback_fk("feedback_forwards"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_forwards")),
        sa.UniqueConstraint("feedback_id", name=op.f("uq_feedback_forwards_feedback_id")),
    )
    op.create_index(
        "ix_feedback_forwards_status_next_attempt",
        "feedback_forwards",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    """Back to 0008: drop the CX tables and the new ``feedback`` columns."""
    op.drop_table("feedback_forwards")
    op.drop_table("feedback_embeddings")
    op.drop_table("feedback_comments")
    op.drop_table("feedback_state_changes")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index(op.f("ix_feedback_outage_id"))
        batch.drop_index(op.f("ix_feedback_user_id"))
        batch.drop_index(op.f("ix_feedback_state"))
        batch.drop_index(op.f("ix_feedback_category"))
        batch.drop_constraint(op.f("ck_feedback_anonymous"), type_="check")
        batch.drop_constraint(op.f("ck_feedback_state"), type_="check")
        batch.drop_constraint(op.f("ck_feedback_category"), type_="check")
        batch.drop_constraint(op.f("fk_feedback_outage_id_outages"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_feedback_user_id_users"), type_="foreignkey")
        batch.drop_column("outage_id")
        batch.drop_column("anonymous")
        batch.drop_column("user_id")
        batch.drop_column("state")
        batch.drop_column("category")
