"""History readers: canonical CSV, mapping files, the ServiceNow event log and the demo history."""

from __future__ import annotations

import csv
import time
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.demo.history import demo_incidents
from bot.demo.seed import FIXED_ACTIVE, generate_demo_outages
from promise.history import HistoryError, Incident, RowError, load_history, write_canonical_csv

HEADER = "id,started_at,resolved_at,service,cause,region,customers_affected,description\n"
SERVICENOW_ZIP = (
    Path(__file__).resolve().parents[2].parent
    / "shared/datasets/servicenow-incidents/incident_event_log.zip"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- canonical format ---------------------------------------------------------------------------


def test_canonical_round_trip_is_exact(tmp_path: Path) -> None:
    cet = timezone(timedelta(hours=1))
    incidents = [
        Incident(
            id="STO-1",
            started_at=datetime(2024, 1, 5, 8, 30, 15, 250000, tzinfo=cet),
            resolved_at=datetime(2024, 1, 5, 14, 2, tzinfo=UTC),
            service="internet",
            cause="fiber_cut",
            region="Utrecht",
            customers_affected=1840,
            description='Kabel geraakt, "Catharijnesingel", 2 wijken\nherstel loopt',
            attributes={"priority": "1", "country": "NL"},
        ),
        Incident(
            id="STO-2",
            started_at=datetime(2024, 2, 1, 23, 0, tzinfo=UTC),
            resolved_at=None,
            service="tv",
            cause="software",
            region="Gent",
            attributes={"country": "BE", "team": "platform"},
        ),
    ]
    path = tmp_path / "history.csv"

    assert write_canonical_csv(incidents, path) == 2
    load = load_history(path)

    assert load.incidents == tuple(incidents)
    assert load.errors == ()
    assert load.rows_read == 2
    # Times come back in UTC: the same instants, one convention.
    assert load.incidents[0].started_at.utcoffset() == timedelta(0)
    assert load.incidents[0].started_at == datetime(2024, 1, 5, 7, 30, 15, 250000, tzinfo=UTC)
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == [*HEADER.strip().split(","), "priority", "country", "team"]


def test_offsets_z_and_naive_timestamps(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "h.csv",
        HEADER
        + "a,2024-03-01T10:00:00+01:00,2024-03-01T11:30:00Z,internet,x,r,,\n"
        + "b,2024-03-01T09:00:00Z,,internet,x,r,,\n"
        + "c,2024-07-01 10:00,2024-07-01T12:00:00,internet,x,r,,\n",
    )

    as_utc = {i.id: i for i in load_history(path).incidents}
    as_local = {i.id: i for i in load_history(path, tz="Europe/Amsterdam").incidents}

    assert as_utc["a"].started_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert as_utc["a"].duration_minutes() == 150
    assert as_utc["b"].resolved_at is None
    # Naive times are read in ``tz``; explicit offsets are never reinterpreted.
    assert as_utc["c"].started_at == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    assert as_local["c"].started_at == datetime(2024, 7, 1, 8, 0, tzinfo=UTC)  # CEST = UTC+2
    assert as_local["a"] == as_utc["a"]


def test_extra_columns_are_kept_as_attributes(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "h.csv",
        "id,started_at,resolved_at,service,cause,region,priority,team\n"
        "a,2024-03-01T10:00Z,2024-03-01T11:00Z,internet,x,Utrecht,P1,noc\n"
        "b,2024-03-01T10:00Z,2024-03-01T11:00Z,internet,x,Utrecht,,noc\n",
    )

    a, b = load_history(path).incidents

    assert a.attributes == {"priority": "P1", "team": "noc"}
    assert a.feature("priority") == "P1"
    # An empty cell is an absent attribute, which feature() reads as "".
    assert b.attributes == {"team": "noc"}
    assert b.customers_affected is None and b.description is None


def test_bad_rows_are_skipped_with_their_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "h.csv",
        HEADER
        + "ok1,2024-03-01T10:00Z,2024-03-01T11:00Z,internet,x,r,12,\n"  # line 2
        + 'ok2,2024-03-01T10:00Z,,internet,x,r,,"two\nlines"\n'  # lines 3-4
        + "bad-time,yesterday,,internet,x,r,,\n"  # line 5
        + ",2024-03-01T10:00Z,,internet,x,r,,\n"  # line 6
        + "no-start,,2024-03-01T11:00Z,internet,x,r,,\n"  # line 7
        + "bad-count,2024-03-01T10:00Z,,internet,x,r,12.5,\n"  # line 8
        + "ok1,2024-03-02T10:00Z,,internet,x,r,,\n"  # line 9
        + "short,2024-03-01T10:00Z\n"  # line 10
        + "bad-end,2024-03-01T10:00Z,2024-13-01T00:00Z,internet,x,r,,\n"  # line 11
        + "ok3,2024-03-03T10:00Z,2024-03-03T10:00Z,internet,x,r,0,\n",  # line 12
    )

    load = load_history(path)

    assert [i.id for i in load.incidents] == ["ok1", "ok2", "ok3"]
    assert load.incidents[1].description == "two\nlines"
    assert load.incidents[0].started_at.day == 1  # the first ok1 wins over the duplicate
    assert load.rows_read == 10
    assert [(e.line, e.incident_id) for e in load.errors] == [
        (5, "bad-time"),
        (6, None),
        (7, "no-start"),
        (8, "bad-count"),
        (9, "ok1"),
        (10, None),
        (11, "bad-end"),
    ]
    reasons = [e.reason for e in load.errors]
    assert "unparseable started_at 'yesterday'" in reasons[0]
    assert reasons[1] == "missing id"
    assert reasons[2] == "missing started_at"
    assert "'12.5' is not an integer" in reasons[3]
    assert reasons[4] == "duplicate id (first on line 2)"
    assert "expected 8 fields, found 2" in reasons[5]
    assert "unparseable resolved_at" in reasons[6]
    assert str(load.errors[0]).startswith("line 5 (bad-time): ")


def test_negative_duration_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "h.csv",
        HEADER
        + "a,2024-03-01T10:00Z,2024-03-01T11:00Z,internet,x,r,,\n"
        + "b,2024-03-01T10:00Z,2024-03-01T09:59Z,internet,x,r,,\n",
    )

    load = load_history(path)

    assert [i.id for i in load.incidents] == ["a"]
    (error,) = load.errors
    assert (error.line, error.incident_id) == (3, "b")
    assert "negative duration" in error.reason


def test_missing_required_column_and_unreadable_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.csv", "id,started_at,resolved_at,service,cause\n")
    with pytest.raises(HistoryError, match=r"'region' \(for region\)"):
        load_history(path)
    with pytest.raises(HistoryError, match="cannot read history"):
        load_history(tmp_path / "absent.csv")
    with pytest.raises(HistoryError, match="empty"):
        load_history(_write(tmp_path / "empty.csv", ""))


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.csv", HEADER + "a,2024-03-01T10:00Z,2024-03-01T11:00Z,i,x,r,,\n")
    with pytest.raises(HistoryError, match="unknown history format 'jira'"):
        load_history(path, format="jira")  # type: ignore[arg-type]


def test_history_without_a_resolved_incident_is_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "h.csv",
        HEADER
        + "a,2024-03-01T10:00Z,,internet,x,r,,\n"
        + "b,2024-03-01T10:00Z,2024-03-01T09:00Z,internet,x,r,,\n",
    )
    with pytest.raises(HistoryError, match="no resolved incident") as caught:
        load_history(path)
    # The message points at the skipped row that might have been the resolved one.
    assert "line 3 (b)" in str(caught.value)


# -- mapping files ------------------------------------------------------------------------------


def test_mapping_renames_columns_and_sets_time_format(tmp_path: Path) -> None:
    mapping = _write(
        tmp_path / "map.yml",
        "service: category\ncause: subcategory\nregion: location\nstarted_at: opened\n"
        "resolved_at: fixed\ntime_format: '%d-%m-%Y %H:%M'\ntimezone: Europe/Amsterdam\n",
    )
    path = _write(
        tmp_path / "h.csv",
        "id,opened,fixed,category,subcategory,location,owner\n"
        "a,01-03-2024 10:00,01-03-2024 12:15,internet,fiber_cut,Utrecht,noc\n",
    )

    (incident,) = load_history(path, mapping=mapping, tz="UTC").incidents

    assert (incident.service, incident.cause, incident.region) == (
        "internet",
        "fiber_cut",
        "Utrecht",
    )
    # The mapping's time zone describes this file, so it wins over ``tz``.
    assert incident.started_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert incident.duration_minutes() == 135
    # Mapped columns are fields, not attributes; the rest are attributes.
    assert incident.attributes == {"owner": "noc"}


def test_mapping_naming_a_missing_column_is_an_error(tmp_path: Path) -> None:
    mapping = _write(tmp_path / "map.yml", "service: category\ndescription: summary\n")
    path = _write(
        tmp_path / "h.csv",
        "id,started_at,resolved_at,category,cause,region\n"
        "a,2024-03-01T10:00Z,2024-03-01T11:00Z,internet,x,r\n",
    )
    with pytest.raises(HistoryError, match=r"'summary' \(for description\)") as caught:
        load_history(path, mapping=mapping)
    assert "'category'" not in str(caught.value).split("not found")[0]


def test_invalid_mapping_files_are_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.csv", HEADER)
    with pytest.raises(HistoryError, match="unknown key servise"):
        load_history(path, mapping=_write(tmp_path / "a.yml", "servise: category\n"))
    with pytest.raises(HistoryError, match="must be a non-empty string"):
        load_history(path, mapping=_write(tmp_path / "b.yml", "service: 3\n"))
    with pytest.raises(HistoryError, match="expected 'field: column' pairs"):
        load_history(path, mapping=_write(tmp_path / "c.yml", "- service\n"))
    with pytest.raises(HistoryError, match="unknown time zone 'Mars/Olympus'"):
        load_history(path, mapping=_write(tmp_path / "d.yml", "timezone: Mars/Olympus\n"))


# -- ServiceNow event log -----------------------------------------------------------------------

SN_HEADER = (
    "number,incident_state,active,reassignment_count,reopen_count,sys_mod_count,made_sla,"
    "caller_id,opened_by,opened_at,sys_created_by,sys_created_at,sys_updated_by,sys_updated_at,"
    "contact_type,location,category,subcategory,u_symptom,cmdb_ci,impact,urgency,priority,"
    "assignment_group,assigned_to,knowledge,u_priority_confirmation,notify,problem_id,rfc,vendor,"
    "caused_by,closed_code,resolved_by,resolved_at,closed_at"
)
SN_COLUMNS = SN_HEADER.split(",")


def _sn_row(number: str, mod: int, state: str, opened: str, resolved: str, **values: str) -> str:
    row = dict.fromkeys(SN_COLUMNS, "?")
    row.update(
        number=number,
        sys_mod_count=str(mod),
        incident_state=state,
        opened_at=opened,
        resolved_at=resolved,
        contact_type="Phone",
        location="Location 143",
        category="Category 55",
        subcategory="Subcategory 170",
        impact="2 - Medium",
        urgency="2 - Medium",
        priority="3 - Moderate",
        assignment_group="Group 56",
        made_sla="true",
    )
    row.update(values)
    return ",".join(row[column] for column in SN_COLUMNS) + "\n"


SN_LOG = (
    ",".join(SN_COLUMNS)
    + "\n"
    + "".join(
        [
            # INC1 (lines 2-6): resolved, reopened, resolved again; the last resolution counts.
            _sn_row("INC1", 0, "New", "29/2/2016 01:16", "?", u_symptom="Symptom 72"),
            _sn_row(
                "INC1", 1, "Resolved", "29/2/2016 01:16", "29/2/2016 11:29", priority="2 - High"
            ),
            _sn_row(
                "INC1", 2, "Active", "29/2/2016 01:16", "29/2/2016 11:29", category="Category 9"
            ),
            _sn_row(
                "INC1", 3, "Resolved", "29/2/2016 01:16", "2/3/2016 09:05", priority="1 - Critical"
            ),
            _sn_row("INC1", 4, "Closed", "29/2/2016 01:16", "2/3/2016 09:05", made_sla="false"),
            # INC2 (lines 7-8): a resolution was entered, then cleared: still open.
            _sn_row("INC2", 0, "Resolved", "1/3/2016 08:00", "1/3/2016 09:00", location="?"),
            _sn_row("INC2", 1, "Closed", "1/3/2016 08:00", "?"),
            # INC3 (lines 9-11): exported out of update order; sys_mod_count decides the final row.
            _sn_row("INC3", 0, "New", "1/3/2016 10:00", "?"),
            _sn_row("INC3", 2, "Closed", "1/3/2016 10:00", "1/3/2016 12:30"),
            _sn_row("INC3", 1, "Resolved", "1/3/2016 10:00", "1/3/2016 12:00"),
            # INC4 (line 12): an opening time in the wrong format.
            _sn_row("INC4", 0, "New", "2016-03-01 10:00", "?"),
            # INC5 (lines 13-14): resolved before it was opened.
            _sn_row("INC5", 0, "New", "5/3/2016 10:00", "?"),
            _sn_row("INC5", 1, "Closed", "5/3/2016 10:00", "4/3/2016 10:00"),
        ]
    )
)


def test_servicenow_collapses_events_to_incidents(tmp_path: Path) -> None:
    path = _write(tmp_path / "incident_event_log.csv", SN_LOG)

    load = load_history(path, format="servicenow")
    incidents = {i.id: i for i in load.incidents}

    assert load.rows_read == 13
    assert list(incidents) == ["INC1", "INC2", "INC3"]
    inc1 = incidents["INC1"]
    assert inc1.started_at == datetime(2016, 2, 29, 1, 16, tzinfo=UTC)
    assert inc1.resolved_at == datetime(2016, 3, 2, 9, 5, tzinfo=UTC)
    assert (inc1.service, inc1.cause, inc1.region) == (
        "Category 55",
        "Subcategory 170",
        "Location 143",
    )
    # Attributes are what was known at opening, not the later priority or category.
    assert inc1.attributes["priority"] == "3 - Moderate"
    assert inc1.attributes["category"] == "Category 55"
    assert inc1.attributes["u_symptom"] == "Symptom 72"
    assert {"impact", "urgency", "contact_type", "assignment_group", "location"} <= set(
        inc1.attributes
    )
    assert "made_sla" not in inc1.attributes  # an outcome, not known at opening
    assert "cmdb_ci" not in inc1.attributes  # "?" means missing
    assert incidents["INC2"].resolved_at is None
    assert incidents["INC2"].region == ""
    assert incidents["INC3"].resolved_at == datetime(2016, 3, 1, 12, 30, tzinfo=UTC)
    assert [(e.line, e.incident_id) for e in load.errors] == [(12, "INC4"), (14, "INC5")]
    assert "unparseable started_at '2016-03-01 10:00'" in load.errors[0].reason
    assert "negative duration" in load.errors[1].reason


def test_servicenow_rows_become_the_incidents_recorded_states(tmp_path: Path) -> None:
    opened = "1/3/2016 08:00"
    log = ",".join(SN_COLUMNS) + "\n" + "".join(
        [
            # Exported out of time order; the states are sorted by when they were recorded.
            _sn_row("INC7", 1, "Active", opened, "?", sys_updated_at="1/3/2016 09:30",
                    reassignment_count="1", assignment_group="Group 9", assigned_to="Resolver 4"),
            _sn_row("INC7", 0, "New", opened, "?", sys_updated_at="1/3/2016 08:05",
                    reassignment_count="0", u_symptom="Symptom 3"),
            _sn_row("INC7", 2, "Resolved", opened, "1/3/2016 14:00",
                    sys_updated_at="1/3/2016 14:00", reassignment_count="1"),
            # Line 5: a recording time that cannot be read; the row is skipped and named.
            _sn_row("INC7", 3, "Closed", opened, "1/3/2016 14:00", sys_updated_at="tomorrow"),
        ]
    )  # fmt: skip

    load = load_history(_write(tmp_path / "log.csv", log), format="servicenow")

    (incident,) = load.incidents
    assert [moment.hour * 60 + moment.minute for moment, _ in incident.updates] == [
        8 * 60 + 5,
        9 * 60 + 30,
        14 * 60,
    ]
    assert incident.updates[1][1]["incident_state"] == "Active"
    # Opening attributes stay those of the first row; states are read at a moment.
    assert "incident_state" not in incident.attributes
    assert incident.attributes["assignment_group"] == "Group 56"
    assert incident.attributes_at(incident.started_at) == incident.attributes
    at_nine = incident.attributes_at(datetime(2016, 3, 1, 9, 0, tzinfo=UTC))
    assert (at_nine["incident_state"], at_nine["reassignment_count"]) == ("New", "0")
    at_ten = incident.attributes_at(datetime(2016, 3, 1, 10, 0, tzinfo=UTC))
    assert at_ten["incident_state"] == "Active"
    assert (at_ten["assignment_group"], at_ten["assigned_to"]) == ("Group 9", "Resolver 4")
    assert at_ten["u_symptom"] == "Symptom 3"  # opening facts stay
    assert "made_sla" not in at_ten  # an outcome is never a state
    assert [(e.line, e.incident_id) for e in load.errors] == [(5, "INC7")]
    assert "unparseable sys_updated_at 'tomorrow'" in load.errors[0].reason


def test_servicenow_zip_local_time_and_mapping(tmp_path: Path) -> None:
    archive = tmp_path / "incident_event_log.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("incident_event_log.csv", SN_LOG)
    mapping = _write(tmp_path / "map.yml", "service: contact_type\ncause: u_symptom\n")

    plain = load_history(_write(tmp_path / "log.csv", SN_LOG), format="servicenow")
    zipped_load = load_history(archive, format="servicenow")
    local = load_history(archive, format="servicenow", tz="Europe/Amsterdam")
    mapped = load_history(archive, format="servicenow", mapping=mapping)

    assert zipped_load == plain
    assert local.incidents[0].started_at == datetime(2016, 2, 29, 0, 16, tzinfo=UTC)  # CET
    inc1 = mapped.incidents[0]
    assert (inc1.service, inc1.cause, inc1.region) == ("Phone", "Symptom 72", "Location 143")


def test_zip_without_a_single_csv_is_an_error(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.csv", SN_LOG)
        zipped.writestr("b.csv", SN_LOG)
    with pytest.raises(
        HistoryError, match=r"expected one CSV file in the zip, found a\.csv, b\.csv"
    ):
        load_history(archive, format="servicenow")


def test_real_servicenow_event_log_loads_quickly() -> None:
    if not SERVICENOW_ZIP.is_file():
        pytest.skip(f"ServiceNow dataset not present at {SERVICENOW_ZIP}")
    started = time.perf_counter()
    load = load_history(SERVICENOW_ZIP, format="servicenow")
    elapsed = time.perf_counter() - started

    resolved = [i for i in load.incidents if i.resolved_at is not None]
    assert load.rows_read == 141_712
    assert len(load.incidents) == 24_918
    assert len({i.id for i in load.incidents}) == 24_918
    assert len(resolved) > 0.9 * len(load.incidents)
    assert elapsed < 30
    assert load.errors == ()


# -- demo history -------------------------------------------------------------------------------


def test_demo_incidents_mirror_the_demo_outages() -> None:
    now = datetime(2025, 11, 4, 11, 0, tzinfo=UTC)

    outages = generate_demo_outages(now, 7)
    incidents = demo_incidents(now)

    assert len(incidents) == len(outages)
    by_id = {i.id: i for i in incidents}
    utrecht = next(o for o in outages if o.region_name == "Utrecht centrum")
    incident = by_id[utrecht.reference]
    assert incident.region == "Utrecht centrum"
    assert incident.resolved_at is None
    assert incident.attributes == {"country": "NL", "reference": utrecht.reference}
    for outage in outages:
        mirrored = by_id[outage.reference]
        assert (
            mirrored.started_at,
            mirrored.resolved_at,
            mirrored.service,
            mirrored.cause,
            mirrored.region,
            mirrored.customers_affected,
            mirrored.description,
        ) == (
            outage.started_at,
            outage.resolved_at,
            outage.service,
            outage.cause,
            outage.region_name,
            outage.customers_affected,
            outage.description,
        )
    assert sum(i.resolved_at is None for i in incidents) >= len(FIXED_ACTIVE)
    assert demo_incidents(now, seed=8) != incidents


def test_row_error_describes_itself() -> None:
    assert str(RowError(7, "missing id")) == "line 7: missing id"
