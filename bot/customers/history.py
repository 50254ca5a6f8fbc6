"""A customer's history across channels, for agents: every message of every conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.storage.models import ChannelIdentity, Conversation, Customer, Message


@dataclass(frozen=True)
class HistoryMessage:
    """One message in or out, with the conversation and channel it belongs to."""

    id: int
    conversation_id: str
    channel: str
    direction: str
    text: str
    created_at: datetime
    intent: str | None


@dataclass(frozen=True)
class Identity:
    """How the customer is known on one channel."""

    channel: str
    external_id: str


@dataclass(frozen=True)
class CustomerHistory:
    """A customer (None for a conversation nobody is tied to) and their messages, oldest first.

    ``truncated`` is True when older messages were left out to stay within the limit.
    """

    customer_id: int | None
    display_name: str | None
    language: str | None
    preferred_channel: str | None
    identities: list[Identity]
    conversations: list[str]
    messages: list[HistoryMessage]
    truncated: bool


def _messages(
    session: Session, conversations: list[str], limit: int
) -> tuple[list[HistoryMessage], bool]:
    """The latest ``limit`` messages of the conversations, in time order."""
    rows = session.scalars(
        select(Message)
        .where(Message.conversation_id.in_(conversations))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit + 1)
    ).all()
    truncated = len(rows) > limit
    latest = [
        HistoryMessage(
            id=m.id,
            conversation_id=m.conversation_id,
            channel=m.channel,
            direction=m.direction,
            text=m.text,
            created_at=m.created_at,
            intent=m.intent,
        )
        for m in rows[:limit]
    ]
    latest.reverse()
    return latest, truncated


def customer_history(session: Session, customer_id: int, *, limit: int) -> CustomerHistory | None:
    """The customer's last ``limit`` messages on every channel, oldest first; None if unknown."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    identities = [
        Identity(row.channel, row.external_id)
        for row in session.scalars(
            select(ChannelIdentity)
            .where(ChannelIdentity.customer_id == customer_id)
            .order_by(ChannelIdentity.channel, ChannelIdentity.id)
        )
    ]
    conversations = list(
        session.scalars(
            select(Conversation.id)
            .where(Conversation.customer_id == customer_id)
            .order_by(Conversation.created_at, Conversation.id)
        )
    )
    messages, truncated = _messages(session, conversations, limit)
    return CustomerHistory(
        customer_id=customer.id,
        display_name=customer.display_name,
        language=customer.language,
        preferred_channel=customer.preferred_channel,
        identities=identities,
        conversations=conversations,
        messages=messages,
        truncated=truncated,
    )


def conversation_history(
    session: Session, conversation_id: str, *, limit: int
) -> CustomerHistory | None:
    """The history of the customer holding the conversation (across all their channels).

    A conversation nobody is tied to (the API, the console) gives its own messages only. None
    when the conversation is unknown.
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    if conversation.customer_id is not None:
        history = customer_history(session, conversation.customer_id, limit=limit)
        if history is not None:
            return history
    messages, truncated = _messages(session, [conversation_id], limit)
    return CustomerHistory(
        customer_id=None,
        display_name=None,
        language=conversation.language,
        preferred_channel=None,
        identities=[],
        conversations=[conversation_id],
        messages=messages,
        truncated=truncated,
    )
