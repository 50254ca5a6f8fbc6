"""Forwarding each new observation to the CX webhook (a Slack or Teams incoming webhook).

The forward state is a row of ``feedback_forwards``, written in the same transaction as the
observation (:func:`bot.feedback.service.record_feedback` with ``forward=True``), so nothing is
lost when the webhook fails or the process dies: the row stays and a later round, in this or
another process, sends it.

- A round claims due rows with one conditional UPDATE (:func:`claim_due`): ``pending`` and due,
  or ``sending`` whose claim is older than ``cx_forward_lease_seconds`` (its process died). The
  UPDATE repeats the condition and sets a fresh claim token, so of two service processes only
  one gets a row, and only the token's holder may record the result.
- A claim counts as an attempt, so a crash loop cannot retry forever.
- 2xx: ``sent``. A network error, timeout, 408/425/429 or 5xx: ``pending`` again after an
  exponential backoff with jitter (:func:`bot.delivery.policy.backoff_seconds`), until
  ``cx_webhook_max_attempts``. Another 4xx (wrong URL, payload refused) will not get better by
  waiting: ``failed`` at once. ``failed`` rows are kept; the CX page shows their count and
  :func:`retry_failed` schedules them again.

Still possible: a process that stalls (not crashes) for longer than the lease after posting
and before recording the answer lets another process post the same observation again. The
lease is validated to be at least twice the webhook timeout, so a slow webhook alone does not
cause it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from bot.delivery.policy import backoff_seconds
from bot.settings import Settings
from bot.storage.db import SessionFactory
from bot.storage.models import Feedback, FeedbackForward, Outage
from bot.storage.types import utcnow
from bot.web.i18n import translate

logger = logging.getLogger(__name__)

#: Longest error text kept on a row.
ERROR_CHARS: Final = 2000
#: Client errors that may pass: timeout, too early, too many requests.
_TRANSIENT_4XX: Final = frozenset({408, 425, 429})
#: Most rows one round claims.
BATCH: Final = 20


@dataclass(frozen=True)
class Claim:
    """A forward claimed by this process: post it, then record the result with the token."""

    forward_id: int
    feedback_id: int
    token: str
    attempts: int


def claim_due(
    session: Session, *, now: datetime, lease: timedelta, max_attempts: int, limit: int = BATCH
) -> list[Claim]:
    """Claim up to ``limit`` forwards that are due (the caller commits at once).

    A ``sending`` row whose lease ended after its last allowed attempt becomes ``failed``
    instead of being claimed again.
    """
    stale = now - lease
    abandoned = and_(FeedbackForward.status == "sending", FeedbackForward.claimed_at < stale)
    session.execute(
        update(FeedbackForward)
        .where(abandoned, FeedbackForward.attempts >= max_attempts)
        .values(
            status="failed",
            claim_token=None,
            last_error="no result recorded for the last attempt (the process stopped?)",
        )
        .execution_options(synchronize_session=False)
    )
    due = or_(
        and_(FeedbackForward.status == "pending", FeedbackForward.next_attempt_at <= now),
        abandoned,
    )
    candidates = (
        select(FeedbackForward.id)
        .where(due)
        .order_by(FeedbackForward.next_attempt_at, FeedbackForward.id)
        .limit(limit)
        .scalar_subquery()
    )
    token = uuid.uuid4().hex
    rows = session.execute(
        update(FeedbackForward)
        # The condition again: a row another process claimed since the subquery read it no
        # longer matches (PostgreSQL re-checks it on the locked row; SQLite writes serially).
        .where(FeedbackForward.id.in_(candidates), due)
        .values(
            status="sending",
            claimed_at=now,
            claim_token=token,
            attempts=FeedbackForward.attempts + 1,
            last_attempt_at=now,
        )
        .returning(FeedbackForward.id, FeedbackForward.feedback_id, FeedbackForward.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(
        (Claim(r.id, r.feedback_id, token, r.attempts) for r in rows), key=lambda c: c.forward_id
    )


def _finish(session: Session, claim: Claim, **values: Any) -> bool:
    done = session.execute(
        update(FeedbackForward)
        .where(
            FeedbackForward.id == claim.forward_id,
            FeedbackForward.status == "sending",
            FeedbackForward.claim_token == claim.token,
        )
        .values(claim_token=None, **values)
        .returning(FeedbackForward.id)
        .execution_options(synchronize_session=False)
    ).first()
    return done is not None


def record_sent(session: Session, claim: Claim, *, now: datetime) -> bool:
    """The webhook took it; False if the claim was lost meanwhile (lease ended)."""
    return _finish(session, claim, status="sent", sent_at=now, last_error=None)


def record_retry(session: Session, claim: Claim, *, error: str, next_attempt_at: datetime) -> bool:
    """A passing failure: due again at ``next_attempt_at``."""
    return _finish(
        session,
        claim,
        status="pending",
        next_attempt_at=next_attempt_at,
        last_error=error[:ERROR_CHARS],
    )


def record_failed(session: Session, claim: Claim, *, error: str) -> bool:
    """Given up on (last attempt, or a failure no retry fixes): kept until retried."""
    return _finish(session, claim, status="failed", last_error=error[:ERROR_CHARS])


def retry_failed(session: Session, *, now: datetime) -> int:
    """Schedule every failed forward again with a fresh set of attempts; how many."""
    rows = session.execute(
        update(FeedbackForward)
        .where(FeedbackForward.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now, claim_token=None)
        .returning(FeedbackForward.id)
        .execution_options(synchronize_session=False)
    ).all()
    return len(rows)


def forward_counts(session: Session) -> dict[str, int]:
    """Forwards per status (pending counts ``sending`` too: both are on their way)."""
    counts = {"pending": 0, "sent": 0, "failed": 0}
    for status, count in session.execute(
        select(FeedbackForward.status, func.count()).group_by(FeedbackForward.status)
    ):
        key = "pending" if status == "sending" else status
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def build_payload(
    feedback: Feedback,
    outage_reference: str | None,
    settings: Settings,
) -> dict[str, Any]:
    """The webhook's JSON: ``text`` for Slack/Teams to show, ``observation`` for machines.

    Nothing identifying for anonymous observations: no author, and their time only to the day.
    No conversation id for anyone: a customer's conversation id is their phone number or chat
    id (``sms:+316...``); the CX inbox, behind a login, links the conversation.
    """
    language = settings.cx_webhook_language
    category = translate(language, f"cx.category.{feedback.category or 'none'}")
    lines = [translate(language, "cx.webhook.text", category=category, text=feedback.text)]
    if feedback.anonymous:
        lines.append(translate(language, "cx.webhook.by_anonymous"))
    elif feedback.source == "customer":
        lines.append(translate(language, "cx.webhook.by_customer", channel=feedback.channel))
    elif feedback.author:
        lines.append(translate(language, "cx.webhook.by_user", author=feedback.author))
    if outage_reference:
        lines.append(translate(language, "cx.webhook.outage", reference=outage_reference))
    url = None
    if settings.public_base_url:
        url = f"{settings.public_base_url.rstrip('/')}/cx#observation-{feedback.id}"
        lines.append(translate(language, "cx.webhook.link", url=url))
    created = feedback.created_at
    return {
        "text": "\n".join(lines),
        "observation": {
            "id": feedback.id,
            "source": feedback.source,
            "category": feedback.category,
            "language": feedback.language,
            "text": feedback.text,
            "anonymous": feedback.anonymous,
            "author": None if feedback.anonymous else feedback.author,
            "created_at": created.date().isoformat() if feedback.anonymous else created.isoformat(),
            "outage_reference": outage_reference,
            "has_conversation": feedback.conversation_id is not None,
            "url": url,
        },
    }


class WebhookForwarder:
    """Rounds of :func:`claim_due` and webhook posts, in the service's event loop."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        *,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.cx_webhook_url is None:
            raise ValueError("no cx_webhook_url configured")
        self._settings = settings
        self._sessions = sessions
        self._clock = clock
        self._jitter = jitter
        self._url = settings.cx_webhook_url.get_secret_value()
        self._client = httpx.AsyncClient(
            timeout=settings.cx_webhook_timeout_seconds, transport=transport
        )
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    # -- database steps (run in a thread: blocking I/O) -----------------------------------

    def _claim(self) -> list[tuple[Claim, dict[str, Any]]]:
        settings = self._settings
        with self._sessions() as session, session.begin():
            claims = claim_due(
                session,
                now=self._clock(),
                lease=timedelta(seconds=settings.cx_forward_lease_seconds),
                max_attempts=settings.cx_webhook_max_attempts,
            )
            if not claims:
                return []
            rows = {
                feedback.id: (feedback, reference)
                for feedback, reference in session.execute(
                    select(Feedback, Outage.reference)
                    .outerjoin(Outage, Outage.id == Feedback.outage_id)
                    .where(Feedback.id.in_([c.feedback_id for c in claims]))
                )
            }
            return [(c, build_payload(*rows[c.feedback_id], settings)) for c in claims]

    def _record(self, claim: Claim, error: str | None, permanent: bool) -> None:
        now = self._clock()
        settings = self._settings
        with self._sessions() as session, session.begin():
            if error is None:
                kept = record_sent(session, claim, now=now)
            elif permanent or claim.attempts >= settings.cx_webhook_max_attempts:
                kept = record_failed(session, claim, error=error)
            else:
                wait = backoff_seconds(
                    claim.attempts,
                    base=settings.cx_webhook_backoff_base_seconds,
                    cap=settings.cx_webhook_backoff_max_seconds,
                    jitter=self._jitter(),
                )
                kept = record_retry(
                    session, claim, error=error, next_attempt_at=now + timedelta(seconds=wait)
                )
        if not kept:
            logger.warning("Forward %s: claim taken over before its result", claim.forward_id)

    # -- one post --------------------------------------------------------------------------

    async def _post(self, payload: dict[str, Any]) -> tuple[str | None, bool]:
        """(error or None, permanent)."""
        try:
            response = await self._client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            # Never log the URL: it is the webhook's credential.
            return f"{type(exc).__name__}: could not reach the webhook", False
        if response.is_success:
            return None, False
        error = f"HTTP {response.status_code}: {response.text[:500]}"
        status = response.status_code
        permanent = 400 <= status < 500 and status not in _TRANSIENT_4XX
        return error, permanent

    async def _forward(self, claim: Claim, payload: dict[str, Any]) -> None:
        error, permanent = await self._post(payload)
        if error is not None:
            logger.warning("Forwarding observation %s failed: %s", claim.feedback_id, error)
        await asyncio.to_thread(self._record, claim, error, permanent)

    async def run_once(self) -> int:
        """One round: claim, post, record. How many were claimed."""
        claimed = await asyncio.to_thread(self._claim)
        if claimed:
            await asyncio.gather(*(self._forward(c, p) for c, p in claimed))
        return len(claimed)

    # -- the loop --------------------------------------------------------------------------

    def wake(self) -> None:
        """A new observation was committed: forward it now instead of at the next round.

        Safe to call from any thread (request handlers run in FastAPI's thread pool).
        """
        loop = self._event_loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _rounds(self) -> None:
        while True:
            self._wake.clear()
            try:
                claimed = await self.run_once()
            except Exception:
                logger.exception("CX forwarding round failed")
                claimed = 0
            if claimed >= BATCH:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self._settings.cx_forward_interval_seconds
                )

    def start(self) -> None:
        """Start the rounds in the running event loop (idempotent)."""
        if self._loop is None or self._loop.done():
            self._event_loop = asyncio.get_running_loop()
            self._loop = asyncio.create_task(self._rounds(), name="cx-forwarding")

    async def stop(self) -> None:
        """Stop the rounds and close the HTTP client. A post cut short stays ``sending`` and is
        taken over after the lease."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await self._client.aclose()
