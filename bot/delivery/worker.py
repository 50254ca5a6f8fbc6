"""Delivering one outbox message, and the arq worker that does it at scale (``belofte worker``).

:class:`Deliverer` makes one attempt at one outbox row: render the text in the row's language
(:func:`bot.messages.render_outbox`), wait for a sending slot of the sender (per-sender rate
limit), send it through the channel gateway under the row's ``dedupe_key`` as idempotency key,
and record the verdict (:mod:`bot.delivery.policy`): sent, retry after a backoff, dead, or later
(not attempted). The arq job and the embedded delivery both call it.

The arq worker (:func:`build_worker`) runs two functions: ``deliver`` (one job per outbox row and
recipient, never kept after it ends, so the dispatcher can queue the row again for a retry) and
the dispatcher as a cron job. A worker killed mid-job leaves its jobs in arq's queue: another
worker (or the restarted one) runs them again once their in-progress marker expires
(``delivery_job_timeout_seconds`` + 10 s). On SIGTERM a worker stops taking jobs, lets running
ones finish for ``delivery_shutdown_grace_seconds`` and cancels the rest, which arq runs again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from arq import Worker, cron, func
from arq.connections import RedisSettings
from sqlalchemy import select

from bot.channels.outbound import SendResult, relax_durability
from bot.delivery.dispatch import DELIVER_FUNCTION, ArqEnqueuer, Dispatcher
from bot.delivery.policy import Verdict, backoff_seconds, classify
from bot.delivery.ratelimit import RateLimiter, RedisRateLimiter, rate_for, sender_key
from bot.delivery.store import (
    WAITING,
    record_dead,
    record_later,
    record_retry,
    record_sent,
    release,
)
from bot.messages import render_outbox
from bot.settings import Settings
from bot.storage.db import SessionFactory, get_sessionmaker
from bot.storage.models import OutboxMessage, Subscription
from bot.storage.types import utcnow

logger = logging.getLogger(__name__)

#: A job may start this much before its row's next attempt is due (clock differences).
_EARLY_SLACK: Final = timedelta(seconds=1)
#: How many times arq may start one job (runs after a worker died count too). The attempts that
#: count are kept on the outbox row; this only stops a job that keeps killing its worker.
_MAX_JOB_RUNS: Final = 25
#: Threads for database work in a worker: below the connection pool's size (5).
_DB_THREADS: Final = 4


class Sender(Protocol):
    """What the deliverer sends through: :meth:`bot.channels.gateway.ChannelGateway.send`."""

    async def send(
        self,
        channel: str,
        address: str,
        body: str,
        *,
        kind: str,
        conversation: str | None = None,
        idempotency_key: str | None = None,
        outbox_id: int | None = None,
    ) -> SendResult:
        """Send ``body`` to ``address`` on ``channel`` once per ``idempotency_key``."""
        ...


class Outcome(enum.StrEnum):
    """What one call of :meth:`Deliverer.deliver` did."""

    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    LATER = "later"
    #: Nothing to do: the row is gone, done, dead, or not due yet.
    SKIPPED = "skipped"


@dataclass(frozen=True)
class _Message:
    id: int
    kind: str
    channel: str
    address: str
    language: str
    payload: dict[str, Any]
    dedupe_key: str
    attempts: int
    conversation: str | None


class Deliverer:
    """One attempt at one outbox message (see the module docstring).

    ``clock``, ``sleep`` and ``jitter`` (a number in [0, 1] per retry) are replaceable for
    tests.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        sender: Sender,
        limiter: RateLimiter | None,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._sender = sender
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    def _load(self, outbox_id: int) -> _Message | None:
        now = self._clock()
        with self._sessions() as session, session.begin():
            found = session.execute(
                select(OutboxMessage, Subscription.conversation_id)
                .outerjoin(Subscription, Subscription.id == OutboxMessage.subscription_id)
                .where(OutboxMessage.id == outbox_id)
            ).first()
            if found is None or found[0].status not in WAITING:
                return None
            row, conversation = found
            if row.next_attempt_at > now + _EARLY_SLACK:
                # A stale job (queued before the row was rescheduled): the row's own time wins.
                release(session, [outbox_id])
                return None
            return _Message(
                id=row.id,
                kind=row.kind,
                channel=row.channel,
                address=row.address,
                language=row.language,
                payload=dict(row.payload or {}),
                dedupe_key=row.dedupe_key,
                attempts=row.attempts,
                conversation=conversation,
            )

    async def deliver(self, outbox_id: int) -> Outcome:
        """Make one attempt at outbox row ``outbox_id`` and record what became of it."""
        # Database work runs in threads: a worker runs many deliveries at once, and their round
        # trips must overlap instead of queueing on the event loop.
        message = await asyncio.to_thread(self._load, outbox_id)
        if message is None:
            return Outcome.SKIPPED
        try:
            body = render_outbox(
                message.kind,
                message.payload,
                message.language,
                timezone=self._settings.timezone,
                now=self._clock(),
            )
        except (ValueError, KeyError) as exc:
            error = f"cannot render the message: {exc!r}"
            return await asyncio.to_thread(self._record, message, Verdict.DEAD, error)
        if not await self._wait_for_slot(message):
            at = self._clock() + timedelta(seconds=self._settings.delivery_max_rate_wait_seconds)
            reason = "waiting for a sending slot (rate limit)"
            return await asyncio.to_thread(self._later, message, at, reason)
        try:
            result = await self._sender.send(
                message.channel,
                message.address,
                body,
                kind=message.kind,
                conversation=message.conversation,
                idempotency_key=message.dedupe_key,
                outbox_id=message.id,
            )
        except Exception as exc:
            # An unexpected error must not lose the message: retried, and the channel's claim
            # makes the retry look before it sends again.
            logger.exception("Sending outbox message %s failed", message.id)
            result = SendResult("unknown", reason=f"{type(exc).__name__}: {exc}", retryable=True)
        verdict = classify(result)
        if verdict is Verdict.LATER:
            lease = timedelta(seconds=self._settings.delivery_claim_lease_seconds)
            at = result.retry_at or self._clock() + lease
            return await asyncio.to_thread(self._later, message, at, result.reason)
        if verdict is Verdict.SENT:
            attempted = result.status != "duplicate"
            return await asyncio.to_thread(
                self._record, message, verdict, None, attempted=attempted
            )
        error = f"{result.status}: {result.reason}"
        return await asyncio.to_thread(self._record, message, verdict, error)

    async def _wait_for_slot(self, message: _Message) -> bool:
        """Wait for the sender's next sending slot; False when it is too far away."""
        if self._limiter is None:
            return True
        key = sender_key(self._settings, message.channel)
        rate = rate_for(self._settings, key)
        if rate is None:
            return True
        wait = await self._limiter.reserve(key, rate, self._settings.delivery_max_rate_wait_seconds)
        if wait is None:
            return False
        if wait > 0:
            await self._sleep(wait)
        return True

    def _later(self, message: _Message, at: datetime, reason: str | None) -> Outcome:
        with self._sessions() as session, session.begin():
            relax_durability(session)  # lost in a crash: the row is simply due again
            record_later(session, message.id, at=at, reason=reason or "later")
        return Outcome.LATER

    def _record(
        self, message: _Message, verdict: Verdict, error: str | None, *, attempted: bool = True
    ) -> Outcome:
        now = self._clock()
        attempt = message.attempts + 1
        with self._sessions() as session, session.begin():
            # Lost in a database crash, the row is due again and the channel's claim answers
            # "sent before": no need to wait for the disk here.
            relax_durability(session)
            if verdict is Verdict.SENT:
                record_sent(session, message.id, now=now, attempted=attempted)
                return Outcome.SENT
            error = error or "failed"
            if verdict is Verdict.RETRY and attempt < self._settings.delivery_max_attempts:
                delay = backoff_seconds(
                    attempt,
                    base=self._settings.delivery_backoff_base_seconds,
                    cap=self._settings.delivery_backoff_max_seconds,
                    jitter=self._jitter(),
                )
                record_retry(
                    session,
                    message.id,
                    now=now,
                    error=error,
                    next_attempt_at=now + timedelta(seconds=delay),
                )
                logger.info("Outbox message %s: attempt %d failed (%s)", message.id, attempt, error)
                return Outcome.RETRY
            if verdict is Verdict.RETRY:
                error = f"gave up after {attempt} attempts; last: {error}"
            record_dead(session, message.id, now=now, error=error)
            logger.warning("Outbox message %s is dead: %s", message.id, error)
            return Outcome.DEAD


# -- the arq worker ----------------------------------------------------------------------------


async def deliver_job(ctx: dict[str, Any], outbox_id: int) -> str:
    """arq job: one attempt at one outbox row."""
    deliverer: Deliverer = ctx["deliverer"]
    return (await deliverer.deliver(outbox_id)).value


async def dispatch_job(ctx: dict[str, Any]) -> int:
    """arq cron job: hand due outbox rows to the workers."""
    dispatcher: Dispatcher = ctx["dispatcher"]
    return await dispatcher.dispatch_once()


async def _startup(ctx: dict[str, Any]) -> None:
    # Imported here: the gateway pulls in every channel library, which the API process that
    # only mounts the delivery routes does not need to load twice.
    from bot.channels.gateway import ChannelGateway

    settings: Settings = ctx["settings"]
    sessions: SessionFactory = ctx.get("sessions") or get_sessionmaker(settings)
    # The deliveries' database work runs in threads: no more of them than pooled connections,
    # or the extra ones would open and close a connection each time.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_DB_THREADS, thread_name_prefix="delivery-db")
    )
    gateway = ChannelGateway(settings, sessions, twilio_http_client=ctx.get("twilio_http_client"))
    await gateway.start_sending()
    limiter = RedisRateLimiter(
        ctx["redis"], settings.delivery_queue_name, clock=ctx.get("rate_clock")
    )
    ctx["gateway"] = gateway
    ctx["deliverer"] = Deliverer(settings, sessions, gateway, limiter)
    ctx["dispatcher"] = Dispatcher(
        settings, sessions, ArqEnqueuer(ctx["redis"], settings.delivery_queue_name)
    )
    logger.info("Delivery worker ready on queue %s", settings.delivery_queue_name)


async def _shutdown(ctx: dict[str, Any]) -> None:
    gateway = ctx.get("gateway")
    if gateway is not None:
        await gateway.stop()


def build_worker(
    settings: Settings,
    *,
    ctx: dict[str, Any] | None = None,
    handle_signals: bool = True,
    burst: bool = False,
) -> Worker:
    """The arq worker of ``settings`` (``redis_url`` must be set).

    ``ctx`` adds to the jobs' context: ``sessions`` (a session factory), ``twilio_http_client``
    (the twilio HTTP client factory) and ``rate_clock`` (the rate limiter's clock) replace the
    defaults, for tests and the benchmark.
    """
    if not settings.redis_url:
        raise ValueError("BELOFTE_REDIS_URL is not set: the delivery workers need Redis")
    queue = settings.delivery_queue_name
    interval = settings.delivery_dispatch_interval_seconds
    timeout = settings.delivery_job_timeout_seconds
    return Worker(
        functions=[
            func(
                deliver_job,
                name=DELIVER_FUNCTION,
                keep_result=0,
                timeout=timeout,
                max_tries=_MAX_JOB_RUNS,
            )
        ],
        cron_jobs=[
            cron(
                dispatch_job,
                name=f"{queue}:dispatch",
                second=set(range(0, 60, interval)),
                microsecond=0,
                run_at_startup=True,
                timeout=timeout,
            )
        ],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        queue_name=queue,
        health_check_key=f"{queue}:health-check",
        max_jobs=settings.delivery_concurrency,
        job_timeout=timeout,
        keep_result=0,
        max_tries=_MAX_JOB_RUNS,
        job_completion_wait=settings.delivery_shutdown_grace_seconds,
        handle_signals=handle_signals,
        burst=burst,
        log_results=False,
        ctx={"settings": settings, **(ctx or {})},
        on_startup=_startup,
        on_shutdown=_shutdown,
    )


def run_worker(settings: Settings, *, verbose: bool = False) -> None:
    """Run a delivery worker until SIGTERM or Ctrl-C (``belofte worker``)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # arq logs every job start and end: 50,000 lines for one large outage, unless asked for.
    logging.getLogger("arq.worker").setLevel(logging.INFO if verbose else logging.WARNING)
    build_worker(settings).run()
