"""Initial schema: customers, conversations, outages, subscriptions, feedback, promises.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 08:45:14

Written from ``alembic revision --autogenerate`` and checked by hand; ``tests/test_storage.py``
verifies that the result matches ``bot.storage.models`` on SQLite and PostgreSQL. Timestamps are
``DateTime(timezone=True)`` (``timestamptz`` on PostgreSQL); the models' ``UTCDateTime`` type adds
UTC awareness on SQLite in Python, so the migration does not import application code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LANGUAGE_CHECK = "language IN ('nl', 'en')"
_COUNTRY_CHECK = "country IN ('NL', 'BE')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table of the initial schema."""
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_customers_language")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )

    op.create_table(
        "outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=False),
        sa.Column("region_name", sa.String(length=100), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        _timestamp("started_at"),
        _timestamp("resolved_at", nullable=True),
        sa.Column("customers_affected", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.CheckConstraint(_COUNTRY_CHECK, name=op.f("ck_outages_country")),
        sa.CheckConstraint("customers_affected >= 0", name=op.f("ck_outages_customers_affected")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outages")),
        sa.UniqueConstraint("reference", name=op.f("uq_outages_reference")),
    )
    op.create_index("ix_outages_resolved_at", "outages", ["resolved_at"])
    op.create_index("ix_outages_service_started", "outages", ["service", "started_at"])

    op.create_table(
        "channel_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_channel_identities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_identities")),
        sa.UniqueConstraint(
            "channel", "external_id", name=op.f("uq_channel_identities_channel_external_id")
        ),
    )
    op.create_index(
        op.f("ix_channel_identities_customer_id"), "channel_identities", ["customer_id"]
    )

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_conversations_language")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_conversations_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(op.f("ix_conversations_customer_id"), "conversations", ["customer_id"])

    op.create_table(
        "outage_areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("postcode_prefix", sa.String(length=4), nullable=False),
        sa.CheckConstraint(_COUNTRY_CHECK, name=op.f("ck_outage_areas_country")),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_outage_areas_outage_id_outages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outage_areas")),
        sa.UniqueConstraint(
            "outage_id",
            "country",
            "postcode_prefix",
            name=op.f("uq_outage_areas_outage_id_country_postcode_prefix"),
        ),
    )
    op.create_index(
        "ix_outage_areas_country_prefix", "outage_areas", ["country", "postcode_prefix"]
    )

    op.create_table(
        "promises",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        _timestamp("deadline"),
        sa.Column("target_quantile", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("made_at"),
        sa.Column("made_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "target_quantile > 0 AND target_quantile < 1",
            name=op.f("ck_promises_target_quantile"),
        ),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_promises_outage_id_outages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promises")),
    )
    op.create_index(op.f("ix_promises_outage_id"), "promises", ["outage_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("theme", sa.String(length=64), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_feedback_language")),
        sa.CheckConstraint("source IN ('agent', 'customer')", name=op.f("ck_feedback_source")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_feedback_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_conversation_id"), "feedback", ["conversation_id"])
    op.create_index(op.f("ix_feedback_created_at"), "feedback", ["created_at"])

    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("resolved_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_handoffs_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
    )
    op.create_index(op.f("ix_handoffs_conversation_id"), "handoffs", ["conversation_id"])

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("intent", sa.String(length=100), nullable=True),
        sa.Column("intent_confidence", sa.Float(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_messages_direction")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(
        "ix_messages_conversation_created", "messages", ["conversation_id", "created_at"]
    )

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=True),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("postcode", sa.String(length=7), nullable=True),
        sa.Column("service", sa.String(length=16), nullable=True),
        _timestamp("created_at"),
        _timestamp("cancelled_at", nullable=True),
        _timestamp("notified_at", nullable=True),
        sa.CheckConstraint(_LANGUAGE_CHECK, name=op.f("ck_subscriptions_language")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_subscriptions_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_subscriptions_outage_id_outages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(op.f("ix_subscriptions_conversation_id"), "subscriptions", ["conversation_id"])
    op.create_index(op.f("ix_subscriptions_outage_id"), "subscriptions", ["outage_id"])
    # At most one active subscription per (channel, address, outage). Partial unique indexes
    # work on SQLite and PostgreSQL alike; NULL outage ids need their own index because NULLs
    # never collide in a unique index.
    active_with_outage = sa.text("cancelled_at IS NULL AND outage_id IS NOT NULL")
    op.create_index(
        "uq_subscriptions_active_outage",
        "subscriptions",
        ["channel", "address", "outage_id"],
        unique=True,
        sqlite_where=active_with_outage,
        postgresql_where=active_with_outage,
    )
    active_without_outage = sa.text("cancelled_at IS NULL AND outage_id IS NULL")
    op.create_index(
        "uq_subscriptions_active_no_outage",
        "subscriptions",
        ["channel", "address"],
        unique=True,
        sqlite_where=active_without_outage,
        postgresql_where=active_without_outage,
    )


def downgrade() -> None:
    """Drop every table (children first); indexes go with their tables."""
    for table in (
        "subscriptions",
        "messages",
        "handoffs",
        "feedback",
        "promises",
        "outage_areas",
        "conversations",
        "channel_identities",
        "outages",
        "customers",
    ):
        op.drop_table(table)
