"""What is known about an outage when it opens, as numbers a gradient-boosted model can read.

Shared by the risk bands (:mod:`promise.risk`) and the remaining-time model
(:mod:`promise.remaining`): categorical fields and attributes as ordinal codes (rare values
pooled, unseen ones missing), the local hour and weekday of the start, and the number of customers
affected when the history records it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
from sklearn.preprocessing import OrdinalEncoder

from promise.curves import FloatArray
from promise.incident import Incident

_FIELDS = ("service", "cause", "region")


class OpeningFeatures:
    """Encodes incidents as a matrix: one column per categorical feature, then the time columns.

    ``fit`` learns the categories of ``features`` (Incident fields or attribute names; empty: the
    fields plus every attribute that is not an identifier); ``transform`` encodes. The first
    :attr:`n_categorical` columns are categorical (for ``categorical_features`` of the booster).
    """

    def __init__(self, features: Sequence[str], *, timezone: str, min_frequency: int) -> None:
        self._requested = tuple(features)
        self._zone = ZoneInfo(timezone)
        self._min_frequency = min_frequency
        self.features: tuple[str, ...] = ()
        self._encoder: OrdinalEncoder | None = None
        self._use_affected = False

    @property
    def n_categorical(self) -> int:
        """How many leading columns are categorical codes."""
        return len(self.features)

    def fit(self, incidents: Sequence[Incident]) -> OpeningFeatures:
        """Learn the categories (and whether customer counts are recorded) from ``incidents``."""
        self.features = self._requested or all_features(incidents)
        self._encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            min_frequency=self._min_frequency,
            # The booster's categorical splits take at most 255 levels; the rest share one.
            max_categories=250,
        )
        self._encoder.fit(self._categories(incidents))
        # A column that is never filled cannot be binned (ServiceNow has no customer counts).
        self._use_affected = any(i.customers_affected for i in incidents)
        return self

    def transform(self, incidents: Sequence[Incident]) -> FloatArray:
        """The feature matrix of ``incidents`` (one row each)."""
        if self._encoder is None:
            raise RuntimeError("OpeningFeatures.fit must be called before transform")
        categories = np.asarray(self._encoder.transform(self._categories(incidents)))
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

    def _categories(self, incidents: Sequence[Incident]) -> list[list[str]]:
        return [[i.feature(name) for name in self.features] for i in incidents]


def all_features(incidents: Sequence[Incident]) -> tuple[str, ...]:
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
