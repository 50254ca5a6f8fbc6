"""What the booster reads of an outage: category codes, the clock, the state when asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from promise.features import OpeningFeatures
from promise.incident import Incident

START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Amsterdam


def _incident(index: int, group: str, diagnosis: str | None = None) -> Incident:
    updates = (
        () if diagnosis is None else ((START + timedelta(minutes=30), {"diagnosis": diagnosis}),)
    )
    return Incident(
        id=f"INC{index}",
        started_at=START,
        resolved_at=START + timedelta(hours=2),
        service="internet",
        cause="unknown",
        region="NL",
        attributes={"group": group},
        updates=updates,
    )


def test_fit_transform_reads_the_same_as_fit_then_transform() -> None:
    incidents = [_incident(i, "field" if i % 2 else "desk", "cable") for i in range(20)]
    moments = [START + timedelta(minutes=60)] * 20
    once = OpeningFeatures((), timezone="Europe/Amsterdam", min_frequency=2)
    twice = OpeningFeatures((), timezone="Europe/Amsterdam", min_frequency=2)

    encoded = once.fit_transform(incidents, moments)

    np.testing.assert_array_equal(
        encoded, twice.fit(incidents, moments).transform(incidents, moments)
    )
    assert once.features == ("service", "cause", "region", "diagnosis", "group")
    assert encoded.shape == (20, once.n_categorical + 2)  # + local hour and weekday
    assert encoded[0, -2:].tolist() == [9.0, 0.0]


def test_unseen_values_and_states_not_yet_recorded_are_told_apart() -> None:
    incidents = [_incident(i, "field", "cable") for i in range(10)]
    features = OpeningFeatures((), timezone="Europe/Amsterdam", min_frequency=2)
    features.fit(incidents, [START + timedelta(minutes=60)] * 10)
    diagnosis = features.features.index("diagnosis")
    group = features.features.index("group")

    new_group = features.transform([_incident(99, "vendor", "cable")], [START + timedelta(hours=1)])
    early = features.transform(incidents[:1], [START + timedelta(minutes=10)])

    assert np.isnan(new_group[0, group])  # never seen in the fit: missing to the booster
    assert not np.isnan(new_group[0, diagnosis])
    # Ten minutes in, the diagnosis was not recorded yet: not "cable" (the fit never saw an
    # outage an hour in without one, so it is missing too).
    assert np.isnan(early[0, diagnosis])


def test_a_few_outages_are_encoded_as_a_batch_would_be() -> None:
    # Live promises encode one outage by dictionary lookups, a fit thousands with pandas: the
    # two must agree, unseen and not yet recorded values included.
    incidents = [
        _incident(i, ["field", "desk", "vendor"][i % 3], [None, "cable", "power"][i % 3])
        for i in range(60)
    ]
    moments = [START + timedelta(minutes=10 if i % 4 == 0 else 60) for i in range(60)]
    features = OpeningFeatures((), timezone="Europe/Amsterdam", min_frequency=5)
    features.fit(incidents[:30], moments[:30])
    probes = [*incidents[:30], _incident(99, "unheard of", "flood")] * 2
    probe_moments = [*moments[:30], START + timedelta(hours=1)] * 2

    batch = features.transform(probes, probe_moments)  # more than a few: pandas
    one_by_one = np.vstack(
        [features.transform([p], [m]) for p, m in zip(probes, probe_moments, strict=True)]
    )

    np.testing.assert_array_equal(one_by_one, batch)  # NaN where NaN
    assert np.isnan(batch[30]).sum() == 2  # the unseen group and diagnosis
