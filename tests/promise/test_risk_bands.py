"""Risk bands: outages grouped by a model of what was known at opening, used as a segment."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np

from promise.engine import EngineConfig, PromiseEngine
from promise.incident import Incident
from promise.risk import RiskConfig, RiskModel

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _history(n: int, seed: int = 3) -> list[Incident]:
    """Same service and cause; only the ``crew`` attribute says whether repairs are slow."""
    rng = np.random.default_rng(seed)
    incidents = []
    for k in range(n):
        crew = "night" if k % 2 else "day"
        scale = 600.0 if crew == "night" else 60.0
        started = NOW - timedelta(days=float(rng.uniform(2.0, 200.0)))
        incidents.append(
            Incident(
                id=f"h{k}",
                started_at=started,
                resolved_at=started + timedelta(minutes=float(rng.exponential(scale))),
                service="internet",
                cause="cable_cut",
                region="Utrecht",
                attributes={"crew": crew, "ticket": f"T{k}"},
            )
        )
    return incidents


def _live(crew: str) -> Incident:
    return Incident(
        id=f"live-{crew}",
        started_at=NOW,
        resolved_at=None,
        service="internet",
        cause="cable_cut",
        region="Utrecht",
        attributes={"crew": crew, "ticket": "new"},
    )


def test_bands_separate_what_the_attributes_predict() -> None:
    model = RiskModel(RiskConfig(bands=4)).fit(_history(800), NOW)

    assert model.fitted
    assert "crew" in model.features
    # An identifier (unique per incident) is no feature.
    assert "ticket" not in model.features
    assert int(model.band(_live("day"))) < int(model.band(_live("night")))


def test_too_little_history_puts_everything_in_one_band() -> None:
    model = RiskModel(RiskConfig(min_train=500)).fit(_history(100), NOW)

    assert not model.fitted
    assert model.bands([_live("day"), _live("night")]) == ["0", "0"]


def test_engine_promises_per_band_and_explains_it() -> None:
    config = dataclasses.replace(
        EngineConfig(), segments=(("risk",), ()), risk=RiskConfig(bands=2), conformal=False
    )
    engine = PromiseEngine(config).fit(_history(800), NOW)

    day = engine.promise(_live("day"), NOW, 0.8)
    night = engine.promise(_live("night"), NOW, 0.8)

    assert day.deadline is not None and night.deadline is not None
    assert day.deadline < night.deadline
    # An exponential with a 60 min mean has its 80th percentile near 97 min.
    assert day.remaining_minutes is not None and 60 < day.remaining_minutes < 160
    assert "expected-duration band 1 of 2" in day.explanation.segment
