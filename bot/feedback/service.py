"""Recording observations and moving them through the CX inbox.

Functions take the caller's session and do not commit (the caller's transaction decides, so an
observation and its forward row are stored together or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.storage.models import (
    FEEDBACK_CATEGORIES,
    FEEDBACK_STATES,
    Feedback,
    FeedbackComment,
    FeedbackForward,
    FeedbackStateChange,
    Outage,
)

__all__ = [
    "FEEDBACK_CATEGORIES",
    "FEEDBACK_STATES",
    "Observation",
    "add_comment",
    "change_state",
    "count_by_state",
    "list_observations",
    "record_feedback",
]


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
    user_id: int | None = None,
    category: str | None = None,
    outage_id: int | None = None,
    anonymous: bool = False,
    forward: bool = False,
) -> Feedback:
    """Store one observation; the caller commits.

    ``anonymous``: the row keeps no user and no name (passing either is a programming error,
    refused rather than silently dropped). ``forward``: also queue it for the CX webhook, in the
    same transaction, so it is forwarded after the commit even if this process dies.
    """
    if anonymous and (author is not None or user_id is not None):
        raise ValueError("anonymous feedback cannot carry an author or user id")
    if category is not None and category not in FEEDBACK_CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    feedback = Feedback(
        text=text.strip(),
        channel=channel,
        source=source,
        language=language,
        conversation_id=conversation_id,
        author=author,
        user_id=user_id,
        category=category,
        outage_id=outage_id,
        anonymous=anonymous,
        state="new",
        created_at=now,
    )
    session.add(feedback)
    session.flush()
    if forward:
        session.add(FeedbackForward(feedback_id=feedback.id, next_attempt_at=now, created_at=now))
        session.flush()
    return feedback


def change_state(
    session: Session,
    feedback_id: int,
    *,
    to_state: str,
    user_id: int | None,
    changed_by: str,
    now: datetime,
) -> FeedbackStateChange | None:
    """Move an observation to ``to_state`` and record who did it.

    Returns the recorded change, or None when the observation already was in that state.
    Raises LookupError for an unknown observation, ValueError for an unknown state. The UPDATE
    is conditional on the state just read, so two people changing it at once each get their
    own, correct from -> to record.
    """
    if to_state not in FEEDBACK_STATES:
        raise ValueError(f"unknown state {to_state!r}")
    for _ in range(5):
        current = session.scalar(select(Feedback.state).where(Feedback.id == feedback_id))
        if current is None:
            raise LookupError(f"observation {feedback_id} does not exist")
        if current == to_state:
            return None
        moved = session.execute(
            update(Feedback)
            .where(Feedback.id == feedback_id, Feedback.state == current)
            .values(state=to_state)
            .returning(Feedback.id)
            .execution_options(synchronize_session=False)
        ).first()
        if moved is not None:
            change = FeedbackStateChange(
                feedback_id=feedback_id,
                from_state=current,
                to_state=to_state,
                user_id=user_id,
                changed_by=changed_by,
                changed_at=now,
            )
            session.add(change)
            session.flush()
            return change
    raise RuntimeError(f"observation {feedback_id} keeps changing state; try again")


def add_comment(
    session: Session,
    feedback_id: int,
    *,
    text: str,
    user_id: int | None,
    author: str,
    now: datetime,
) -> FeedbackComment:
    """Add a CX comment; LookupError for an unknown observation."""
    if session.get(Feedback, feedback_id) is None:
        raise LookupError(f"observation {feedback_id} does not exist")
    comment = FeedbackComment(
        feedback_id=feedback_id, user_id=user_id, author=author, text=text.strip(), created_at=now
    )
    session.add(comment)
    session.flush()
    return comment


@dataclass
class Observation:
    """An observation with what the inbox shows next to it."""

    feedback: Feedback
    outage_reference: str | None = None
    comments: list[FeedbackComment] = field(default_factory=list)
    changes: list[FeedbackStateChange] = field(default_factory=list)
    forward_status: str | None = None


def list_observations(
    session: Session,
    *,
    states: Sequence[str] = (),
    categories: Sequence[str] = (),
    source: str | None = None,
    ids: Sequence[int] = (),
    limit: int | None = 200,
    offset: int = 0,
) -> list[Observation]:
    """Observations, newest first, with their comments, state history and outage reference.

    Empty ``states``/``categories``/``ids`` mean all; ``limit`` None means no limit (the CSV
    export).
    """
    query = (
        select(Feedback, Outage.reference, FeedbackForward.status)
        .outerjoin(Outage, Outage.id == Feedback.outage_id)
        .outerjoin(FeedbackForward, FeedbackForward.feedback_id == Feedback.id)
        .order_by(Feedback.created_at.desc(), Feedback.id.desc())
        .offset(offset)
    )
    if states:
        query = query.where(Feedback.state.in_(list(states)))
    if categories:
        query = query.where(Feedback.category.in_(list(categories)))
    if source is not None:
        query = query.where(Feedback.source == source)
    if ids:
        query = query.where(Feedback.id.in_(list(ids)))
    if limit is not None:
        query = query.limit(limit)
    observations = {
        row[0].id: Observation(row[0], outage_reference=row[1], forward_status=row[2])
        for row in session.execute(query)
    }
    if not observations:
        return []
    ids = list(observations)
    # Two extra queries for all rows instead of two per row.
    for comment in session.scalars(
        select(FeedbackComment)
        .where(FeedbackComment.feedback_id.in_(ids))
        .order_by(FeedbackComment.created_at, FeedbackComment.id)
    ):
        observations[comment.feedback_id].comments.append(comment)
    for change in session.scalars(
        select(FeedbackStateChange)
        .where(FeedbackStateChange.feedback_id.in_(ids))
        .order_by(FeedbackStateChange.changed_at, FeedbackStateChange.id)
    ):
        observations[change.feedback_id].changes.append(change)
    return list(observations.values())


def count_by_state(session: Session) -> dict[str, int]:
    """How many observations are in each state (every state present, zeros included)."""
    counts = dict.fromkeys(FEEDBACK_STATES, 0)
    for state, count in session.execute(
        select(Feedback.state, func.count()).group_by(Feedback.state)
    ):
        counts[state] = int(count)
    return counts
