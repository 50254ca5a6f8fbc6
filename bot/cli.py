"""The ``belofte`` command line. ``belofte --help`` lists the subcommands."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bot.accounts.cli import app as users_app
from bot.channels.cli import app as telegram_app
from bot.promises.cli import app as promise_app
from bot.settings import get_settings
from knowledge.cli import app as knowledge_app

app = typer.Typer(
    help="Belofte: a contact-center assistant with grounded answers and calibrated promises.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data for a realistic provider.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(knowledge_app, name="knowledge")
app.add_typer(promise_app, name="promise")
app.add_typer(telegram_app, name="telegram")
app.add_typer(users_app, name="users")  # accounts of the web pages (issue 6)


@app.command()
def run(
    no_train: Annotated[
        bool, typer.Option("--no-train", help="Use the existing model even if data changed.")
    ] = False,
) -> None:
    """Migrate, seed demo data on first start, train if needed, start Rasa and the service."""
    from bot.runner import run as run_all

    raise typer.Exit(run_all(get_settings(), train=not no_train))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default BELOFTE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default BELOFTE_PORT).")] = None,
) -> None:
    """Run only the Belofte service (API, console, action server) against a running Rasa."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "bot.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
    )


@app.command()
def worker(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Log every job (arq's own lines).")
    ] = False,
) -> None:
    """Run a delivery worker (arq on BELOFTE_REDIS_URL): sends the outbox to subscribers."""
    settings = get_settings()
    if not settings.redis_url:
        typer.echo(
            "BELOFTE_REDIS_URL is not set: workers need Redis. Without it the service delivers "
            "the outbox itself.",
            err=True,
        )
        raise typer.Exit(2)
    from bot.delivery.worker import run_worker

    run_worker(settings, verbose=verbose)


@app.command()
def train(
    force: Annotated[bool, typer.Option("--force", help="Train even if nothing changed.")] = False,
) -> None:
    """Train the Rasa model when the data, config or custom components changed."""
    from bot.rasa_project import RasaProject

    project = RasaProject(get_settings())
    if project.train(force=force):
        typer.echo(f"Trained {project.model_path}")
    else:
        typer.echo(f"Model is up to date: {project.model_path}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    from bot.storage.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.sqlalchemy_url)
    typer.echo("Database is up to date.")


@demo_app.command("seed")
def demo_seed(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 7,
) -> None:
    """Create the demo provider: active outages and two years of outage history."""
    from bot.demo.seed import is_seeded, seed_demo
    from bot.storage.db import get_sessionmaker, session_scope
    from bot.storage.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.sqlalchemy_url)
    with session_scope(get_sessionmaker(settings)) as session:
        if is_seeded(session):
            typer.echo("Demo data is already loaded.")
            return
        # With the promises given in the last weeks, for the supervisors' page (issue 6).
        report = seed_demo(
            session, now=datetime.now(UTC), seed=seed, promise_history=True, settings=settings
        )
    typer.echo(f"Demo data loaded: {report.outages} outages, {len(report.active)} active")


@demo_app.command("history")
def demo_history(
    out: Annotated[Path, typer.Argument(help="CSV file to write (canonical history format).")],
    seed: Annotated[int, typer.Option(help="Random seed, as for `demo seed`.")] = 7,
) -> None:
    """Write the demo provider's outage history as a canonical CSV (for backtests)."""
    from bot.demo.history import demo_incidents
    from promise.history import write_canonical_csv

    count = write_canonical_csv(demo_incidents(datetime.now(UTC), seed=seed), out)
    typer.echo(f"Wrote {count} outages to {out}")


def main() -> None:
    """Entry point of the ``belofte`` script."""
    app()
