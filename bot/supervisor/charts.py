"""The calibration charts as one SVG, drawn on the server with matplotlib (Agg, no network).

Three panels: the kept rate per ISO week and per service, each with its Wilson 95 % interval
against the target, and promised against actual time for every scored promise. Labels come from
the page's ui texts (``labels``), so the chart speaks the user's language.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib
from matplotlib.figure import Figure

from bot.supervisor.report import Calibration, KeptRate

# No display, no GUI toolkit. The charts below use a bare Figure (never pyplot), which draws
# with the Agg/SVG canvases whatever backend is selected; this keeps pyplot users headless too.
matplotlib.use("Agg")

_KEPT = "#2f7d32"
_BROKEN = "#c62828"
_RATE = "#1f5fa8"
_TARGET = "#555555"


def _errors(rates: tuple[KeptRate, ...]) -> tuple[list[float], list[float], list[float]]:
    values, below, above = [], [], []
    for rate in rates:
        value = rate.rate if rate.rate is not None else float("nan")
        values.append(value)
        below.append(value - rate.low if rate.low is not None else 0.0)
        above.append(rate.high - value if rate.high is not None else 0.0)
    return values, below, above


def calibration_svg(data: Calibration, labels: Mapping[str, str]) -> bytes:
    """The charts of ``data`` as SVG; ``labels`` holds the texts (see ``ui/*.yml``)."""
    # A Figure without pyplot: no global state, safe in FastAPI's thread pool.
    figure = Figure(figsize=(12, 4), layout="tight")
    week_axes, service_axes, scatter_axes = figure.subplots(1, 3)

    weeks = data.by_week
    positions = list(range(len(weeks)))
    values, below, above = _errors(weeks)
    week_axes.errorbar(
        positions, values, yerr=[below, above], fmt="o-", color=_RATE, capsize=3,
        label=labels["kept_rate"],
    )  # fmt: skip
    week_targets = [rate.target if rate.target is not None else float("nan") for rate in weeks]
    week_axes.plot(positions, week_targets, "--", color=_TARGET, label=labels["target"])
    week_axes.set_xticks(positions, [rate.key.split("-")[-1] for rate in weeks], fontsize=8)
    week_axes.set_xlim(-0.5, max(len(weeks), 1) - 0.5)
    week_axes.set_ylim(0.0, 1.05)
    week_axes.set_title(labels["per_week"])
    week_axes.set_xlabel(labels["week"])
    week_axes.set_ylabel(labels["kept_rate"])
    week_axes.grid(True, alpha=0.3)
    week_axes.legend(loc="lower left", fontsize=8)

    services = data.by_service
    if not services:
        service_axes.text(
            0.5, 0.5, labels["no_data"], ha="center", va="center", transform=service_axes.transAxes
        )
        service_axes.set_xticks([])
    positions = list(range(len(services)))
    values, below, above = _errors(services)
    service_axes.errorbar(
        positions, values, yerr=[below, above], fmt="o", color=_RATE, capsize=4,
        label=labels["kept_rate"],
    )  # fmt: skip
    targets = [data.targets.get(rate.key, float("nan")) for rate in services]
    service_axes.scatter(
        positions, targets, marker="_", s=400, color=_TARGET, label=labels["target"]
    )
    service_axes.set_xticks(
        positions, [f"{rate.key}\n(n={rate.n})" for rate in services], fontsize=8
    )
    service_axes.set_xlim(-0.6, max(len(services), 1) - 0.4)
    service_axes.set_ylim(0.0, 1.05)
    service_axes.set_title(labels["per_service"])
    service_axes.grid(True, axis="y", alpha=0.3)
    if services:
        service_axes.legend(loc="lower left", fontsize=8)

    for kept, color, label in ((True, _KEPT, labels["kept"]), (False, _BROKEN, labels["broken"])):
        chosen = [p for p in data.points if p.kept is kept]
        scatter_axes.scatter(
            [max(p.promised_minutes, 1.0) / 60.0 for p in chosen],
            [max(p.actual_minutes, 1.0) / 60.0 for p in chosen],
            s=9, alpha=0.6, color=color, label=f"{label} ({len(chosen)})",
        )  # fmt: skip
    if data.points:
        longest = max(max(p.promised_minutes, p.actual_minutes) for p in data.points) / 60.0
        shortest = min(max(min(p.promised_minutes, p.actual_minutes), 1.0) for p in data.points)
        line = [shortest / 60.0, max(longest, 1.0)]
        scatter_axes.plot(line, line, "--", color=_TARGET, linewidth=1)
        scatter_axes.set_xscale("log")
        scatter_axes.set_yscale("log")
        scatter_axes.legend(loc="upper left", fontsize=8)
    else:
        scatter_axes.text(
            0.5, 0.5, labels["no_data"], ha="center", va="center", transform=scatter_axes.transAxes
        )
    scatter_axes.set_title(labels["promised_vs_actual"])
    scatter_axes.set_xlabel(labels["promised_hours"])
    scatter_axes.set_ylabel(labels["actual_hours"])
    scatter_axes.grid(True, alpha=0.3)

    buffer = io.BytesIO()
    # Text stays text (smaller, selectable); a fixed hash salt makes the output reproducible.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "belofte"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
