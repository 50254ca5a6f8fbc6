"""Where a customer's notifications go: the channel they chose, else where they subscribed.

The promise service records every follow-up message in the outbox with the channel and address
of the subscription behind it (:func:`bot.promises.service.queue_message`, and in bulk when an
outage is resolved); it asks :func:`outbox_recipients` first, so a subscription made by SMS
reaches a customer who chose Telegram on Telegram, and the other way round.

Everything here works on many subscribers at once, with a few queries per
:data:`~bot.customers.identities.LOOKUP_CHUNK` subscribers: resolving an outage with tens of
thousands of subscribers happens inside one request. The one-subscriber functions are the same
code with a list of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.customers.identities import (
    LOOKUP_CHUNK,
    conversation_id,
    find_customer_ids,
    notification_addresses,
)
from bot.storage.models import ChannelOptOut, Customer, OutboxMessage

#: (channel, address) of a subscriber or of where its message goes.
Address = tuple[str, str]


def _chunks(values: Iterable[Any]) -> list[list[Any]]:
    items = list(values)
    return [items[start : start + LOOKUP_CHUNK] for start in range(0, len(items), LOOKUP_CHUNK)]


def _opted_out(session: Session, addresses: set[Address]) -> set[Address]:
    """Those of ``addresses`` that may not be messaged (STOP, a blocked bot)."""
    found: set[Address] = set()
    for chunk in _chunks({address for _, address in addresses}):
        rows = session.execute(
            select(ChannelOptOut.channel, ChannelOptOut.address).where(
                ChannelOptOut.address.in_(chunk), ChannelOptOut.is_opted_out
            )
        )
        found.update((channel, address) for channel, address in rows)
    found &= addresses
    return found


def _preferred_channels(session: Session, customer_ids: set[int]) -> dict[int, str]:
    """The channel each customer chose; customers who chose none are left out."""
    chosen: dict[int, str] = {}
    for chunk in _chunks(customer_ids):
        rows = session.execute(
            select(Customer.id, Customer.preferred_channel).where(
                Customer.id.in_(chunk), Customer.preferred_channel.is_not(None)
            )
        )
        chosen.update((customer_id, str(channel)) for customer_id, channel in rows)
    return chosen


def _routes(session: Session, subscribers: Sequence[Address]) -> list[tuple[Address, bool]]:
    """Per subscriber: where its notification goes, and whether its customer chose a channel.

    The customer's preferred channel when they chose one and can be reached there (an address
    on it, not opted out or blocking us there); otherwise the subscription's own channel and
    address, unchanged. A rerouted address has the conversation-id form (``sms:+316...``,
    ``telegram:4242``) that subscriptions use.
    """
    customers = find_customer_ids(session, subscribers)
    chosen = _preferred_channels(session, set(customers.values()))
    # Only customers reached elsewhere than they subscribed need an address on their choice.
    elsewhere = {
        customer_id: chosen[customer_id]
        for (channel, _), customer_id in customers.items()
        if customer_id in chosen and chosen[customer_id] != channel
    }
    natives = notification_addresses(session, elsewhere)
    blocked = _opted_out(session, {(elsewhere[c], native) for c, native in natives.items()})
    routes: list[tuple[Address, bool]] = []
    for channel, address in subscribers:
        customer_id = customers.get((channel, address))
        if customer_id is None or customer_id not in chosen:
            routes.append(((channel, address), False))
            continue
        preferred = chosen[customer_id]
        native = natives.get(customer_id) if preferred != channel else None
        if native is None or (preferred, native) in blocked:
            routes.append(((channel, address), True))
        else:
            routes.append(((preferred, conversation_id(preferred, native)), True))
    return routes


def notification_target(session: Session, channel: str, address: str) -> Address:
    """The (channel, address) a notification for the subscriber ``address`` goes to.

    See :func:`_routes`: the preferred channel when the customer chose one and can be reached
    there, else the subscription's own channel and address.
    """
    return _routes(session, [(channel, address)])[0][0]


def _already_queued(
    session: Session,
    *,
    outage_id: int,
    kind: str,
    payload: Mapping[str, Any],
    targets: set[Address],
) -> set[Address]:
    """Those of ``targets`` that already have this message (kind, outage, content) queued."""
    found: set[Address] = set()
    wanted = dict(payload)
    for chunk in _chunks({address for _, address in targets}):
        rows = session.execute(
            select(OutboxMessage.channel, OutboxMessage.address, OutboxMessage.payload).where(
                OutboxMessage.outage_id == outage_id,
                OutboxMessage.kind == kind,
                OutboxMessage.address.in_(chunk),
            )
        )
        # JSON has no equality operator in PostgreSQL: compare in Python (a handful of rows).
        found.update(
            (channel, address)
            for channel, address, queued in rows
            if (channel, address) in targets and dict(queued) == wanted
        )
    return found


def outbox_recipients(
    session: Session,
    subscribers: Sequence[Address],
    *,
    outage_id: int,
    kind: str,
    payload: Mapping[str, Any],
) -> list[Address | None]:
    """Per subscriber (in order): where its outbox message goes, or None when already queued.

    A customer who subscribed on two channels and chose one gets the message once: a message of
    the same kind, outage and content already queued for the same (channel, address), or going
    there for an earlier subscriber of this list, makes this one redundant. Subscribers who
    chose no channel keep theirs and are never left out here (their subscription's dedupe key
    keeps them from getting a message twice).
    """
    routes = _routes(session, subscribers)
    chosen = {target for target, has_choice in routes if has_choice}
    queued = _already_queued(
        session, outage_id=outage_id, kind=kind, payload=payload, targets=chosen
    )
    going: set[Address] = set()
    recipients: list[Address | None] = []
    for target, has_choice in routes:
        if has_choice and (target in queued or target in going):
            recipients.append(None)
            continue
        going.add(target)
        recipients.append(target)
    return recipients


def outbox_recipient(
    session: Session,
    *,
    channel: str,
    address: str,
    outage_id: int,
    kind: str,
    payload: Mapping[str, Any],
) -> Address | None:
    """:func:`outbox_recipients` for one subscriber."""
    return outbox_recipients(
        session, [(channel, address)], outage_id=outage_id, kind=kind, payload=payload
    )[0]
