"""The background loop that renews promises about to break (see ``PromiseService.renew_due``).

Started and stopped by the application's lifespan. It first fits the promise engine, so the
first customer of an outage storm does not wait seconds for the fit. Each round runs in a worker
thread (the database calls and a possible engine refit are blocking) in its own transaction; an
error is logged and the next round runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.promises.service import PromiseService
from bot.storage.db import SessionFactory

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PromiseWatch:
    """Calls :meth:`PromiseService.renew_due` every ``interval_seconds``."""

    def __init__(
        self,
        service: PromiseService,
        sessions: SessionFactory,
        interval_seconds: float,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self._service = service
        self._sessions = sessions
        self._interval = interval_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        #: Rounds completed, successful or not (for tests and monitoring).
        self.rounds = 0

    def _renew(self) -> int:
        with self._sessions() as session, session.begin():
            return self._service.renew_due(session, self._clock())

    def _warm(self) -> None:
        with self._sessions() as session, session.begin():
            self._service.engine(session, self._clock())

    async def warm_up(self) -> None:
        """Fit the promise engine now rather than on the first promise asked for."""
        try:
            await asyncio.to_thread(self._warm)
        except Exception:
            logger.exception("promise engine warm-up failed; it is fitted on first use instead")

    async def run_once(self) -> int:
        """One round: renew what is due; returns the number of messages queued."""
        return await asyncio.to_thread(self._renew)

    async def run(self) -> None:
        """Warm the engine up, then renew forever, one round per interval."""
        await self.warm_up()
        while True:
            await asyncio.sleep(self._interval)
            try:
                queued = await self.run_once()
                if queued:
                    logger.info("promise watch queued %d renewal message(s)", queued)
            except Exception:
                # A database hiccup must not stop renewals for the life of the process.
                logger.exception("promise watch round failed; retrying in %.0f s", self._interval)
            finally:
                self.rounds += 1

    def start(self) -> None:
        """Start the loop as a task of the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="promise-watch")

    async def stop(self) -> None:
        """Cancel the loop and wait until it has stopped."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
