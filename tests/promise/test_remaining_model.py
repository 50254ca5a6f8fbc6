"""The remaining-time model and the engine's ``boosted`` estimator.

The synthetic history hides what matters in an attribute the segments do not use (``priority``):
per-segment curves cannot see it, the remaining-time model can, so its promises are shorter and
still kept as often as the target says.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from promise.engine import (
    BOOSTED_METHOD,
    SURVIVAL_METHOD,
    Calibration,
    EngineConfig,
    PromiseEngine,
    ShiftCalibration,
)
from promise.incident import Incident
from promise.remaining import RemainingConfig, RemainingTimeModel

START = datetime(2025, 1, 1, tzinfo=UTC)
FIT_AT = START + timedelta(days=240)
#: Median duration in minutes per priority; the spread is the same for all.
MEDIANS = {"1": 30.0, "2": 90.0, "3": 240.0, "4": 720.0}


def _incident(index: int, started: datetime, minutes: float, **facts: Any) -> Incident:
    """A resolved internet outage that lasted ``minutes``, with extra ``facts``."""
    return Incident(
        id=f"INC{index:05d}",
        started_at=started,
        resolved_at=started + timedelta(minutes=minutes),
        service="internet",
        cause="unknown",
        region="NL",
        **facts,
    )


def _history(days: int = 300, per_day: int = 10, seed: int = 3) -> list[Incident]:
    rng = np.random.default_rng(seed)
    incidents = []
    for index in range(days * per_day):
        started = START + timedelta(minutes=float(rng.uniform(0, days * 1440)))
        priority = str(rng.integers(1, 5))
        minutes = float(rng.lognormal(np.log(MEDIANS[priority]), 0.5))
        incidents.append(_incident(index, started, minutes, attributes={"priority": priority}))
    return sorted(incidents, key=lambda i: i.started_at)


def _engine(estimator: str, history: list[Incident]) -> PromiseEngine:
    config = EngineConfig(segments=((),), estimator=estimator)  # type: ignore[arg-type]
    return PromiseEngine(config).fit(history, FIT_AT)


def _replay(engine: PromiseEngine, history: list[Incident]) -> tuple[float, float]:
    """(kept rate, median promised minutes) at 0.8 on the outages opened after the fit."""
    kept, promised = [], []
    for incident in history:
        if incident.started_at <= FIT_AT:
            continue
        estimate = engine.promise(incident, incident.started_at, 0.8)
        assert estimate.deadline is not None
        kept.append(incident.resolved_at is not None and incident.resolved_at <= estimate.deadline)
        promised.append((estimate.deadline - incident.started_at).total_seconds() / 60.0)
    return float(np.mean(kept)), float(np.median(promised))


@pytest.fixture(scope="module")
def history() -> list[Incident]:
    return _history()


def test_boosted_promises_are_calibrated_and_shorter_than_the_curves(
    history: list[Incident],
) -> None:
    boosted_kept, boosted_median = _replay(_engine("boosted", history), history)
    survival_kept, survival_median = _replay(_engine("survival", history), history)
    # About 600 promises: the 95 % interval of a kept rate of 0.8 is ±3.2 points.
    assert 0.77 <= boosted_kept <= 0.86
    assert 0.77 <= survival_kept <= 0.86
    # Per priority the 80th percentile is 1.5x the median (30..720 min); pooled it is ~1,100 min.
    assert boosted_median < 0.6 * survival_median


def test_a_boosted_promise_is_explained_by_its_segment_curve(history: list[Incident]) -> None:
    engine = _engine("boosted", history)
    outage = dataclasses.replace(history[-1], resolved_at=None)
    estimate = engine.promise(outage, outage.started_at + timedelta(minutes=60), 0.8)
    assert estimate.deadline is not None
    explanation = estimate.explanation
    assert explanation.method_version == BOOSTED_METHOD
    assert explanation.segment == "all outages"
    assert explanation.similar >= engine.config.min_evidence
    assert 0 < explanation.fixed_within <= explanation.similar
    assert explanation.open_minutes == 60.0


def test_the_promise_follows_the_outage_facts_not_a_cached_prediction(
    history: list[Incident],
) -> None:
    fast = dataclasses.replace(history[-1], resolved_at=None, attributes={"priority": "1"})
    engine = _engine("boosted", [*history[:-1], fast])
    slow = dataclasses.replace(fast, attributes={"priority": "4"})  # updated after the fit
    now = fast.started_at
    fast_deadline = engine.promise(fast, now, 0.8).deadline
    slow_deadline = engine.promise(slow, now, 0.8).deadline
    assert fast_deadline is not None and slow_deadline is not None
    assert slow_deadline - now > 5 * (fast_deadline - now)


def test_without_enough_history_the_curves_answer(history: list[Incident]) -> None:
    few = history[:60]  # at most 180 training examples: fewer than min_train
    config = EngineConfig(segments=((),), estimator="boosted", min_evidence=10)
    engine = PromiseEngine(config).fit(few, few[-1].started_at)
    assert engine.model_shift(0.8) is None
    outage = dataclasses.replace(few[-1], resolved_at=None)
    estimate = engine.promise(outage, outage.started_at, 0.8)
    assert estimate.explanation.method_version == SURVIVAL_METHOD


def test_the_model_ranks_by_the_attribute_and_needs_a_fit(history: list[Incident]) -> None:
    model = RemainingTimeModel(RemainingConfig())
    with pytest.raises(RuntimeError, match="too little history"):
        model.predict(history[:1], [0.0])
    model.fit(history, FIT_AT)
    assert model.fitted and model.n_train > 2000
    probes = [dataclasses.replace(history[0], attributes={"priority": p}) for p in "1234"]
    predicted = np.expm1(model.predict(probes, [0.0] * 4))
    assert list(np.argsort(predicted)) == [0, 1, 2, 3]
    # Roughly the medians: the AFT model's location is the median of a log-normal.
    for value, median in zip(predicted, MEDIANS.values(), strict=True):
        assert median / 1.6 < value < median * 1.6
    # The slowest kind four hours in still has more to go than the fastest on opening.
    assert model.predict(probes[3:], [240.0])[0] > model.predict(probes[:1], [0.0])[0]


def test_the_model_reads_the_state_recorded_by_the_moment_asked() -> None:
    # Nothing at opening tells the slow outages from the fast ones; a diagnosis recorded half
    # an hour in does.
    rng = np.random.default_rng(5)
    incidents = []
    for index in range(3000):
        started = START + timedelta(minutes=float(rng.uniform(0, 200 * 1440)))
        diagnosis = str(rng.choice(["replace part", "configuration"]))
        median = 600.0 if diagnosis == "replace part" else 60.0
        minutes = 45.0 + float(rng.lognormal(np.log(median), 0.4))
        diagnosed = (started + timedelta(minutes=30), {"diagnosis": diagnosis})
        incidents.append(_incident(index, started, minutes, updates=(diagnosed,)))
    model = RemainingTimeModel(RemainingConfig()).fit(incidents, FIT_AT)
    slow = next(i for i in incidents if i.updates[0][1]["diagnosis"] == "replace part")
    # The same outage with the other diagnosis (the hour of opening is a feature too).
    fast = dataclasses.replace(
        slow, updates=((slow.updates[0][0], {"diagnosis": "configuration"}),)
    )

    after = np.expm1(model.predict([slow, fast], [60.0, 60.0]))
    before = np.expm1(model.predict([slow, fast], [20.0, 20.0]))  # not diagnosed yet

    assert after[0] > 4 * after[1]
    assert before[0] == before[1]


def test_the_model_reads_how_long_ago_the_outage_last_changed() -> None:
    # Every outage records one identical change; only when it came tells the slow ones apart:
    # an outage nobody touched since its first minutes is stuck, one changed just now is not.
    rng = np.random.default_rng(7)
    incidents = []
    for index in range(3000):
        started = START + timedelta(minutes=float(rng.uniform(0, 200 * 1440)))
        stuck = bool(rng.integers(2))
        changed = started + timedelta(minutes=5.0 if stuck else 55.0)
        minutes = 65.0 + float(rng.lognormal(np.log(600.0 if stuck else 60.0), 0.4))
        incidents.append(_incident(index, started, minutes, updates=((changed, {"note": "x"}),)))
    model = RemainingTimeModel(RemainingConfig()).fit(incidents, FIT_AT)
    outage = incidents[0]
    stuck_one, busy_one = (
        dataclasses.replace(
            outage, updates=((outage.started_at + timedelta(minutes=m), {"note": "x"}),)
        )
        for m in (5.0, 55.0)
    )

    stuck_wait, busy_wait = np.expm1(model.predict([stuck_one, busy_one], [60.0, 60.0]))

    assert stuck_wait > 4 * busy_wait


def test_calibration_without_a_setting_that_reaches_the_target() -> None:
    # Three decided promises per setting, all broken: no setting keeps 80 %.
    grid = np.asarray([0.0, 1.0])
    calibration = Calibration(
        grid,
        quantiles=np.asarray([[10.0, 20.0]] * 3),
        actual=np.asarray([30.0, 40.0, 50.0]),
        available=np.asarray([100.0] * 3),
        opened=np.zeros(3),
    )
    assert calibration.setting_for(0.8, 3) == 1.0  # the last level
    assert calibration.setting_for(0.8, 4) is None  # too few promises
    kept = dataclasses.replace(calibration, actual=np.asarray([5.0, 15.0, 15.0]))
    assert kept.setting_for(0.6, 3) == 1.0
    assert kept.setting_for(0.3, 3) == 0.0


def _calibration(
    remaining: np.ndarray,
    resolved: np.ndarray | None = None,
    opened: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> ShiftCalibration:
    """Out-of-fold predictions of 0 (log minutes): the score is log(1 + remaining)."""
    n = len(remaining)
    return ShiftCalibration(
        np.log1p(remaining),
        np.ones(n, dtype=bool) if resolved is None else resolved,
        np.ones(n) if weights is None else weights,
        np.zeros(n) if opened is None else opened,
    )


def test_the_shift_is_the_conformal_quantile_of_the_scores() -> None:
    # Every outage resolved: the ceil((n + 1) τ)-th smallest of n scores.
    calibration = _calibration(np.arange(1.0, 101.0))
    assert calibration.shift_for(0.8, 50) == pytest.approx(np.log1p(81.0))  # ceil(101 * 0.8)
    assert calibration.shift_for(0.5, 50) == pytest.approx(np.log1p(51.0))
    assert calibration.shift_for(0.8, 101) is None  # too few promises


def test_outages_still_open_count_as_at_least_that_far_off() -> None:
    # Two halves with the same repair times (20, 40, ..., 1000 minutes): the older half followed
    # to the end, the recent half only 100 minutes, so only its 5 quick repairs are seen.
    times = np.arange(20.0, 1001.0, 20.0)
    seen = np.concatenate([times, np.minimum(times, 100.0)])
    resolved = np.concatenate([np.ones(50, dtype=bool), times <= 100.0])
    # Kaplan-Meier recovers the 81st of the 100 true times, 820 minutes. Dropping the open
    # outages would give 800 (only quick recent repairs), counting them as broken 900.
    assert _calibration(seen, resolved).shift_for(0.8, 50) == pytest.approx(np.log1p(820.0))
    # Nobody followed past 500 minutes: half are known fixed by then, the rest unknown, so no
    # shift can be vouched for at 0.8 (the curves answer).
    both = np.concatenate([times, times])
    short = _calibration(np.minimum(both, 500.0), both <= 500.0)
    assert short.shift_for(0.8, 50) is None
    assert short.shift_for(0.4, 50) == pytest.approx(np.log1p(420.0))  # ceil(101 * 0.4) = 41


def test_recent_outages_weigh_more_in_the_shift() -> None:
    # Repairs got slower: 100 old ones took 10 minutes, 100 recent ones 1,000.
    remaining = np.concatenate([np.full(100, 10.0), np.full(100, 1000.0)])
    even = _calibration(remaining)
    recent = _calibration(remaining, weights=np.concatenate([np.full(100, 0.1), np.ones(100)]))
    assert even.shift_for(0.4, 50) == pytest.approx(np.log1p(10.0))
    assert recent.shift_for(0.4, 50) == pytest.approx(np.log1p(1000.0))


def test_the_shift_is_fitted_per_checkpoint_when_there_are_enough() -> None:
    opened = np.repeat([0.0, 60.0], 100)
    remaining = np.concatenate([np.linspace(1.0, 100.0, 100), np.linspace(1000.0, 2000.0, 100)])
    calibration = _calibration(remaining, opened=opened)
    on_opening = calibration.shift_for(0.8, 50, 0.0)
    after_an_hour = calibration.shift_for(0.8, 50, 60.0)
    assert on_opening is not None and on_opening < np.log1p(100.0)
    assert after_an_hour is not None and after_an_hour > np.log1p(1000.0)
    pooled = calibration.shift_for(0.8, 150, 60.0)  # too few at the checkpoint: all count
    assert pooled is not None and np.log1p(1000.0) < pooled < after_an_hour


def test_the_fit_learns_from_outages_still_open(history: list[Incident]) -> None:
    # Cut the history at the fit: outages open then are censored examples, and the out-of-fold
    # predictions the shift is calibrated on cover them too.
    model = RemainingTimeModel(RemainingConfig()).fit(history, FIT_AT)
    sample = model.out_of_fold
    assert sample is not None
    assert model.n_train == len(sample.predicted)
    still_open = [i for i in history if i.started_at <= FIT_AT < i.resolved_at]  # type: ignore[operator]
    assert still_open and (~sample.resolved).sum() >= len(still_open)
    assert np.all(sample.observed[~sample.resolved] > 0)
    # Out of fold, the model still ranks the priorities (its errors are not those of a fit
    # that saw the outage): most scores lie within a factor e of the truth.
    done = sample.resolved
    assert np.mean(np.abs(np.log1p(sample.observed[done]) - sample.predicted[done]) < 1.0) > 0.8


def test_boosters_learnt_side_by_side_equal_those_learnt_one_after_another(
    history: list[Incident],
) -> None:
    # With threads to spare a fit learns its full and fold models concurrently, one thread
    # each; the result must not depend on how they were scheduled.
    alone = RemainingTimeModel(RemainingConfig(threads=1)).fit(history, FIT_AT)
    together = RemainingTimeModel(RemainingConfig(threads=4)).fit(history, FIT_AT)
    assert alone.out_of_fold is not None and together.out_of_fold is not None
    np.testing.assert_array_equal(alone.out_of_fold.predicted, together.out_of_fold.predicted)
    probes = history[:50]
    np.testing.assert_array_equal(
        alone.predict(probes, [60.0] * 50), together.predict(probes, [60.0] * 50)
    )
