"""Outage history in the database as the promise engine sees it: :class:`promise.Incident` rows.

``load_incidents`` reads every outage (open ones are censored observations for the engine) with
its recorded states; ``import_incidents`` stores an imported history, updating outages whose
reference is already known, all or nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from bot.storage.models import Outage, OutageState
from promise.incident import Incident, Update

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


def load_incidents(session: Session, *, states: bool = True) -> list[Incident]:
    """Every outage, open or resolved, as an :class:`Incident`, oldest first.

    With ``states``, each with its recorded states (:attr:`Incident.updates
    <promise.incident.Incident.updates>`); only the remaining-time model reads them, and on a
    large history they take longer to load than the outages.
    """
    recorded = outage_states(session) if states else {}
    query = select(
        Outage.id,
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
            updates=recorded.get(row.id, ()),
        )
        for row in session.execute(query)
    ]


def outage_states(
    session: Session, outage_ids: Collection[int] | None = None
) -> dict[int, tuple[Update, ...]]:
    """The recorded states of the outages ``outage_ids`` (all: None), oldest first, by outage id."""
    query = select(OutageState.outage_id, OutageState.recorded_at, OutageState.attributes)
    if outage_ids is not None:
        if not outage_ids:
            return {}
        query = query.where(OutageState.outage_id.in_(outage_ids))
    found: dict[int, list[Update]] = defaultdict(list)
    rows = session.execute(
        query.order_by(OutageState.outage_id, OutageState.recorded_at, OutageState.id)
    )
    for row in rows:
        # Written from dict[str, str] (the API's and the importers' type): no conversion.
        found[row.outage_id].append((row.recorded_at, row.attributes))
    return {outage_id: tuple(updates) for outage_id, updates in found.items()}


def _check(incident: Incident) -> None:
    """Refuse what the database would refuse (or silently truncate), naming the incident."""
    problem = storage_problem(incident)
    if problem is not None:
        raise HistoryImportError(f"incident {incident.id!r}: {problem}")


def storage_problem(incident: Incident) -> str | None:
    """Why ``incident`` cannot be stored (an empty or too long field, ...); None: it can."""
    values = {
        "id": incident.id,
        "service": incident.service,
        "cause": incident.cause,
        "region": incident.region,
    }
    for name, value in values.items():
        if not value:
            return f"{name} is empty"
        if len(value) > _WIDTHS[name]:
            return f"{name} {value!r} is longer than {_WIDTHS[name]}"
    moments = (("started_at", incident.started_at), ("resolved_at", incident.resolved_at))
    for name, moment in moments:
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            return f"{name} has no time zone"
    if incident.resolved_at is not None and incident.resolved_at < incident.started_at:
        return "resolved before it started"
    if incident.customers_affected is not None and incident.customers_affected < 0:
        return "customers_affected is negative"
    return None


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
            same: set[str] = set()
            for row in rows:
                known = existing.get(row["reference"])
                if known is None:
                    new_rows.append({"customers_affected": 0, **row})
                elif _same(known, row):
                    same.add(row["reference"])
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
            restated = _store_states(session, chunk)
            created += len(new_rows)
            updated += len(changed_rows) + len(same & restated)
            unchanged += len(same - restated)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return ImportSummary(created=created, updated=updated, unchanged=unchanged)


def _store_states(session: Session, chunk: Sequence[Incident]) -> set[str]:
    """Replace the stored states of the incidents in ``chunk`` whose recorded states differ.

    An incident without states (a canonical history records none) keeps what is stored. Returns
    the references whose states were replaced.
    """
    carrying = [incident for incident in chunk if incident.updates]
    if not carrying:
        return set()
    ids = dict(
        session.execute(
            select(Outage.reference, Outage.id).where(
                Outage.reference.in_([incident.id for incident in carrying])
            )
        ).all()
    )
    stored = outage_states(session, list(ids.values()))
    replaced: list[int] = []
    rows: list[dict[str, Any]] = []
    references: set[str] = set()
    for incident in carrying:
        outage_id = ids[incident.id]
        wanted = tuple((moment, dict(values)) for moment, values in incident.updates)
        if wanted == stored.get(outage_id, ()):
            continue
        replaced.append(outage_id)
        references.add(incident.id)
        rows.extend(
            {"outage_id": outage_id, "recorded_at": moment, "attributes": values}
            for moment, values in wanted
        )
    if replaced:
        session.execute(delete(OutageState).where(OutageState.outage_id.in_(replaced)))
        session.execute(insert(OutageState), rows)
    return references
