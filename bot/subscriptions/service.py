"""Subscribe and unsubscribe: at most one active subscription per address and outage.

Each change is committed in its own transaction by the caller's session, so a crash after the
customer was told "we'll let you know" cannot lose the subscription.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.storage.models import Subscription


def subscribe(
    session: Session,
    *,
    channel: str,
    address: str,
    language: str,
    now: datetime,
    outage_id: int | None,
    conversation_id: str | None = None,
    postcode: str | None = None,
    service: str | None = None,
) -> Subscription:
    """The active subscription of ``address`` to the outage, created if there is none."""
    existing = session.scalars(
        select(Subscription).where(
            Subscription.channel == channel,
            Subscription.address == address,
            Subscription.outage_id == outage_id,
            Subscription.cancelled_at.is_(None),
        )
    ).first()
    if existing is not None:
        existing.language = language
        return existing
    subscription = Subscription(
        channel=channel,
        address=address,
        language=language,
        outage_id=outage_id,
        conversation_id=conversation_id,
        postcode=postcode,
        service=service,
        created_at=now,
    )
    session.add(subscription)
    session.flush()
    return subscription


def unsubscribe(session: Session, *, channel: str, address: str, now: datetime) -> int:
    """Cancel every active subscription of ``address``; returns how many were cancelled."""
    active = session.scalars(
        select(Subscription).where(
            Subscription.channel == channel,
            Subscription.address == address,
            Subscription.cancelled_at.is_(None),
        )
    ).all()
    for subscription in active:
        subscription.cancelled_at = now
    return len(active)
