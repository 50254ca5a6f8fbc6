"""Replay history in time order, promise with only what was known then, and score the promises.

Each incident is promised to on opening and again after 1 h and 4 h if it is still open (the
moments customers ask). Forecasters are refitted every ``refit_days`` of simulated time on the
history known at that moment; outages resolved later count as open then. A promise is *kept*
when the outage was resolved by its (rounded) deadline, *broken* when it was not; promises whose
deadline lies beyond the end of the data while the outage is still open cannot be scored and are
left out. The first ``warmup_days`` only feed the history.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from promise.baselines import (
    EngineForecaster,
    Forecaster,
    LogNormalAFT,
    StaticQuantile,
    km_by_cause,
)
from promise.engine import CHECKPOINTS_MINUTES, EngineConfig
from promise.incident import Incident

#: Targets of the calibration plot.
PLOT_TARGETS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """How the replay runs."""

    targets: tuple[float, ...] = (0.7, 0.8, 0.9)
    checkpoints: tuple[float, ...] = CHECKPOINTS_MINUTES
    warmup_days: float = 60.0
    refit_days: float = 7.0
    #: The AFT baseline is slow to fit; it is refitted this often instead.
    aft_refit_days: float = 30.0
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass(frozen=True, slots=True)
class PromiseMoment:
    """One promise of a replay: the outage, when it was asked for, how long it was open then."""

    incident: Incident
    asked_at: datetime
    open_minutes: float


@dataclass
class _Scores:
    kept: list[bool] = field(default_factory=list)
    promise_minutes: list[float] = field(default_factory=list)
    pinball: list[float] = field(default_factory=list)
    no_clock_time: int = 0
    by_group: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    #: (kept, promise minutes) per moment asked (minutes open: 0, 60, 240).
    by_open: dict[float, list[tuple[bool, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def _wilson(kept: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    interval = binomtest(kept, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (round(float(interval.low), 4), round(float(interval.high), 4))


def _summary(scores: _Scores) -> dict[str, Any]:
    n = len(scores.kept)
    kept = int(sum(scores.kept))
    return {
        "kept_rate": round(kept / n, 4) if n else None,
        "kept_ci": list(_wilson(kept, n)),
        "median_promise_minutes": (
            round(float(np.median(scores.promise_minutes)), 1) if scores.promise_minutes else None
        ),
        "pinball": round(float(np.mean(scores.pinball)), 2) if scores.pinball else None,
        "n": n,
        "no_clock_time": scores.no_clock_time,
        "kept_rate_by": {
            group: {"kept_rate": round(sum(values) / len(values), 4), "n": len(values)}
            for group, values in sorted(scores.by_group.items())
        },
        # The moments differ: outages still open after 1 h or 4 h are the slow ones, so their
        # promises are longer; published figures are often for promises on opening alone.
        "by_open_minutes": {
            f"{minutes:g}": {
                "kept_rate": round(sum(k for k, _ in values) / len(values), 4),
                "median_promise_minutes": round(float(np.median([m for _, m in values])), 1),
                "n": len(values),
            }
            for minutes, values in sorted(scores.by_open.items())
        },
    }


def backtest_points(
    incidents: Sequence[Incident], config: BacktestConfig
) -> tuple[list[PromiseMoment], datetime]:
    """The moments promises are made in a replay, in time order, and the end of the data."""
    ordered = sorted(incidents, key=lambda i: i.started_at)
    data_end = max(
        max(i.started_at for i in ordered),
        max(
            (i.resolved_at for i in ordered if i.resolved_at is not None),
            default=ordered[0].started_at,
        ),
    )
    start = ordered[0].started_at + timedelta(days=config.warmup_days)
    points = []
    for incident in ordered:
        if incident.started_at < start:
            continue
        for minutes in config.checkpoints:
            asked_at = incident.started_at + timedelta(minutes=minutes)
            if asked_at > data_end:
                continue
            if incident.resolved_at is not None and incident.resolved_at <= asked_at:
                continue
            points.append(PromiseMoment(incident, asked_at, minutes))
    points.sort(key=lambda p: p.asked_at)
    return points, data_end


def run_backtest(
    incidents: Sequence[Incident],
    config: BacktestConfig | None = None,
    *,
    plot: Path | None = None,
) -> dict[str, Any]:
    """Replay ``incidents`` and score the method and the baselines at every target.

    Returns ``{"method": {"0.8": {...}}, "baselines": {"static_quantile": {"0.8": {...}},
    "km_by_cause": ..., "aft": ...}, "calibration": ..., "run": ...}`` where each ``{...}`` holds
    ``kept_rate``, ``kept_ci`` (Wilson 95 %), ``median_promise_minutes``, ``pinball`` (hours,
    at the target), ``n`` (scored promises), ``no_clock_time`` and ``kept_rate_by`` service and
    cause. With ``plot``, a calibration plot (target against kept rate) is written there.
    """
    config = config or BacktestConfig()
    started = time.perf_counter()
    points, data_end = backtest_points(incidents, config)
    if not points:
        raise ValueError("the history is too short for a backtest after the warm-up period")
    timezone = config.engine.timezone
    forecasters: list[tuple[Forecaster, float]] = [
        (EngineForecaster(config.engine), config.refit_days),
        (StaticQuantile(timezone), config.refit_days),
        (km_by_cause(config.engine), config.refit_days),
        (LogNormalAFT(timezone, min_count=config.engine.min_evidence), config.aft_refit_days),
    ]
    targets = tuple(sorted(set(config.targets) | set(PLOT_TARGETS)))
    scores: dict[str, dict[float, _Scores]] = {
        f.name: {t: _Scores() for t in targets} for f, _ in forecasters
    }
    next_fit: dict[str, datetime] = {}
    fit_seconds: dict[str, float] = defaultdict(float)
    for point in points:
        for forecaster, refit_days in forecasters:
            due = next_fit.get(forecaster.name)
            if due is None or point.asked_at >= due:
                tick = time.perf_counter()
                forecaster.fit(incidents, point.asked_at)
                fit_seconds[forecaster.name] += time.perf_counter() - tick
                next_fit[forecaster.name] = point.asked_at + timedelta(days=refit_days)
            deadlines = forecaster.deadlines(point.incident, point.asked_at, targets)
            for target, deadline in zip(targets, deadlines, strict=True):
                _score(scores[forecaster.name][target], point, deadline, target, data_end)
    result: dict[str, Any] = {
        "method": {str(t): _summary(scores["method"][t]) for t in config.targets},
        "baselines": {
            f.name: {str(t): _summary(scores[f.name][t]) for t in config.targets}
            for f, _ in forecasters[1:]
        },
        "calibration": {
            f.name: {str(t): _summary(scores[f.name][t])["kept_rate"] for t in PLOT_TARGETS}
            for f, _ in forecasters
        },
        "run": {
            "incidents": len(incidents),
            "promise_points": len(points),
            "first_point": points[0].asked_at.isoformat(),
            "data_end": data_end.isoformat(),
            "refit_days": config.refit_days,
            "aft_refit_days": config.aft_refit_days,
            "fit_seconds": {k: round(v, 1) for k, v in fit_seconds.items()},
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    if plot is not None:
        write_calibration_plot(result["calibration"], plot)
    return result


def _score(
    scores: _Scores,
    point: PromiseMoment,
    deadline: datetime | None,
    target: float,
    data_end: datetime,
) -> None:
    if deadline is None:
        scores.no_clock_time += 1
        return
    resolved_at = point.incident.resolved_at
    if resolved_at is not None and resolved_at <= data_end:
        kept = resolved_at <= deadline
        actual = (resolved_at - point.asked_at).total_seconds() / 60.0
    elif deadline < (point.incident.censored_at or data_end):
        # Still open when the data (or the record) ends but past its deadline: broken; the
        # remaining time is known only to exceed what has passed, which the pinball loss uses.
        kept = False
        actual = ((point.incident.censored_at or data_end) - point.asked_at).total_seconds() / 60.0
    else:
        return
    promised = (deadline - point.asked_at).total_seconds() / 60.0
    scores.kept.append(kept)
    scores.promise_minutes.append(promised)
    error = (actual - promised) / 60.0
    scores.pinball.append(max(target * error, (target - 1.0) * error))
    scores.by_group[f"service={point.incident.service}"].append(kept)
    scores.by_group[f"cause={point.incident.cause}"].append(kept)
    scores.by_open[point.open_minutes].append((kept, promised))


def write_calibration_plot(calibration: dict[str, dict[str, float | None]], path: Path) -> None:
    """Target against kept rate for every forecaster, with the diagonal, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 6))
    axes.plot([0.45, 1.0], [0.45, 1.0], color="grey", linestyle="--", label="perfect")
    for name, rates in calibration.items():
        points = [(float(t), r) for t, r in rates.items() if r is not None]
        axes.plot([t for t, _ in points], [r for _, r in points], marker="o", label=name)
    axes.set_xlabel("target probability")
    axes.set_ylabel("kept rate in backtest")
    axes.set_xlim(0.45, 1.0)
    axes.set_ylim(0.3, 1.0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title("Promise calibration")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def dumps(result: dict[str, Any]) -> str:
    """The backtest result as indented JSON."""
    return json.dumps(result, indent=2, sort_keys=False)


def summary_rows(result: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """(forecaster, target, figures) for the method and every baseline, for printing tables."""
    for target, figures in result["method"].items():
        yield "method", target, figures
    for name, per_target in result["baselines"].items():
        for target, figures in per_target.items():
            yield name, target, figures
