"""``belofte promise``: load outage history and backtest the promise engine."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from bot.promises.config import engine_config
from bot.settings import get_settings
from promise.history import HistoryError, HistoryLoad, load_history

app = typer.Typer(help="The promise engine: outage history and backtests.", no_args_is_help=True)

FormatOption = Annotated[
    str, typer.Option("--format", help="canonical (one row per outage) or servicenow (event log).")
]
MapOption = Annotated[
    Path | None,
    typer.Option("--map", help="YAML mapping of canonical fields to the file's column names."),
]


def _load(path: Path, format: str, mapping: Path | None) -> HistoryLoad:
    if format not in ("canonical", "servicenow"):
        typer.echo(f"Unknown format {format!r}: use canonical or servicenow.", err=True)
        raise typer.Exit(2)
    try:
        load = load_history(path, format=format, mapping=mapping)  # type: ignore[arg-type]
    except HistoryError as exc:
        typer.echo(f"Cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from exc
    for error in load.errors:
        typer.echo(f"skipped {error}", err=True)
    return load


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="History file (CSV, or the ServiceNow zip).")],
    format: FormatOption = "canonical",
    mapping: MapOption = None,
) -> None:
    """Load outage history into the database; bad rows are reported by line and skipped."""
    from bot.promises.history_store import import_incidents, storage_problem
    from bot.storage.db import get_sessionmaker, session_scope
    from bot.storage.migrate import upgrade_database

    settings = get_settings()
    load = _load(path, format, mapping)
    # Readable but not storable (say, a ServiceNow incident without a category, the service):
    # reported and skipped like a bad row, so one such incident never costs the history.
    storable = []
    refused = 0
    for incident in load.incidents:
        problem = storage_problem(incident)
        if problem is None:
            storable.append(incident)
            continue
        refused += 1
        line = load.lines.get(incident.id)
        where = f"line {line} " if line is not None else ""
        typer.echo(f"skipped {where}({incident.id}): {problem}", err=True)
    upgrade_database(settings.sqlalchemy_url)
    try:
        with session_scope(get_sessionmaker(settings)) as session:
            summary = import_incidents(session, storable, source=f"{format}:{path.name}")
    except ValueError as exc:
        typer.echo(f"Import failed, nothing was changed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"Imported {len(storable)} outages from {load.rows_read} rows "
        f"({summary.created} new, {summary.updated} updated); {len(load.errors)} rows and "
        f"{refused} incidents skipped."
    )


@app.command()
def backtest(
    history: Annotated[Path, typer.Option("--history", help="History file to replay.")],
    format: FormatOption = "canonical",
    mapping: MapOption = None,
    targets: Annotated[
        str, typer.Option("--targets", help="Comma-separated target probabilities.")
    ] = "0.7,0.8,0.9",
    refit_days: Annotated[
        float, typer.Option("--refit-days", help="Refit the models every this many days.")
    ] = 7.0,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Calibration plot PNG (default in BELOFTE_HOME).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Threads of the boosted model's fits (default: every core; the service keeps "
            "one).",
        ),
    ] = None,
) -> None:
    """Replay the history in time order and score the method against three baselines."""
    from promise.backtest import BacktestConfig, dumps, run_backtest, summary_rows

    settings = get_settings()
    try:
        target_values = tuple(float(t) for t in targets.split(",") if t.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"targets must be numbers: {targets}") from exc
    if not target_values or not all(0.0 < t < 1.0 for t in target_values):
        raise typer.BadParameter("every target must be between 0 and 1")
    load = _load(history, format, mapping)
    plot_path = plot or settings.resolved_home / "promise" / "calibration.png"
    engine = engine_config(settings)
    # A replay is a batch job: it may take every core.
    cores = threads or os.cpu_count() or 1
    engine = replace(engine, remaining=replace(engine.remaining, threads=cores))
    config = BacktestConfig(targets=target_values, refit_days=refit_days, engine=engine)
    try:
        result = run_backtest(load.incidents, config, plot=plot_path)
    except ValueError as exc:
        typer.echo(f"Backtest impossible: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(dumps(result))
        return
    typer.echo(
        f"{'forecaster':<16} {'target':>6} {'kept':>7} {'95% CI':>15} "
        f"{'median h':>9} {'pinball':>8} {'n':>6} {'no time':>7}"
    )
    for name, target, f in summary_rows(result):
        ci = f"{f['kept_ci'][0]:.3f}-{f['kept_ci'][1]:.3f}"
        median = f["median_promise_minutes"]
        typer.echo(
            f"{name:<16} {target:>6} {f['kept_rate'] or float('nan'):>7.3f} {ci:>15} "
            f"{(median or float('nan')) / 60:>9.1f} {f['pinball'] or float('nan'):>8.2f} "
            f"{f['n']:>6} {f['no_clock_time']:>7}"
        )
    typer.echo(f"Calibration plot: {plot_path}  ({result['run']['seconds']} s)")
