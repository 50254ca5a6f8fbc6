"""The promise engine: segment survival curves, conditioned on time open, with a conformal shift.

How a promise is made for an outage open ``s`` minutes, at target ``τ``:

1. **Segment.** Walk the configured segments from most to least specific (by default service +
   cause + region, service + cause, service, all) and take the first whose history holds at
   least ``min_evidence`` outages that were still open after ``s`` minutes and whose curve
   reaches the level asked for (a segment whose slowest outages are still open may never get
   there: a broader one answers). None: no clock time, only the time of the next update. A
   segment feature can also be ``risk``: a band of outages a model expects to last about as
   long (see :mod:`promise.risk`).
2. **Estimate.** The segment's Kaplan-Meier curve (lifelines; outages still open are censored,
   recent outages weigh more by a half-life) gives the remaining time ``r`` by which the outage
   is fixed with probability ``ℓ(τ)``, conditioned on having lasted ``s``.
3. **Conformal shift.** ``ℓ(τ)`` is not simply ``τ``: at fit time, the outages of the last
   ``calibration_days`` are promised to with curves fitted on what was known before them, at the
   same checkpoints as in production (on opening, after 1 h and 4 h), and ``ℓ(τ)`` is the lowest
   level at which a share ``τ`` of the promises whose deadline has passed were kept. Drift (a
   faster or slower repair season) is corrected this way without guessing its cause.
4. **Round** the deadline up to a quarter hour (whole hours beyond a day).

The engine is a plain estimator: ``fit`` learns from history known at ``now`` and returns
the engine; ``promise`` is a pure function of that fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from promise.curves import FloatArray, SurvivalCurve
from promise.estimate import Estimate, Explanation
from promise.incident import Incident
from promise.risk import RISK_FEATURE, RiskConfig, RiskModel
from promise.rounding import round_up_deadline

METHOD_VERSION = "segment-km-conformal/2"

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


@dataclass(frozen=True, slots=True)
class Calibration:
    """Past promises on recent outages, replayed at every level of a grid.

    Row *i* is one promise: ``quantiles[i, j]`` the remaining minutes promised at level
    ``LEVEL_GRID[j]``, ``actual[i]`` the minutes it really took (inf if not resolved), and
    ``available[i]`` the minutes between the promise and the end of observation.
    """

    quantiles: FloatArray
    actual: FloatArray
    available: FloatArray

    @classmethod
    def empty(cls) -> Calibration:
        """No calibration data: levels equal targets."""
        return cls(np.empty((0, len(LEVEL_GRID))), np.empty(0), np.empty(0))

    def level_for(self, target: float, min_count: int) -> float:
        """The lowest level whose promises were kept at least ``target`` of the time.

        Only promises whose deadline has passed count (kept or broken). Counting outages that
        are fixed early while leaving out slow ones still open would flatter every level.
        """
        if len(self.actual) < min_count:
            return target
        decided = self.quantiles <= self.available[:, None]  # NaN compares False: undecided
        kept = decided & (self.actual[:, None] <= self.quantiles)
        n_decided = decided.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = kept.sum(axis=0) / n_decided
        good = (n_decided >= min_count) & (rate >= target)
        if not good.any():
            return float(LEVEL_GRID[-1]) if (n_decided >= min_count).any() else target
        return float(LEVEL_GRID[int(np.argmax(good))])


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


class PromiseEngine:
    """Learns from outage history and promises resolution times for open outages.

    Example::

        engine = PromiseEngine(EngineConfig()).fit(history, now)
        estimate = engine.promise(outage, now, target=0.8)
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._history: _History | None = None
        self._calibration: Calibration | None = None
        self._levels: dict[float, float] = {}
        self.fitted_at: datetime | None = None

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, history: Sequence[Incident], now: datetime) -> PromiseEngine:
        """Learn from every incident that had started by ``now``; returns the engine.

        Incidents resolved after ``now`` count as open at ``now``: the fit never sees the future,
        so a backtest can fit at any past moment.
        """
        self._history = _History(history, now, self.config)
        self._calibration = (
            self._calibrate(history, now) if self.config.conformal else Calibration.empty()
        )
        self._levels = {}
        self.fitted_at = now
        return self

    def _calibrate(self, history: Sequence[Incident], now: datetime) -> Calibration:
        cutoff = now - timedelta(days=self.config.calibration_days)
        recent = [i for i in history if cutoff < i.started_at <= now]
        past = _History(history, cutoff, self.config)
        quantiles: list[FloatArray] = []
        actual: list[float] = []
        available: list[float] = []
        for incident in recent:
            end, resolved = incident.observed_end(now)
            for open_minutes in self.config.checkpoints:
                asked_at = incident.started_at + timedelta(minutes=open_minutes)
                if asked_at >= end:
                    continue
                grid = past.remaining_grid(incident, open_minutes)
                if grid is None:
                    continue
                quantiles.append(grid)
                # A deadline has passed once it lies before now (or, for a record closed
                # without a resolution, before it was closed).
                horizon = now if resolved or incident.censored_at is None else end
                actual.append((end - asked_at).total_seconds() / 60.0 if resolved else np.inf)
                available.append((horizon - asked_at).total_seconds() / 60.0)
        if not actual:
            return Calibration.empty()
        return Calibration(
            quantiles=np.vstack(quantiles),
            actual=np.asarray(actual, dtype=np.float64),
            available=np.asarray(available, dtype=np.float64),
        )

    def level(self, target: float) -> float:
        """The curve level used for ``target`` after the conformal shift."""
        if self._calibration is None:
            raise RuntimeError("PromiseEngine.fit must be called before promising")
        level = self._levels.get(target)
        if level is None:
            level = self._calibration.level_for(target, self.config.min_calibration)
            self._levels[target] = level
        return level

    # -- promising -------------------------------------------------------------------------

    def deadlines(
        self, outage: Incident, now: datetime, targets: Sequence[float]
    ) -> list[datetime | None]:
        """Rounded deadlines for several targets at once (None: no clock time); for backtests."""
        if self._history is None:
            raise RuntimeError("PromiseEngine.fit must be called before promising")
        open_minutes = max((now - outage.started_at).total_seconds() / 60.0, 0.0)
        result: list[datetime | None] = []
        for target in targets:
            found = self._history.remaining(outage, open_minutes, self.level(target))
            remaining = None if found is None else found[2]
            result.append(
                None
                if remaining is None
                else round_up_deadline(
                    now + timedelta(minutes=remaining), now, self.config.timezone
                )
            )
        return result

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        """The promise for ``outage`` (open at ``now``) kept with probability ``target``."""
        if self._history is None:
            raise RuntimeError("PromiseEngine.fit must be called before promising")
        if not 0.0 < target < 1.0:
            raise ValueError(f"target must be between 0 and 1, got {target}")
        open_minutes = max((now - outage.started_at).total_seconds() / 60.0, 0.0)
        chosen = self._history.remaining(outage, open_minutes, self.level(target))
        remaining = None if chosen is None else chosen[2]
        if chosen is None or remaining is None:
            similar = 0 if chosen is None else chosen[1].at_risk(open_minutes)
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
                    segment="" if chosen is None else self._history.describe(chosen[0], outage),
                    similar=similar,
                    fixed_within=0,
                    open_minutes=open_minutes,
                    method_version=METHOD_VERSION,
                ),
            )
        segment, curve, _ = chosen
        deadline = round_up_deadline(now + timedelta(minutes=remaining), now, self.config.timezone)
        promised_minutes = (deadline - now).total_seconds() / 60.0
        return Estimate(
            made_at=now,
            target=target,
            deadline=deadline,
            next_update_at=None,
            remaining_minutes=remaining,
            explanation=Explanation(
                segment=self._history.describe(segment, outage),
                similar=curve.at_risk(open_minutes),
                fixed_within=curve.fixed_between(open_minutes, open_minutes + promised_minutes),
                open_minutes=open_minutes,
                method_version=METHOD_VERSION,
            ),
        )
