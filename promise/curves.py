"""Survival curves of outage durations and the conditional questions a promise asks of them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from lifelines import KaplanMeierFitter
from lifelines.exceptions import StatisticalWarning
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SurvivalCurve:
    """A Kaplan-Meier estimate of P(duration > t), plus the raw counts behind it.

    ``times``/``survival`` are the (possibly recency-weighted) step function; ``durations`` and
    ``event_durations`` are the unweighted observed durations (all, and resolved only), sorted,
    which give the evidence counts a supervisor can check.
    """

    times: FloatArray
    survival: FloatArray
    durations: FloatArray
    event_durations: FloatArray

    @classmethod
    def fit(
        cls, durations: FloatArray, resolved: NDArray[np.bool_], weights: FloatArray
    ) -> SurvivalCurve:
        """Fit on durations in minutes (censored where ``resolved`` is False)."""
        fitter = KaplanMeierFitter()
        with warnings.catch_warnings():
            # Recency weights are not integer case counts; lifelines warns but handles them.
            warnings.simplefilter("ignore", StatisticalWarning)
            # Its confidence bands (unused here) overflow on long tails.
            warnings.simplefilter("ignore", RuntimeWarning)
            fitter.fit(durations, event_observed=resolved, weights=weights)
        frame = fitter.survival_function_
        return cls(
            times=frame.index.to_numpy(dtype=np.float64),
            survival=frame.iloc[:, 0].to_numpy(dtype=np.float64),
            durations=np.sort(durations),
            event_durations=np.sort(durations[resolved]),
        )

    def survival_at(self, t: float) -> float:
        """P(duration > t)."""
        index = int(np.searchsorted(self.times, t, side="right")) - 1
        return 1.0 if index < 0 else float(self.survival[index])

    def at_risk(self, open_minutes: float) -> int:
        """How many outages lasted at least ``open_minutes`` (or were still open by then)."""
        return len(self.durations) - int(np.searchsorted(self.durations, open_minutes, "left"))

    def fixed_between(self, start: float, end: float) -> int:
        """How many outages were resolved after ``start`` and by ``end`` minutes."""
        events = self.event_durations
        return int(np.searchsorted(events, end, "right") - np.searchsorted(events, start, "left"))

    def remaining_quantile(self, open_minutes: float, level: float) -> float | None:
        """Minutes from now within which an outage open ``open_minutes`` is fixed w.p. ``level``.

        None when the curve never gets there (the longest outages were still open when the data
        ended), so no honest promise can be made from it.
        """
        current = self.survival_at(open_minutes)
        if current <= 0.0:
            return None
        threshold = (1.0 - level) * current + 1e-12
        # survival is non-increasing, so its negation is sorted ascending.
        index = int(np.searchsorted(-self.survival, -threshold, side="left"))
        if index >= len(self.times):
            return None
        return max(float(self.times[index]) - open_minutes, 0.0)

    def remaining_quantiles(self, open_minutes: float, levels: FloatArray) -> FloatArray:
        """:meth:`remaining_quantile` for many levels at once (NaN where there is none)."""
        current = self.survival_at(open_minutes)
        if current <= 0.0:
            return np.full(len(levels), np.nan)
        thresholds = (1.0 - levels) * current + 1e-12
        indices = np.searchsorted(-self.survival, -thresholds, side="left")
        found = indices < len(self.times)
        times = self.times[np.minimum(indices, len(self.times) - 1)]
        return np.where(found, np.maximum(times - open_minutes, 0.0), np.nan)

    def remaining_cdf(self, open_minutes: float, remaining: float) -> float:
        """P(fixed within ``remaining`` more minutes | open for ``open_minutes``)."""
        current = self.survival_at(open_minutes)
        if current <= 0.0:
            return 1.0
        return 1.0 - self.survival_at(open_minutes + remaining) / current
