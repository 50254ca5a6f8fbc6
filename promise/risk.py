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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from promise.curves import FloatArray
from promise.features import OpeningFeatures, all_features
from promise.incident import Incident

#: The segment feature name that stands for an outage's risk band.
RISK_FEATURE = "risk"


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
        self._encoding: OpeningFeatures | None = None
        self._model: HistGradientBoostingRegressor | None = None
        self._edges: FloatArray = np.empty(0)

    @property
    def fitted(self) -> bool:
        """Whether a model was learnt (False: too little history, one band for all)."""
        return self._model is not None

    def fit(self, history: Sequence[Incident], now: datetime) -> RiskModel:
        """Learn from the outages resolved by ``now``; band edges from all started by then."""
        known = [i for i in history if i.started_at <= now]
        resolved = [i for i in known if i.resolved_at is not None and i.resolved_at <= now]
        self.features = self.config.features or all_features(known)
        self._model = None
        self._encoding = None
        self._edges = np.empty(0)
        if len(resolved) < self.config.min_train:
            return self
        self._encoding = OpeningFeatures(
            self.features, timezone=self.config.timezone, min_frequency=self.config.min_frequency
        ).fit(resolved)
        target = np.log1p(
            np.asarray([i.duration_minutes() or 0.0 for i in resolved], dtype=np.float64)
        )
        self._model = HistGradientBoostingRegressor(
            max_iter=self.config.max_iter,
            learning_rate=0.1,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=list(range(self._encoding.n_categorical)),
            random_state=0,
        )
        self._model.fit(self._encoding.transform(resolved), target)
        scores = self.predict(known)
        quantiles = np.linspace(0.0, 1.0, self.config.bands + 1)[1:-1]
        self._edges = np.unique(np.quantile(scores, quantiles))
        return self

    def predict(self, incidents: Sequence[Incident]) -> FloatArray:
        """Predicted log(1 + minutes) per incident (zeros when no model was learnt)."""
        if self._model is None or self._encoding is None or not incidents:
            return np.zeros(len(incidents))
        return np.asarray(self._model.predict(self._encoding.transform(incidents)))

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
