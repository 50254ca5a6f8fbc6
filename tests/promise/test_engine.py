"""The promise engine: curves conditioned on time open, pooling, evidence, conformal shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from promise.baselines import LogNormalAFT
from promise.curves import SurvivalCurve
from promise.engine import EngineConfig, PromiseEngine
from promise.incident import Incident
from promise.rounding import round_up_deadline

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
AMS = "Europe/Amsterdam"


def _history(
    rng: np.random.Generator,
    n: int,
    *,
    cause: str = "cable_cut",
    region: str = "Utrecht",
    service: str = "internet",
    scale_minutes: float = 120.0,
    days: float = 300.0,
    end: datetime = NOW,
) -> list[Incident]:
    """``n`` resolved outages spread over ``days`` before ``end``, exponential durations."""
    incidents = []
    for k in range(n):
        started = end - timedelta(days=float(rng.uniform(1.0, days)))
        duration = float(rng.exponential(scale_minutes))
        resolved = started + timedelta(minutes=duration)
        incidents.append(
            Incident(
                id=f"{cause}-{region}-{k}-{scale_minutes}",
                started_at=started,
                resolved_at=resolved if resolved <= end else None,
                service=service,
                cause=cause,
                region=region,
            )
        )
    return incidents


def _open(cause: str = "cable_cut", region: str = "Utrecht", minutes: float = 0.0) -> Incident:
    return Incident(
        id="live",
        started_at=NOW - timedelta(minutes=minutes),
        resolved_at=None,
        service="internet",
        cause=cause,
        region=region,
    )


# -- rounding ---------------------------------------------------------------------------------


def test_deadline_is_rounded_up_to_a_quarter_hour_within_a_day() -> None:
    now = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # 12:00 in Amsterdam (summer time)
    rounded = round_up_deadline(now + timedelta(minutes=151), now, AMS)
    assert rounded.astimezone(ZoneInfo(AMS)).strftime("%H:%M") == "14:45"
    exact = round_up_deadline(now + timedelta(minutes=150), now, AMS)
    assert exact.astimezone(ZoneInfo(AMS)).strftime("%H:%M") == "14:30"


def test_deadline_beyond_a_day_is_rounded_up_to_a_whole_hour() -> None:
    now = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    rounded = round_up_deadline(now + timedelta(hours=30, minutes=5), now, AMS)
    local = rounded.astimezone(ZoneInfo(AMS))
    assert (local.day, local.hour, local.minute) == (2, 19, 0)
    assert rounded >= now + timedelta(hours=30, minutes=5)


def test_rounding_follows_the_local_clock_across_daylight_saving() -> None:
    now = datetime(2026, 3, 29, 0, 50, tzinfo=UTC)  # 01:50 CET; at 02:00 clocks jump to 03:00
    rounded = round_up_deadline(now + timedelta(minutes=20), now, AMS)
    local = rounded.astimezone(ZoneInfo(AMS))
    assert local.minute % 15 == 0
    assert rounded >= now + timedelta(minutes=20)
    assert rounded - now <= timedelta(minutes=35)


# -- curves -----------------------------------------------------------------------------------


def test_curve_quantile_matches_the_sample_quantile_without_censoring() -> None:
    rng = np.random.default_rng(1)
    durations = rng.lognormal(4.0, 1.0, 4000)
    curve = SurvivalCurve.fit(durations, np.ones(4000, dtype=bool), np.ones(4000))
    q = curve.remaining_quantile(0.0, 0.8)
    assert q is not None
    assert q == pytest.approx(float(np.quantile(durations, 0.8)), rel=0.01)


def test_conditional_quantile_uses_only_outages_that_lasted_as_long() -> None:
    rng = np.random.default_rng(2)
    durations = rng.lognormal(4.0, 1.2, 5000)
    curve = SurvivalCurve.fit(durations, np.ones(5000, dtype=bool), np.ones(5000))
    remaining = curve.remaining_quantile(120.0, 0.8)
    longer = durations[durations > 120.0] - 120.0
    assert remaining == pytest.approx(float(np.quantile(longer, 0.8)), rel=0.02)
    assert curve.at_risk(120.0) == int(np.sum(durations >= 120.0))
    grid = curve.remaining_quantiles(120.0, np.array([0.5, 0.8]))
    assert grid[1] == pytest.approx(remaining)


def test_curve_gives_no_quantile_beyond_its_censored_tail() -> None:
    durations = np.array([10.0, 20.0, 30.0, 1000.0, 1000.0])
    resolved = np.array([True, True, True, False, False])
    curve = SurvivalCurve.fit(durations, resolved, np.ones(5))
    assert curve.remaining_quantile(0.0, 0.5) == pytest.approx(30.0)
    assert curve.remaining_quantile(0.0, 0.9) is None


# -- the engine -------------------------------------------------------------------------------


def test_promise_is_a_rounded_clock_time_with_its_explanation() -> None:
    rng = np.random.default_rng(3)
    engine = PromiseEngine(EngineConfig(conformal=False)).fit(_history(rng, 400), NOW)
    estimate = engine.promise(_open(minutes=30), NOW, 0.8)
    assert estimate.deadline is not None and estimate.next_update_at is None
    assert estimate.deadline.minute % 15 == 0 and estimate.deadline >= NOW
    # Exponential durations are memoryless: 80 % are fixed within about 120·ln 5 ≈ 193 min.
    assert estimate.remaining_minutes == pytest.approx(193, rel=0.2)
    why = estimate.explanation
    assert why.segment == "service=internet, cause=cable_cut, region=Utrecht"
    assert why.open_minutes == pytest.approx(30)
    assert 0 < why.fixed_within <= why.similar <= 400
    assert why.fixed_within / why.similar == pytest.approx(0.8, abs=0.08)


def test_small_segments_fall_back_to_a_broader_one() -> None:
    rng = np.random.default_rng(4)
    history = _history(rng, 300, region="Utrecht") + _history(rng, 10, region="Gouda")
    engine = PromiseEngine(EngineConfig(conformal=False)).fit(history, NOW)
    assert engine.promise(_open(region="Gouda"), NOW, 0.8).explanation.segment == (
        "service=internet, cause=cable_cut"
    )
    other_cause = engine.promise(_open(cause="digging", region="Gouda"), NOW, 0.8)
    assert other_cause.explanation.segment == "service=internet"


def test_too_little_evidence_promises_only_the_next_update() -> None:
    rng = np.random.default_rng(5)
    engine = PromiseEngine(EngineConfig(min_evidence=30)).fit(_history(rng, 20), NOW)
    estimate = engine.promise(_open(), NOW, 0.8)
    assert estimate.deadline is None
    assert estimate.next_update_at is not None
    assert timedelta(minutes=60) <= estimate.next_update_at - NOW <= timedelta(minutes=75)


def test_a_long_open_outage_gets_evidence_only_from_outages_that_lasted_as_long() -> None:
    rng = np.random.default_rng(6)
    engine = PromiseEngine(EngineConfig(min_evidence=30)).fit(_history(rng, 200), NOW)
    # Few exponential(120) outages last 10 hours: no segment has 30 of them.
    assert engine.promise(_open(minutes=600), NOW, 0.8).deadline is None


def test_fit_never_sees_the_future() -> None:
    rng = np.random.default_rng(7)
    past = _history(rng, 300, scale_minutes=60)
    future = _history(rng, 300, scale_minutes=2000, end=NOW + timedelta(days=30), days=20)
    later = [
        Incident(
            id=f"late-{k}",
            started_at=NOW - timedelta(hours=1),
            resolved_at=NOW + timedelta(minutes=1),
            service="internet",
            cause="cable_cut",
            region="Utrecht",
        )
        for k in range(5)
    ]
    config = EngineConfig(conformal=False)
    clean = PromiseEngine(config).fit(past, NOW).promise(_open(), NOW, 0.8)
    mixed = PromiseEngine(config).fit(past + future + later, NOW).promise(_open(), NOW, 0.8)
    # Outages starting after now are ignored; those resolved after now count as open.
    assert mixed.explanation.similar == clean.explanation.similar + len(later)
    assert mixed.remaining_minutes == pytest.approx(clean.remaining_minutes, rel=0.1)


def test_conformal_shift_raises_the_level_when_outages_got_slower() -> None:
    rng = np.random.default_rng(8)
    # Old outages took 60 min on average; for the last 60 days they take 180.
    old = _history(rng, 1500, scale_minutes=60, end=NOW - timedelta(days=60), days=300)
    recent = _history(rng, 600, scale_minutes=180, days=59)
    history = old + recent
    config = EngineConfig(half_life_days=3650, calibration_days=60)
    shifted = PromiseEngine(config).fit(history, NOW)
    plain = PromiseEngine(EngineConfig(half_life_days=3650, conformal=False)).fit(history, NOW)
    assert shifted.level(0.8) > 0.85
    assert plain.level(0.8) == 0.8
    # Scored on new outages like the recent ones, the shifted promise is kept closer to 80 %.
    fresh = rng.exponential(180, 4000)
    kept = {}
    for name, engine in (("shifted", shifted), ("plain", plain)):
        remaining = engine.promise(_open(), NOW, 0.8).remaining_minutes
        assert remaining is not None
        kept[name] = float(np.mean(fresh <= remaining))
    assert abs(kept["shifted"] - 0.8) < abs(kept["plain"] - 0.8)


def test_promise_needs_a_fit_and_a_sane_target() -> None:
    with pytest.raises(RuntimeError):
        PromiseEngine().promise(_open(), NOW, 0.8)
    rng = np.random.default_rng(9)
    engine = PromiseEngine().fit(_history(rng, 100), NOW)
    with pytest.raises(ValueError):
        engine.promise(_open(), NOW, 1.0)


# -- baselines --------------------------------------------------------------------------------


def test_aft_baseline_matches_lifelines_conditional_percentile() -> None:
    rng = np.random.default_rng(10)
    history = _history(rng, 300, cause="a", scale_minutes=60) + _history(
        rng, 300, cause="b", scale_minutes=600
    )
    aft = LogNormalAFT("UTC", min_count=30)
    aft.fit(history, NOW)
    outage = _open(cause="b", minutes=120)
    (deadline,) = aft.deadlines(outage, NOW, [0.8])
    assert deadline is not None
    ours = (deadline - NOW).total_seconds() / 60.0
    # Same model through lifelines' own prediction (remaining time after 120 min open).
    design = aft._design([("internet", "b")])
    lifelines_fit = _refit_lifelines(aft, history)
    expected = float(
        lifelines_fit.predict_percentile(design, p=0.2, conditional_after=[120.0]).iloc[0]
    )
    assert ours == pytest.approx(expected, abs=15.0)  # ours is rounded up to a quarter hour
    assert ours >= expected - 1e-6


def _refit_lifelines(aft: LogNormalAFT, history: list[Incident]):  # type: ignore[no-untyped-def]
    from lifelines import LogNormalAFTFitter

    frame = aft._design([(i.service, i.cause) for i in history])
    frame["duration"] = [
        max((i.observed_end(NOW)[0] - i.started_at).total_seconds() / 60.0, 0.5) for i in history
    ]
    frame["resolved"] = [i.observed_end(NOW)[1] for i in history]
    return LogNormalAFTFitter(penalizer=aft.penalizer).fit(
        frame, duration_col="duration", event_col="resolved"
    )


def test_a_broader_segment_answers_when_the_specific_curve_never_reaches_the_level() -> None:
    rng = np.random.default_rng(11)
    # Half of the "storm" outages are fixed quickly, the other half were still open when the
    # data ended: their curve stops at 50 % fixed and cannot give an 80 % promise.
    storm = _history(rng, 40, cause="storm", scale_minutes=30.0, days=10.0)
    for k in range(40):
        storm.append(
            Incident(
                id=f"storm-open-{k}",
                started_at=NOW - timedelta(days=1, minutes=k),
                resolved_at=None,
                service="internet",
                cause="storm",
                region="Utrecht",
            )
        )
    history = storm + _history(rng, 400, cause="cable_cut", scale_minutes=120.0)
    config = EngineConfig(segments=(("cause",), ()), conformal=False)
    engine = PromiseEngine(config).fit(history, NOW)

    estimate = engine.promise(_open(cause="storm"), NOW, 0.8)

    assert estimate.deadline is not None
    assert estimate.explanation.segment == "all outages"
    # At 40 % the storm curve itself answers.
    assert engine.promise(_open(cause="storm"), NOW, 0.4).explanation.segment == "cause=storm"
