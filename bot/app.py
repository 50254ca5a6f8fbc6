"""The Belofte service: HTTP API, console and Rasa action server in one ASGI application.

Run it with ``belofte serve`` (or ``belofte run`` to start Rasa with it). ``create_app`` takes its
collaborators as arguments so tests can hand it a dialogue engine of their own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from rasa_sdk.executor import ActionExecutor

from actions import ActionContext, build_actions
from bot import __version__, cx
from bot.accounts.routes import install as install_accounts
from bot.actions_server import build_router
from bot.api import conversations, customers, handoffs, health, outages, suggestions
from bot.channels.gateway import ChannelGateway
from bot.channels.routes import router as channels_router
from bot.console import routes as console_routes
from bot.conversation.service import ConversationService
from bot.delivery import embedded_delivery
from bot.delivery.api import router as outbox_router
from bot.language import LanguageIdentifier
from bot.promises.service import PromiseService
from bot.promises.watch import PromiseWatch
from bot.rasa_client import DialogueEngine, RasaClient
from bot.settings import PROJECT_ROOT, Settings, get_settings
from bot.storage.db import SessionFactory, get_sessionmaker
from bot.suggestions.knowledge import KnowledgeSuggester
from bot.supervisor import routes as supervisor_routes
from bot.web.i18n import BOT_DIR, PAGE_PACKAGES

logger = logging.getLogger(__name__)


def load_knowledge(settings: Settings) -> KnowledgeSuggester | None:
    """The knowledge retriever over the built index, or None (with a warning) if there is none."""
    from knowledge import Retriever
    from knowledge.index import IndexNotBuiltError

    try:
        return Retriever.from_settings(settings)
    except IndexNotBuiltError as exc:
        logger.warning("No knowledge-base suggestions: %s", exc)
        return None


def create_app(
    settings: Settings | None = None,
    *,
    dialogue: DialogueEngine | None = None,
    sessions: SessionFactory | None = None,
    knowledge: KnowledgeSuggester | None = None,
    promises: PromiseService | None = None,
    channels: ChannelGateway | None = None,
) -> FastAPI:
    """The ASGI app. Defaults: the configured database, Rasa server and knowledge index.

    ``promises`` defaults to a :class:`PromiseService` on the settings (its engine is fitted on
    first use, and refitted in the background when the history changes); the lifespan runs its
    renewal loop (:class:`PromiseWatch`). ``channels`` defaults to a :class:`ChannelGateway`
    (Telegram, SMS, WhatsApp) on the settings.
    """
    settings = settings or get_settings()
    sessions = sessions or get_sessionmaker(settings)
    promises = promises or PromiseService(settings, refit_sessions=sessions)
    channels = channels or ChannelGateway(settings, sessions)
    knowledge = knowledge or load_knowledge(settings)
    identifier = LanguageIdentifier.from_nlu_data(
        PROJECT_ROOT / "data" / "nlu", settings.language_min_confidence
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = dialogue is None
        engine: DialogueEngine = dialogue or RasaClient(settings)
        app.state.dialogue = engine
        app.state.conversations = ConversationService(
            settings, sessions, engine, identifier, knowledge
        )
        watch = PromiseWatch(promises, sessions, settings.promise_watch_interval_seconds)
        app.state.promise_watch = watch
        watch.start()
        await channels.start(app.state.conversations)
        # Proactive messages (issue 5): without Redis the service delivers the outbox itself.
        delivery = embedded_delivery(settings, sessions, channels)
        app.state.delivery = delivery
        if delivery is not None:
            delivery.start()
        cx.start(app)  # observations to the CX webhook (issue 6)
        try:
            yield
        finally:
            await cx.stop(app)
            if delivery is not None:
                await delivery.stop()
            await channels.stop()
            await watch.stop()
            if owned and isinstance(engine, RasaClient):
                await engine.aclose()

    app = FastAPI(
        title="Belofte",
        version=__version__,
        description="Grounded answers and calibrated outage promises for contact centers.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.promises = promises
    app.state.channels = channels

    executor = ActionExecutor()
    for action in build_actions(
        ActionContext(settings=settings, sessions=sessions, knowledge=knowledge, promises=promises)
    ):
        executor.register_action(action)
    app.include_router(build_router(executor))
    app.include_router(conversations.router)
    app.include_router(suggestions.router)
    app.include_router(handoffs.router)  # handed-over conversations for the console (issue 6)
    app.include_router(outages.router)
    app.include_router(customers.router)  # one customer across channels (issue 5)
    app.include_router(outbox_router)  # dead letters and queue health (issue 5)
    app.include_router(health.router)
    app.include_router(channels_router)
    app.include_router(console_routes.router)
    app.include_router(supervisor_routes.router)  # the supervisors' page and API (issue 6)
    cx.install(app, settings, knowledge)  # feedback API, CX inbox and themes (issue 6)
    # Accounts and the web shell (issue 6): login, logout, language, /api/v1/me, `/` by role,
    # and each page package's static files at /static/<package>/.
    install_accounts(app)
    for package in PAGE_PACKAGES:
        if (BOT_DIR / package / "static").is_dir():
            app.mount(
                f"/static/{package}",
                StaticFiles(directory=BOT_DIR / package / "static"),
                name=f"static-{package}",
            )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable sentence per problem instead of pydantic's nested structure.
        reasons = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(reasons)})

    return app
