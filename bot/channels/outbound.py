"""Outbound messages of every channel: the result of a send, and its row in the database.

Each send path (Twilio's :class:`~bot.channels.twilio.TwilioSender`, Telegram's
:meth:`~bot.channels.telegram.TelegramChannel.send`) records the message in ``channel_outbound``
before calling the platform. With an ``idempotency_key`` the unique key decides, even between
two workers at the same moment, which one sends; the other gets ``duplicate`` (or ``busy``).

Leased claims (for senders that retry, the outbox workers): the row is written as a *claim*
(status ``queued``, no platform id yet, ``claimed_at`` now) right before the REST call, and
finished with the platform's answer. A retry under the same key (:func:`claim_outbound`) finds
one of four things:

- the platform took the message (a ``twilio_sid``, or Telegram's ``sent``): ``done``, nothing
  is sent again;
- the platform never took it (``failed``: it answered with an error or could not be reached;
  ``refused``: our own checks): ``send``, the row is claimed again (a new version) and sent;
- a claim younger than the lease (its call may still be running): ``busy``, try after
  ``retry_at``;
- a claim older than the lease, or ``unknown`` (the call timed out, the connection dropped
  mid-request, the process died): ``reconcile``, the row is claimed again but the sender must
  first ask the platform whether the earlier attempt arrived (Twilio: list the messages to the
  number and match the body) and only send when it did not.

Every claim is a compare-and-set on the row's version (``attempts``), so of two workers retrying
the same message at the same moment exactly one moves on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.storage.inserts import insert_ignoring_conflict
from bot.storage.models import ChannelOutbound

#: Our status of a claimed message whose REST call has not come back (no platform id yet).
CLAIMED: Final = "queued"
#: The REST call failed in a way that leaves open whether the platform took the message.
UNKNOWN: Final = "unknown"
#: Statuses of a message the platform certainly never took: it may be sent again.
NOT_SENT: Final = ("failed", "refused")
#: Columns a new claim never changes: the key, and the first claim's time, from which an earlier
#: attempt is looked for at the platform.
_FIXED_COLUMNS: Final = frozenset({"idempotency_key", "created_at", "channel", "address"})
#: What the earlier attempt sent stays on the row until the lookup has shown it never arrived.
_CONTENT_COLUMNS: Final = frozenset(
    {"body", "sender", "content_sid", "content_variables", "kind", "conversation_id"}
)


@dataclass(frozen=True)
class SendResult:
    """What became of one outbound message.

    ``status``: ``refused`` (opted out, outside the WhatsApp window without a template, no
    sender, channel not configured), ``failed`` (the platform refused or was unreachable),
    ``unknown`` (the call failed midway: a retry looks the message up before sending it again),
    ``busy`` (another attempt holds the message's claim until ``retry_at``), ``duplicate`` (its
    idempotency key was sent before: nothing sent again), ``sent`` (Telegram) or Twilio's
    status of the created message (``queued``, ``accepted``, ...).

    ``retryable``: the failure is worth another try later (network, HTTP 429 or 5xx, Telegram's
    flood control). ``error_code``: the platform's error code (Twilio's 21211, 21610, ...).
    ``reconciled``: the message was found at the platform, sent by an earlier attempt.
    """

    status: str
    outbound_id: int | None = None
    twilio_sid: str | None = None
    reason: str | None = None
    retryable: bool = False
    error_code: int | None = None
    retry_at: datetime | None = None
    reconciled: bool = False


class ClaimAction(enum.StrEnum):
    """What a sender does after :func:`claim_outbound`."""

    #: Send now: a new message, or one the platform certainly never took.
    SEND = "send"
    #: Ask the platform whether the earlier attempt arrived; send only when it did not.
    RECONCILE = "reconcile"
    #: Another attempt holds the claim; try again at ``retry_at``.
    BUSY = "busy"
    #: Sent before: send nothing.
    DONE = "done"


@dataclass(frozen=True)
class EarlierAttempt:
    """What an earlier attempt with an unknown outcome sent, to look it up at the platform."""

    body: str | None
    sender: str | None
    content_sid: str | None
    #: When the message was first claimed: it cannot have reached the platform before.
    since: datetime


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim_outbound`.

    ``version`` is the claim's version (the row's ``attempts``): finishing writes use it, so an
    attempt whose lease ran out cannot overwrite the outcome of the one that took over.
    """

    action: ClaimAction
    outbound_id: int | None
    version: int = 1
    status: str | None = None
    twilio_sid: str | None = None
    retry_at: datetime | None = None
    earlier: EarlierAttempt | None = None


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


def claim_outbound(
    session: Session, values: dict[str, Any], *, lease: timedelta, now: datetime
) -> Claim:
    """Record a send as a claim, or take over the earlier claim of its idempotency key.

    ``values`` are the row's columns as the sender decided them now (``status`` ``queued`` to
    send, ``refused`` with ``error_message`` when a check forbids it). ``lease``: how long a
    claim is taken to be still running; it must exceed the longest REST call. See the module
    docstring for the four outcomes. The caller commits the session before calling the platform.
    """
    values = {**values, "claimed_at": now, "attempts": 1}
    key = values.get("idempotency_key")
    if key is None:
        row = ChannelOutbound(**values)
        session.add(row)
        session.flush()
        return Claim(ClaimAction.SEND, row.id)
    new_id = _insert_claim(session, values)
    if new_id is not None:
        return Claim(ClaimAction.SEND, new_id)
    earlier = session.scalars(
        select(ChannelOutbound)
        .where(ChannelOutbound.idempotency_key == key)
        .execution_options(populate_existing=True)
    ).one()
    if earlier.twilio_sid is not None or earlier.status not in (CLAIMED, UNKNOWN, *NOT_SENT):
        return Claim(
            ClaimAction.DONE,
            earlier.id,
            earlier.attempts,
            status=earlier.status,
            twilio_sid=earlier.twilio_sid,
        )
    action = ClaimAction.SEND
    changes = {k: v for k, v in values.items() if k not in _FIXED_COLUMNS}
    if earlier.status in (CLAIMED, UNKNOWN):
        started = earlier.claimed_at or earlier.created_at
        if started > now - lease:
            return Claim(ClaimAction.BUSY, earlier.id, earlier.attempts, retry_at=started + lease)
        if values["status"] == CLAIMED:
            action = ClaimAction.RECONCILE
            changes = {k: v for k, v in changes.items() if k not in _CONTENT_COLUMNS}
    changes.update(attempts=earlier.attempts + 1, error_code=None)
    if values["status"] == CLAIMED:
        changes["error_message"] = None
    # Compare-and-set on the version: of two workers taking over at once, one wins.
    taken = session.execute(
        update(ChannelOutbound)
        .where(
            ChannelOutbound.id == earlier.id,
            ChannelOutbound.attempts == earlier.attempts,
            ChannelOutbound.status == earlier.status,
        )
        .values(**changes)
        .returning(ChannelOutbound.id)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        return Claim(ClaimAction.BUSY, earlier.id, earlier.attempts, retry_at=now + lease)
    return Claim(
        action,
        earlier.id,
        earlier.attempts + 1,
        earlier=EarlierAttempt(
            body=earlier.body,
            sender=earlier.sender,
            content_sid=earlier.content_sid,
            since=earlier.created_at,
        )
        if action is ClaimAction.RECONCILE
        else None,
    )


def _insert_claim(session: Session, values: dict[str, Any]) -> int | None:
    """Insert the claim unless its key exists; its id, or None (one round trip if possible)."""
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        inserted: int | None = session.execute(
            insert(ChannelOutbound)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(ChannelOutbound.id)
        ).scalar_one_or_none()
        return inserted
    if not insert_ignoring_conflict(session, ChannelOutbound, values, ("idempotency_key",)):
        return None
    key = values["idempotency_key"]
    return session.scalar(select(ChannelOutbound.id).where(ChannelOutbound.idempotency_key == key))


def update_claim(
    session: Session, outbound_id: int, version: int, values: dict[str, Any], *, now: datetime
) -> bool:
    """Write ``values`` to a claimed row if the claim ``version`` is still current.

    False when another attempt took the message over meanwhile (its lease had run out): the
    caller must then neither send nor record anything.
    """
    done = session.execute(
        update(ChannelOutbound)
        .where(ChannelOutbound.id == outbound_id, ChannelOutbound.attempts == version)
        .values(**values, updated_at=now)
        .returning(ChannelOutbound.id)
        .execution_options(synchronize_session=False)
    ).first()
    return done is not None


def relax_durability(session: Session) -> None:
    """Let this transaction commit without waiting for the disk (PostgreSQL; else nothing).

    For writes that record a send's outcome: should the database crash and lose them, the row
    is back to its claim, and a retry settles it by looking the message up. The claim itself,
    written before the REST call, always commits durably.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def is_known_sid(session: Session, sid: str, *, besides: int) -> bool:
    """True when another outbound row already holds the platform id ``sid``.

    A lookup must not adopt a message that belongs to another row (the same text sent to the
    same number for another outage, say).
    """
    owner = session.scalar(select(ChannelOutbound.id).where(ChannelOutbound.twilio_sid == sid))
    return owner is not None and owner != besides
