"""Channel state in the database: inbound events taken in, opt-outs, delivery status, payloads.

Everything that must survive a restart or hold across several workers is a row with a unique
constraint, written with ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL): the
database, not a lock in memory, decides who saw an event first. Functions take the caller's
session and do not commit.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.storage.models import (
    Base,
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


def insert_ignoring_conflict(
    session: Session, model: type[Base], values: Mapping[str, Any], conflict: Sequence[str]
) -> bool:
    """Insert a row unless one with the same ``conflict`` columns exists; True if inserted.

    Concurrent inserts of the same key are safe: PostgreSQL makes the second wait for the
    first and then do nothing; SQLite serialises writers.
    """
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(model)
            .values(**values)
            .on_conflict_do_nothing(index_elements=conflict)
            # RETURNING tells reliably whether the row went in (rowcount can be -1 here).
            .returning(literal(1, Integer))
        )
        return session.execute(statement).first() is not None
    # Other databases: a savepoint absorbs the unique violation.
    try:
        with session.begin_nested():
            session.add(model(**values))
        return True
    except IntegrityError:
        return False


# -- inbound events ------------------------------------------------------------------------------


def claim_inbound(
    session: Session, *, channel: str, external_id: str, address: str, now: datetime
) -> int | None:
    """Record an inbound event; its row id, or None when it was taken in before (a retry)."""
    inserted = insert_ignoring_conflict(
        session,
        ChannelInbound,
        {
            "channel": channel,
            "external_id": external_id,
            "address": address,
            "status": "received",
            "received_at": now,
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
    """Mark an inbound event ``done`` (or ``failed`` with ``error``) unless already failed."""
    session.execute(
        update(ChannelInbound)
        .where(ChannelInbound.id == inbound_id, ChannelInbound.status == "received")
        .values(
            status="failed" if error else "done",
            processed_at=now,
            error=error[:2000] if error else None,
        )
    )


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
        .values(status="failed", processed_at=now, error=error[:2000])
    )
