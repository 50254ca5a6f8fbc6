"""``INSERT ... ON CONFLICT DO NOTHING`` for SQLite and PostgreSQL, through the ORM's session.

Rows with a unique key written by several workers at once (an inbound event, a customer's
identity, an outbound message's idempotency key) are inserted with it: the database, not a lock
in memory, decides who was first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Integer, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.storage.models import Base


def insert_ignoring_conflict(
    session: Session, model: type[Base], values: Mapping[str, Any], conflict: Sequence[str]
) -> bool:
    """Insert a row unless one with the same ``conflict`` columns exists; True if inserted.

    Concurrent inserts of the same key are safe: PostgreSQL makes the second wait for the
    first and then do nothing; SQLite serialises writers.
    """
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(model)
            .values(**values)
            .on_conflict_do_nothing(index_elements=conflict)
            # RETURNING tells reliably whether the row went in (rowcount can be -1 here).
            .returning(literal(1, Integer))
        )
        return session.execute(statement).first() is not None
    # Other databases: a savepoint absorbs the unique violation.
    try:
        with session.begin_nested():
            session.add(model(**values))
        return True
    except IntegrityError:
        return False
