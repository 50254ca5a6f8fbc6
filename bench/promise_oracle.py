"""How short can a calibrated promise on the demo history be? The oracle's answer.

The demo history (:mod:`bot.demo.seed`) draws each outage's duration from its cause's
distribution and from nothing else. An oracle that knows those distributions exactly promises,
for an outage of cause ``c`` open ``s`` minutes, the ``τ``-quantile of the cause's durations
longer than ``s``, minus ``s``: no method that learns from the history can be both calibrated and
sharper on average. This prints the oracle's median promise at the backtest's promise moments,
next to the static quantile of all durations, so the engine's figures can be read against what
the data allows.

    .venv/bin/python bench/promise_oracle.py [--targets 0.7,0.8,0.9] [--draws 400000]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import numpy as np

from bot.demo.history import demo_incidents
from bot.demo.seed import CAUSE_MODELS
from promise.backtest import BacktestConfig, backtest_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.7,0.8,0.9")
    parser.add_argument("--draws", type=int, default=400_000, help="draws per cause")
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    rng = np.random.default_rng(0)
    draws = {m.cause: np.sort(m.duration.sample(rng, args.draws)) for m in CAUSE_MODELS}
    # The static quantile pools the causes as often as they occur.
    total = sum(m.per_year for m in CAUSE_MODELS)
    pooled = np.sort(
        np.concatenate(
            [m.duration.sample(rng, int(args.draws * m.per_year / total)) for m in CAUSE_MODELS]
        )
    )
    incidents = demo_incidents(datetime.now(UTC))
    points, _ = backtest_points(incidents, BacktestConfig())
    print(f"{len(incidents)} demo outages, {len(points)} promise moments")
    print("| target | oracle per cause: median promise | static quantile of all outages |")
    print("|---|---:|---:|")
    for target in targets:
        oracle, static = [], []
        for point in points:
            for sample, out in ((draws[point.incident.cause], oracle), (pooled, static)):
                longer = sample[np.searchsorted(sample, point.open_minutes, side="right") :]
                out.append(float(np.quantile(longer, target)) - point.open_minutes)
        print(f"| {target} | {np.median(oracle) / 60:.2f} h | {np.median(static) / 60:.2f} h |")


if __name__ == "__main__":
    main()
