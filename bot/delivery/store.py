"""The outbox as a delivery queue: which messages are due, what became of each, the dead letters.

States of an outbox row (``status`` plus ``queued_at``):

- ``pending`` / ``failed`` with ``queued_at`` null: waiting until ``next_attempt_at``
  (``failed``: the last attempt failed for a passing reason and will be retried);
- ``pending`` / ``failed`` with ``queued_at`` set: handed to a worker queue (in flight); handed
  over again once ``queued_at`` is older than ``delivery_requeue_after_seconds``;
- ``sent``: the channel took it (``sent_at``); ``dead``: given up on (``last_error`` says why)
  until a supervisor retries it.

Functions take the caller's session and do not commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bot.storage.models import OutboxMessage, Subscription

#: Statuses of messages still to be sent.
WAITING: Final = ("pending", "failed")
#: Longest error text kept on a row.
ERROR_CHARS: Final = 2000


@dataclass(frozen=True)
class DueMessage:
    """A message handed to the workers: its id and recipient (which make its job id)."""

    id: int
    channel: str
    address: str


@dataclass(frozen=True)
class QueueHealth:
    """The state of the outbox queue at a moment (``GET /api/v1/outbox/health``)."""

    #: Waiting to be handed to a worker (due now or later), retries included.
    pending: int
    #: Of those, waiting for a retry after a transient failure.
    retrying: int
    #: Handed to a worker and not done yet.
    in_flight: int
    sent_last_hour: int
    dead: int
    #: Age of the oldest message not yet sent (pending or in flight), in seconds; None if none.
    oldest_pending_age_seconds: float | None


def _due(now: datetime, stale: datetime) -> list[ColumnElement[bool]]:
    return [
        OutboxMessage.status.in_(WAITING),
        OutboxMessage.next_attempt_at <= now,
        or_(OutboxMessage.queued_at.is_(None), OutboxMessage.queued_at < stale),
    ]


def take_due(
    session: Session, *, now: datetime, limit: int, requeue_after: timedelta
) -> list[DueMessage]:
    """Mark up to ``limit`` due messages as handed to the workers and return them.

    Due: waiting, ``next_attempt_at`` passed, and not queued (or queued longer ago than
    ``requeue_after``: its job was lost). The UPDATE repeats the condition, so two dispatchers
    running at once never both take a message.
    """
    stale = now - requeue_after
    conditions = _due(now, stale)
    candidates = (
        select(OutboxMessage.id)
        .where(*conditions)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .scalar_subquery()
    )
    rows = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(candidates), *conditions)
        .values(queued_at=now)
        .returning(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.address)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((DueMessage(r.id, r.channel, r.address) for r in rows), key=lambda m: m.id)


def release(session: Session, ids: list[int]) -> None:
    """Hand messages back (their job could not be queued): due again at the next round."""
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.status.in_(WAITING))
            .values(queued_at=None)
            .execution_options(synchronize_session=False)
        )


def record_sent(session: Session, outbox_id: int, *, now: datetime, attempted: bool) -> None:
    """The channel took the message; its subscription counts as notified."""
    values: dict[str, object] = {"status": "sent", "sent_at": now, "queued_at": None}
    if attempted:
        values.update(attempts=OutboxMessage.attempts + 1, last_attempt_at=now)
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    subscription = (
        select(OutboxMessage.subscription_id).where(OutboxMessage.id == outbox_id).scalar_subquery()
    )
    session.execute(
        update(Subscription)
        .where(Subscription.id == subscription, Subscription.notified_at.is_(None))
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )


def record_retry(
    session: Session, outbox_id: int, *, now: datetime, error: str, next_attempt_at: datetime
) -> None:
    """A transient failure: ``failed`` until ``next_attempt_at``."""
    _record_attempt(
        session, outbox_id, "failed", now=now, error=error, next_attempt_at=next_attempt_at
    )


def record_dead(session: Session, outbox_id: int, *, now: datetime, error: str) -> None:
    """Given up on: a permanent failure, or the last attempt failed."""
    _record_attempt(session, outbox_id, "dead", now=now, error=error)


def _record_attempt(
    session: Session,
    outbox_id: int,
    status: str,
    *,
    now: datetime,
    error: str,
    next_attempt_at: datetime | None = None,
) -> None:
    values: dict[str, object] = {
        "status": status,
        "attempts": OutboxMessage.attempts + 1,
        "last_attempt_at": now,
        "last_error": error[:ERROR_CHARS],
        "queued_at": None,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def record_later(session: Session, outbox_id: int, *, at: datetime, reason: str) -> None:
    """Not attempted now (busy elsewhere, or no sending slot): due again at ``at``."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.status.in_(WAITING))
        .values(next_attempt_at=at, queued_at=None, last_error=reason[:ERROR_CHARS])
        .execution_options(synchronize_session=False)
    )


def dead_letters(session: Session, *, limit: int, offset: int = 0) -> list[OutboxMessage]:
    """Dead messages, the most recently given up on first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == "dead")
            .order_by(OutboxMessage.last_attempt_at.desc(), OutboxMessage.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )


def count_dead(session: Session) -> int:
    """How many messages are dead."""
    return int(
        session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "dead")
        )
        or 0
    )


def retry_dead(session: Session, outbox_id: int, *, now: datetime) -> bool:
    """Give a dead message a fresh set of attempts, due now; False if it is not dead."""
    done = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now, queued_at=None)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    ).first()
    return done is not None


def queue_health(session: Session, *, now: datetime) -> QueueHealth:
    """Counts per state, sent in the last hour, and the age of the oldest unsent message."""
    waiting = OutboxMessage.status.in_(WAITING)
    queued = OutboxMessage.queued_at.is_not(None)
    counts = session.execute(
        select(
            func.count().filter(and_(waiting, ~queued)),
            func.count().filter(and_(OutboxMessage.status == "failed", ~queued)),
            func.count().filter(and_(waiting, queued)),
            func.count().filter(OutboxMessage.status == "dead"),
            func.min(OutboxMessage.created_at).filter(waiting),
        )
    ).one()
    sent = session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == "sent", OutboxMessage.sent_at >= now - timedelta(hours=1))
    )
    oldest: datetime | None = counts[4]
    return QueueHealth(
        pending=int(counts[0]),
        retrying=int(counts[1]),
        in_flight=int(counts[2]),
        sent_last_hour=int(sent or 0),
        dead=int(counts[3]),
        oldest_pending_age_seconds=(now - oldest).total_seconds() if oldest else None,
    )
