"""Run the Alembic migrations from Python (``belofte`` commands, tests, first start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

#: ``bot/`` inside the source tree or the installed package: alembic.ini and migrations/ live here.
_BOT_DIR = Path(__file__).resolve().parent.parent


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for Belofte's migrations that works from any working directory.

    ``url`` becomes ``sqlalchemy.url``; without it ``env.py`` falls back to the settings.
    """
    config = Config(str(_BOT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(_BOT_DIR / "migrations"))
    if url is not None:
        # ConfigParser interpolation would choke on the %-escapes of URL-encoded passwords.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # Called from Python, the application owns logging: env.py must not reconfigure it.
    config.attributes["configure_logging"] = False
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (``alembic upgrade head``)."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    from bot.storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
