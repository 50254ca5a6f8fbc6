"""Persistence: the ORM models, engines and sessions, and schema migrations."""

from bot.storage.db import (
    SessionFactory,
    dispose_engines,
    get_sessionmaker,
    make_engine,
    make_sessionmaker,
    session_scope,
)
from bot.storage.migrate import upgrade_database

__all__ = [
    "SessionFactory",
    "dispose_engines",
    "get_sessionmaker",
    "make_engine",
    "make_sessionmaker",
    "session_scope",
    "upgrade_database",
]
