"""Outage lookups against the demo data and hand-made outages, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from bot.demo.seed import seed_demo
from bot.outages.postcodes import Postcode, parse_postcode
from bot.outages.service import find_active_outages, get_outage, outage_history
from bot.storage.models import Outage, OutageArea

NOW = datetime(2025, 11, 4, 11, 0, tzinfo=UTC)


def _add(
    session: Session,
    reference: str,
    *,
    service: str = "internet",
    country: str = "NL",
    prefixes: tuple[str, ...] = ("3511",),
    started: timedelta = timedelta(hours=1),
    resolved: timedelta | None = None,
) -> Outage:
    outage = Outage(
        reference=reference,
        service=service,
        cause="equipment_failure",
        region_name="Ergens",
        country=country,
        started_at=NOW - started,
        resolved_at=None if resolved is None else NOW - started + resolved,
        customers_affected=10,
        areas=[OutageArea(country=country, postcode_prefix=p) for p in prefixes],
    )
    session.add(outage)
    session.flush()
    return outage


@pytest.fixture
def demo(session: Session) -> Session:
    """The session with Lumen's demo data seeded at NOW."""
    seed_demo(session, now=NOW)
    session.commit()
    return session


def test_demo_fixed_outages_found(demo: Session) -> None:
    for text in ("3511 AB", "3511ab", "3511", "storing op 3511 AB"):
        postcode = parse_postcode(text)
        assert postcode is not None
        found = find_active_outages(demo, postcode, "internet", now=NOW)
        assert [o.region_name for o in found] == ["Utrecht centrum"], text
        outage = found[0]
        assert outage.service == "internet"
        assert outage.country == "NL"
        assert outage.customers_affected == 1840
        assert outage.started_at == NOW - timedelta(minutes=95)
        assert outage.elapsed(NOW) == timedelta(minutes=95)
        assert "3511" in outage.postcodes
        assert outage.reference.startswith("STO-")
        assert get_outage(demo, outage.reference) == outage

    tv = find_active_outages(demo, Postcode("1012"), "tv", now=NOW)
    assert [(o.region_name, o.started_at) for o in tv] == [
        ("Amsterdam centrum", NOW - timedelta(minutes=40))
    ]
    power = find_active_outages(demo, Postcode("2000"), "electricity", now=NOW)
    assert [(o.country, o.region_name) for o in power] == [("BE", "Antwerpen")]
    assert power[0].started_at == NOW - timedelta(hours=3)
    # Dutch letters exclude Belgian areas.
    assert find_active_outages(demo, Postcode("2000", "AB"), "electricity", now=NOW) == []
    # Two years of resolved history are there too, but none of it is active.
    history = outage_history(demo, "internet")
    assert len(history) > 500
    assert all(o.resolved_at <= NOW for o in history)


def test_resolved_outages_not_returned(session: Session) -> None:
    _add(session, "A", started=timedelta(hours=5), resolved=timedelta(hours=2))
    _add(session, "B", started=timedelta(minutes=30))
    found = find_active_outages(session, Postcode("3511", "AB"), "internet", now=NOW)
    assert [o.reference for o in found] == ["B"]
    # At an earlier moment, A was active and B had not started yet.
    earlier = find_active_outages(session, Postcode("3511"), None, now=NOW - timedelta(hours=4))
    assert [o.reference for o in earlier] == ["A"]


def test_country_and_service_filters_newest_first(session: Session) -> None:
    _add(session, "NL-old", started=timedelta(hours=3), prefixes=("3511", "3512"))
    _add(session, "BE-new", country="BE", started=timedelta(hours=1))
    _add(session, "NL-tv", service="tv", started=timedelta(minutes=10))
    bare = find_active_outages(session, Postcode("3511"), "internet", now=NOW)
    assert [o.reference for o in bare] == ["BE-new", "NL-old"]
    assert bare[1].postcodes == ("3511", "3512")
    dutch = find_active_outages(session, Postcode("3511", "XY"), "internet", now=NOW)
    assert [o.reference for o in dutch] == ["NL-old"]
    every = find_active_outages(session, Postcode("3511"), None, now=NOW)
    assert [o.reference for o in every] == ["NL-tv", "BE-new", "NL-old"]
    assert find_active_outages(session, Postcode("3599"), None, now=NOW) == []


def test_outage_history(session: Session) -> None:
    _add(session, "H1", started=timedelta(days=3), resolved=timedelta(minutes=90))
    _add(session, "H2", service="tv", started=timedelta(days=2), resolved=timedelta(hours=5))
    _add(session, "H3", started=timedelta(days=1), resolved=timedelta(minutes=30))
    _add(session, "open", started=timedelta(days=1))
    history = outage_history(session)
    assert [o.reference for o in history] == ["H1", "H2", "H3"]
    assert [o.duration_minutes for o in history] == [90.0, 300.0, 30.0]
    assert [o.reference for o in outage_history(session, "internet")] == ["H1", "H3"]
    since = outage_history(session, since=NOW - timedelta(days=2, hours=1))
    assert [o.reference for o in since] == ["H2", "H3"]
    assert outage_history(session, cause="weather") == []
    assert all(o.resolved_at.tzinfo is UTC for o in history)
