"""Channel state in the database: inbound events taken in, opt-outs, delivery status, payloads.

Everything that must survive a restart or hold across several workers is a row with a unique
constraint, written with ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL): the
database, not a lock in memory, decides who saw an event first. Functions take the caller's
session and do not commit.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.storage.inserts import insert_ignoring_conflict as insert_ignoring_conflict
from bot.storage.models import (
    ChannelCallbackPayload,
    ChannelDeliveryEvent,
    ChannelInbound,
    ChannelOptOut,
    ChannelOutbound,
)

#: How far along a message is, by Twilio delivery status: a late callback for an earlier state
#: (Twilio does not promise their order) never moves a message back. Failures are final.
_STATUS_RANK: dict[str, int] = {
    "queued": 0,
    "accepted": 1,
    "scheduled": 1,
    "sending": 2,
    "sent": 3,
    "partially_delivered": 4,
    "delivered": 5,
    "read": 6,
    "undelivered": 7,
    "failed": 7,
    "canceled": 7,
    "refused": 7,
}
#: Longest status stored (the columns are 32 characters; Twilio's words are shorter).
STATUS_CHARS = 32

#: Twilio's error code for "the recipient has opted out of messages from this sender".
TWILIO_UNSUBSCRIBED_RECIPIENT = 21610


# -- inbound events ------------------------------------------------------------------------------


def claim_inbound(
    session: Session,
    *,
    channel: str,
    external_id: str,
    address: str,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> int | None:
    """Record an inbound event; its row id, or None when it was taken in before (a retry).

    ``payload`` (the update or form as received) is kept until the event is finished, so a
    sweep (:func:`claim_stuck_inbound`) can process it again when this process dies first.
    """
    inserted = insert_ignoring_conflict(
        session,
        ChannelInbound,
        {
            "channel": channel,
            "external_id": external_id,
            "address": address,
            "status": "received",
            "received_at": now,
            "payload": payload,
        },
        ("channel", "external_id"),
    )
    if not inserted:
        return None
    return session.scalar(
        select(ChannelInbound.id).where(
            ChannelInbound.channel == channel, ChannelInbound.external_id == external_id
        )
    )


def finish_inbound(
    session: Session, inbound_id: int, *, now: datetime, error: str | None = None
) -> None:
    """Mark an inbound event ``done`` (or ``failed`` with ``error``) unless already failed.

    Its payload goes: a customer's message is kept in the conversation, not twice.
    """
    session.execute(
        update(ChannelInbound)
        .where(ChannelInbound.id == inbound_id, ChannelInbound.status == "received")
        .values(
            status="failed" if error else "done",
            processed_at=now,
            error=error[:2000] if error else None,
            payload=None,
        )
    )


@dataclass(frozen=True)
class StuckInbound:
    """An inbound event a sweep claimed for its one more try (see :func:`claim_stuck_inbound`)."""

    id: int
    channel: str
    external_id: str
    payload: dict[str, Any] | None


def claim_stuck_inbound(
    session: Session,
    *,
    channels: Sequence[str],
    received_before: datetime,
    now: datetime,
    limit: int = 100,
) -> list[StuckInbound]:
    """Claim events of ``channels`` still ``received`` since before ``received_before``.

    A webhook recorded them, then the process died before their turn ran. Each is claimed once
    (``swept_at`` set by a conditional UPDATE): two workers sweeping at the same moment never
    both get it, since PostgreSQL re-checks ``swept_at IS NULL`` on the row the other one
    updated, and SQLite serialises writers. The caller commits, then processes them.
    """
    candidates = (
        select(ChannelInbound.id)
        .where(
            ChannelInbound.channel.in_(list(channels)),
            ChannelInbound.status == "received",
            ChannelInbound.swept_at.is_(None),
            ChannelInbound.received_at < received_before,
        )
        .order_by(ChannelInbound.received_at, ChannelInbound.id)
        .limit(limit)
        .scalar_subquery()
    )
    rows = session.execute(
        update(ChannelInbound)
        .where(
            ChannelInbound.id.in_(candidates),
            # Repeated outside the subquery: these are what a concurrent claim re-checks.
            ChannelInbound.status == "received",
            ChannelInbound.swept_at.is_(None),
        )
        .values(swept_at=now)
        .returning(
            ChannelInbound.id,
            ChannelInbound.channel,
            ChannelInbound.external_id,
            ChannelInbound.payload,
        )
        .execution_options(synchronize_session=False)
    ).all()
    claimed = [StuckInbound(row[0], row[1], row[2], row[3]) for row in rows]
    return sorted(claimed, key=lambda event: event.id)


def abandon_stuck_inbound(
    session: Session, *, channels: Sequence[str], swept_before: datetime, now: datetime
) -> int:
    """Mark ``failed`` the events a sweep retried before ``swept_before`` that never finished.

    An event gets one more try, not a loop of them: whatever made the process die while
    handling it twice is for a person to look at. Returns how many were given up.
    """
    result = session.execute(
        update(ChannelInbound)
        .where(
            ChannelInbound.channel.in_(list(channels)),
            ChannelInbound.status == "received",
            ChannelInbound.swept_at < swept_before,
        )
        .values(
            status="failed",
            processed_at=now,
            payload=None,
            error="not finished after a second try (the service stopped while handling it)",
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def last_inbound_at(session: Session, *, channel: str, address: str) -> datetime | None:
    """When ``address`` last wrote to us on ``channel`` (None: never)."""
    return session.scalar(
        select(ChannelInbound.received_at)
        .where(ChannelInbound.channel == channel, ChannelInbound.address == address)
        .order_by(ChannelInbound.received_at.desc())
        .limit(1)
    )


def within_window(
    session: Session, *, channel: str, address: str, now: datetime, window: timedelta
) -> bool:
    """True when ``address`` wrote to us on ``channel`` less than ``window`` ago."""
    last = last_inbound_at(session, channel=channel, address=address)
    return last is not None and now - last < window


# -- opt-outs ------------------------------------------------------------------------------------


def _opt_out_row(session: Session, channel: str, address: str, now: datetime) -> ChannelOptOut:
    insert_ignoring_conflict(
        session,
        ChannelOptOut,
        {"channel": channel, "address": address, "updated_at": now},
        ("channel", "address"),
    )
    row = session.scalars(
        select(ChannelOptOut)
        .where(ChannelOptOut.channel == channel, ChannelOptOut.address == address)
        .with_for_update()
    ).one()
    return row


def opt_out(session: Session, *, channel: str, address: str, keyword: str, now: datetime) -> None:
    """``address`` said STOP on ``channel``: nothing may be sent to it until it opts back in."""
    row = _opt_out_row(session, channel, address, now)
    row.opted_out_at = now
    row.keyword = keyword[:32]
    row.updated_at = now


def opt_in(session: Session, *, channel: str, address: str, keyword: str, now: datetime) -> None:
    """``address`` said START on ``channel``: it may be messaged again."""
    row = _opt_out_row(session, channel, address, now)
    row.opted_out_at = None
    row.opted_in_at = now
    row.keyword = keyword[:32]
    row.updated_at = now


def is_opted_out(session: Session, *, channel: str, address: str) -> bool:
    """True when ``address`` opted out on ``channel`` and did not opt back in.

    Every send path calls this right before sending.
    """
    found = session.scalar(
        select(ChannelOptOut.id).where(
            ChannelOptOut.channel == channel,
            ChannelOptOut.address == address,
            ChannelOptOut.is_opted_out,
        )
    )
    return found is not None


# -- delivery status -----------------------------------------------------------------------------


def advance_status(current: str, new: str) -> str:
    """The status a message has after a report of ``new``: never back to an earlier state."""
    if _STATUS_RANK.get(new, 0) >= _STATUS_RANK.get(current, 0):
        return new[:STATUS_CHARS]
    return current


def record_delivery_event(
    session: Session,
    *,
    message_sid: str,
    status: str,
    error_code: int | None,
    details: dict[str, str],
    now: datetime,
) -> ChannelOutbound | None:
    """Store a status callback once per (message, status) and advance the message's status.

    Returns the outbound message it is about (None when unknown here or a repeated callback).
    """
    outbound = session.scalars(
        select(ChannelOutbound).where(ChannelOutbound.twilio_sid == message_sid)
    ).first()
    inserted = insert_ignoring_conflict(
        session,
        ChannelDeliveryEvent,
        {
            "outbound_id": outbound.id if outbound is not None else None,
            "message_sid": message_sid[:64],
            "status": status[:STATUS_CHARS],
            "error_code": error_code,
            "details": details,
            "received_at": now,
        },
        ("message_sid", "status"),
    )
    if not inserted or outbound is None:
        return None
    outbound.status = advance_status(outbound.status, status)
    if error_code is not None:
        outbound.error_code = error_code
    outbound.updated_at = now
    return outbound


# -- Telegram button payloads --------------------------------------------------------------------


def payload_key(payload: str) -> str:
    """A short, stable key for a button payload (22 characters of its SHA-256)."""
    digest = hashlib.sha256(payload.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:22]


def store_callback_payload(session: Session, payload: str, now: datetime) -> str:
    """Keep ``payload`` under its key (idempotent) and return the key."""
    key = payload_key(payload)
    insert_ignoring_conflict(
        session,
        ChannelCallbackPayload,
        {"key": key, "payload": payload, "created_at": now},
        ("key",),
    )
    return key


def load_callback_payload(session: Session, key: str) -> str | None:
    """The payload kept under ``key``, or None."""
    return session.scalar(
        select(ChannelCallbackPayload.payload).where(ChannelCallbackPayload.key == key)
    )


def fail_inbound(
    session: Session, *, channel: str, external_id: str, error: str, now: datetime
) -> None:
    """Mark the inbound event ``failed`` with ``error`` (by the platform's id)."""
    session.execute(
        update(ChannelInbound)
        .where(ChannelInbound.channel == channel, ChannelInbound.external_id == external_id)
        .values(status="failed", processed_at=now, error=error[:2000], payload=None)
    )
