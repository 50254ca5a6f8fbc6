"""The supervisors' view of the outbox queue: dead letters, retrying one, and queue health.

- ``GET /api/v1/outbox/dead-letters``: messages given up on, most recent first, with the last
  error (paged with ``limit`` and ``offset``).
- ``POST /api/v1/outbox/{id}/retry``: a dead message gets a fresh set of attempts, due now
  (409 when it is not dead, 404 when unknown).
- ``GET /api/v1/outbox/health``: pending, retrying, in flight, sent in the last hour, dead, and
  the age of the oldest unsent message.

All three take a supervisor or admin session (the CSRF token on the retry) or the operations
API key (``X-API-Key``) of machine clients. The handlers are plain functions run in FastAPI's
thread pool (blocking database session).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.api.deps import app_sessions
from bot.api.outages import SupervisorOrKey
from bot.api.schemas import ErrorOut
from bot.delivery.store import count_dead, dead_letters, queue_health, retry_dead
from bot.storage.models import Outage, OutboxMessage

router = APIRouter(prefix="/api/v1/outbox", tags=["outbox"])

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


class DeadLetterOut(BaseModel):
    """A message the workers gave up on."""

    id: int
    kind: str = Field(description="outage_fixed, promise_renewed, ...")
    outage: str | None = Field(description="The outage's reference.")
    channel: str
    address: str = Field(description="The recipient (a chat id, a phone number).")
    language: str
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    created_at: datetime


class DeadLettersOut(BaseModel):
    """A page of dead letters and how many there are in all."""

    total: int
    items: list[DeadLetterOut]


class RetryOut(BaseModel):
    """A dead message put back in the queue."""

    id: int
    status: str
    next_attempt_at: datetime


class HealthOut(BaseModel):
    """The outbox queue at this moment."""

    pending: int = Field(description="Waiting to be handed to a worker, retries included.")
    retrying: int = Field(description="Of the pending, waiting for a retry after a failure.")
    in_flight: int = Field(description="Handed to a worker and not done yet.")
    sent_last_hour: int
    dead: int
    oldest_pending_age_seconds: float | None = Field(
        description="How long the oldest unsent message has waited (null: none)."
    )


@router.get("/dead-letters", response_model=DeadLettersOut, responses=_ERRORS)
def list_dead_letters(
    request: Request,
    _user: SupervisorOrKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DeadLettersOut:
    """Messages given up on, the most recent first, with the reason."""
    with app_sessions(request)() as session:
        rows = dead_letters(session, limit=limit, offset=offset)
        references = _references(session, rows)
        return DeadLettersOut(
            total=count_dead(session),
            items=[
                DeadLetterOut(
                    id=row.id,
                    kind=row.kind,
                    outage=references.get(row.outage_id),
                    channel=row.channel,
                    address=row.address,
                    language=row.language,
                    attempts=row.attempts,
                    last_error=row.last_error,
                    last_attempt_at=row.last_attempt_at,
                    created_at=row.created_at,
                )
                for row in rows
            ],
        )


@router.post(
    "/{outbox_id}/retry",
    response_model=RetryOut,
    responses={**_ERRORS, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def retry_dead_letter(
    request: Request, outbox_id: Annotated[int, Path(ge=1)], _user: SupervisorOrKey
) -> RetryOut:
    """Put a dead message back in the queue with a fresh set of attempts, due now."""
    now = datetime.now(UTC)
    with app_sessions(request)() as session, session.begin():
        row = session.get(OutboxMessage, outbox_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"unknown outbox message {outbox_id}")
        if not retry_dead(session, outbox_id, now=now):
            raise HTTPException(
                status_code=409, detail=f"outbox message {outbox_id} is {row.status}, not dead"
            )
    return RetryOut(id=outbox_id, status="pending", next_attempt_at=now)


@router.get("/health", response_model=HealthOut, responses=_ERRORS)
def outbox_health(request: Request, _user: SupervisorOrKey) -> HealthOut:
    """How the queue is doing: backlog, throughput in the last hour, dead letters."""
    with app_sessions(request)() as session:
        health = queue_health(session, now=datetime.now(UTC))
    return HealthOut(
        pending=health.pending,
        retrying=health.retrying,
        in_flight=health.in_flight,
        sent_last_hour=health.sent_last_hour,
        dead=health.dead,
        oldest_pending_age_seconds=health.oldest_pending_age_seconds,
    )


def _references(session: Session, rows: list[OutboxMessage]) -> dict[int, str]:
    ids = {row.outage_id for row in rows}
    if not ids:
        return {}
    found = session.execute(select(Outage.id, Outage.reference).where(Outage.id.in_(ids)))
    return {outage_id: reference for outage_id, reference in found}
