"""Recording feedback from agents and customers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.storage.models import Feedback


def record_feedback(
    session: Session,
    *,
    text: str,
    channel: str,
    source: str,
    language: str,
    now: datetime,
    conversation_id: str | None = None,
    author: str | None = None,
) -> Feedback:
    """Store one observation; the caller commits."""
    feedback = Feedback(
        text=text.strip(),
        channel=channel,
        source=source,
        language=language,
        conversation_id=conversation_id,
        author=author,
        created_at=now,
    )
    session.add(feedback)
    session.flush()
    return feedback
