"""What the operations system records about an outage as it is worked on.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00

- ``outage_states``: one row per recorded state of an outage (its state, who holds it,
  reassignments), with the moment it was recorded. ServiceNow imports fill it from the event
  log's rows; the live feed from ``PATCH /api/v1/outages/{id}`` with ``state``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outage_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outage_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outage_id"],
            ["outages.id"],
            name=op.f("fk_outage_states_outage_id_outages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outage_states")),
    )
    op.create_index(
        "ix_outage_states_outage_recorded", "outage_states", ["outage_id", "recorded_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_outage_states_outage_recorded", table_name="outage_states")
    op.drop_table("outage_states")
