"""Calibration numbers, broken promises with their follow-ups, the charts, the evidence line."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from scipy.stats import binomtest
from sqlalchemy import select
from sqlalchemy.orm import Session
from supervisor_helpers import TargetEngine, add_outage

from bot.promises.service import PromiseService, PromiseView
from bot.settings import Settings
from bot.storage.models import OutboxMessage, Promise, PromiseGiven, Subscription
from bot.supervisor.charts import calibration_svg
from bot.supervisor.report import (
    broken_promises,
    calibration,
    evidence_of,
    iso_week,
    wilson,
)

ZONE = ZoneInfo("Europe/Amsterdam")
# A Wednesday: ISO week 2025-W45 runs Monday 3 to Sunday 9 November.
NOW = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
LABELS = {
    key: f"label-{key}"
    for key in (
        "kept_rate",
        "target",
        "per_week",
        "per_service",
        "week",
        "kept",
        "broken",
        "promised_vs_actual",
        "promised_hours",
        "actual_hours",
        "no_data",
    )
}


def _promise(
    session: Session,
    reference: str,
    service: str,
    given_at: datetime,
    promised: timedelta,
    actual: timedelta,
    told: int = 1,
) -> Promise:
    """An outage resolved ``actual`` after ``given_at``; a promise of ``promised`` told ``told``
    times, scored like PromiseService.resolve does."""
    resolved_at = given_at + actual
    outage = add_outage(
        session,
        reference,
        service=service,
        started_at=given_at - timedelta(minutes=10),
        resolved_at=resolved_at,
    )
    decision = Promise(
        outage_id=outage.id,
        deadline=given_at + promised,
        target_quantile=0.8,
        status="superseded",
        evidence={},
        made_at=given_at,
        made_by="engine",
    )
    session.add(decision)
    session.flush()
    for index in range(told):
        session.add(
            PromiseGiven(
                promise_id=decision.id,
                outage_id=outage.id,
                given_at=given_at,
                channel="sms",
                recipient=f"+3160000{reference[-3:]}{index}",
                language="nl",
                deadline=decision.deadline,
                target_quantile=0.8,
                evidence={},
                outcome="kept" if actual <= promised else "broken",
                scored_at=resolved_at,
            )
        )
    session.commit()
    return decision


@pytest.fixture
def service(api_settings: Settings) -> PromiseService:
    return PromiseService(api_settings, engine_factory=lambda _config: TargetEngine())


@pytest.fixture
def history(session: Session) -> Session:
    """Internet: week 45 three kept of four; week 44 one kept, one broken. TV: 1 of 2 kept.
    One promise from ten weeks ago (outside the default period) and one not yet scored."""
    hour = timedelta(hours=1)
    week45 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    week44 = datetime(2025, 10, 28, 9, 0, tzinfo=UTC)
    _promise(session, "STO-001", "internet", week45, 2 * hour, hour, told=2)
    _promise(session, "STO-002", "internet", week45, 2 * hour, 1.5 * hour)
    _promise(session, "STO-003", "internet", week45 + hour, hour, 3 * hour)
    _promise(session, "STO-004", "internet", week44, 4 * hour, 2 * hour)
    _promise(session, "STO-005", "internet", week44, hour, 5 * hour)
    _promise(session, "STO-006", "tv", week44, 3 * hour, 3 * hour)
    _promise(session, "STO-007", "tv", week45, 30 * timedelta(minutes=1), 2 * hour)
    _promise(session, "STO-008", "tv", NOW - timedelta(weeks=10), hour, 2 * hour)
    open_outage = add_outage(session, "STO-009", started_at=NOW - hour)
    session.add(
        PromiseGiven(
            promise_id=_promise(session, "STO-010", "gas", NOW - hour, hour, hour).id,
            outage_id=open_outage.id,
            given_at=NOW - hour,
            channel="web",
            recipient="c1",
            language="nl",
            deadline=NOW + hour,
            target_quantile=0.8,
            evidence={},
        )
    )
    session.commit()
    return session


def test_wilson_interval_is_scipys() -> None:
    for kept, n in ((3, 4), (0, 5), (17, 20), (80, 100)):
        interval = binomtest(kept, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(kept, n) == pytest.approx((interval.low, interval.high))
        # And the textbook formula, as an independent check of the method chosen.
        z = 1.959963984540054
        p = kept / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert wilson(kept, n) == pytest.approx((centre - half, centre + half))
    assert wilson(0, 0) is None


def test_calibration_counts_scored_promises_per_service_and_week(
    history: Session, service: PromiseService
) -> None:
    figures = calibration(history, service, now=NOW, weeks=8, zone=ZONE)

    services = {rate.key: rate for rate in figures.by_service}
    assert set(services) == {"internet", "tv", "gas"}
    internet = services["internet"]
    # STO-001 counts twice: two customers were told it.
    assert (internet.kept, internet.n) == (4, 6)
    assert (services["tv"].kept, services["tv"].n) == (1, 2)
    assert (services["gas"].kept, services["gas"].n) == (1, 1)
    for rate in figures.by_service:
        low, high = wilson(rate.kept, rate.n) or (math.nan, math.nan)
        assert (rate.low, rate.high) == (round(low, 4), round(high, 4))
        assert rate.rate == round(rate.kept / rate.n, 4)
        assert rate.target == 0.8
    assert (figures.overall.kept, figures.overall.n) == (6, 9)

    weeks = {rate.key: rate for rate in figures.by_week}
    assert (weeks["2025-W45"].kept, weeks["2025-W45"].n) == (4, 6)  # incl. tv and gas
    assert (weeks["2025-W44"].kept, weeks["2025-W44"].n) == (2, 3)
    # Every week of the period is listed, in order, the empty ones with n = 0.
    assert [rate.key for rate in figures.by_week][-2:] == ["2025-W44", "2025-W45"]
    assert len(figures.by_week) >= 8
    assert all(rate.n == 0 and rate.rate is None for rate in figures.by_week[:-2])
    cells = {rate.key: (rate.kept, rate.n) for rate in figures.by_service_week}
    assert cells["internet 2025-W45"] == (3, 4)
    assert cells["internet 2025-W44"] == (1, 2)

    promised = sorted((p.promised_minutes, p.actual_minutes, p.kept) for p in figures.points)
    assert (30.0, 120.0, False) in promised and (240.0, 120.0, True) in promised
    assert figures.targets["internet"] == 0.8

    body = figures.to_dict()
    assert body["overall"] == {
        "key": "all",
        "kept": 6,
        "n": 9,
        "rate": round(6 / 9, 4),
        "low": round(wilson(6, 9)[0], 4),  # type: ignore[index]
        "high": round(wilson(6, 9)[1], 4),  # type: ignore[index]
        "target": 0.8,
    }
    assert len(body["promised_vs_actual"]) == 9


def test_a_longer_period_reaches_further_back(history: Session, service: PromiseService) -> None:
    figures = calibration(history, service, now=NOW, weeks=12, zone=ZONE)
    tv = next(rate for rate in figures.by_service if rate.key == "tv")
    assert (tv.kept, tv.n) == (1, 3)
    with pytest.raises(ValueError, match="weeks"):
        calibration(history, service, now=NOW, weeks=0, zone=ZONE)


def test_iso_weeks_follow_the_local_calendar() -> None:
    # Sunday 23:30 UTC is already Monday in Amsterdam.
    assert iso_week(datetime(2025, 11, 2, 23, 30, tzinfo=UTC), ZONE) == "2025-W45"
    assert iso_week(datetime(2025, 11, 2, 22, 30, tzinfo=UTC), ZONE) == "2025-W44"


def test_broken_promises_with_their_follow_ups(history: Session) -> None:
    broken = history.scalars(select(PromiseGiven).where(PromiseGiven.outcome == "broken")).all()
    assert len(broken) == 4
    given = history.scalars(
        select(PromiseGiven).where(PromiseGiven.recipient == "+31600000030")
    ).one()
    subscription = Subscription(
        outage_id=given.outage_id, channel="sms", address=given.recipient, language="nl"
    )
    history.add(subscription)
    history.flush()
    statuses = [("promise_renewed", "sent"), ("promise_renewed", "dead"), ("outage_fixed", "sent")]
    for index, (template, status) in enumerate(statuses):
        history.add(
            OutboxMessage(
                kind="outage_fixed" if template == "outage_fixed" else "promise_renewed",
                outage_id=given.outage_id,
                subscription_id=subscription.id,
                channel="sms",
                address=given.recipient,
                language="nl",
                payload={"template": template, "params": {}},
                dedupe_key=f"test:{index}",
                status=status,
                created_at=given.given_at + timedelta(minutes=50 + index),
            )
        )
    history.commit()

    rows = broken_promises(history, now=NOW, weeks=8)
    assert [row.outage for row in rows] == ["STO-003", "STO-007", "STO-005"]
    sto3 = rows[0]
    assert (sto3.service, sto3.told, sto3.late_minutes) == ("internet", 1, 120)
    assert {f.template: dict(f.statuses) for f in sto3.follow_ups} == {
        "outage_fixed": {"sent": 1},
        "promise_renewed": {"dead": 1, "sent": 1},
    }
    assert rows[1].follow_ups == ()
    assert broken_promises(history, now=NOW, weeks=12)[-1].outage == "STO-008"
    # Pages of one decision: the same rows, newest first, and nothing past the last.
    every = broken_promises(history, now=NOW, weeks=12)
    pages = [broken_promises(history, now=NOW, weeks=12, limit=1, offset=n) for n in range(5)]
    assert [page[0] for page in pages[:4]] == every and pages[4] == []


def test_the_charts_render_as_svg(history: Session, service: PromiseService) -> None:
    svg = calibration_svg(calibration(history, service, now=NOW, weeks=8, zone=ZONE), LABELS)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    text = svg.decode("utf-8")
    for label in ("label-per_week", "label-per_service", "label-promised_vs_actual"):
        assert label in text
    assert "W45" in text
    # An empty period still draws (and says there is no data).
    empty = calibration(history, service, now=NOW - timedelta(weeks=30), weeks=1, zone=ZONE)
    assert "label-no_data" in calibration_svg(empty, LABELS).decode("utf-8")


def test_the_evidence_line_uses_the_suggestion_it_rests_on() -> None:
    made = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
    view = PromiseView(
        promise_id=1,
        outage_id=1,
        outage_reference="STO-1",
        service="internet",
        deadline=made + timedelta(hours=6),  # an override
        next_update_at=None,
        target=0.8,
        status="overridden",
        made_at=made + timedelta(minutes=20),
        approved_by="noor",
        reason="crew",
        explanation={"similar": 31, "fixed_within": 25, "segment": "service=internet"},
    )
    suggestion = {
        "made_at": made.isoformat(),
        "deadline": (made + timedelta(minutes=130)).isoformat(),
    }
    evidence = evidence_of(view, suggestion)
    assert evidence is not None
    assert (evidence.similar, evidence.percent, evidence.within_minutes) == (31, 81, 130)
    assert evidence_of(view, {"made_at": made.isoformat(), "deadline": None}) is None
