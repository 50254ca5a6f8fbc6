"""``POST /api/v1/suggestions/{suggestion_id}/feedback``: what was done with a suggestion.

A logged-in agent, supervisor or admin (with the CSRF token; the event's author is that user,
whatever the body says, so feedback cannot be filed in someone else's name) or a machine client
with the ``X-API-Key`` (the body's ``author``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bot.accounts import CurrentUser, require_api_key_or_role
from bot.api.schemas import ErrorOut
from bot.suggestions.service import (
    SuggestionEventKind,
    UnknownConversation,
    record_suggestion_event,
)

router = APIRouter(prefix="/api/v1", tags=["suggestions"])


class SuggestionFeedbackIn(BaseModel):
    """One thing an agent or customer did with a suggestion."""

    event: SuggestionEventKind = Field(description="shown, used, thumbs_up or thumbs_down")
    conversation_id: str | None = Field(default=None, max_length=128)
    article_id: str | None = Field(default=None, max_length=128)
    channel: str | None = Field(default=None, max_length=16)
    author: str | None = Field(
        default=None,
        max_length=200,
        description="Agent id or name; only for X-API-Key calls (a logged-in user is the author).",
    )


class SuggestionFeedbackOut(BaseModel):
    """The stored event."""

    id: int
    suggestion_id: str
    event: SuggestionEventKind
    author: str | None


@router.post(
    "/suggestions/{suggestion_id}/feedback",
    status_code=201,
    response_model=SuggestionFeedbackOut,
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
    },
)
def suggestion_feedback(
    suggestion_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    body: SuggestionFeedbackIn,
    request: Request,
    user: Annotated[CurrentUser | None, Depends(require_api_key_or_role("agent", "supervisor"))],
) -> object:
    """Record that a suggestion was shown, used, or rated, tied to its conversation.

    A plain function (FastAPI's thread pool): it writes through the blocking database session.
    """
    author = body.author if user is None else user.username
    try:
        with request.app.state.sessions() as session, session.begin():
            row = record_suggestion_event(
                session,
                suggestion_id=suggestion_id,
                event=body.event,
                now=datetime.now(UTC),
                conversation_id=body.conversation_id,
                article_id=body.article_id,
                channel=body.channel,
                author=author,
            )
            row_id = row.id
    except UnknownConversation:
        return JSONResponse(
            status_code=404, content={"detail": f"unknown conversation {body.conversation_id!r}"}
        )
    return SuggestionFeedbackOut(
        id=row_id, suggestion_id=suggestion_id, event=body.event, author=author
    )
