"""Recording what happened to a suggestion (shown, used, thumbs up or down)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from bot.storage.models import Conversation, SuggestionEvent

SuggestionEventKind = Literal["shown", "used", "thumbs_up", "thumbs_down"]


class UnknownConversation(LookupError):
    """The event names a conversation that does not exist."""


def record_suggestion_event(
    session: Session,
    *,
    suggestion_id: str,
    event: SuggestionEventKind,
    now: datetime,
    conversation_id: str | None = None,
    article_id: str | None = None,
    channel: str | None = None,
    author: str | None = None,
) -> SuggestionEvent:
    """Store one event; the caller commits. Raises :class:`UnknownConversation`."""
    if conversation_id is not None and session.get(Conversation, conversation_id) is None:
        raise UnknownConversation(conversation_id)
    row = SuggestionEvent(
        suggestion_id=suggestion_id,
        event=event,
        conversation_id=conversation_id,
        article_id=article_id,
        channel=channel,
        author=author,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row
