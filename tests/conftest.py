"""Shared pytest fixtures.

Database fixtures
-----------------
``db_url``     (session) a migrated, empty database; parametrized over SQLite and PostgreSQL.
``db_engine``  (session) an engine on ``db_url``.
``session``    (function) an ORM session on that database; every table is emptied afterwards.

For PostgreSQL a uniquely named database is created on the server at
``BELOFTE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and dropped at the end of the run. An unreachable server fails those tests, unless
``BELOFTE_TEST_SKIP_POSTGRES=1``, which skips them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot.settings import Settings
from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.migrate import upgrade_database
from bot.storage.models import Base

from fake_rasa import FakeRasaServer

POSTGRES_ADMIN_URL = os.environ.get(
    "BELOFTE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _skip_postgres() -> bool:
    return os.environ.get("BELOFTE_TEST_SKIP_POSTGRES", "").strip().lower() in {"1", "true", "yes"}


def _libpq_url(sqlalchemy_url: str) -> str:
    """The psycopg (libpq) form of a SQLAlchemy URL."""
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def _postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped afterwards."""
    if _skip_postgres():
        pytest.skip("BELOFTE_TEST_SKIP_POSTGRES=1")
    admin = _libpq_url(POSTGRES_ADMIN_URL)
    name = f"belofte_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({error}). Start it, point "
            "BELOFTE_TEST_POSTGRES_URL at a server, or set BELOFTE_TEST_SKIP_POSTGRES=1 to skip "
            "the PostgreSQL half of the storage tests.",
            pytrace=False,
        )
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a migrated, empty database: SQLite file or PostgreSQL (parametrized)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("_postgres_url")
        return url
    path: Path = tmp_path_factory.mktemp("db") / "belofte.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test database, disposed at the end of the run."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    """A session on the migrated test database; all rows are deleted after the test."""
    factory = make_sessionmaker(db_engine)
    with factory() as db_session:
        yield db_session
        db_session.rollback()
    _empty_tables(db_engine)


def _empty_tables(engine: Engine) -> None:
    # DELETE beats TRUNCATE here: PostgreSQL's TRUNCATE rewrites files, costly for tiny tables.
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))


# -- API fixtures ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_rasa() -> FakeRasaServer:
    """A simulated Rasa server (see :class:`FakeRasaServer`)."""
    return FakeRasaServer()


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    """Settings with a private home, the fake server's token and an unused Rasa port."""
    return Settings(home=tmp_path, rasa_token="test-token", rasa_port=free_port())
