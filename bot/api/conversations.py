"""``POST /api/v1/conversations/{conversation_id}/messages``: talk to the assistant."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from bot.api.schemas import ErrorOut, MessageIn, MessageOut
from bot.conversation.service import AssistantUnavailable, ConversationService, InvalidMessage

router = APIRouter(prefix="/api/v1", tags=["conversations"])

ConversationId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:@+-]+$",
        description="Any id of the caller's choosing; an unknown id starts a new conversation.",
    ),
]


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=MessageOut,
    responses={422: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def post_message(
    conversation_id: ConversationId, body: MessageIn, request: Request
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
