"""The dispatcher: turns due outbox rows into jobs, and the embedded delivery without Redis.

Each round (an arq cron job every ``delivery_dispatch_interval_seconds``, run by one worker at a
time) takes up to ``delivery_dispatch_batch`` due rows (:func:`bot.delivery.store.take_due`
marks them queued in the same statement) and enqueues one arq job per row. The job id is the
outbox row and its recipient (:func:`job_id`): arq refuses a job id that is queued or running,
so enqueueing the same message twice, by two dispatchers or after a lost round, is a no-op.
A row whose job could not be queued (Redis away) is handed back for the next round.

:class:`EmbeddedDelivery` is the fallback of a service without Redis (the SQLite default of
``belofte run``): the same rounds in the service's event loop, with the jobs run as tasks of the
service (at most ``delivery_concurrency`` at once) by the same :class:`~bot.delivery.worker.
Deliverer`, and an in-memory rate limiter. Messages of a service that died mid-round are due
again after ``delivery_requeue_after_seconds``; the claims on ``channel_outbound`` keep those
from being sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from bot.delivery.store import DueMessage, release, take_due
from bot.settings import Settings
from bot.storage.db import SessionFactory
from bot.storage.types import utcnow

logger = logging.getLogger(__name__)

#: Name of the arq function that delivers one outbox row.
DELIVER_FUNCTION = "deliver"
#: Enqueues one due message; False when it could not be queued.
Enqueue = Callable[[DueMessage], Awaitable[bool]]


def job_id(queue_name: str, message: DueMessage) -> str:
    """The arq job id of a message: the queue, the outbox row and its recipient."""
    return f"{queue_name}:outbox:{message.id}:{message.channel}:{message.address}"


class ArqEnqueuer:
    """Enqueues delivery jobs on arq, one per outbox row and recipient."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name

    async def __call__(self, message: DueMessage) -> bool:
        """Enqueue ``message``'s job; True also when that job was already queued or running."""
        try:
            await self._redis.enqueue_job(
                DELIVER_FUNCTION,
                message.id,
                _job_id=job_id(self._queue_name, message),
                _queue_name=self._queue_name,
            )
        except (RedisError, OSError) as exc:
            logger.warning("Could not queue outbox message %s: %s", message.id, exc)
            return False
        return True


class Dispatcher:
    """One round at a time: take due rows, enqueue them, hand back what could not be queued."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        enqueue: Enqueue,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch: int | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._enqueue = enqueue
        self._clock = clock
        #: Most rows taken per round.
        self.batch = batch or settings.delivery_dispatch_batch

    def _take(self) -> list[DueMessage]:
        with self._sessions() as session, session.begin():
            return take_due(
                session,
                now=self._clock(),
                limit=self.batch,
                requeue_after=timedelta(seconds=self._settings.delivery_requeue_after_seconds),
            )

    def _release(self, ids: list[int]) -> None:
        with self._sessions() as session, session.begin():
            release(session, ids)

    async def dispatch_once(self) -> int:
        """One round; returns how many messages were handed to the workers."""
        # Blocking database work runs in a thread: a round of thousands of rows takes a while.
        due = await asyncio.to_thread(self._take)
        failed: list[int] = []
        chunk = max(1, self._settings.delivery_concurrency)
        for start in range(0, len(due), chunk):
            batch = due[start : start + chunk]
            results = await asyncio.gather(*(self._enqueue(m) for m in batch))
            failed.extend(m.id for m, ok in zip(batch, results, strict=True) if not ok)
        if failed:
            await asyncio.to_thread(self._release, failed)
        if due:
            logger.info("Dispatched %d outbox message(s)", len(due) - len(failed))
        return len(due) - len(failed)


class EmbeddedDelivery:
    """Delivery inside the service when there is no Redis: rounds plus bounded local tasks."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        deliver: Callable[[int], Awaitable[object]],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._deliver = deliver
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        self._running: dict[int, asyncio.Task[None]] = {}
        # Rows taken wait in memory for a free slot: take a few rounds' worth, not thousands.
        batch = min(settings.delivery_dispatch_batch, 4 * settings.delivery_concurrency)
        self._dispatcher = Dispatcher(settings, sessions, self._spawn, clock=clock, batch=batch)
        self._loop: asyncio.Task[None] | None = None

    async def _spawn(self, message: DueMessage) -> bool:
        if message.id in self._running:
            return True  # the same message is being delivered here already
        task = asyncio.create_task(self._run(message.id), name=f"deliver-{message.id}")
        self._running[message.id] = task
        task.add_done_callback(lambda _: self._running.pop(message.id, None))
        return True

    async def _run(self, outbox_id: int) -> None:
        async with self._slots:
            try:
                await self._deliver(outbox_id)
            except Exception:
                # The row stays queued and is due again after the requeue delay.
                logger.exception("Delivering outbox message %s failed", outbox_id)

    async def run_once(self) -> int:
        """One round, waiting until its messages are delivered (tests, CLI)."""
        count = await self._dispatcher.dispatch_once()
        await self.drain()
        return count

    async def drain(self) -> None:
        """Wait until no delivery task is left."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def _rounds(self) -> None:
        interval = self._settings.delivery_dispatch_interval_seconds
        concurrency = self._settings.delivery_concurrency
        while True:
            taken = 0
            try:
                # Never more queued locally than can run soon: the rest waits in the database.
                if len(self._running) < concurrency:
                    taken = await self._dispatcher.dispatch_once()
            except Exception:
                logger.exception("Outbox round failed; retrying in %d s", interval)
            if taken and taken >= self._dispatcher.batch:
                # A full round: more is due, so go on as soon as slots free up.
                while len(self._running) >= concurrency:
                    await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(interval)

    def start(self) -> None:
        """Start the rounds in the running event loop (idempotent)."""
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._rounds(), name="outbox-delivery")

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop the rounds; let running deliveries finish for the grace time, cancel the rest."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if grace_seconds is None:
            grace_seconds = self._settings.delivery_shutdown_grace_seconds
        if self._running:
            _, pending = await asyncio.wait(set(self._running.values()), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
