"""What every router takes from the application: its settings, database sessions and promises.

``create_app`` puts them on ``app.state``; these are the FastAPI dependencies that read them, so
a handler says ``sessions: SessionFactory = Depends(app_sessions)`` instead of reaching into the
request.
"""

from __future__ import annotations

from fastapi import Request

from bot.promises.service import PromiseService
from bot.settings import Settings
from bot.storage.db import SessionFactory


def app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def app_sessions(request: Request) -> SessionFactory:
    """The app's database session factory."""
    sessions: SessionFactory = request.app.state.sessions
    return sessions


def app_promises(request: Request) -> PromiseService:
    """The app's promise service."""
    promises: PromiseService = request.app.state.promises
    return promises
