"""Outage history in the database as the promise engine sees it: :class:`promise.Incident` rows.

``load_incidents`` reads every outage (open ones are censored observations for the engine);
``import_incidents`` stores an imported history, updating outages whose reference is already
known, all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from bot.storage.models import Outage
from promise.incident import Incident

#: Rows written per statement: large enough to be fast, small enough for PostgreSQL's
#: limit on bound parameters and for modest memory use on 25k-incident imports.
CHUNK_SIZE: Final = 1000

# Column widths of ``outages``: PostgreSQL refuses longer values, SQLite would silently keep
# them, so they are checked before anything is written.
_WIDTHS: Final = {"id": 32, "service": 16, "cause": 32, "region": 100}


class HistoryImportError(ValueError):
    """An incident cannot be stored; the message names it. Nothing was changed."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did: outages created and existing outages whose values changed."""

    created: int
    updated: int
    unchanged: int = 0


def load_incidents(session: Session) -> list[Incident]:
    """Every outage, open or resolved, as an :class:`Incident`, oldest first."""
    query = select(
        Outage.reference,
        Outage.started_at,
        Outage.resolved_at,
        Outage.service,
        Outage.cause,
        Outage.region_name,
        Outage.customers_affected,
        Outage.description,
        Outage.attributes,
    ).order_by(Outage.started_at, Outage.id)
    return [
        Incident(
            id=row.reference,
            started_at=row.started_at,
            resolved_at=row.resolved_at,
            service=row.service,
            cause=row.cause,
            region=row.region_name,
            customers_affected=row.customers_affected,
            description=row.description,
            attributes={str(k): str(v) for k, v in (row.attributes or {}).items()},
        )
        for row in session.execute(query)
    ]


def _check(incident: Incident) -> None:
    """Refuse what the database would refuse (or silently truncate), naming the incident."""
    values = {
        "id": incident.id,
        "service": incident.service,
        "cause": incident.cause,
        "region": incident.region,
    }
    for name, value in values.items():
        if not value:
            raise HistoryImportError(f"incident {incident.id!r}: {name} is empty")
        if len(value) > _WIDTHS[name]:
            raise HistoryImportError(
                f"incident {incident.id!r}: {name} {value!r} is longer than {_WIDTHS[name]}"
            )
    moments = (("started_at", incident.started_at), ("resolved_at", incident.resolved_at))
    for name, moment in moments:
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise HistoryImportError(f"incident {incident.id!r}: {name} has no time zone")
    if incident.resolved_at is not None and incident.resolved_at < incident.started_at:
        raise HistoryImportError(f"incident {incident.id!r}: resolved before it started")
    if incident.customers_affected is not None and incident.customers_affected < 0:
        raise HistoryImportError(f"incident {incident.id!r}: customers_affected is negative")


def _values(incident: Incident, source: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "reference": incident.id,
        "started_at": incident.started_at,
        "resolved_at": incident.resolved_at,
        "service": incident.service,
        "cause": incident.cause,
        "region_name": incident.region,
        "description": incident.description,
        "attributes": dict(incident.attributes),
        "source": source,
    }
    # Unknown counts do not overwrite a known one; new rows need a number (the column is NOT
    # NULL), and 0 reads as "not reported" in the demo data too.
    if incident.customers_affected is not None:
        values["customers_affected"] = incident.customers_affected
    return values


def _same(existing: Any, values: dict[str, Any]) -> bool:
    return all(getattr(existing, key) == value for key, value in values.items())


def import_incidents(
    session: Session, incidents: Iterable[Incident], *, source: str
) -> ImportSummary:
    """Store ``incidents``, creating new outages and updating those whose reference exists.

    ``source`` (for example ``"servicenow:incident_event_log.csv"``) is kept in each row's
    ``source`` column (cut to 64 characters). Everything is validated first and written in one
    transaction, which is committed here: on any error the transaction is rolled back, the error
    re-raised, and the database is as it was. Give it a session without pending work of its own.
    """
    batch: Sequence[Incident] = list(incidents)
    seen: set[str] = set()
    for incident in batch:
        _check(incident)
        if incident.id in seen:
            raise HistoryImportError(f"incident {incident.id!r} appears more than once")
        seen.add(incident.id)
    # A label, not data: a long file name is cut rather than failing the import.
    source = source[:64]

    created = updated = unchanged = 0
    try:
        for start in range(0, len(batch), CHUNK_SIZE):
            chunk = batch[start : start + CHUNK_SIZE]
            rows = [_values(incident, source) for incident in chunk]
            existing = {
                row.reference: row
                for row in session.execute(
                    select(
                        Outage.id,
                        Outage.reference,
                        Outage.started_at,
                        Outage.resolved_at,
                        Outage.service,
                        Outage.cause,
                        Outage.region_name,
                        Outage.description,
                        Outage.attributes,
                        Outage.source,
                        Outage.customers_affected,
                    ).where(Outage.reference.in_([r["reference"] for r in rows]))
                )
            }
            new_rows: list[dict[str, Any]] = []
            changed_rows: list[dict[str, Any]] = []
            for row in rows:
                known = existing.get(row["reference"])
                if known is None:
                    new_rows.append({"customers_affected": 0, **row})
                elif _same(known, row):
                    unchanged += 1
                else:
                    # Every row of one bulk statement needs the same keys.
                    row.setdefault("customers_affected", known.customers_affected)
                    changed_rows.append({"id": known.id, **row})
            # Core-style bulk statements through the session: no ORM bookkeeping per row, and
            # still inside the session's transaction.
            if new_rows:
                session.execute(insert(Outage), new_rows)
            if changed_rows:
                session.execute(update(Outage), changed_rows)
            created += len(new_rows)
            updated += len(changed_rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return ImportSummary(created=created, updated=updated, unchanged=unchanged)
