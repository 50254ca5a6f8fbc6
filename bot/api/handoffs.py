"""Conversations handed over to a human, for the agent console.

- ``GET /api/v1/handoffs``: the open handoffs (voice transfers, "I want a human" in a chat),
  oldest first, each with its channel, customer, reason and how long the customer has waited.
- ``POST /api/v1/handoffs/{id}/pickup``: an agent takes one; it leaves the queue (so two agents
  never take the same customer: the second gets 409) and the answer carries the customer's
  history across channels, so the console continues that conversation.

A logged-in agent, supervisor or admin (CSRF token on the POST), or the ``X-API-Key``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.accounts import CurrentUser, require_api_key_or_role
from bot.api.customer_schemas import CustomerHistoryOut
from bot.api.deps import app_sessions
from bot.api.schemas import ErrorOut
from bot.customers.history import conversation_history
from bot.storage.models import ChannelIdentity, Conversation, Customer, Handoff

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["handoffs"])

AgentOrKey = Annotated[CurrentUser | None, Depends(require_api_key_or_role("agent", "supervisor"))]
HandoffId = Annotated[int, Path(ge=1, description="The handoff's id.")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


class HandoffOut(BaseModel):
    """A customer waiting for (or taken by) an agent."""

    id: int
    conversation_id: str
    channel: str = Field(description="Where the customer came from: voice, telegram, sms, ...")
    language: str
    customer_id: int | None
    customer: str | None = Field(
        description="The customer's name, else their address on the channel (phone number, "
        "chat id); null for an unknown customer."
    )
    reason: str | None
    created_at: datetime
    waiting_seconds: int = Field(description="How long the customer has waited (until now).")
    picked_up_at: datetime | None


class PickupOut(BaseModel):
    """The handoff taken, with the customer's messages on every channel."""

    handoff: HandoffOut
    history: CustomerHistoryOut


def _aware(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back; everything is stored in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _customer_label(session: Session, conversation: Conversation) -> str | None:
    if conversation.customer_id is None:
        return None
    customer = session.get(Customer, conversation.customer_id)
    if customer is not None and customer.display_name:
        return customer.display_name
    identity = session.scalars(
        select(ChannelIdentity)
        .where(ChannelIdentity.customer_id == conversation.customer_id)
        .order_by((ChannelIdentity.channel == conversation.channel).desc(), ChannelIdentity.id)
    ).first()
    return None if identity is None else identity.external_id


def _out(session: Session, handoff: Handoff, now: datetime) -> HandoffOut:
    conversation = session.get(Conversation, handoff.conversation_id)
    assert conversation is not None  # the foreign key cascades deletes
    created = _aware(handoff.created_at)
    until = _aware(handoff.resolved_at) if handoff.resolved_at is not None else now
    return HandoffOut(
        id=handoff.id,
        conversation_id=handoff.conversation_id,
        channel=conversation.channel,
        language=conversation.language,
        customer_id=conversation.customer_id,
        customer=_customer_label(session, conversation),
        reason=handoff.reason,
        created_at=created,
        waiting_seconds=max(0, int((until - created).total_seconds())),
        picked_up_at=None if handoff.resolved_at is None else _aware(handoff.resolved_at),
    )


@router.get("/handoffs", response_model=list[HandoffOut], responses=_ERRORS)
def list_handoffs(
    request: Request,
    _user: AgentOrKey,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 100,
) -> list[HandoffOut]:
    """The customers waiting for an agent, longest waiting first."""
    now = datetime.now(UTC)
    with app_sessions(request)() as session:
        rows = session.scalars(
            select(Handoff)
            .where(Handoff.resolved_at.is_(None))
            .order_by(Handoff.created_at, Handoff.id)
            .limit(limit)
        ).all()
        return [_out(session, row, now) for row in rows]


@router.post(
    "/handoffs/{handoff_id}/pickup",
    response_model=PickupOut,
    responses={**_ERRORS, 409: {"model": ErrorOut}},
)
def pick_up(handoff_id: HandoffId, request: Request, user: AgentOrKey) -> PickupOut:
    """Take the handoff off the queue and get the customer's history across channels.

    409 when it was already taken (by another agent, or earlier by this one).
    """
    now = datetime.now(UTC)
    with app_sessions(request)() as session, session.begin():
        # One conditional UPDATE: of two agents clicking at once exactly one changes the row.
        taken = session.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.resolved_at.is_(None))
            .values(resolved_at=now)
        )
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            raise HTTPException(status_code=404, detail=f"unknown handoff {handoff_id}")
        if getattr(taken, "rowcount", 0) != 1:
            raise HTTPException(status_code=409, detail=f"handoff {handoff_id} was already taken")
        session.refresh(handoff)
        logger.info(
            "handoff %s (%s) picked up by %s",
            handoff_id,
            handoff.conversation_id,
            "api" if user is None else user.username,
        )
        history = conversation_history(session, handoff.conversation_id, limit=500)
        assert history is not None  # the handoff's conversation exists
        return PickupOut(
            handoff=_out(session, handoff, now),
            history=CustomerHistoryOut.model_validate(asdict(history)),
        )
