"""Promises: decisions, promises given, supervisor audit, targets per service, and the outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00

- ``outages``: ``attributes`` (JSON, extra columns of imported history) and ``source``;
  ``country`` becomes nullable (imported history may not know it).
- ``promises`` becomes the promise *decision*: ``deadline`` nullable, ``next_update_at``,
  ``evidence``, ``note`` renamed to ``reason``, statuses suggested/approved/overridden/superseded.
- New: ``promises_given``, ``promise_audit``, ``promise_targets``, ``outbox``.

SQLite cannot alter a column's nullability, so batch mode copies ``outages`` and ``promises`` into
new tables and drops the old ones. With foreign keys enforced that drop would run the ``ON DELETE
CASCADE`` of every referencing table (areas, subscriptions, ...), so enforcement is switched off
for the copy and the foreign keys are checked afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LANGUAGE_CHECK = "language IN ('nl', 'en')"
_COUNTRY_CHECK = "country IN ('NL', 'BE')"
_TARGET_CHECK = "target_quantile > 0 AND target_quantile < 1"
_PROMISE_STATUS_CHECK = "status IN ('suggested', 'approved', 'overridden', 'superseded')"
_PROMISE_WHEN_CHECK = "deadline IS NOT NULL OR next_update_at IS NOT NULL"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _foreign_keys_off() -> bool:
    """Switch SQLite's foreign key enforcement off for the table copies; True if it was on."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    was_on = bool(bind.exec_driver_sql("PRAGMA foreign_keys").scalar())
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    # The pragma is a no-op inside a transaction. That only happens when earlier revisions ran
    # in the same upgrade, i.e. on a fresh database whose tables are still empty; refuse to go
    # on rather than let the copy of ``outages`` cascade-delete real rows.
    if was_on and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        has_rows = bind.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM outages)").scalar()
        if has_rows:
            raise RuntimeError(
                "cannot switch off SQLite foreign keys inside a transaction; run the upgrade "
                "from revision 0002 on its own (belofte migrate)"
            )
    return was_on


def _foreign_keys_on(was_on: bool) -> None:
    """Check every foreign key after the copies and restore enforcement."""
    if not was_on:
        return
    bind = op.get_bind()
    problems = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"foreign key violations after migration 0003: {problems[:5]}")
    bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    """Extend ``outages`` and ``promises``; create the promise and outbox tables."""
    was_on = _foreign_keys_off()

    with op.batch_alter_table("outages") as batch:
        batch.add_column(
            sa.Column("attributes", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("source", sa.String(length=64), nullable=True))
        batch.alter_column("country", existing_type=sa.String(length=2), nullable=True)

    # Statuses "kept" and "broken" move to promises_given.outcome; no code ever wrote them.
    op.execute("UPDATE promises SET status = 'superseded' WHERE status IN ('kept', 'broken')")
    with op.batch_alter_table("promises") as batch:
        batch.alter_column("deadline", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.alter_column("note", new_column_name="reason", existing_type=sa.Text())
        batch.add_column(_timestamp("next_update_at", nullable=True))
        batch.add_column(
            sa.Column("evidence", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.create_check_constraint(op.f("ck_promises_status"), _PROMISE_STATUS_CHECK)
        batch.create_check_constraint(op.f("ck_promises_when"), _PROMISE_WHEN_CHECK)
    # The server default only filled the existing rows; new rows always carry their evidence.
    with op.batch_alter_table("promises") as batch:
        batch.alter_column("evidence", existing_type=sa.JSON(), server_default=None)

    op.create_table(
        "promise_targets",
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("target_quantile", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        _timestamp("updated_at"),
        sa.CheckConstraint(_TARGET_CHECK, name=op.f("ck_promise_targets_target_quantile")),
        sa.PrimaryKeyConstraint("service", name=op.f("pk_promise_targets")),
    )

    op.create_table(
        "promises_given",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("promise_id", sa.Integer(), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        _timestamp("given_at"),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        _timestamp("deadline", nullable=True),
        _timestamp("next_update_at", nullable=True),
        sa.Column("target_quantile", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        _timestamp("scored_at", nullable=True),
        _timestamp("renewed_at", nullable=True),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_promises_given_language")),
        sa.CheckConstraint(_TARGET_CHECK, name=op.f("ck_promises_given_target_quantile")),
        sa.CheckConstraint(
            "outcome IN ('kept', 'broken', 'no_deadline')", name=op.f("ck_promises_given_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_promises_given_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_promises_given_outage_id_outages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["promise_id"],
            ["promises.id"],
            name=op.f("fk_promises_given_promise_id_promises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promises_given")),
        sa.UniqueConstraint(
            "promise_id",
            "channel",
            "recipient",
            name=op.f("uq_promises_given_promise_id_channel_recipient"),
        ),
    )
    op.create_index(op.f("ix_promises_given_promise_id"), "promises_given", ["promise_id"])
    op.create_index(op.f("ix_promises_given_outage_id"), "promises_given", ["outage_id"])
    op.create_index(
        op.f("ix_promises_given_conversation_id"), "promises_given", ["conversation_id"]
    )

    op.create_table(
        "promise_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("promise_id", sa.Integer(), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _timestamp("old_deadline", nullable=True),
        _timestamp("new_deadline", nullable=True),
        _timestamp("at"),
        sa.CheckConstraint(
            "action IN ('approve', 'override')", name=op.f("ck_promise_audit_action")
        ),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_promise_audit_outage_id_outages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["promise_id"],
            ["promises.id"],
            name=op.f("fk_promise_audit_promise_id_promises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promise_audit")),
    )
    op.create_index(op.f("ix_promise_audit_promise_id"), "promise_audit", ["promise_id"])
    op.create_index("ix_promise_audit_outage_at", "promise_audit", ["outage_id", "at"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("promise_given_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("next_attempt_at"),
        _timestamp("created_at"),
        _timestamp("sent_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_outbox_language")),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'dead')", name=op.f("ck_outbox_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_attempts")),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_outbox_outage_id_outages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["promise_given_id"],
            ["promises_given.id"],
            name=op.f("fk_outbox_promise_given_id_promises_given"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_outbox_subscription_id_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
    )
    op.create_index(op.f("ix_outbox_outage_id"), "outbox", ["outage_id"])
    op.create_index(op.f("ix_outbox_subscription_id"), "outbox", ["subscription_id"])
    op.create_index(op.f("ix_outbox_promise_given_id"), "outbox", ["promise_given_id"])
    op.create_index("ix_outbox_status_next_attempt", "outbox", ["status", "next_attempt_at"])

    _foreign_keys_on(was_on)


def downgrade() -> None:
    """Back to 0002. Refuses when history without a country or clock-less promises exist."""
    bind = op.get_bind()
    for query, problem in (
        ("SELECT COUNT(*) FROM outages WHERE country IS NULL", "outages without a country"),
        ("SELECT COUNT(*) FROM promises WHERE deadline IS NULL", "promises without a deadline"),
    ):
        count = bind.exec_driver_sql(query).scalar()
        if count:
            raise RuntimeError(f"cannot downgrade below 0003: {count} {problem}")
    was_on = _foreign_keys_off()

    op.drop_table("outbox")
    op.drop_table("promise_audit")
    op.drop_table("promises_given")
    op.drop_table("promise_targets")

    op.execute("UPDATE promises SET status = 'suggested' WHERE status = 'superseded'")
    with op.batch_alter_table("promises") as batch:
        batch.drop_constraint(op.f("ck_promises_when"), type_="check")
        batch.drop_constraint(op.f("ck_promises_status"), type_="check")
        batch.drop_column("evidence")
        batch.drop_column("next_update_at")
        batch.alter_column("reason", new_column_name="note", existing_type=sa.Text())
        batch.alter_column("deadline", existing_type=sa.DateTime(timezone=True), nullable=False)

    with op.batch_alter_table("outages") as batch:
        batch.alter_column("country", existing_type=sa.String(length=2), nullable=False)
        batch.drop_column("source")
        batch.drop_column("attributes")

    _foreign_keys_on(was_on)
