"""Talking to the assistant, and the promise in play in a conversation.

- ``POST /api/v1/conversations/{conversation_id}/messages``: one turn (the agent console types
  or pastes what the customer says; machine clients send the customer's words).
- ``GET /api/v1/conversations/{conversation_id}/promise``: the promise card of the agent
  console for the outage the conversation is about (polled, so a supervisor's override shows
  without reloading).

Both need a logged-in agent, supervisor or admin (with the CSRF token on the POST), or the
operations ``X-API-Key`` of machine clients.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from bot import messages
from bot.accounts import CurrentUser, require_api_key_or_role
from bot.api.schemas import ConsolePromiseOut, ErrorOut, MessageIn, MessageOut
from bot.console.promise_card import UnknownConversation, promise_card
from bot.conversation.service import AssistantUnavailable, ConversationService, InvalidMessage
from bot.promises.service import PromiseService
from bot.settings import Settings
from bot.storage.db import SessionFactory

router = APIRouter(prefix="/api/v1", tags=["conversations"])

#: Conversation ids as every channel makes them: "console-x1", "telegram:4242", "voice:CA12...".
CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9._:@+-]+$"

ConversationId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=CONVERSATION_ID_PATTERN,
        description="Any id of the caller's choosing; an unknown id starts a new conversation.",
    ),
]
AgentOrKey = Annotated[CurrentUser | None, Depends(require_api_key_or_role("agent", "supervisor"))]

_AUTH: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=MessageOut,
    responses={**_AUTH, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def post_message(
    conversation_id: ConversationId, body: MessageIn, request: Request, _user: AgentOrKey
) -> object:
    """Send a message and get the assistant's replies, understanding and outage status.

    The message is stored before the dialogue layer is called, so nothing is lost when it fails
    (503).
    """
    service: ConversationService = request.app.state.conversations
    try:
        result = await service.handle(conversation_id, body.text, body.channel)
    except InvalidMessage as exc:
        return JSONResponse(status_code=422, content={"detail": exc.reason})
    except AssistantUnavailable as exc:
        return JSONResponse(
            status_code=503, content={"detail": exc.reason, "language": exc.language}
        )
    return MessageOut.model_validate(asdict(result))


@router.get(
    "/conversations/{conversation_id}/promise",
    response_model=ConsolePromiseOut | None,
    responses={**_AUTH, 404: {"model": ErrorOut}},
)
def get_conversation_promise(
    conversation_id: ConversationId,
    request: Request,
    user: AgentOrKey,
    outage: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=32,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="The outage the console last saw in a reply; default: the outage of "
            "the latest promise told to this customer that is still open.",
        ),
    ] = None,
) -> ConsolePromiseOut | None:
    """The promise card for the outage in play; null when there is none (or it is resolved).

    The evidence line is in the user's language (the conversation's for an API key), the
    "tell the customer" text in the conversation's. A plain function (FastAPI's thread pool):
    the promise may first refit the engine, which takes seconds on a large history.
    """
    settings: Settings = request.app.state.settings
    sessions: SessionFactory = request.app.state.sessions
    promises: PromiseService = request.app.state.promises
    with sessions() as session, session.begin():
        try:
            card = promise_card(
                session,
                promises,
                conversation_id,
                reference=outage,
                agent_language=messages.as_language(user.language) if user else None,
                now=datetime.now(UTC),
                timezone=settings.timezone,
            )
        except UnknownConversation as exc:
            raise HTTPException(
                status_code=404, detail=f"unknown conversation {conversation_id!r}"
            ) from exc
        return None if card is None else ConsolePromiseOut.model_validate(asdict(card))
