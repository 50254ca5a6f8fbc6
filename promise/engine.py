"""The promise engine: segment survival curves or a remaining-time model, with a conformal shift.

How a promise is made for an outage open ``s`` minutes, at target ``τ``:

1. **Evidence.** Walk the configured segments from most to least specific (by default service +
   cause + region, service + cause, service, all) and take the first whose history holds at
   least ``min_evidence`` outages that were still open after ``s`` minutes. None: no clock time,
   only the time of the next update. The segment's Kaplan-Meier curve (lifelines; outages still
   open are censored, recent outages weigh more by a half-life) explains the promise: how many
   similar outages, how many of them were fixed within the promised time. A segment feature can
   also be ``risk``: a band of outages a model expects to last about as long (:mod:`promise.risk`).
2. **Estimate.** With ``estimator="survival"`` (the default) the segment's curve gives the
   remaining time by which the outage is fixed with probability ``ℓ(τ)``, conditioned on having
   lasted ``s`` (a segment whose curve cannot reach ``ℓ(τ)`` hands over to a broader one). With
   ``estimator="boosted"`` the remaining-time model (:mod:`promise.remaining`) predicts
   ``log(1 + remaining minutes)`` from everything known when asked and ``s``, and the promise
   is ``exp(prediction + shift(τ)) - 1``; until that model can be fitted and calibrated, the
   curves answer as with ``survival``.
3. **Conformal shift.** ``ℓ(τ)`` (or ``shift(τ)``) is fitted at fit time, at the same
   checkpoints as in production (on opening, after 1 h and 4 h), so drift (a faster or slower
   repair season) and a model's own bias are corrected without guessing their cause. For the
   curves: the outages of the last ``calibration_days``, promised to with what was known
   before them, and ``ℓ(τ)`` is the lowest level at which a share ``τ`` of the promises whose
   deadline has passed were kept. For the model: its out-of-fold predictions on the outages it
   learnt from (each by a model that never saw that outage, recent outages weighing more), and
   ``shift(τ)`` is the ``τ``-quantile of how far they were off, estimated with Kaplan-Meier so
   that outages still open count as "at least this far off" (:class:`ShiftCalibration`).
4. **Round** the deadline up to a quarter hour (whole hours beyond a day).

The engine is a plain estimator: ``fit`` learns from history known at ``now`` and returns
the engine; ``promise`` is a pure function of that fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from promise.curves import FloatArray, SurvivalCurve
from promise.estimate import Estimate, Explanation
from promise.incident import Incident
from promise.remaining import RemainingConfig, RemainingTimeModel
from promise.risk import RISK_FEATURE, RiskConfig, RiskModel
from promise.rounding import round_up_deadline

#: The method of a promise read off a segment's survival curve.
SURVIVAL_METHOD = "segment-km-conformal/2"
#: The method of a promise from the remaining-time model with its conformal shift.
BOOSTED_METHOD = "boosted-aft-conformal/7"

Estimator = Literal["boosted", "survival"]

#: Minutes open at which promises are made and calibrated: on opening, after 1 h and 4 h.
CHECKPOINTS_MINUTES: tuple[float, ...] = (0.0, 60.0, 240.0)

LEVEL_GRID = np.round(np.arange(0.30, 0.9951, 0.005), 3)

Segment = tuple[str, ...]
SegmentKey = tuple[Segment, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the engine learns and promises; built by the service from the settings."""

    #: Similar outages (still open after as long as this one) needed for a clock time.
    min_evidence: int = 30
    #: An outage this many days older than the fit moment counts half.
    half_life_days: float = 90.0
    #: Outages that started this recently are the conformal calibration set.
    calibration_days: float = 60.0
    #: Fewer calibration promises than this: no shift (the level is the target itself).
    min_calibration: int = 50
    #: Told instead of a clock time when evidence is too thin.
    next_update_minutes: int = 60
    #: The clock on which deadlines are rounded.
    timezone: str = "Europe/Amsterdam"
    #: From most to least specific; each a tuple of Incident fields or attribute names.
    segments: tuple[Segment, ...] = (
        ("service", "cause", "region"),
        ("service", "cause"),
        ("service",),
        (),
    )
    #: Minutes open at which calibration promises are made.
    checkpoints: tuple[float, ...] = field(default=CHECKPOINTS_MINUTES)
    #: How risk bands (the ``risk`` segment feature) are learnt.
    risk: RiskConfig = field(default_factory=RiskConfig)
    #: Apply the conformal shift (off: the curve level is the target itself, as in a plain
    #: Kaplan-Meier baseline).
    conformal: bool = True
    #: ``survival``: the segment curves alone; ``boosted``: the remaining-time model
    #: (:mod:`promise.remaining`) with a conformal shift, the curves giving the evidence.
    estimator: Estimator = "survival"
    #: How the remaining-time model is learnt (``estimator="boosted"``).
    remaining: RemainingConfig = field(default_factory=RemainingConfig)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Past promises on recent outages, replayed at every setting of a grid.

    ``grid`` holds the settings tried (the survival curves' levels). Row *i* is one promise:
    ``quantiles[i, j]`` the remaining minutes promised at ``grid[j]``, ``actual[i]`` the minutes
    it really took (inf if not resolved), and ``available[i]`` the minutes between the promise
    and the end of observation, ``opened[i]`` the minutes the outage had been open when it was
    promised (a checkpoint).
    """

    grid: FloatArray
    quantiles: FloatArray
    actual: FloatArray
    available: FloatArray
    opened: FloatArray

    @classmethod
    def empty(cls, grid: FloatArray) -> Calibration:
        """No calibration data."""
        return cls(grid, np.empty((0, len(grid))), np.empty(0), np.empty(0), np.empty(0))

    def setting_for(
        self,
        target: float,
        min_count: int,
        opened: float | None = None,
    ) -> float | None:
        """The lowest setting whose promises were kept at least ``target`` of the time.

        Only promises whose deadline has passed count (kept or broken). Counting outages that
        are fixed early while leaving out slow ones still open would flatter every setting.
        With ``opened``, only the promises made at that checkpoint count, if there are enough
        of them. None: fewer than ``min_count`` decided promises at every setting; when none
        reaches the target, the grid's last setting.
        """
        rows = _checkpoint_rows(self.opened, opened, min_count)
        quantiles, actual, available = self.quantiles[rows], self.actual[rows], self.available[rows]
        if len(actual) < min_count:
            return None
        decided = quantiles <= available[:, None]  # NaN compares False: undecided
        kept = decided & (actual[:, None] <= quantiles)
        n_decided = decided.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = kept.sum(axis=0) / n_decided
        enough = n_decided >= min_count
        good = enough & (rate >= target)
        if not good.any():
            return float(self.grid[-1]) if enough.any() else None
        return float(self.grid[int(np.argmax(good))])


@dataclass(frozen=True, slots=True)
class ShiftCalibration:
    """How far the remaining-time model was off on outages it did not learn from.

    Row *i* is one out-of-fold prediction (:attr:`RemainingTimeModel.out_of_fold
    <promise.remaining.RemainingTimeModel.out_of_fold>`): ``scores[i]`` is ``log(1 + remaining
    minutes) - prediction``, the shift from which its promise would have been kept; where
    ``resolved[i]`` is False the outage was still open when last seen, so the score is only a
    lower bound. ``weights[i]`` is its recency weight, ``opened[i]`` the checkpoint it was made
    at.
    """

    scores: FloatArray
    resolved: npt.NDArray[np.bool_]
    weights: FloatArray
    opened: FloatArray
    #: Kaplan-Meier curve of the scores (and their offset) per checkpoint (None: all), fitted
    #: on first use: every target asks the same curve.
    _curves: dict[float | None, tuple[SurvivalCurve, float]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def empty(cls) -> ShiftCalibration:
        """No calibration data."""
        return cls(np.empty(0), np.empty(0, dtype=bool), np.empty(0), np.empty(0))

    @classmethod
    def from_model(cls, model: RemainingTimeModel) -> ShiftCalibration:
        """The calibration data of a fitted model (empty if it was not fitted)."""
        sample = model.out_of_fold
        if sample is None:
            return cls.empty()
        scores = np.log1p(sample.observed) - sample.predicted
        return cls(scores, sample.resolved, sample.weights, sample.opened)

    def shift_for(self, target: float, min_count: int, opened: float | None = None) -> float | None:
        """The smallest shift at which an estimated share ``target`` of the promises is kept.

        The share is read off a recency-weighted Kaplan-Meier curve of the scores: a promise
        on an outage still open counts as kept up to its score and as unknown beyond it, not as
        broken (which would lengthen every promise) nor left out (which would keep only the
        quick repairs of the recent past). Split-conformal level: the ``ceil((n + 1) τ)``-th of
        ``n`` scores. With ``opened``, only the promises made at that checkpoint count, if there
        are at least ``min_count``. None: fewer than ``min_count`` promises, or too many still
        open to tell (the curves answer then).
        """
        rows = _checkpoint_rows(self.opened, opened, min_count)
        scores = self.scores[rows]
        n = len(scores)
        if n == 0 or n < min_count:
            return None
        key = None if isinstance(rows, slice) else opened
        if key not in self._curves:
            # Kaplan-Meier wants positive times: the scores, moved to start at 1.
            offset = 1.0 - float(scores.min())
            curve = SurvivalCurve.fit(scores + offset, self.resolved[rows], self.weights[rows])
            self._curves[key] = (curve, offset)
        curve, offset = self._curves[key]
        level = min(np.ceil((n + 1) * target) / n, 1.0)
        quantile = curve.remaining_quantile(0.0, level)
        return None if quantile is None else quantile - offset


def _checkpoint_rows(
    opened: FloatArray, checkpoint: float | None, min_count: int
) -> slice | npt.NDArray[np.bool_]:
    """The promises made at ``checkpoint``, or all if there are fewer than ``min_count``."""
    if checkpoint is not None:
        at_checkpoint: npt.NDArray[np.bool_] = np.asarray(opened == checkpoint)
        if at_checkpoint.sum() >= min_count:
            return at_checkpoint
    return slice(None)


class _History:
    """Durations known at one moment, grouped by segment, with curves fitted on first use."""

    def __init__(self, incidents: Sequence[Incident], now: datetime, config: EngineConfig) -> None:
        known = [i for i in incidents if i.started_at <= now]
        self._config = config
        self._rows = known
        self._risk: RiskModel | None = None
        self._bands: dict[str, str] = {}
        if any(RISK_FEATURE in segment for segment in config.segments):
            self._risk = RiskModel(config.risk).fit(known, now)
            # Bands of every incident at once: a band reads only what was known at opening, so
            # banding incidents that start after ``now`` peeks at nothing, and one batch
            # prediction is far cheaper than one per promise.
            self._bands = dict(
                zip((i.id for i in incidents), self._risk.bands(incidents), strict=True)
            )
        durations = np.empty(len(known), dtype=np.float64)
        resolved = np.zeros(len(known), dtype=bool)
        age_days = np.empty(len(known), dtype=np.float64)
        for index, incident in enumerate(known):
            stop, is_resolved = incident.observed_end(now)
            durations[index] = max((stop - incident.started_at).total_seconds() / 60.0, 0.0)
            resolved[index] = is_resolved
            age_days[index] = (now - incident.started_at).total_seconds() / 86400.0
        self._durations = durations
        self._resolved = resolved
        self._weights = np.power(0.5, age_days / config.half_life_days)
        self._groups: dict[SegmentKey, np.ndarray] = {}
        self._sorted: dict[SegmentKey, FloatArray] = {}
        for segment in config.segments:
            members: dict[tuple[str, ...], list[int]] = {}
            for index, incident in enumerate(known):
                key = tuple(self.feature(incident, name) for name in segment)
                members.setdefault(key, []).append(index)
            for key, rows in members.items():
                indices = np.asarray(rows, dtype=np.intp)
                self._groups[(segment, key)] = indices
                self._sorted[(segment, key)] = np.sort(durations[indices])
        self._curves: dict[SegmentKey, SurvivalCurve] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def feature(self, incident: Incident, name: str) -> str:
        """A segment feature of ``incident``: its risk band, a field or an attribute."""
        if name != RISK_FEATURE:
            return incident.feature(name)
        if self._risk is None:
            return "0"
        band = self._bands.get(incident.id)
        if band is None:
            band = self._risk.band(incident)
            if len(self._bands) < len(self._rows) + 100_000:
                self._bands[incident.id] = band
        return band

    def describe(self, segment: Segment, incident: Incident) -> str:
        """``"service=internet, cause=cable_cut"``, or ``"all outages"`` for the pooled one."""
        if not segment:
            return "all outages"
        parts = []
        for name in segment:
            value = self.feature(incident, name)
            if name == RISK_FEATURE and self._risk is not None:
                parts.append(self._risk.describe(value))
            else:
                parts.append(f"{name}={value}")
        return ", ".join(parts)

    def _key(self, segment: Segment, incident: Incident) -> SegmentKey:
        return (segment, tuple(self.feature(incident, name) for name in segment))

    def at_risk(self, segment: Segment, incident: Incident, open_minutes: float) -> int:
        """Outages of ``incident``'s group that lasted at least ``open_minutes``."""
        sorted_durations = self._sorted.get(self._key(segment, incident))
        if sorted_durations is None:
            return 0
        return len(sorted_durations) - int(np.searchsorted(sorted_durations, open_minutes))

    def curve(self, segment: Segment, incident: Incident) -> SurvivalCurve | None:
        """The curve of ``incident``'s group in ``segment``; None if nothing in it was fixed."""
        key = self._key(segment, incident)
        curve = self._curves.get(key)
        if curve is None:
            rows = self._groups.get(key)
            if rows is None or not self._resolved[rows].any():
                return None
            curve = SurvivalCurve.fit(
                self._durations[rows], self._resolved[rows], self._weights[rows]
            )
            self._curves[key] = curve
        return curve

    def candidates(
        self, incident: Incident, open_minutes: float
    ) -> list[tuple[Segment, SurvivalCurve]]:
        """Segments with enough evidence at ``open_minutes``, most specific first."""
        found = []
        for segment in self._config.segments:
            # Counting first keeps small segments from costing a curve fit each.
            if self.at_risk(segment, incident, open_minutes) < self._config.min_evidence:
                continue
            curve = self.curve(segment, incident)
            if curve is not None:
                found.append((segment, curve))
        return found

    def remaining(
        self, incident: Incident, open_minutes: float, level: float
    ) -> tuple[Segment, SurvivalCurve, float | None] | None:
        """The most specific segment whose curve reaches ``level``, and the minutes it gives.

        A curve whose slowest outages were still open when the data ended may never reach a
        high level; a broader segment then answers instead of no clock time at all. None: no
        segment has enough evidence; a None for the minutes: none of them reaches the level.
        """
        found = self.candidates(incident, open_minutes)
        if not found:
            return None
        for segment, curve in found:
            minutes = curve.remaining_quantile(open_minutes, level)
            if minutes is not None:
                return segment, curve, minutes
        return found[0][0], found[0][1], None

    def remaining_grid(self, incident: Incident, open_minutes: float) -> FloatArray | None:
        """:meth:`remaining` at every level of ``LEVEL_GRID`` (NaN where none reaches it)."""
        found = self.candidates(incident, open_minutes)
        if not found:
            return None
        grid = found[0][1].remaining_quantiles(open_minutes, LEVEL_GRID)
        for _, curve in found[1:]:
            missing = np.isnan(grid)
            if not missing.any():
                break
            grid[missing] = curve.remaining_quantiles(open_minutes, LEVEL_GRID)[missing]
        return grid


@dataclass(frozen=True, slots=True)
class _Choice:
    """How one promise is made: the evidence segment, its curve, the minutes (None: no time)."""

    segment: Segment
    curve: SurvivalCurve
    minutes: float | None
    method: str


class PromiseEngine:
    """Learns from outage history and promises resolution times for open outages.

    Example::

        engine = PromiseEngine(EngineConfig()).fit(history, now)
        estimate = engine.promise(outage, now, target=0.8)
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._history: _History | None = None
        self._model: RemainingTimeModel | None = None
        self._survival = Calibration.empty(LEVEL_GRID)
        self._boosted = ShiftCalibration.empty()
        self._levels: dict[tuple[float, float | None], float | None] = {}
        self._model_shifts: dict[tuple[float, float | None], float | None] = {}
        # Predictions for every incident of the fit at the checkpoints, made in one batch: a
        # backtest asks at exactly those moments, and one row at a time costs a millisecond.
        self._predicted: dict[tuple[str, float], tuple[Incident, float]] = {}
        self.fitted_at: datetime | None = None

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, history: Sequence[Incident], now: datetime) -> PromiseEngine:
        """Learn from every incident that had started by ``now``; returns the engine.

        Incidents resolved after ``now`` count as open at ``now``: the fit never sees the future,
        so a backtest can fit at any past moment.
        """
        config = self.config
        self._history = _History(history, now, config)
        self._model = None
        self._predicted = {}
        self._survival = Calibration.empty(LEVEL_GRID)
        self._boosted = ShiftCalibration.empty()
        if config.estimator == "boosted":
            model = RemainingTimeModel(self._remaining_config()).fit(history, now)
            if model.fitted:
                self._model = model
                self._predicted = _predict_at_checkpoints(model, history, config.checkpoints, now)
        if config.conformal:
            self._calibrate(history, now)
            if self._model is not None:
                self._boosted = ShiftCalibration.from_model(self._model)
        self._levels = {}
        self._model_shifts = {}
        self.fitted_at = now
        return self

    def _remaining_config(self) -> RemainingConfig:
        # The engine's recency and clock apply to the model too.
        return replace(
            self.config.remaining,
            half_life_days=self.config.half_life_days,
            timezone=self.config.timezone,
        )

    def _calibrate(self, history: Sequence[Incident], now: datetime) -> None:
        """Replay promises on the recent outages with what was known before them."""
        config = self.config
        cutoff = now - timedelta(days=config.calibration_days)
        recent = [i for i in history if cutoff < i.started_at <= now]
        past = _History(history, cutoff, config)
        points: list[tuple[Incident, float]] = []
        grids: list[FloatArray] = []
        actual: list[float] = []
        available: list[float] = []
        for incident in recent:
            end, resolved = incident.observed_end(now)
            for open_minutes in config.checkpoints:
                asked_at = incident.started_at + timedelta(minutes=open_minutes)
                if asked_at >= end:
                    continue
                grid = past.remaining_grid(incident, open_minutes)
                if grid is None:  # too little evidence then: no clock time was promised
                    continue
                points.append((incident, open_minutes))
                grids.append(grid)
                # A deadline has passed once it lies before now (or, for a record closed
                # without a resolution, before it was closed).
                horizon = now if resolved or incident.censored_at is None else end
                actual.append((end - asked_at).total_seconds() / 60.0 if resolved else np.inf)
                available.append((horizon - asked_at).total_seconds() / 60.0)
        if not points:
            return
        actual_array = np.asarray(actual, dtype=np.float64)
        available_array = np.asarray(available, dtype=np.float64)
        opened = np.asarray([minutes for _, minutes in points], dtype=np.float64)
        self._survival = Calibration(
            LEVEL_GRID, np.vstack(grids), actual_array, available_array, opened
        )

    def level(self, target: float) -> float:
        """The survival-curve level used for ``target`` after the conformal shift."""
        self._check_fitted()
        key = (target, None)
        if key not in self._levels:
            self._levels[key] = self._survival.setting_for(target, self.config.min_calibration)
        level = self._levels[key]
        return target if level is None else level

    def model_shift(self, target: float, open_minutes: float = 0.0) -> float | None:
        """The remaining-time model's conformal shift at ``target`` (log minutes).

        Fitted per checkpoint (the last one ``open_minutes`` has passed): how far the model is
        off differs between an outage just opened and one open for hours, so one shift for all
        would keep promises too often at one moment and too rarely at another. None: the model
        cannot promise (not fitted, too few examples to calibrate on, or too many of them still
        open to tell); the survival curves then answer.
        """
        self._check_fitted()
        if self._model is None:
            return None
        passed = [c for c in self.config.checkpoints if c <= open_minutes]
        key = (target, max(passed) if passed else None)
        if key not in self._model_shifts:
            self._model_shifts[key] = self._boosted.shift_for(
                target, self.config.min_calibration, key[1]
            )
        return self._model_shifts[key]

    def _check_fitted(self) -> None:
        if self.fitted_at is None:
            raise RuntimeError("PromiseEngine.fit must be called before promising")

    # -- promising -------------------------------------------------------------------------

    def _choose(self, outage: Incident, open_minutes: float, target: float) -> _Choice | None:
        """The evidence and the remaining minutes for one promise; None: no evidence at all."""
        if self._history is None:
            raise RuntimeError("PromiseEngine.fit must be called before promising")
        shift = self.model_shift(target, open_minutes)
        if shift is not None:
            found = self._history.candidates(outage, open_minutes)
            if not found:
                return None
            segment, curve = found[0]
            cached = self._predicted.get((outage.id, open_minutes))
            # A live outage may have been updated since the fit: only the same facts count.
            if cached is not None and cached[0] == outage:
                predicted = cached[1]
            else:
                assert self._model is not None  # no shift without a model
                predicted = float(self._model.predict([outage], [open_minutes])[0])
            minutes = max(float(np.expm1(predicted + shift)), 1.0)
            return _Choice(segment, curve, minutes, BOOSTED_METHOD)
        chosen = self._history.remaining(outage, open_minutes, self.level(target))
        if chosen is None:
            return None
        return _Choice(chosen[0], chosen[1], chosen[2], SURVIVAL_METHOD)

    def deadlines(
        self, outage: Incident, now: datetime, targets: Sequence[float]
    ) -> list[datetime | None]:
        """Rounded deadlines for several targets at once (None: no clock time); for backtests."""
        open_minutes = max((now - outage.started_at).total_seconds() / 60.0, 0.0)
        result: list[datetime | None] = []
        for target in targets:
            choice = self._choose(outage, open_minutes, target)
            minutes = None if choice is None else choice.minutes
            result.append(
                None
                if minutes is None
                else round_up_deadline(now + timedelta(minutes=minutes), now, self.config.timezone)
            )
        return result

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        """The promise for ``outage`` (open at ``now``) kept with probability ``target``."""
        if not 0.0 < target < 1.0:
            raise ValueError(f"target must be between 0 and 1, got {target}")
        open_minutes = max((now - outage.started_at).total_seconds() / 60.0, 0.0)
        choice = self._choose(outage, open_minutes, target)
        assert self._history is not None  # _choose checked
        if choice is None or choice.minutes is None:
            next_update = round_up_deadline(
                now + timedelta(minutes=self.config.next_update_minutes), now, self.config.timezone
            )
            return Estimate(
                made_at=now,
                target=target,
                deadline=None,
                next_update_at=next_update,
                remaining_minutes=None,
                explanation=Explanation(
                    segment=(
                        "" if choice is None else self._history.describe(choice.segment, outage)
                    ),
                    similar=0 if choice is None else choice.curve.at_risk(open_minutes),
                    fixed_within=0,
                    open_minutes=open_minutes,
                    method_version=SURVIVAL_METHOD if choice is None else choice.method,
                ),
            )
        deadline = round_up_deadline(
            now + timedelta(minutes=choice.minutes), now, self.config.timezone
        )
        promised_minutes = (deadline - now).total_seconds() / 60.0
        return Estimate(
            made_at=now,
            target=target,
            deadline=deadline,
            next_update_at=None,
            remaining_minutes=choice.minutes,
            explanation=Explanation(
                segment=self._history.describe(choice.segment, outage),
                similar=choice.curve.at_risk(open_minutes),
                fixed_within=choice.curve.fixed_between(
                    open_minutes, open_minutes + promised_minutes
                ),
                open_minutes=open_minutes,
                method_version=choice.method,
            ),
        )


def _predict_at_checkpoints(
    model: RemainingTimeModel,
    history: Sequence[Incident],
    checkpoints: Sequence[float],
    now: datetime,
) -> dict[tuple[str, float], tuple[Incident, float]]:
    """The model's prediction for every incident still open at each checkpoint, in one batch.

    Only incidents not resolved by ``now`` can still be asked about. Those that start after the
    fit moment are included: a prediction reads only what was known at the checkpoint (the
    opening facts, the states recorded by then, the minutes open), so it peeks at nothing.
    """
    rows: list[Incident] = []
    minutes: list[float] = []
    for incident in history:
        if incident.resolved_at is not None and incident.resolved_at <= now:
            continue
        duration = incident.duration_minutes()
        for checkpoint in checkpoints:
            if duration is None or duration > checkpoint:
                rows.append(incident)
                minutes.append(checkpoint)
    if not rows:
        return {}
    predicted = model.predict(rows, minutes)
    return {
        (incident.id, checkpoint): (incident, float(value))
        for incident, checkpoint, value in zip(rows, minutes, predicted, strict=True)
    }
