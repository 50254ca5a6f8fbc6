"""Readers for the outage history the promise engine learns from.

Two source formats are understood:

- ``canonical``: one row per incident with the columns ``id, started_at, resolved_at, service,
  cause, region`` (required) and ``customers_affected, description`` (optional). Timestamps are
  ISO 8601; an empty ``resolved_at`` means the incident is still open. Every other column is kept
  in :attr:`Incident.attributes <promise.incident.Incident.attributes>`.
- ``servicenow``: the ServiceNow incident event log (a CSV, or a zip holding one), with one row
  per state change. Each incident is collapsed to its opening and its final resolution; the
  rows in between become its :attr:`~promise.incident.Incident.updates` (state, assignment and
  reassignments as they were recorded).

A YAML mapping file can rename columns for either format, for example::

    service: category
    cause: subcategory
    region: location
    started_at: opened
    time_format: "%d-%m-%Y %H:%M"
    timezone: Europe/Amsterdam

Rows that cannot be used are skipped and reported with their line number, so one bad row never
costs a whole history; problems with the file as a whole raise :class:`HistoryError`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Final, Literal, Protocol, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from promise.incident import Incident

__all__ = [
    "CANONICAL_COLUMNS",
    "HistoryError",
    "HistoryLoad",
    "Incident",
    "RowError",
    "load_history",
    "write_canonical_csv",
]

#: The columns of the canonical format, in the order :func:`write_canonical_csv` writes them.
CANONICAL_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "started_at",
    "resolved_at",
    "service",
    "cause",
    "region",
    "customers_affected",
    "description",
)
_REQUIRED: Final = frozenset(CANONICAL_COLUMNS[:6])
_MAPPING_OPTIONS: Final = frozenset({"time_format", "timezone"})

#: Where each canonical field comes from in a ServiceNow event log.
SERVICENOW_COLUMNS: Final[Mapping[str, str]] = {
    "id": "number",
    "started_at": "opened_at",
    "resolved_at": "resolved_at",
    "service": "category",
    "cause": "subcategory",
    "region": "location",
    # Closed without a resolution: unresolved, but not followed after closing (censored).
    "censored_at": "closed_at",
}
#: ServiceNow columns kept as attributes, taken from an incident's first row: what was known
#: when it opened. Outcome columns (made_sla, reopen_count, closed_code, ...) are left out so a
#: segment can never peek at how the incident ended.
SERVICENOW_ATTRIBUTES: Final[tuple[str, ...]] = (
    "priority",
    "impact",
    "urgency",
    "contact_type",
    "assignment_group",
    "u_symptom",
    "category",
    "subcategory",
    "location",
    "cmdb_ci",
    "caller_id",
    "opened_by",
    "knowledge",
    "u_priority_confirmation",
    "notify",
)
#: ServiceNow columns that change while an incident is worked on. Every row records them as of
#: its ``sys_updated_at``, so a promise made at a moment can use the incident's state then (the
#: remaining-time model reads them); they never enter the opening attributes.
SERVICENOW_STATE: Final[tuple[str, ...]] = (
    "incident_state",
    "reassignment_count",
    "reopen_count",
    "sys_mod_count",
    "assignment_group",
    "assigned_to",
    "priority",
    "impact",
    "urgency",
)
SERVICENOW_UPDATED_AT: Final = "sys_updated_at"
SERVICENOW_TIME_FORMAT: Final = "%d/%m/%Y %H:%M"

HistoryFormat = Literal["canonical", "servicenow"]


class HistoryError(ValueError):
    """The history as a whole cannot be used: the message says why and what to fix."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A skipped row: its line in the file (the header is line 1) and why it was skipped."""

    line: int
    reason: str
    incident_id: str | None = None

    def __str__(self) -> str:
        subject = f" ({self.incident_id})" if self.incident_id else ""
        return f"line {self.line}{subject}: {self.reason}"


@dataclass(frozen=True, slots=True)
class HistoryLoad:
    """What :func:`load_history` read: the usable incidents and the rows it had to skip.

    ``rows_read`` counts data rows (not the header); for ServiceNow it is the number of events,
    which is larger than the number of incidents.
    """

    incidents: tuple[Incident, ...]
    errors: tuple[RowError, ...]
    rows_read: int
    #: The line each incident was read from (ServiceNow: its opening row), by incident id, so
    #: a later step that refuses an incident can name its line too.
    lines: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Layout:
    """How to find each field in the rows of one particular file."""

    index: Mapping[str, int]  # canonical field -> column index (only fields the file provides)
    attributes: tuple[tuple[str, int], ...]  # attribute name -> column index
    states: tuple[tuple[str, int], ...]  # state attribute name -> column index (ServiceNow)
    width: int
    missing: frozenset[str]  # values that mean "no value"
    parse_time: Callable[[str], datetime]
    time_hint: str


class _Rows(Protocol):
    """What the readers need of a :func:`csv.reader`."""

    @property
    def line_num(self) -> int: ...

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


class _RowProblem(Exception):
    """A reason to skip a row; ``closing`` when the final (resolving) row is to blame."""

    def __init__(self, reason: str, *, closing: bool = False) -> None:
        super().__init__(reason)
        self.closing = closing


def load_history(
    path: Path,
    *,
    format: HistoryFormat = "canonical",
    mapping: Path | None = None,
    tz: str = "UTC",
) -> HistoryLoad:
    """Read an outage history in the given ``format``.

    ``mapping`` is a YAML file naming, per canonical field, the source column to read it from,
    plus optional ``time_format`` (a :meth:`~datetime.datetime.strptime` format) and
    ``timezone`` keys. ``tz`` is the IANA time zone of timestamps without an offset (ServiceNow
    times are always local); the mapping's ``timezone`` takes precedence because it describes
    this particular file. All returned times are in UTC.

    Raises:
        HistoryError: the file cannot be read, a required or mapped column is missing, the
            format or mapping is invalid, or no incident in it is resolved (nothing to learn).
    """
    if format not in ("canonical", "servicenow"):
        raise HistoryError(f"unknown history format {format!r}; use 'canonical' or 'servicenow'")
    overrides, time_format, timezone = _read_mapping(mapping) if mapping else ({}, None, None)
    zone = _zone(timezone or tz)
    if format == "servicenow":
        columns = {**SERVICENOW_COLUMNS, **overrides}
        time_format = time_format or SERVICENOW_TIME_FORMAT
    else:
        columns = {**{name: name for name in CANONICAL_COLUMNS}, **overrides}
    try:
        with _open_text(path) as text:
            reader = csv.reader(text)
            header = [name.strip() for name in next(reader, [])]
            if not any(header):
                raise HistoryError(f"{path}: the file is empty (no header row)")
            layout = _layout(path, header, columns, set(overrides), format, time_format, zone)
            if format == "servicenow":
                load = _read_servicenow(reader, layout)
            else:
                load = _read_canonical(reader, layout)
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, csv.Error) as exc:
        raise HistoryError(f"cannot read history {path}: {exc}") from exc
    if not any(incident.resolved_at is not None for incident in load.incidents):
        detail = f"; first skipped row: {load.errors[0]}" if load.errors else ""
        raise HistoryError(
            f"{path}: no resolved incident among {len(load.incidents)} loaded "
            f"({load.rows_read} rows read, {len(load.errors)} skipped{detail}); "
            "the promise engine needs resolved incidents to learn durations"
        )
    return load


def write_canonical_csv(incidents: Iterable[Incident], path: Path) -> int:
    """Write ``incidents`` in the canonical format that :func:`load_history` reads back.

    Times are written in ISO 8601 in UTC with an explicit offset, and each attribute key seen
    becomes a column (in order of first appearance). Reading the file back gives equal incidents,
    except that empty strings come back as absent: an empty ``description`` as None and an empty
    attribute as a missing key, which :meth:`Incident.feature` treats the same way.

    Returns:
        The number of incident rows written.
    """
    rows = list(incidents)
    keys: dict[str, None] = {}  # an ordered set
    for incident in rows:
        keys.update(dict.fromkeys(incident.attributes))
    clashes = sorted(set(keys) & set(CANONICAL_COLUMNS))
    if clashes:
        raise ValueError(f"attribute names clash with canonical columns: {', '.join(clashes)}")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*CANONICAL_COLUMNS, *keys])
        for incident in rows:
            writer.writerow(
                [
                    incident.id,
                    _iso(incident.started_at),
                    _iso(incident.resolved_at) if incident.resolved_at is not None else "",
                    incident.service,
                    incident.cause,
                    incident.region,
                    "" if incident.customers_affected is None else incident.customers_affected,
                    incident.description or "",
                    *(incident.attributes.get(key, "") for key in keys),
                ]
            )
    return len(rows)


# -- reading ----------------------------------------------------------------------------------


def _read_canonical(reader: _Rows, layout: _Layout) -> HistoryLoad:
    incidents: list[Incident] = []
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    rows_read = 0
    for row in reader:
        if not row:  # a blank line is not a row
            continue
        rows_read += 1
        line = reader.line_num
        if len(row) != layout.width:
            errors.append(RowError(line, f"expected {layout.width} fields, found {len(row)}"))
            continue
        incident_id = _value(row, layout, "id")
        try:
            if not incident_id:
                raise _RowProblem("missing id")
            if incident_id in first_line:
                raise _RowProblem(f"duplicate id (first on line {first_line[incident_id]})")
            incident = _incident(layout, incident_id, row, row)
        except _RowProblem as problem:
            errors.append(RowError(line, str(problem), incident_id or None))
            continue
        first_line[incident_id] = line
        incidents.append(incident)
    return HistoryLoad(tuple(incidents), tuple(errors), rows_read, first_line)


@dataclass(slots=True)
class _Events:
    """The rows of one ServiceNow incident: its first, its final one and every recorded state."""

    first_key: tuple[int, int]
    first_line: int
    first: list[str]
    final_key: tuple[int, int]
    final_line: int
    final: list[str]
    updates: list[tuple[datetime, int, dict[str, str]]]


def _read_servicenow(reader: _Rows, layout: _Layout) -> HistoryLoad:
    errors: list[RowError] = []
    events: dict[str, _Events] = {}
    mod_index = layout.index.get("sys_mod_count")
    rows_read = 0
    for row in reader:
        if not row:
            continue
        rows_read += 1
        line = reader.line_num
        if len(row) != layout.width:
            errors.append(RowError(line, f"expected {layout.width} fields, found {len(row)}"))
            continue
        incident_id = _value(row, layout, "id")
        if not incident_id:
            errors.append(RowError(line, "missing id"))
            continue
        try:
            state = _state(row, layout)
        except _RowProblem as problem:
            errors.append(RowError(line, str(problem), incident_id))
            continue
        # The opening row has the lowest sys_mod_count (the update counter), the final row the
        # highest, later lines winning ties: exports are not always sorted by it.
        mod = row[mod_index].strip() if mod_index is not None else ""
        key = (int(mod) if mod.isdigit() else -1, line)
        seen = events.get(incident_id)
        if seen is None:
            seen = events[incident_id] = _Events(key, line, row, key, line, row, [])
        elif key > seen.final_key:
            seen.final_key, seen.final_line, seen.final = key, line, row
        elif key < seen.first_key:
            seen.first_key, seen.first_line, seen.first = key, line, row
        if state is not None:
            seen.updates.append((state[0], line, state[1]))

    incidents: list[Incident] = []
    for incident_id, seen in events.items():
        try:
            incident = _incident(layout, incident_id, seen.first, seen.final)
        except _RowProblem as problem:
            blame = seen.final_line if problem.closing else seen.first_line
            errors.append(RowError(blame, str(problem), incident_id))
            continue
        if seen.updates:
            seen.updates.sort(key=lambda update: update[:2])
            incident = replace(
                incident, updates=tuple((moment, values) for moment, _, values in seen.updates)
            )
        incidents.append(incident)
    errors.sort(key=lambda error: error.line)
    lines = {incident.id: events[incident.id].first_line for incident in incidents}
    return HistoryLoad(tuple(incidents), tuple(errors), rows_read, lines)


def _incident(layout: _Layout, incident_id: str, row: list[str], closing: list[str]) -> Incident:
    """One incident: everything from the opening ``row``, its resolution from ``closing``."""
    started_text = _value(row, layout, "started_at")
    if not started_text:
        raise _RowProblem("missing started_at")
    started_at = _time(started_text, "started_at", layout)
    resolved_text = _value(closing, layout, "resolved_at")
    resolved_at = _time(resolved_text, "resolved_at", layout) if resolved_text else None
    if resolved_at is not None and resolved_at < started_at:
        raise _RowProblem(
            f"resolved_at {resolved_text} is before started_at {started_text} (negative duration)",
            closing=True,
        )
    censored_text = _value(closing, layout, "censored_at") if resolved_at is None else ""
    censored_at = _time(censored_text, "censored_at", layout) if censored_text else None
    customers_text = _value(row, layout, "customers_affected")
    try:
        customers = int(customers_text) if customers_text else None
    except ValueError:
        raise _RowProblem(f"customers_affected {customers_text!r} is not an integer") from None
    if customers is not None and customers < 0:
        raise _RowProblem(f"customers_affected {customers} is negative")
    return Incident(
        id=incident_id,
        started_at=started_at,
        resolved_at=resolved_at,
        service=_text(row, layout, "service"),
        cause=_text(row, layout, "cause"),
        region=_text(row, layout, "region"),
        customers_affected=customers,
        description=_text(row, layout, "description") or None,
        attributes={
            name: row[i] for name, i in layout.attributes if row[i].strip() not in layout.missing
        },
        censored_at=censored_at,
    )


def _state(row: list[str], layout: _Layout) -> tuple[datetime, dict[str, str]] | None:
    """When a ServiceNow row was recorded and the state it records; None without a timestamp."""
    recorded = _value(row, layout, "updated_at")
    if not recorded or not layout.states:
        return None
    values = {
        name: row[i].strip() for name, i in layout.states if row[i].strip() not in layout.missing
    }
    return _time(recorded, SERVICENOW_UPDATED_AT, layout), values


def _value(row: list[str], layout: _Layout, name: str) -> str:
    """A field as an identifier, time or number: stripped, and "" when missing."""
    index = layout.index.get(name)
    value = row[index].strip() if index is not None else ""
    return "" if value in layout.missing else value


def _text(row: list[str], layout: _Layout, name: str) -> str:
    """A free-text field exactly as written (so it round-trips), "" when missing."""
    index = layout.index.get(name)
    value = row[index] if index is not None else ""
    return "" if value.strip() in layout.missing else value


def _time(text: str, name: str, layout: _Layout) -> datetime:
    try:
        return layout.parse_time(text)
    except ValueError:
        raise _RowProblem(
            f"unparseable {name} {text!r} (expected {layout.time_hint})",
            closing=name == "resolved_at",
        ) from None


def _iso(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} in an incident")
    return moment.astimezone(UTC).isoformat()


# -- file, layout and mapping -----------------------------------------------------------------


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """Open a CSV file, or the single CSV inside a zip, as text for the csv module."""
    if not zipfile.is_zipfile(path):
        with path.open(encoding="utf-8-sig", newline="") as text:
            yield text
        return
    with zipfile.ZipFile(path) as archive:
        members = [
            name
            for name in archive.namelist()
            if name.lower().endswith(".csv") and not name.startswith("__MACOSX/")
        ]
        if len(members) != 1:
            found = ", ".join(members) or "none"
            raise HistoryError(f"{path}: expected one CSV file in the zip, found {found}")
        with (
            archive.open(members[0]) as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
        ):
            yield text


def _layout(
    path: Path,
    header: list[str],
    columns: Mapping[str, str],
    explicit: set[str],
    format: HistoryFormat,
    time_format: str | None,
    zone: tzinfo,
) -> _Layout:
    """Locate every field's column, refusing before any row is read if one is missing."""
    position = {name: i for i, name in reversed(list(enumerate(header)))}
    missing = [
        f"{column!r} (for {field})"
        for field, column in columns.items()
        if column not in position and (field in _REQUIRED or field in explicit)
    ]
    if missing:
        raise HistoryError(
            f"{path}: column {', '.join(missing)} not found in the header; "
            f"the file has: {', '.join(header)}"
        )
    index = {field: position[column] for field, column in columns.items() if column in position}
    if format == "servicenow":
        if "sys_mod_count" in position:
            index["sys_mod_count"] = position["sys_mod_count"]
        if SERVICENOW_UPDATED_AT in position:
            index["updated_at"] = position[SERVICENOW_UPDATED_AT]
        attributes = tuple(
            (name, position[name]) for name in SERVICENOW_ATTRIBUTES if name in position
        )
        states = tuple((name, position[name]) for name in SERVICENOW_STATE if name in position)
    else:
        used = set(index.values())
        attributes = tuple((name, i) for i, name in enumerate(header) if i not in used and name)
        states = ()
    return _Layout(
        index=index,
        attributes=attributes,
        states=states,
        width=len(header),
        # ServiceNow writes "?" for an empty field.
        missing=frozenset({"", "?"}) if format == "servicenow" else frozenset({""}),
        parse_time=_time_parser(time_format, zone),
        time_hint=f"format {time_format}" if time_format else "ISO 8601",
    )


def _time_parser(time_format: str | None, zone: tzinfo) -> Callable[[str], datetime]:
    def parse(text: str) -> datetime:
        if time_format:
            moment = datetime.strptime(text, time_format)
        else:
            moment = datetime.fromisoformat(text)
        if moment.utcoffset() is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)

    return parse


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z"):
        return UTC  # needs no tz database
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HistoryError(f"unknown time zone {name!r} (use an IANA name like UTC)") from exc


def _read_mapping(path: Path) -> tuple[dict[str, str], str | None, str | None]:
    """Column overrides, time format and time zone from a YAML mapping file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HistoryError(f"cannot read mapping {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise HistoryError(f"mapping {path}: expected 'field: column' pairs, got {data!r}")
    unknown = sorted(
        str(key) for key in data if key not in CANONICAL_COLUMNS + tuple(_MAPPING_OPTIONS)
    )
    if unknown:
        raise HistoryError(
            f"mapping {path}: unknown key {', '.join(unknown)}; known keys are "
            f"{', '.join(CANONICAL_COLUMNS)}, time_format and timezone"
        )
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise HistoryError(f"mapping {path}: {key} must be a non-empty string, got {value!r}")
    columns = {key: value.strip() for key, value in data.items() if key not in _MAPPING_OPTIONS}
    return columns, data.get("time_format"), data.get("timezone")
