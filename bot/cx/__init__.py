"""The CX feedback loop (issue 6): the "Feedback to CX" dialog, the CX inbox, themes, and
forwarding each new observation to a webhook.

- :mod:`bot.feedback.service`: recording observations (agents' and customers') and moving them
  through the inbox (states, comments), in the caller's transaction.
- :mod:`bot.cx.routes`: ``POST /api/v1/feedback``, the ``/cx`` page and its JSON API, the CSV.
- :mod:`bot.cx.themes`: grouping by meaning with the project's encoder (cached vectors).
- :mod:`bot.cx.forwarding`: the webhook forwards, claimed from the database, with retries.
- ``templates/feedback_dialog.html`` + ``static/feedback.js``: the dialog on every page
  (included by ``bot/web/templates/base.html``); ``templates/cx.html`` + ``static/cx.js``.

:func:`install` wires it into the app; :func:`start` / :func:`stop` run the forwarder in the
service's lifespan.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bot.cx.forwarding import WebhookForwarder
from bot.cx.themes import ThemeService
from bot.settings import Settings
from knowledge.encoders import Encoder

__all__ = ["ThemeService", "WebhookForwarder", "install", "start", "stop"]


def install(app: FastAPI, settings: Settings, knowledge: Any = None) -> None:
    """Add the CX routes and the theme service to ``app``.

    The themes reuse the knowledge retriever's encoder when there is one (one model in memory,
    and the same vectors' meaning); else they build one from the same settings on first use.
    """
    from bot.cx.routes import router

    encoder = getattr(knowledge, "encoder", None)
    app.state.cx_themes = ThemeService(settings, encoder if isinstance(encoder, Encoder) else None)
    app.state.cx_forwarder = None
    app.include_router(router)


def start(app: FastAPI) -> None:
    """Start forwarding observations to the webhook, if one is configured."""
    settings: Settings = app.state.settings
    if settings.cx_webhook_url is None:
        app.state.cx_forwarder = None
        return
    forwarder = WebhookForwarder(settings, app.state.sessions)
    app.state.cx_forwarder = forwarder
    forwarder.start()


async def stop(app: FastAPI) -> None:
    """Stop the forwarder (what it had claimed is taken over after the lease)."""
    forwarder: WebhookForwarder | None = getattr(app.state, "cx_forwarder", None)
    app.state.cx_forwarder = None
    if forwarder is not None:
        await forwarder.stop()
