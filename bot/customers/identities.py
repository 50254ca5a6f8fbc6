"""Customers and the channel identities tied to them.

A :class:`~bot.storage.models.Customer` has one :class:`~bot.storage.models.ChannelIdentity` per
channel address it was seen on. Phone channels (SMS, WhatsApp, voice) share an extra identity
``("phone", "+31612345678")``, the number in E.164: the first channel to see a number creates the
customer and that identity, every other phone channel with the same number attaches to it. The
unique (channel, external_id) of identities makes this safe when SMS and WhatsApp messages of one
number arrive at the same moment: one insert wins, the other reads the winner.

A Telegram chat is its own customer until it is tied to a number: by sharing its own contact
(:func:`link_phone`) or with a one-time code (:mod:`bot.customers.link_codes`). Tying two
customers together merges them (:func:`merge_customers`): identities, conversations and link
codes move to the older record; subscriptions are addressed by channel and address, so they stay
what they were and now belong to the merged customer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, TypeVar

import phonenumbers
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from bot.storage.inserts import insert_ignoring_conflict
from bot.storage.models import ChannelIdentity, Conversation, Customer, CustomerLinkCode

#: Channels addressed by a phone number.
PHONE_CHANNELS: Final = ("sms", "whatsapp", "voice")
#: The identity all phone channels of one number share.
PHONE_IDENTITY: Final = "phone"
#: Where a notification can be sent: the choices of a customer's preferred channel.
NOTIFY_CHANNELS: Final = ("sms", "whatsapp", "telegram")
#: The region of a phone number written without country code ("06 1234 5678"): Belofte's
#: customers are in the Netherlands and Flanders, and Twilio and Telegram give international
#: numbers anyway.
DEFAULT_REGION: Final = "NL"

#: At most this many values in one ``IN (...)`` of the bulk lookups: SQLite allows 32,766 bound
#: parameters, and smaller lists keep PostgreSQL's plans on the index.
LOOKUP_CHUNK: Final = 1000

_T = TypeVar("_T")
_ADDRESS_PREFIXES: Final = ("whatsapp:", "sms:", "voice:", "tel:")
_NOT_PHONE_CHARS = re.compile(r"[\s().\-]")


def phone_number(value: str, region: str = DEFAULT_REGION) -> str:
    """A phone number in E.164, without Twilio's channel prefix or punctuation.

    ``"whatsapp:+31612345678"``, ``"tel:+31 6 1234 5678"``, ``"0031612345678"`` and (region NL)
    ``"06-12345678"`` all give ``"+31612345678"``. A value that is no possible phone number
    keeps its characters, less prefix and punctuation, so nothing a caller sent is lost.
    """
    number = value.strip()
    for prefix in _ADDRESS_PREFIXES:
        if number.lower().startswith(prefix):
            number = number[len(prefix) :]
            break
    bare = _NOT_PHONE_CHARS.sub("", number)
    if bare.startswith("00"):
        bare = "+" + bare[2:]
    if not bare:
        return bare
    try:
        parsed = phonenumbers.parse(bare, None if bare.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return bare
    if not phonenumbers.is_possible_number(parsed):
        return bare
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


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


def identity_key(channel: str, address: str) -> tuple[str, str]:
    """The (channel, external id) an address is stored under: phone numbers in E.164."""
    external = channel_address(channel, address)
    if channel in PHONE_CHANNELS or channel == PHONE_IDENTITY:
        external = phone_number(external)
    return channel, external


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


def _customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:  # pragma: no cover - identities cascade with their customer
        raise RuntimeError(f"customer {customer_id} vanished")
    return customer


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
            session.expunge(customer)
    customer_id = anchor.customer_id
    if anchor_channel != channel:
        _attach(session, customer_id, channel, external_id)
    linked = _customer(session, customer_id)
    if display_name and not linked.display_name:
        linked.display_name = display_name[:200]
    return linked


def attach_conversation(session: Session, conversation: str, customer_id: int) -> None:
    """Record that ``conversation`` is held by the customer (if the conversation exists)."""
    row = session.get(Conversation, conversation)
    if row is not None and row.customer_id is None:
        row.customer_id = customer_id


def _lookup_channels(channel: str) -> tuple[str, ...]:
    """The identity channels an address on ``channel`` is found under: phones by the number too."""
    return (channel, PHONE_IDENTITY) if channel in PHONE_CHANNELS else (channel,)


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), LOOKUP_CHUNK):
        yield items[start : start + LOOKUP_CHUNK]


def _match_identities(
    session: Session,
    keys: Mapping[tuple[str, str], tuple[str, str]],
    found: dict[tuple[str, str], int],
) -> None:
    """Add to ``found`` the customer of each (channel, address) whose identity key is known."""
    items = list(keys.items())
    for chunk in _chunks(items):
        channels = {c for _, (channel, _) in chunk for c in _lookup_channels(channel)}
        rows = session.execute(
            select(
                ChannelIdentity.channel, ChannelIdentity.external_id, ChannelIdentity.customer_id
            ).where(
                ChannelIdentity.external_id.in_({external for _, (_, external) in chunk}),
                ChannelIdentity.channel.in_(channels),
            )
        )
        customers = {(channel, external): customer for channel, external, customer in rows}
        for pair, (channel, external) in chunk:
            # The channel's own identity before the shared number (both are normally the
            # same customer; merging makes them so).
            for candidate in _lookup_channels(channel):
                customer_id = customers.get((candidate, external))
                if customer_id is not None:
                    found[pair] = customer_id
                    break


def find_customer_ids(
    session: Session, subscribers: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """:func:`find_customer_id` for many (channel, address) pairs at once; unknown ones left out.

    A few queries per :data:`LOOKUP_CHUNK` addresses instead of one or two per address: an
    outage with tens of thousands of subscribers is resolved inside one request.
    """
    pairs = list(dict.fromkeys(subscribers))
    found: dict[tuple[str, str], int] = {}
    # Addresses as they are first: the channels store numbers in E.164 already, identities of
    # phone channels hold only normalised numbers (and normalising one again changes nothing),
    # so an address found as it is is its own normal form. Parsing every number costs about
    # 0.1 ms each, seconds for a large outage; only the addresses not found are normalised.
    as_they_are = {(channel, address): (channel, channel_address(channel, address))
                   for channel, address in pairs}  # fmt: skip
    _match_identities(session, as_they_are, found)
    normalised = {}
    for pair in pairs:
        if pair not in found:
            key = identity_key(*pair)
            if key != as_they_are[pair]:
                normalised[pair] = key
    _match_identities(session, normalised, found)
    # Anything else (the API, the console) by the conversation of that id.
    missing = [pair for pair in pairs if pair not in found]
    for chunk in _chunks(missing):
        held = {
            conversation: customer_id
            for conversation, customer_id in session.execute(
                select(Conversation.id, Conversation.customer_id).where(
                    Conversation.id.in_({address for _, address in chunk}),
                    Conversation.customer_id.is_not(None),
                )
            )
        }
        for pair in chunk:
            customer_id = held.get(pair[1])
            if customer_id is not None:
                found[pair] = customer_id
    return found


def find_customer_id(session: Session, channel: str, address: str) -> int | None:
    """The customer behind ``address`` on ``channel`` (a native address or a conversation id).

    Phone channels are also found by the shared number; anything else (the API, the console)
    by the conversation of that id. None: nobody known.
    """
    return find_customer_ids(session, [(channel, address)]).get((channel, address))


def merge_customers(session: Session, first_id: int, second_id: int) -> Customer:
    """Make one customer of two: the older record keeps everything of the newer one.

    Identities, conversations and link codes move over; the name, preferred channel and
    language of the older record win where it has them. The newer record is deleted. Both rows
    are locked first (in id order, so two merges cannot deadlock). The caller commits.
    """
    keep_id, gone_id = sorted((first_id, second_id))
    if keep_id == gone_id:
        return _customer(session, keep_id)
    session.flush()
    rows = {
        c.id: c
        for c in session.scalars(
            select(Customer)
            .where(Customer.id.in_((keep_id, gone_id)))
            .order_by(Customer.id)
            .with_for_update()
        )
    }
    keep, gone = rows.get(keep_id), rows.get(gone_id)
    if keep is None or gone is None:
        raise LookupError(f"cannot merge customers {first_id} and {second_id}: one is unknown")
    for model in (ChannelIdentity, Conversation, CustomerLinkCode):
        session.execute(
            update(model)
            .where(model.customer_id == gone_id)
            .values(customer_id=keep_id)
            .execution_options(synchronize_session=False)
        )
    keep.display_name = keep.display_name or gone.display_name
    keep.preferred_channel = keep.preferred_channel or gone.preferred_channel
    session.flush()
    session.execute(delete(Customer).where(Customer.id == gone_id))
    session.expunge(gone)
    # The moved rows were updated behind the ORM's back: reload them when next read.
    session.expire(keep, ["identities"])
    moved = (ChannelIdentity, Conversation, CustomerLinkCode)
    for row in [o for o in session.identity_map.values() if isinstance(o, moved)]:
        session.expire(row, ["customer_id"])
    return keep


def link_phone(session: Session, customer_id: int, number: str) -> Customer:
    """Tie a phone number to the customer (a Telegram chat that shared its own contact).

    When the number already belongs to another customer, the two are merged; otherwise the
    customer gets the number's shared identity, so a later SMS, WhatsApp message or call from
    it is the same customer. Returns the (possibly merged) customer. The caller commits.
    """
    external = phone_number(number)
    anchor = _identity(session, PHONE_IDENTITY, external)
    if anchor is None:
        _attach(session, customer_id, PHONE_IDENTITY, external)
        anchor = _identity(session, PHONE_IDENTITY, external)
        if anchor is None:  # pragma: no cover - the insert or a concurrent one created it
            raise RuntimeError(f"identity phone:{external} vanished")
    if anchor.customer_id == customer_id:
        return _customer(session, customer_id)
    return merge_customers(session, customer_id, anchor.customer_id)


def _notify_channels(channel: str) -> tuple[str, ...]:
    # SMS may use the shared phone identity; the channel's own identity comes first.
    return (channel, PHONE_IDENTITY) if channel == "sms" else (channel,)


def notification_addresses(session: Session, wanted: Mapping[int, str]) -> dict[int, str]:
    """:func:`notification_address` for many customers at once: customer id -> channel wanted.

    Returns the native address per customer that has one on the wanted channel (others are
    left out); a few queries per :data:`LOOKUP_CHUNK` customers.
    """
    found: dict[int, str] = {}
    ids = [customer_id for customer_id, channel in wanted.items() if channel in NOTIFY_CHANNELS]
    for chunk in _chunks(ids):
        rows = session.execute(
            select(
                ChannelIdentity.customer_id, ChannelIdentity.channel, ChannelIdentity.external_id
            )
            .where(
                ChannelIdentity.customer_id.in_(chunk),
                ChannelIdentity.channel.in_((*NOTIFY_CHANNELS, PHONE_IDENTITY)),
            )
            .order_by(ChannelIdentity.created_at.desc(), ChannelIdentity.id.desc())
        )
        newest: dict[tuple[int, str], str] = {}
        for customer_id, channel, external in rows:
            newest.setdefault((customer_id, channel), str(external))  # ordered: newest first
        for customer_id in chunk:
            for channel in _notify_channels(wanted[customer_id]):
                address = newest.get((customer_id, channel))
                if address is not None:
                    found[customer_id] = address
                    break
    return found


def notification_address(session: Session, customer_id: int, channel: str) -> str | None:
    """The customer's native address for notifications on ``channel``, or None if unknown.

    SMS may use the shared phone identity (a number known from a call or a Telegram contact);
    WhatsApp and Telegram need the customer to have written on them. The newest identity wins.
    """
    return notification_addresses(session, {customer_id: channel}).get(customer_id)


def same_customer_keys_many(
    session: Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Per (channel, address) pair: every (channel, subscription address) under which the
    customer behind it may have subscribed (a caller told a promise on the phone subscribes by
    SMS, for example). Subscription addresses are conversation ids (``sms:+316...``); pairs of
    nobody known are left out. A few queries per :data:`LOOKUP_CHUNK` pairs.
    """
    customers = find_customer_ids(session, pairs)
    keys: dict[int, set[tuple[str, str]]] = {}
    for chunk in _chunks(sorted(set(customers.values()))):
        for customer_id, identity_channel, external in session.execute(
            select(
                ChannelIdentity.customer_id, ChannelIdentity.channel, ChannelIdentity.external_id
            ).where(ChannelIdentity.customer_id.in_(chunk))
        ):
            targets = PHONE_CHANNELS if identity_channel == PHONE_IDENTITY else (identity_channel,)
            keys.setdefault(customer_id, set()).update(
                (target, conversation_id(target, str(external))) for target in targets
            )
    return {pair: set(keys.get(customer_id, ())) for pair, customer_id in customers.items()}


class UnknownCustomer(LookupError):
    """No customer with this id."""


class ChannelNotLinked(LookupError):
    """The customer cannot be reached on the channel they chose (no identity there yet)."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"the customer is not known on {channel}")
        self.channel = channel


def set_preferred_channel(session: Session, customer_id: int, channel: str | None) -> Customer:
    """Send the customer's notifications to ``channel`` from now on (None: where subscribed).

    :class:`ChannelNotLinked` when the customer has no address on that channel,
    :class:`UnknownCustomer` for an unknown id, ValueError for a channel that cannot carry
    notifications. The caller commits.
    """
    if channel is not None and channel not in NOTIFY_CHANNELS:
        raise ValueError(f"notifications cannot go to {channel!r}; one of {NOTIFY_CHANNELS}")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownCustomer(f"unknown customer {customer_id}")
    if channel is not None and notification_address(session, customer_id, channel) is None:
        raise ChannelNotLinked(channel)
    customer.preferred_channel = channel
    return customer
