"""The remaining-time model: how much longer an outage open ``s`` minutes is likely to last.

A Kaplan-Meier curve per segment can only pool outages that share a label, and its upper
quantiles end in the censored tail of the slowest outages. Real histories carry many more clues
at opening (priority, assignment group, symptom, location, hour of day). This model learns from
all of them at once: a gradient-boosted regression (scikit-learn) of ``log(1 + remaining
minutes)`` on what was known when asked (the opening facts, the states recorded since, such as a
ticket's state or reassignments, and the minutes already open), trained on every resolved outage
at the moments customers ask (on opening, after 1 h and 4 h while it was still open), recent
outages weighing more.

It predicts a typical remaining time, not a promise: the engine turns it into one with a
conformal shift, ``promise = exp(prediction + shift) - 1``, the shift fitted on the most recent
outages so that a share ``τ`` of its promises were kept (:mod:`promise.engine`).

A squared loss on log time, not a quantile loss at ``τ``: one model then serves every target
(the shift differs per target), and on the ServiceNow log it gave shorter calibrated promises
than quantile boosting (``bench/promise_boosted_probe.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from promise.curves import FloatArray
from promise.features import OpeningFeatures
from promise.incident import Incident


@dataclass(frozen=True, slots=True)
class RemainingConfig:
    """How the remaining-time model is learnt."""

    #: Features the model may use (Incident fields or attribute names); empty: the fields plus
    #: every attribute the history carries.
    features: tuple[str, ...] = ()
    #: Minutes open at which each resolved outage becomes a training example.
    train_checkpoints: tuple[float, ...] = (0.0, 60.0, 240.0)
    #: Fewer training examples than this: no model (the engine then gives no clock time).
    min_train: int = 200
    #: Boosting rounds; more fit the history closer but take longer to learn.
    max_iter: int = 150
    #: Categories seen less often than this share one "rare" level.
    min_frequency: int = 5
    #: An outage this many days older than the fit moment counts half.
    half_life_days: float = 90.0
    #: The clock on which the hour of day and weekday features are read.
    timezone: str = "Europe/Amsterdam"
    #: The most recent share of the outages known at a fit (by start) calibrates the conformal
    #: shift, predicted by a model fitted when the first of them started. By count, not by
    #: days: a window of days holds nearly the whole history after a busy spell (so the
    #: calibrating model knew too little to resemble the one that promises) and a handful of
    #: outages after a quiet one.
    calibration_share: float = 0.2
    #: OpenMP threads of the booster. OpenMP threads spin while they wait: on cores shared with
    #: the service's other work, more than one made fitting ~15 times slower here.
    threads: int = 1


class RemainingTimeModel:
    """Predicts ``log(1 + remaining minutes)`` of an outage from its opening facts and age.

    Example::

        model = RemainingTimeModel(RemainingConfig()).fit(history, now)
        model.predict([outage], [90.0])  # open 90 minutes
    """

    def __init__(self, config: RemainingConfig | None = None) -> None:
        self.config = config or RemainingConfig()
        self._encoding: OpeningFeatures | None = None
        self._model: HistGradientBoostingRegressor | None = None
        #: Training examples of the last fit.
        self.n_train = 0

    @property
    def fitted(self) -> bool:
        """Whether a model was learnt (False: too little resolved history)."""
        return self._model is not None

    def fit(self, history: Sequence[Incident], now: datetime) -> RemainingTimeModel:
        """Learn from the outages resolved by ``now``; returns the model.

        Outages still open at ``now`` are left out of the regression: their remaining time is
        unknown. That biases the predictions short for slow kinds of outage, which is why the
        engine never uses them without the conformal shift: its calibrating model, fitted the
        same way at an earlier moment, has the same bias, and the shift's estimate weighs in
        the outages still open (:class:`promise.engine.ShiftCalibration`). Weighting each
        resolved outage by the inverse chance of seeing a duration that long did not shorten
        the promises on ServiceNow (docs/benchmarks.md).
        """
        config = self.config
        known = [i for i in history if i.started_at <= now]
        rows: list[Incident] = []
        open_minutes: list[float] = []
        target: list[float] = []
        weight: list[float] = []
        for incident in known:
            end, resolved = incident.observed_end(now)
            if not resolved:
                continue
            duration = (end - incident.started_at).total_seconds() / 60.0
            age_days = (now - incident.started_at).total_seconds() / 86400.0
            for minutes in config.train_checkpoints:
                if duration > minutes:
                    rows.append(incident)
                    open_minutes.append(minutes)
                    target.append(math.log1p(duration - minutes))
                    weight.append(0.5 ** (age_days / config.half_life_days))
        self._model = None
        self._encoding = None
        self.n_train = len(rows)
        if len(rows) < config.min_train:
            return self
        self._encoding = OpeningFeatures(
            config.features, timezone=config.timezone, min_frequency=config.min_frequency
        ).fit(rows, _moments(rows, open_minutes))
        self._model = HistGradientBoostingRegressor(
            max_iter=config.max_iter,
            learning_rate=0.1,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=list(range(self._encoding.n_categorical)),
            random_state=0,
        )
        with threadpool_limits(limits=config.threads, user_api="openmp"):
            self._model.fit(
                self._matrix(rows, open_minutes),
                np.asarray(target, dtype=np.float64),
                sample_weight=np.asarray(weight, dtype=np.float64),
            )
        return self

    def predict(self, incidents: Sequence[Incident], open_minutes: Sequence[float]) -> FloatArray:
        """``log(1 + remaining minutes)`` for each incident open that long.

        Raises:
            RuntimeError: the model was not fitted (see :attr:`fitted`).
        """
        if self._model is None:
            raise RuntimeError("RemainingTimeModel has no model: too little history to fit")
        if not incidents:
            return np.empty(0)
        with threadpool_limits(limits=self.config.threads, user_api="openmp"):
            return np.asarray(self._model.predict(self._matrix(incidents, open_minutes)))

    def _matrix(self, incidents: Sequence[Incident], open_minutes: Sequence[float]) -> FloatArray:
        assert self._encoding is not None
        # The outage as it stood when asked: its recorded states up to then count.
        encoded = self._encoding.transform(incidents, _moments(incidents, open_minutes))
        return np.column_stack([encoded, np.asarray(open_minutes, dtype=np.float64)])


def _moments(incidents: Sequence[Incident], open_minutes: Sequence[float]) -> list[datetime]:
    return [
        incident.started_at + timedelta(minutes=minutes)
        for incident, minutes in zip(incidents, open_minutes, strict=True)
    ]
