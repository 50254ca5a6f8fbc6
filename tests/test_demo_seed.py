"""Demo data: determinism, shape of the history, and the active outages the demo relies on."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.demo.seed import (
    CAUSE_MODELS,
    HISTORY_DAYS,
    DemoOutage,
    duration_stats,
    generate_demo_outages,
    is_seeded,
    seed_demo,
)
from bot.outages.postcodes import Postcode
from bot.outages.service import find_active_outages
from bot.storage.models import Outage, OutageArea

NOW = datetime(2025, 11, 4, 11, 0, tzinfo=UTC)
LOCAL = ZoneInfo("Europe/Amsterdam")


@pytest.fixture(scope="module")
def outages() -> list[DemoOutage]:
    """The default demo data, generated once."""
    return generate_demo_outages(NOW)


def test_deterministic(outages: list[DemoOutage]) -> None:
    assert generate_demo_outages(NOW, seed=7) == outages
    assert generate_demo_outages(NOW, seed=8) != outages
    # The instant matters, not the time zone it is expressed in.
    assert generate_demo_outages(NOW.astimezone(LOCAL)) == outages


def test_naive_now_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_demo_outages(datetime(2025, 1, 1))


def test_two_years_of_history(outages: list[DemoOutage]) -> None:
    assert 2000 <= len(outages) <= 4000
    assert len({o.reference for o in outages}) == len(outages)
    assert min(o.started_at for o in outages) >= NOW - timedelta(days=HISTORY_DAYS)
    assert min(o.started_at for o in outages) < NOW - timedelta(days=HISTORY_DAYS - 7)
    assert all(o.started_at <= NOW for o in outages)
    assert all(o.resolved_at is None or o.started_at < o.resolved_at <= NOW for o in outages)
    assert {o.country for o in outages} == {"NL", "BE"}
    assert set(Counter(o.service for o in outages)) == {
        "internet",
        "tv",
        "landline",
        "mobile",
        "electricity",
        "gas",
    }
    assert set(Counter(o.cause for o in outages)) == {m.cause for m in CAUSE_MODELS}
    assert all(o.prefixes and all(len(p) == 4 for p in o.prefixes) for o in outages)
    customers = np.array([o.customers_affected for o in outages])
    # Heavy-tailed: the biggest outages dwarf the typical one.
    assert customers.max() > 20 * np.median(customers)


def test_active_and_long_running(outages: list[DemoOutage]) -> None:
    active = [o for o in outages if o.resolved_at is None]
    fixed = {(o.service, o.prefixes[0], o.country): o for o in active if not o.long_running}
    assert 5 <= len(fixed) <= 7
    utrecht = next(
        o for o in active if o.service == "internet" and "3511" in o.prefixes and o.country == "NL"
    )
    assert NOW - utrecht.started_at == timedelta(minutes=95)
    assert utrecht.customers_affected == 1840
    tv = next(o for o in active if o.service == "tv" and "1012" in o.prefixes)
    assert NOW - tv.started_at == timedelta(minutes=40)
    power = next(o for o in active if o.service == "electricity" and "2000" in o.prefixes)
    assert (power.country, NOW - power.started_at) == ("BE", timedelta(hours=3))

    long_running = [o for o in active if o.long_running]
    assert 2 <= len(long_running) <= 3
    stats = duration_stats(outages)
    for outage in long_running:
        elapsed = (NOW - outage.started_at).total_seconds() / 60
        _, median, p80, _ = stats[outage.cause]
        assert elapsed > p80 > median


def test_durations_differ_by_cause(outages: list[DemoOutage]) -> None:
    stats = duration_stats(outages)
    median = {cause: s[1] for cause, s in stats.items()}
    assert median["fiber_cut"] > 3 * median["maintenance"]
    assert median["gas_leak"] > median["software"]
    assert median["overload"] < median["equipment_failure"]
    # Planned maintenance is tight, fiber cuts have a long tail.
    _, m_med, _, m_p95 = stats["maintenance"]
    _, f_med, _, f_p95 = stats["fiber_cut"]
    assert m_p95 / m_med < 2.0
    assert f_p95 / f_med > 3.0
    for model in CAUSE_MODELS:
        if model.duration.kind == "lognormal":
            # The body median is reproduced (tails only push it up a little).
            assert model.duration.median * 0.85 < median[model.cause] < model.duration.median * 1.35


def test_start_times_follow_profiles(outages: list[DemoOutage]) -> None:
    maintenance = [o.started_at.astimezone(LOCAL) for o in outages if o.cause == "maintenance"]
    at_night = sum(1 for t in maintenance if t.hour < 6)
    assert at_night / len(maintenance) > 0.85
    digging = [o.started_at.astimezone(LOCAL) for o in outages if o.cause == "fiber_cut"]
    # Long fiber cuts may be moved back in time, so the working-hours share is not 100 %.
    on_weekdays = sum(1 for t in digging if t.weekday() < 5 and 7 <= t.hour <= 18)
    assert on_weekdays / len(digging) > 0.75
    weather = [o.started_at.astimezone(LOCAL).month for o in outages if o.cause == "weather"]
    winter = sum(1 for m in weather if m in (11, 12, 1, 2))
    summer = sum(1 for m in weather if m in (4, 5, 6, 9))
    assert winter > 1.5 * summer


def test_seed_demo_stores_everything(session: Session, outages: list[DemoOutage]) -> None:
    assert not is_seeded(session)
    started = time.perf_counter()
    report = seed_demo(session, now=NOW)
    session.commit()
    assert time.perf_counter() - started < 10
    assert is_seeded(session)

    assert report.outages == len(outages) == session.scalar(select(func.count(Outage.id)))
    assert report.areas == sum(len(o.prefixes) for o in outages)
    assert report.areas == session.scalar(select(func.count(OutageArea.id)))
    assert report.resolved + len(report.active) == report.outages
    assert set(report.long_running) <= set(report.active)
    assert sum(report.causes.values()) == report.outages
    active_refs = session.scalars(select(Outage.reference).where(Outage.is_active)).all()
    assert sorted(active_refs) == sorted(report.active)

    stored = session.scalars(select(Outage).order_by(Outage.started_at, Outage.id)).all()
    assert [o.reference for o in stored] == [o.reference for o in outages]
    assert stored[0].started_at == outages[0].started_at
    assert stored[0].started_at.tzinfo is UTC
    assert [a.postcode_prefix for a in stored[-1].areas] == sorted(outages[-1].prefixes)

    found = find_active_outages(session, Postcode("3511", "AB"), "internet", now=NOW)
    assert [o.customers_affected for o in found] == [1840]

    with pytest.raises(RuntimeError, match="already"):
        seed_demo(session, now=NOW)
