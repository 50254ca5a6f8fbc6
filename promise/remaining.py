"""The remaining-time model: how much longer an outage open ``s`` minutes is likely to last.

A Kaplan-Meier curve per segment can only pool outages that share a label, and its upper
quantiles end in the censored tail of the slowest outages. Real histories carry many more clues
(priority, assignment group, symptom, location, hour of day, and the state recorded since
opening). This model learns from all of them at once: a gradient-boosted accelerated failure
time model (XGBoost's ``survival:aft``) of the remaining minutes, from what was known when asked
(the opening facts, the states recorded since and how long ago the last of them came, the
minutes already open), at the moments customers ask (on opening, after 1 h and 4 h while the
outage was still open), recent outages weighing more.

Outages still open at the fit count as what they are: right-censored, lasting at least as long
as they were followed. A regression on resolved outages alone learns from the quick repairs of
the recent past and misses its slow ones, so it under-predicts exactly the outages a promise is
for; on the ServiceNow log most outages of the last weeks are still open at any fit.

It predicts a typical remaining time, not a promise: the engine turns it into one with a
conformal shift, ``promise = exp(prediction + shift) - 1``, fitted on how far the model was off
on outages it did not learn from (:attr:`RemainingTimeModel.out_of_fold`, see
:class:`promise.engine.ShiftCalibration`).
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from promise.curves import FloatArray
from promise.features import OpeningFeatures
from promise.incident import Incident


@dataclass(frozen=True, slots=True)
class RemainingConfig:
    """How the remaining-time model is learnt."""

    #: Features the model may use (Incident fields or attribute names); empty: the fields plus
    #: every attribute the history carries.
    features: tuple[str, ...] = ()
    #: Minutes open at which each outage becomes a training example.
    train_checkpoints: tuple[float, ...] = (0.0, 60.0, 240.0)
    #: Fewer resolved training examples than this: no model (the curves then answer).
    min_train: int = 200
    #: Boosting rounds; more fit the history closer but take longer to learn.
    rounds: int = 150
    learning_rate: float = 0.1
    max_depth: int = 6
    #: The least (recency-weighted) evidence a leaf may rest on.
    min_child_weight: float = 10.0
    #: Spread of the log-normal error the AFT loss assumes. It only shapes the fit: the
    #: promise's margin comes from the conformal shift.
    aft_scale: float = 1.2
    #: Categories seen less often than this share one "rare" level.
    min_frequency: int = 5
    #: An outage this many days older than the fit moment counts half.
    half_life_days: float = 90.0
    #: The clock on which the hour of day and weekday features are read.
    timezone: str = "Europe/Amsterdam"
    #: Cross-fitting folds (by outage) for the out-of-fold predictions that calibrate the
    #: shift. Each costs one more fit.
    folds: int = 3
    #: Threads a fit may use. A fit learns ``folds + 1`` boosters; with more than one thread
    #: they learn side by side, one thread each (on the ServiceNow log, one booster on two
    #: threads was only 7 % faster than on one). On cores shared with the service's other
    #: work, more than one made fitting slower here.
    threads: int = 1


@dataclass(frozen=True, slots=True)
class OutOfFold:
    """The model's predictions on its own training examples, each by a model that never saw
    that outage: how far off it is on outages it did not learn from.

    Row *i*: ``predicted[i]`` (``log(1 + remaining minutes)``), ``observed[i]`` the minutes
    from the moment asked until the outage was resolved or, if ``resolved[i]`` is False, until
    it was last seen open; ``weights[i]`` its recency weight; ``opened[i]`` the minutes it had
    been open when asked.
    """

    predicted: FloatArray
    observed: FloatArray
    resolved: npt.NDArray[np.bool_]
    weights: FloatArray
    opened: FloatArray


class RemainingTimeModel:
    """Predicts ``log(1 + remaining minutes)`` of an outage from what is known and its age.

    Example::

        model = RemainingTimeModel(RemainingConfig()).fit(history, now)
        model.predict([outage], [90.0])  # open 90 minutes
    """

    def __init__(self, config: RemainingConfig | None = None) -> None:
        self.config = config or RemainingConfig()
        self._encoding: OpeningFeatures | None = None
        self._booster: xgb.Booster | None = None
        self._use_activity = False
        #: Training examples of the last fit (resolved and still open).
        self.n_train = 0
        #: Out-of-fold predictions of the last fit (None: not fitted).
        self.out_of_fold: OutOfFold | None = None

    @property
    def fitted(self) -> bool:
        """Whether a model was learnt (False: too little resolved history)."""
        return self._booster is not None

    def fit(self, history: Sequence[Incident], now: datetime) -> RemainingTimeModel:
        """Learn from the outages known at ``now``; returns the model.

        Every outage open at a checkpoint before ``now`` is an example: resolved ones with the
        remaining time they took, the others censored at the time they were followed (until
        ``now``, or until their record was closed without a resolution). Also fills
        :attr:`out_of_fold`.
        """
        config = self.config
        rows: list[Incident] = []
        open_minutes: list[float] = []
        observed: list[float] = []
        resolved: list[bool] = []
        weight: list[float] = []
        for incident in history:
            if incident.started_at > now:
                continue
            end, done = incident.observed_end(now)
            followed = (end - incident.started_at).total_seconds() / 60.0
            age_days = (now - incident.started_at).total_seconds() / 86400.0
            for minutes in config.train_checkpoints:
                if followed > minutes:
                    rows.append(incident)
                    open_minutes.append(minutes)
                    observed.append(followed - minutes)
                    resolved.append(done)
                    weight.append(0.5 ** (age_days / config.half_life_days))
        self._booster = None
        self._encoding = None
        self._use_activity = False
        self.out_of_fold = None
        self.n_train = len(rows)
        if sum(resolved) < config.min_train:
            return self
        self._encoding = OpeningFeatures(
            config.features, timezone=config.timezone, min_frequency=config.min_frequency
        )
        # Without recorded states the activity columns would only repeat the minutes open.
        self._use_activity = any(incident.updates for incident in rows)
        moments = _moments(rows, open_minutes)
        matrix = self._with_age(
            self._encoding.fit_transform(rows, moments), rows, open_minutes, moments
        )
        remaining = np.asarray(observed, dtype=np.float64)
        done_array = np.asarray(resolved, dtype=bool)
        weights = np.asarray(weight, dtype=np.float64)
        # Folds by outage: its three checkpoints share one, so none peeks at another.
        fold = np.asarray([zlib.crc32(i.id.encode()) % config.folds for i in rows])
        held_out = [fold == k for k in range(config.folds)]
        # The full model (a view of all rows, no copy) and one per fold; XGBoost releases the
        # GIL while it learns.
        subsets: list[slice | npt.NDArray[np.bool_]] = [slice(None), *(~h for h in held_out)]
        workers = max(1, min(config.threads, config.folds + 1))
        with ThreadPoolExecutor(workers) as pool:
            jobs = [
                pool.submit(
                    self._train, matrix[keep], remaining[keep], done_array[keep], weights[keep]
                )
                for keep in subsets
            ]
            boosters = [job.result() for job in jobs]
        self._booster = boosters[0]
        predicted = np.empty(len(rows))
        for held, booster in zip(held_out, boosters[1:], strict=True):
            predicted[held] = self._log_predict(booster, matrix[held])
        self.out_of_fold = OutOfFold(
            predicted, remaining, done_array, weights, np.asarray(open_minutes, dtype=np.float64)
        )
        return self

    def predict(self, incidents: Sequence[Incident], open_minutes: Sequence[float]) -> FloatArray:
        """``log(1 + remaining minutes)`` for each incident open that long.

        Raises:
            RuntimeError: the model was not fitted (see :attr:`fitted`).
        """
        if self._booster is None:
            raise RuntimeError("RemainingTimeModel has no model: too little history to fit")
        if not incidents:
            return np.empty(0)
        return self._log_predict(self._booster, self._matrix(incidents, open_minutes))

    def _train(
        self,
        matrix: FloatArray,
        remaining: FloatArray,
        resolved: npt.NDArray[np.bool_],
        weights: FloatArray,
    ) -> xgb.Booster:
        config = self.config
        # Labels are 1 + minutes, so the model's log time is log(1 + remaining minutes).
        lower = 1.0 + remaining
        data = self._data(matrix)
        data.set_weight(weights)
        data.set_float_info("label_lower_bound", lower)
        data.set_float_info("label_upper_bound", np.where(resolved, lower, np.inf))
        parameters = {
            "objective": "survival:aft",
            "aft_loss_distribution": "normal",
            "aft_loss_distribution_scale": config.aft_scale,
            "tree_method": "hist",
            "learning_rate": config.learning_rate,
            "max_depth": config.max_depth,
            "min_child_weight": config.min_child_weight,
            # Partition splits: a category joins whichever side fits it, not one-vs-rest.
            "max_cat_to_onehot": 1,
            # The boosters of a fit share the threads (see ``RemainingConfig.threads``).
            "nthread": max(1, config.threads // (config.folds + 1)),
            "seed": 0,
            "verbosity": 0,
        }
        return xgb.train(parameters, data, num_boost_round=config.rounds)

    def _data(self, matrix: FloatArray) -> xgb.DMatrix:
        assert self._encoding is not None
        categorical = self._encoding.n_categorical
        types = ["c"] * categorical + ["q"] * (matrix.shape[1] - categorical)
        return xgb.DMatrix(
            matrix, feature_types=types, enable_categorical=True, nthread=self.config.threads
        )

    def _log_predict(self, booster: xgb.Booster, matrix: FloatArray) -> FloatArray:
        # AFT predicts the time itself (1 + minutes here).
        return np.log(np.asarray(booster.predict(self._data(matrix)), dtype=np.float64))

    def _matrix(self, incidents: Sequence[Incident], open_minutes: Sequence[float]) -> FloatArray:
        assert self._encoding is not None
        # The outage as it stood when asked: its recorded states up to then count.
        moments = _moments(incidents, open_minutes)
        encoded = self._encoding.transform(incidents, moments)
        return self._with_age(encoded, incidents, open_minutes, moments)

    def _with_age(
        self,
        encoded: FloatArray,
        incidents: Sequence[Incident],
        open_minutes: Sequence[float],
        moments: Sequence[datetime],
    ) -> FloatArray:
        """The encoded facts, then the minutes open and (with recorded states) the activity.

        Activity: minutes since the last recorded change (since opening if none) and how many
        changes were recorded, both as of the moment asked. An outage nobody has touched for
        hours is a different case from one that is being worked on.
        """
        columns = [encoded, np.asarray(open_minutes, dtype=np.float64)]
        if self._use_activity:
            known = [
                bisect_right(i.updates, moment, key=lambda update: update[0])
                for i, moment in zip(incidents, moments, strict=True)
            ]
            last = [
                i.updates[n - 1][0] if n else i.started_at
                for i, n in zip(incidents, known, strict=True)
            ]
            columns += [_minutes_between(last, moments), np.asarray(known, dtype=np.float64)]
        return np.column_stack(columns)


def _minutes_between(starts: Sequence[datetime], ends: Sequence[datetime]) -> FloatArray:
    return np.asarray(
        [(end - start).total_seconds() / 60.0 for start, end in zip(starts, ends, strict=True)],
        dtype=np.float64,
    )


def _moments(incidents: Sequence[Incident], open_minutes: Sequence[float]) -> list[datetime]:
    return [
        incident.started_at + timedelta(minutes=minutes)
        for incident, minutes in zip(incidents, open_minutes, strict=True)
    ]
