"""Engines and sessions.

Nothing here connects at import time: callers build an engine from a URL (``make_engine``) or
from the settings (``get_sessionmaker``), and use ``session_scope`` for a unit of work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings, get_settings

#: The type of a session factory bound to one engine.
SessionFactory = sessionmaker[Session]

_factories: dict[str, SessionFactory] = {}
_factories_lock = threading.Lock()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless asked, per connection.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # Wait for a concurrent writer instead of failing at once with "database is locked".
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _sqlite_wal_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while a worker writes; it is persistent per file but cheap
    # to re-assert.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url`` with Belofte's connection settings.

    SQLite: foreign keys enforced, WAL journal (file databases), a busy timeout, and the parent
    folder created. PostgreSQL (and anything else): ``pool_pre_ping`` so connections dropped by a
    database restart are replaced transparently.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
        if not in_memory and database is not None:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo)
        event.listen(engine, "connect", _sqlite_on_connect)
        if not in_memory:
            event.listen(engine, "connect", _sqlite_wal_on_connect)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> SessionFactory:
    """A session factory for ``engine``; objects stay usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_sessionmaker(settings: Settings | None = None) -> SessionFactory:
    """The process-wide session factory for the configured database (created on first use).

    One engine (and connection pool) per URL is kept for the life of the process.
    """
    url = (settings or get_settings()).sqlalchemy_url
    with _factories_lock:
        factory = _factories.get(url)
        if factory is None:
            factory = make_sessionmaker(make_engine(url))
            _factories[url] = factory
        return factory


def dispose_engines() -> None:
    """Close every pooled connection made by :func:`get_sessionmaker` and forget the engines."""
    with _factories_lock:
        for factory in _factories.values():
            bind = factory.kw.get("bind")
            if isinstance(bind, Engine):
                bind.dispose()
        _factories.clear()


@contextmanager
def session_scope(factory: SessionFactory | None = None) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises.

    Uses the settings' database unless ``factory`` is given.
    """
    session = (factory or get_sessionmaker())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
