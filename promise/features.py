"""What is known about an outage, as numbers a gradient-boosted model can read.

Shared by the risk bands (:mod:`promise.risk`, what was known at opening) and the remaining-time
model (:mod:`promise.remaining`, what was known at the moment of a promise: the opening facts
updated by the outage's recorded states): categorical fields and attributes as ordinal codes
(rare values pooled, unseen ones missing), the local hour and weekday of the start, and the
number of customers affected when the history records it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from promise.curves import FloatArray
from promise.incident import Incident

_FIELDS = ("service", "cause", "region")
#: Category codes per feature, the rare values' shared code included.
_MAX_LEVELS = 250
#: Up to this many incidents are encoded by dictionary lookups instead of pandas.
_FEW = 32


class OpeningFeatures:
    """Encodes incidents as a matrix: one column per categorical feature, then the time columns.

    ``fit`` learns the categories of ``features`` (Incident fields or attribute names; empty: the
    fields plus every attribute that is not an identifier); ``transform`` encodes. Without
    ``moments`` the opening attributes are read; with them, each incident's attributes as they
    stood at its moment (:meth:`Incident.attributes_at <promise.incident.Incident.attributes_at>`).
    The first :attr:`n_categorical` columns are categorical (for ``categorical_features`` of the
    booster).
    """

    def __init__(self, features: Sequence[str], *, timezone: str, min_frequency: int) -> None:
        self._requested = tuple(features)
        self._zone = ZoneInfo(timezone)
        self._min_frequency = min_frequency
        self.features: tuple[str, ...] = ()
        self._codes: list[dict[str, int]] | None = None
        self._use_affected = False

    @property
    def n_categorical(self) -> int:
        """How many leading columns are categorical codes."""
        return len(self.features)

    def fit(
        self, incidents: Sequence[Incident], moments: Sequence[datetime] | None = None
    ) -> OpeningFeatures:
        """Learn the categories (and whether customer counts are recorded) from ``incidents``."""
        self._learn(incidents, moments)
        return self

    def fit_transform(
        self, incidents: Sequence[Incident], moments: Sequence[datetime] | None = None
    ) -> FloatArray:
        """:meth:`fit`, then :meth:`transform` of the same incidents (reading them once)."""
        return self._encode(incidents, self._learn(incidents, moments))

    def transform(
        self, incidents: Sequence[Incident], moments: Sequence[datetime] | None = None
    ) -> FloatArray:
        """The feature matrix of ``incidents`` (one row each), as known at ``moments``."""
        if self._codes is None:
            raise RuntimeError("OpeningFeatures.fit must be called before transform")
        if len(incidents) <= _FEW:
            return self._with_clock(incidents, self._lookup(incidents, moments))
        return self._encode(incidents, self._columns(incidents, moments))

    def _learn(
        self, incidents: Sequence[Incident], moments: Sequence[datetime] | None
    ) -> list[pd.Series[str]]:
        self.features = self._requested or all_features(incidents, updates=moments is not None)
        columns = self._columns(incidents, moments)
        self._codes = [_codes(column, self._min_frequency) for column in columns]
        # A column that is never filled cannot be binned (ServiceNow has no customer counts).
        self._use_affected = any(i.customers_affected for i in incidents)
        return columns

    def _encode(self, incidents: Sequence[Incident], columns: list[pd.Series[str]]) -> FloatArray:
        assert self._codes is not None
        categories = np.empty((len(incidents), len(columns)))
        for index, (column, codes) in enumerate(zip(columns, self._codes, strict=True)):
            # Values never seen in the fit are missing to the booster.
            categories[:, index] = column.map(codes).to_numpy(dtype=np.float64, na_value=np.nan)
        return self._with_clock(incidents, categories)

    def _lookup(
        self, incidents: Sequence[Incident], moments: Sequence[datetime] | None
    ) -> FloatArray:
        """The category codes of :meth:`_encode`, by dictionary lookups.

        A live promise encodes one outage: pandas' set-up per column then costs ten times
        more than the lookups themselves (about 9 ms a promise on the ServiceNow features).
        """
        assert self._codes is not None
        categories = np.empty((len(incidents), len(self.features)))
        for row, (incident, known) in enumerate(
            zip(incidents, _known(incidents, moments), strict=True)
        ):
            for index, (name, codes) in enumerate(zip(self.features, self._codes, strict=True)):
                value = str(getattr(incident, name)) if name in _FIELDS else known.get(name) or ""
                categories[row, index] = codes.get(value, np.nan)
        return categories

    def _with_clock(self, incidents: Sequence[Incident], categories: FloatArray) -> FloatArray:
        """The category codes followed by the local hour, weekday (and customers affected)."""
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

    def _columns(
        self, incidents: Sequence[Incident], moments: Sequence[datetime] | None
    ) -> list[pd.Series[str]]:
        """One column of values per feature; attributes as known at ``moments`` if given."""
        known = _known(incidents, moments)
        names = [name for name in self.features if name not in _FIELDS]
        # Built from the dicts in one go (pandas' C path): attribute by attribute in Python
        # was the slowest part of a fit on the ServiceNow log.
        attributes = pd.DataFrame.from_records(known, columns=names).fillna("")
        return [
            pd.Series([str(getattr(i, name)) for i in incidents], dtype=object)
            if name in _FIELDS
            else attributes[name].astype(object)
            for name in self.features
        ]


def _known(
    incidents: Sequence[Incident], moments: Sequence[datetime] | None
) -> list[Mapping[str, str]]:
    """Each incident's attributes: as it opened, or as they stood at its moment."""
    if moments is None:
        return [incident.attributes for incident in incidents]
    return [i.attributes_at(m) for i, m in zip(incidents, moments, strict=True)]


def _codes(column: pd.Series[str], min_frequency: int) -> dict[str, int]:
    """Category codes: one per value seen ``min_frequency`` times, the rest sharing the last.

    The booster's categorical splits take at most 255 levels, so only the 249 most frequent
    values get a code of their own.
    """
    counts = column.value_counts()
    frequent = [str(value) for value in counts.index[counts >= min_frequency][: _MAX_LEVELS - 1]]
    codes = {value: code for code, value in enumerate(frequent)}
    rare = len(codes)
    for value in counts.index:
        codes.setdefault(str(value), rare)
    return codes


def all_features(incidents: Sequence[Incident], *, updates: bool = False) -> tuple[str, ...]:
    """The fields plus every attribute that is not an identifier (unique to most incidents).

    With ``updates``, also the attributes that only the incidents' recorded states set.
    """
    values: dict[str, set[str]] = {}
    # Training repeats an incident once per moment asked; its values count once.
    unique = list({id(incident): incident for incident in incidents}.values())
    for incident in unique:
        for name, value in incident.attributes.items():
            values.setdefault(name, set()).add(value)
        for _, state in incident.updates if updates else ():
            for name, value in state.items():
                values.setdefault(name, set()).add(value)
    kept = [
        name
        for name, seen in values.items()
        if name not in _FIELDS and len(seen) <= max(len(unique) // 2, 1)
    ]
    return _FIELDS + tuple(sorted(kept))
