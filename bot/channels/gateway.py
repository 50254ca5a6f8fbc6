"""The channel gateway: starts the channels with the service and runs their background work.

Webhooks answer as soon as an event is recorded; the turn with the assistant and the replies run
afterwards as tasks of the gateway, so a slow Rasa or REST call never holds a platform's webhook
(Twilio gives up after 15 seconds, Telegram redelivers). On shutdown the gateway waits a little
for running tasks and cancels what is left; the events stay recorded as ``received``.

Events left ``received`` (the process died, or was stopped, before their turn ran) are swept:
on start and every ``channel_sweep_interval_seconds``, events older than
``channel_sweep_age_seconds`` are claimed (a conditional UPDATE, so of several workers sweeping at
once only one gets each) and processed once more; one that is still not finished after that is
marked ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from bot.channels import store
from bot.channels.customers import channel_address
from bot.channels.linking import CustomerLinking
from bot.channels.outbound import SendResult
from bot.channels.telegram import TelegramChannel
from bot.channels.twilio import HttpClientFactory, TwilioChannel
from bot.conversation.service import ConversationService
from bot.settings import Settings
from bot.storage.db import SessionFactory
from bot.storage.types import utcnow

logger = logging.getLogger(__name__)


class ChannelGateway:
    """Telegram, SMS and WhatsApp for one app; ``app.state.channels``.

    ``twilio_http_client`` makes the HTTP client of the twilio REST client instead of the
    default one on ``twilio_api_base_url`` (tests record what is sent through it).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        *,
        twilio_http_client: HttpClientFactory | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self._tasks: set[asyncio.Task[None]] = set()
        self._conversations: ConversationService | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: Link codes, shared contacts and the preferred channel (bot.channels.linking).
        self.linking = CustomerLinking(settings, sessions)
        self.telegram = TelegramChannel(settings, sessions, self)
        self.twilio = TwilioChannel(settings, sessions, self, http_client=twilio_http_client)

    @property
    def conversations(self) -> ConversationService:
        """The conversation service (set by :meth:`start`)."""
        if self._conversations is None:
            raise RuntimeError("the channel gateway is not started")
        return self._conversations

    async def start(self, conversations: ConversationService) -> None:
        """Start every configured channel; a channel that fails to start is logged, not fatal."""
        self._conversations = conversations
        await self.twilio.start()
        await self.telegram.start()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="channel-sweep")

    async def start_sending(self) -> None:
        """Start only the send paths (the Twilio REST client, the Telegram bot).

        A delivery worker sends proactive messages and takes no webhooks, so it needs no
        conversation service.
        """
        await self.twilio.start()
        await self.telegram.start()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Let running tasks finish for up to ``grace_seconds``, cancel the rest, close clients."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("Cancelled %d channel tasks at shutdown", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        await self.telegram.stop()
        await self.twilio.stop()

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
        """Send ``body`` to ``address`` on ``channel``: the one entry for proactive messages.

        ``address`` may be a subscription's address (the conversation id ``sms:+31...``,
        ``telegram:4242``) or the bare one. Every check of the channel applies (opt-outs, the
        WhatsApp window); ``idempotency_key`` (e.g. the outbox row's ``dedupe_key``) makes a
        retry after a crash send nothing twice.
        """
        if channel == "telegram":
            return await self.telegram.send(
                address,
                body,
                kind=kind,
                conversation=conversation,
                idempotency_key=idempotency_key,
                outbox_id=outbox_id,
            )
        if channel in ("sms", "whatsapp"):
            return await self.twilio.sender.send(
                channel,
                channel_address(channel, address),
                body,
                kind=kind,
                conversation=conversation,
                idempotency_key=idempotency_key,
                outbox_id=outbox_id,
            )
        return SendResult("refused", reason=f"channel {channel!r} cannot send messages")

    # -- the sweep for events stuck in "received" ----------------------------------------------

    async def _sweepable(self) -> tuple[str, ...]:
        """The channels this gateway can process events of now (configured and reachable)."""
        channels: tuple[str, ...] = ()
        if await self.telegram.ready():
            channels += ("telegram",)
        if self.twilio.enabled:
            channels += ("sms", "whatsapp")
        return channels

    async def sweep(self, older_than: timedelta | None = None) -> int:
        """Process once more the events a webhook took in that never finished; how many.

        Only events older than ``older_than`` (default ``channel_sweep_age_seconds``) are taken:
        a younger one may still be in the hands of a live worker. Each is claimed by one
        sweeper only; its processing then runs as a gateway task like a webhook's.
        """
        channels = await self._sweepable()
        if not channels:
            return 0
        now = utcnow()
        age = older_than or timedelta(seconds=self.settings.channel_sweep_age_seconds)
        with self.sessions() as session, session.begin():
            abandoned = store.abandon_stuck_inbound(
                session, channels=channels, swept_before=now - age, now=now
            )
            stuck = store.claim_stuck_inbound(
                session, channels=channels, received_before=now - age, now=now
            )
        if abandoned:
            logger.warning("Gave up %d inbound events that failed twice to finish", abandoned)
        started = 0
        for event in stuck:
            if event.channel == "telegram":
                replayed = await self.telegram.replay(event.id, event.payload)
            else:
                replayed = await self.twilio.replay(event.id, event.channel, event.payload)
            if replayed:
                started += 1
                continue
            with self.sessions() as session, session.begin():
                store.finish_inbound(
                    session, event.id, now=utcnow(), error="stuck, and nothing to process again"
                )
        if stuck:
            logger.warning("Processing %d stuck inbound events again", started)
        return started

    async def _sweep_loop(self) -> None:
        """Sweep at start, then every ``channel_sweep_interval_seconds``; errors are logged."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("The sweep for stuck inbound events failed")
            await asyncio.sleep(self.settings.channel_sweep_interval_seconds)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the background, after the webhook that started it has answered."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Channel task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self) -> None:
        """Wait until no background work is left (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*set(self._tasks), return_exceptions=True)
