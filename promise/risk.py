"""Risk bands: outages grouped by how long a model expects them to last.

A segment such as "service + cause" only pools outages that share a label. Real histories carry
many more clues at opening (priority, assignment group, symptom, location, hour of day), too many
to cross as segments. :class:`RiskModel` learns from them which outages tend to last long (a
gradient-boosted regression of the log duration, scikit-learn), and cuts its predictions into
bands of equal size. A band is then one more segment feature (``risk``): the engine still fits a
Kaplan-Meier curve per band, so censoring, the conditioning on time open and the conformal shift
work exactly as for label segments. The model only ranks outages; the curve gives the times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.preprocessing import OrdinalEncoder

from promise.curves import FloatArray
from promise.incident import Incident

#: The segment feature name that stands for an outage's risk band.
RISK_FEATURE = "risk"

_FIELDS = ("service", "cause", "region")


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """How risk bands are learnt."""

    #: Bands of equal size the predictions are cut into.
    bands: int = 10
    #: Features the model may use (Incident fields or attribute names); empty: the fields plus
    #: every attribute the history carries.
    features: tuple[str, ...] = ()
    #: Fewer resolved outages than this: no model, every outage is in one band.
    min_train: int = 200
    #: Boosting rounds; more fit the history closer but take longer to learn.
    max_iter: int = 150
    #: Categories seen less often than this share one "rare" level.
    min_frequency: int = 5
    #: The clock on which the hour of day and weekday features are read.
    timezone: str = "Europe/Amsterdam"


class RiskModel:
    """Learns which outages last long from what was known when they opened.

    Example::

        model = RiskModel(RiskConfig()).fit(history, now)
        model.band(outage)  # "0" (expected shortest) .. "9" (expected longest)
    """

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()
        self.features: tuple[str, ...] = ()
        self._encoder: OrdinalEncoder | None = None
        self._model: HistGradientBoostingRegressor | None = None
        self._edges: FloatArray = np.empty(0)
        self._use_affected = False
        self._zone = ZoneInfo(self.config.timezone)

    @property
    def fitted(self) -> bool:
        """Whether a model was learnt (False: too little history, one band for all)."""
        return self._model is not None

    def fit(self, history: Sequence[Incident], now: datetime) -> RiskModel:
        """Learn from the outages resolved by ``now``; band edges from all started by then."""
        known = [i for i in history if i.started_at <= now]
        resolved = [i for i in known if i.resolved_at is not None and i.resolved_at <= now]
        self.features = self.config.features or _all_features(known)
        self._model = None
        self._encoder = None
        self._edges = np.empty(0)
        if len(resolved) < self.config.min_train:
            return self
        self._encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            min_frequency=self.config.min_frequency,
            # The booster's categorical splits take at most 255 levels; the rest share one.
            max_categories=250,
        )
        categories = self._encoder.fit_transform(self._categories(resolved))
        # A column that is never filled cannot be binned (ServiceNow has no customer counts).
        self._use_affected = any(i.customers_affected for i in resolved)
        target = np.log1p(
            np.asarray([i.duration_minutes() or 0.0 for i in resolved], dtype=np.float64)
        )
        self._model = HistGradientBoostingRegressor(
            max_iter=self.config.max_iter,
            learning_rate=0.1,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=list(range(len(self.features))),
            random_state=0,
        )
        self._model.fit(self._matrix(categories, resolved), target)
        scores = self.predict(known)
        quantiles = np.linspace(0.0, 1.0, self.config.bands + 1)[1:-1]
        self._edges = np.unique(np.quantile(scores, quantiles))
        return self

    def predict(self, incidents: Sequence[Incident]) -> FloatArray:
        """Predicted log(1 + minutes) per incident (zeros when no model was learnt)."""
        if self._model is None or self._encoder is None or not incidents:
            return np.zeros(len(incidents))
        categories = self._encoder.transform(self._categories(incidents))
        return np.asarray(self._model.predict(self._matrix(categories, incidents)))

    def bands(self, incidents: Sequence[Incident]) -> list[str]:
        """The band of each incident, ``"0"`` for the shortest expected outages."""
        if self._model is None:
            return ["0"] * len(incidents)
        indices = np.searchsorted(self._edges, self.predict(incidents), side="right")
        return [str(int(index)) for index in indices]

    def band(self, incident: Incident) -> str:
        """The band of one incident."""
        return self.bands([incident])[0]

    def describe(self, band: str) -> str:
        """``"expected-duration band 3 of 10"`` for explanations."""
        return f"expected-duration band {int(band) + 1} of {len(self._edges) + 1}"

    def _categories(self, incidents: Sequence[Incident]) -> list[list[str]]:
        return [[i.feature(name) for name in self.features] for i in incidents]

    def _matrix(self, categories: FloatArray, incidents: Sequence[Incident]) -> FloatArray:
        hours = np.empty((len(incidents), 2))
        for row, incident in enumerate(incidents):
            local = incident.started_at.astimezone(self._zone)
            hours[row, 0] = local.hour + local.minute / 60.0
            hours[row, 1] = local.weekday()
        if not self._use_affected:
            return np.column_stack([categories, hours])
        affected = np.asarray(
            [
                math.log1p(i.customers_affected) if i.customers_affected else np.nan
                for i in incidents
            ]
        )
        return np.column_stack([categories, hours, affected])


def _all_features(incidents: Sequence[Incident]) -> tuple[str, ...]:
    """The fields plus every attribute that is not an identifier (unique to most incidents)."""
    values: dict[str, set[str]] = {}
    for incident in incidents:
        for name, value in incident.attributes.items():
            values.setdefault(name, set()).add(value)
    kept = [
        name
        for name, seen in values.items()
        if name not in _FIELDS and len(seen) <= max(len(incidents) // 2, 1)
    ]
    return _FIELDS + tuple(sorted(kept))
