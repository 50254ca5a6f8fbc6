"""One customer across channels.

A :class:`~bot.storage.models.Customer` has one :class:`~bot.storage.models.ChannelIdentity` per
channel it was seen on. Phone channels (SMS, WhatsApp, voice) share an extra identity
``("phone", "+31612345678")``: the first channel to see a number creates the customer and that
identity, every other phone channel with the same number attaches to it. The unique
(channel, external_id) of identities makes this safe when SMS and WhatsApp messages of one number
arrive at the same moment: one insert wins, the other reads the winner.
"""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot.channels.store import insert_ignoring_conflict
from bot.storage.models import ChannelIdentity, Conversation, Customer

#: Channels addressed by a phone number.
PHONE_CHANNELS: Final = ("sms", "whatsapp", "voice")
#: The identity all phone channels of one number share.
PHONE_IDENTITY: Final = "phone"

_ADDRESS_PREFIXES: Final = ("whatsapp:", "sms:", "voice:", "tel:")
_NOT_PHONE_CHARS = re.compile(r"[\s().\-]")


def phone_number(value: str) -> str:
    """A phone number without Twilio's channel prefix or punctuation.

    ``"whatsapp:+31612345678"``, ``"tel:+31 6 1234 5678"`` -> ``"+31612345678"``.
    """
    number = value.strip()
    for prefix in _ADDRESS_PREFIXES:
        if number.lower().startswith(prefix):
            number = number[len(prefix) :]
            break
    return _NOT_PHONE_CHARS.sub("", number)


def conversation_id(channel: str, address: str) -> str:
    """The conversation id (Rasa's sender id) of ``address`` on ``channel``: ``sms:+316...``.

    Rasa's ``action_subscribe_updates`` stores this id as the subscription address, so the
    channels use it as the address of subscriptions too; :func:`channel_address` turns it back.
    """
    return f"{channel}:{address}"


def channel_address(channel: str, address: str) -> str:
    """The native address (chat id, phone number) behind a subscription or conversation id."""
    prefix = f"{channel}:"
    return address[len(prefix) :] if address.startswith(prefix) else address


def _identity(session: Session, channel: str, external_id: str) -> ChannelIdentity | None:
    return session.scalars(
        select(ChannelIdentity).where(
            ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
        )
    ).first()


def _attach(session: Session, customer_id: int, channel: str, external_id: str) -> None:
    """Give the customer the identity unless some customer already has it (first one wins)."""
    insert_ignoring_conflict(
        session,
        ChannelIdentity,
        {"customer_id": customer_id, "channel": channel, "external_id": external_id},
        ("channel", "external_id"),
    )


def link_customer(
    session: Session,
    channel: str,
    external_id: str,
    *,
    language: str = "nl",
    display_name: str | None = None,
) -> Customer:
    """The customer known as ``external_id`` on ``channel``, created on first contact.

    For phone channels ``external_id`` may carry Twilio's prefix (``whatsapp:+31...``); the same
    number on SMS, WhatsApp and voice is one customer. ``display_name`` (a WhatsApp profile name,
    a Telegram name) fills the customer's name when it has none. The caller commits.
    """
    if channel in PHONE_CHANNELS:
        external_id = phone_number(external_id)
        anchor_channel = PHONE_IDENTITY
    else:
        anchor_channel = channel
    anchor = _identity(session, anchor_channel, external_id)
    if anchor is None:
        customer = Customer(language=language if language in ("nl", "en") else "nl")
        session.add(customer)
        session.flush()
        _attach(session, customer.id, anchor_channel, external_id)
        anchor = _identity(session, anchor_channel, external_id)
        if anchor is None:  # pragma: no cover - the insert or a concurrent one created it
            raise RuntimeError(f"identity {anchor_channel}:{external_id} vanished")
        if anchor.customer_id != customer.id:
            # Another request linked this number first: use its customer, drop ours.
            session.execute(delete(Customer).where(Customer.id == customer.id))
    customer_id = anchor.customer_id
    if anchor_channel != channel:
        _attach(session, customer_id, channel, external_id)
    linked = session.get(Customer, customer_id)
    if linked is None:  # pragma: no cover - identities cascade with their customer
        raise RuntimeError(f"customer {customer_id} vanished")
    if display_name and not linked.display_name:
        linked.display_name = display_name[:200]
    return linked


def attach_conversation(session: Session, conversation: str, customer_id: int) -> None:
    """Record that ``conversation`` is held by the customer (if the conversation exists)."""
    row = session.get(Conversation, conversation)
    if row is not None and row.customer_id is None:
        row.customer_id = customer_id
