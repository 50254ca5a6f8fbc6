"""Where a customer's notifications go: the channel they chose, else where they subscribed.

The promise service records every follow-up message in the outbox with the channel and address
of the subscription behind it (:func:`bot.promises.service.queue_message`); it asks
:func:`outbox_recipient` first, so a subscription made by SMS reaches a customer who chose
Telegram on Telegram, and the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.customers.identities import (
    conversation_id,
    find_customer_id,
    notification_address,
)
from bot.storage.models import ChannelOptOut, Customer, OutboxMessage


def _opted_out(session: Session, channel: str, address: str) -> bool:
    return (
        session.scalar(
            select(ChannelOptOut.id).where(
                ChannelOptOut.channel == channel,
                ChannelOptOut.address == address,
                ChannelOptOut.is_opted_out,
            )
        )
        is not None
    )


def _preference(session: Session, channel: str, address: str) -> tuple[int, str | None] | None:
    """The customer behind the subscriber and their preferred channel; None: nobody known."""
    customer_id = find_customer_id(session, channel, address)
    if customer_id is None:
        return None
    preferred = session.scalar(select(Customer.preferred_channel).where(Customer.id == customer_id))
    return customer_id, preferred


def _rerouted(
    session: Session, channel: str, address: str, customer_id: int, preferred: str
) -> tuple[str, str]:
    if preferred == channel:
        return channel, address
    native = notification_address(session, customer_id, preferred)
    if native is None or _opted_out(session, preferred, native):
        return channel, address
    return preferred, conversation_id(preferred, native)


def notification_target(session: Session, channel: str, address: str) -> tuple[str, str]:
    """The (channel, address) a notification for the subscriber ``address`` goes to.

    The customer's preferred channel when they chose one and can be reached there (an address
    on it, not opted out or blocking us there); otherwise the subscription's own channel and
    address, unchanged. A rerouted address has the conversation-id form (``sms:+316...``,
    ``telegram:4242``) that subscriptions use.
    """
    found = _preference(session, channel, address)
    if found is None or found[1] is None:
        return channel, address
    return _rerouted(session, channel, address, found[0], found[1])


def outbox_recipient(
    session: Session,
    *,
    channel: str,
    address: str,
    outage_id: int,
    kind: str,
    payload: Mapping[str, Any],
) -> tuple[str, str] | None:
    """Where an outbox message for the subscriber goes, or None when it is already queued there.

    A customer who subscribed on two channels and chose one gets the message once: a message of
    the same kind, outage and content already queued for the same (channel, address) makes this
    one redundant. Subscribers who chose no channel keep theirs (two queries, no more: an
    outage with tens of thousands of subscribers queues them all in one transaction).
    """
    found = _preference(session, channel, address)
    if found is None or found[1] is None:
        return channel, address
    target = _rerouted(session, channel, address, found[0], found[1])
    earlier = session.scalars(
        select(OutboxMessage.payload).where(
            OutboxMessage.outage_id == outage_id,
            OutboxMessage.kind == kind,
            OutboxMessage.channel == target[0],
            OutboxMessage.address == target[1],
        )
    ).all()
    # JSON has no equality operator in PostgreSQL: compare in Python (a handful of rows).
    if any(dict(row) == dict(payload) for row in earlier):
        return None
    return target
