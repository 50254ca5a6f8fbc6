"""The forecasters a backtest compares: the engine itself and three baselines.

Every forecaster is fitted on the history known at a moment and then gives, for an outage open
for some minutes, one rounded deadline per target (None when it makes no clock promise).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd
from lifelines import LogNormalAFTFitter
from scipy.stats import norm

from promise.engine import EngineConfig, PromiseEngine
from promise.incident import Incident
from promise.rounding import round_up_deadline


class Forecaster(Protocol):
    """Something that promises deadlines from history."""

    name: str

    def fit(self, history: Sequence[Incident], now: datetime) -> None:
        """Learn from what was known at ``now``."""

    def deadlines(
        self, outage: Incident, now: datetime, targets: Sequence[float]
    ) -> list[datetime | None]:
        """One rounded deadline per target for ``outage`` open at ``now`` (None: no promise)."""


def _open_minutes(outage: Incident, now: datetime) -> float:
    return max((now - outage.started_at).total_seconds() / 60.0, 0.0)


def _round(now: datetime, remaining: float | None, timezone: str) -> datetime | None:
    if remaining is None or not math.isfinite(remaining):
        return None
    return round_up_deadline(now + timedelta(minutes=remaining), now, timezone)


class EngineForecaster:
    """Belofte's method: :class:`~promise.engine.PromiseEngine` with the given config."""

    def __init__(self, config: EngineConfig, name: str = "method") -> None:
        self.name = name
        self.config = config
        self.engine = PromiseEngine(config)

    def fit(self, history: Sequence[Incident], now: datetime) -> None:
        """Fit the engine (curves, conformal shift) on what was known at ``now``."""
        self.engine = PromiseEngine(self.config).fit(history, now)

    def deadlines(
        self, outage: Incident, now: datetime, targets: Sequence[float]
    ) -> list[datetime | None]:
        """The engine's rounded deadlines."""
        return self.engine.deadlines(outage, now, targets)


def km_by_cause(config: EngineConfig) -> EngineForecaster:
    """Per-cause Kaplan-Meier quantile: no recency weights, no conformal shift."""
    plain = EngineConfig(
        min_evidence=config.min_evidence,
        half_life_days=1e9,
        next_update_minutes=config.next_update_minutes,
        timezone=config.timezone,
        segments=(("cause",), ()),
        conformal=False,
    )
    return EngineForecaster(plain, name="km_by_cause")


class StaticQuantile:
    """The target quantile of all past durations longer than the time already open.

    What a contact center does without a model: "80 % of outages are fixed within X".
    Outages still open are ignored (no censoring), nothing is segmented or weighted.
    """

    name = "static_quantile"

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self._durations = np.empty(0)

    def fit(self, history: Sequence[Incident], now: datetime) -> None:
        """Collect the durations of outages resolved by ``now``."""
        self._durations = np.sort(
            np.asarray(
                [
                    (i.resolved_at - i.started_at).total_seconds() / 60.0
                    for i in history
                    if i.resolved_at is not None and i.resolved_at <= now
                ],
                dtype=np.float64,
            )
        )

    def deadlines(
        self, outage: Incident, now: datetime, targets: Sequence[float]
    ) -> list[datetime | None]:
        """Quantiles of the remaining time of past outages that lasted longer."""
        open_minutes = _open_minutes(outage, now)
        start = int(np.searchsorted(self._durations, open_minutes, side="right"))
        longer = self._durations[start:]
        result: list[datetime | None] = []
        for target in targets:
            if len(longer) == 0:
                result.append(None)
                continue
            remaining = float(np.quantile(longer, target, method="inverted_cdf")) - open_minutes
            result.append(_round(now, remaining, self.timezone))
        return result


class LogNormalAFT:
    """A lifelines log-normal accelerated failure time model on service and cause.

    Causes seen fewer than ``min_count`` times share one "other" level so the design matrix
    stays small. Conditioned on time open through the closed-form log-normal survival.
    """

    name = "aft"

    def __init__(self, timezone: str, min_count: int = 30, penalizer: float = 0.01) -> None:
        self.timezone = timezone
        self.min_count = min_count
        self.penalizer = penalizer
        self._columns: list[str] = []
        self._coefficients: dict[str, float] = {}
        self._intercept = 0.0
        self._sigma = 1.0
        self._levels: dict[str, set[str]] = {}
        self._mu_cache: dict[tuple[str, str], float] = {}

    def _design(self, rows: Sequence[tuple[str, str]]) -> pd.DataFrame:
        matrix = np.zeros((len(rows), len(self._columns)))
        index = {column: j for j, column in enumerate(self._columns)}
        for i, (service, cause) in enumerate(rows):
            for column in (f"service={service}", f"cause={self._cause_level(cause)}"):
                j = index.get(column)
                if j is not None:
                    matrix[i, j] = 1.0
        return pd.DataFrame(matrix, columns=self._columns)

    def _cause_level(self, cause: str) -> str:
        return cause if cause in self._levels.get("cause", set()) else "other"

    def fit(self, history: Sequence[Incident], now: datetime) -> None:
        """Fit the AFT model on what was known at ``now`` (open outages censored)."""
        known = [i for i in history if i.started_at <= now]
        causes = Counter(i.cause for i in known)
        self._levels = {"cause": {c for c, n in causes.items() if n >= self.min_count}}
        services = sorted({i.service for i in known})
        cause_levels = sorted(self._levels["cause"] | {"other"})
        # One level of each factor is the reference, so the design has no collinear columns.
        self._columns = [f"service={s}" for s in services[1:]] + [
            f"cause={c}" for c in cause_levels[1:]
        ]
        frame = self._design([(i.service, i.cause) for i in known])
        durations = []
        events = []
        for incident in known:
            stop, resolved = incident.observed_end(now)
            durations.append(max((stop - incident.started_at).total_seconds() / 60.0, 0.5))
            events.append(resolved)
        frame["duration"] = durations
        frame["resolved"] = events
        fitter = LogNormalAFTFitter(penalizer=self.penalizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter.fit(frame, duration_col="duration", event_col="resolved")
        params = fitter.params_
        self._intercept = float(params[("mu_", "Intercept")])
        self._coefficients = {c: float(params[("mu_", c)]) for c in self._columns}
        self._sigma = math.exp(float(params[("sigma_", "Intercept")]))
        self._mu_cache = {}

    def _mu(self, outage: Incident) -> float:
        key = (outage.service, outage.cause)
        mu = self._mu_cache.get(key)
        if mu is None:
            mu = self._intercept
            for column in (f"service={outage.service}", f"cause={self._cause_level(outage.cause)}"):
                mu += self._coefficients.get(column, 0.0)
            self._mu_cache[key] = mu
        return mu

    def deadlines(
        self, outage: Incident, now: datetime, targets: Sequence[float]
    ) -> list[datetime | None]:
        """Conditional log-normal quantiles: P(T ≤ t | T > s) = target."""
        open_minutes = _open_minutes(outage, now)
        mu = self._mu(outage)
        survived = (
            1.0
            if open_minutes <= 0
            else float(norm.sf((math.log(open_minutes) - mu) / self._sigma))
        )
        result: list[datetime | None] = []
        for target in targets:
            cdf = 1.0 - (1.0 - target) * survived
            if survived <= 0.0 or cdf >= 1.0:
                result.append(None)
                continue
            total = math.exp(mu + self._sigma * float(norm.ppf(cdf)))
            result.append(_round(now, total - open_minutes, self.timezone))
        return result
