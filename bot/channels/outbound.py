"""Outbound messages of every channel: the result of a send, and its row in the database.

Each send path (Twilio's :class:`~bot.channels.twilio.TwilioSender`, Telegram's
:meth:`~bot.channels.telegram.TelegramChannel.send`) records the message in ``channel_outbound``
before calling the platform. With an ``idempotency_key`` the unique key decides, even between
two workers at the same moment, which one sends; the other gets ``duplicate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.store import insert_ignoring_conflict
from bot.storage.models import ChannelOutbound


@dataclass(frozen=True)
class SendResult:
    """What became of one outbound message.

    ``status``: ``refused`` (opted out, outside the WhatsApp window without a template, no
    sender, channel not configured), ``failed`` (the platform refused or was unreachable),
    ``duplicate`` (its idempotency key was used before: nothing sent again), ``sent``
    (Telegram) or Twilio's status of the created message (``queued``, ``accepted``, ...).
    """

    status: str
    outbound_id: int | None = None
    twilio_sid: str | None = None
    reason: str | None = None


def earlier_send(session: Session, idempotency_key: str | None) -> SendResult | None:
    """The ``duplicate`` result when ``idempotency_key`` was used before, else None."""
    if idempotency_key is None:
        return None
    earlier = session.scalars(
        select(ChannelOutbound).where(ChannelOutbound.idempotency_key == idempotency_key)
    ).first()
    if earlier is None:
        return None
    return SendResult("duplicate", earlier.id, earlier.twilio_sid, "sent before")


def record_outbound(session: Session, values: dict[str, Any]) -> int | None:
    """Insert a ``channel_outbound`` row; its id, or None when its idempotency key is taken."""
    key = values.get("idempotency_key")
    if key is None:
        row = ChannelOutbound(**values)
        session.add(row)
        session.flush()
        return row.id
    # The unique key decides between two workers sending the same message at once.
    if not insert_ignoring_conflict(session, ChannelOutbound, values, ("idempotency_key",)):
        return None
    return session.scalar(select(ChannelOutbound.id).where(ChannelOutbound.idempotency_key == key))
