"""Latency of one promise from a fitted engine, and the time a fit takes.

Example::

    .venv/bin/python bench/promise_latency.py --history ../shared/datasets/servicenow-incidents/\
incident_event_log.zip --format servicenow --segments "priority,service;priority;" \
        [--estimator boosted]

Fits the engine once at the end of the history, then asks for promises for incidents of the
history as if each were open for 0 min, 1 h or 4 h (cold: the first promise of a segment fits
its curve; warm: every later one), and prints p50/p95/max in milliseconds as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from promise.engine import EngineConfig, PromiseEngine
from promise.history import load_history


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--format", default="canonical", choices=["canonical", "servicenow"])
    parser.add_argument(
        "--segments", default=None, help="';'-separated segments of ','-separated features"
    )
    parser.add_argument("--estimator", default="survival", choices=["survival", "boosted"])
    parser.add_argument("--promises", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    incidents = load_history(args.history, format=args.format).incidents
    config = EngineConfig(timezone="UTC", estimator=args.estimator)
    if args.segments is not None:
        config = replace(
            config,
            segments=tuple(
                tuple(f for f in part.split(",") if f) for part in args.segments.split(";")
            ),
        )
    now = max(i.resolved_at or i.started_at for i in incidents)
    tick = time.perf_counter()
    engine = PromiseEngine(config).fit(incidents, now)
    fit_seconds = time.perf_counter() - tick

    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(incidents), size=args.promises)
    opens = rng.choice([0.0, 60.0, 240.0], size=args.promises)
    timings = []
    for index, open_minutes in zip(picks, opens, strict=True):
        incident = incidents[int(index)]
        live = replace(
            incident,
            started_at=now - timedelta(minutes=float(open_minutes)),
            resolved_at=None,
        )
        tick = time.perf_counter()
        engine.promise(live, now, 0.8)
        timings.append((time.perf_counter() - tick) * 1000.0)
    first_seen: set[tuple[str, ...]] = set()
    warm = []
    for index, ms in zip(picks, timings, strict=True):
        key = tuple(incidents[int(index)].feature(f) for s in config.segments for f in s)
        if key in first_seen:
            warm.append(ms)
        first_seen.add(key)
    report = {
        "incidents": len(incidents),
        "fit_seconds": round(fit_seconds, 2),
        "promises": len(timings),
        "all_ms": _percentiles(timings),
        "warm_ms": _percentiles(warm),
    }
    print(json.dumps(report, indent=2))


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p95": round(float(np.percentile(array, 95)), 3),
        "max": round(float(array.max()), 3),
    }


if __name__ == "__main__":
    main()
