"""Delivery of the outbox (bot.delivery): once per message and recipient, in the recipient's
language, paced per sender, retried with backoff, dead letters a supervisor can retry.

The deliverers send through the real channel gateway (TwilioSender with its claims) to an
in-process Twilio that keeps what it created (``TwilioMessages``), so a crash can be staged at
any point and the lookup that settles it is answered like Twilio would. Time is a fake clock.
The arq worker against Redis and Prism is in test_channel_delivery_worker.py.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channel_fakes import (
    BOT_TOKEN,
    FakeBotApi,
    channel_settings,
    start_app,
    wait_until,
)
from delivery_fakes import (
    Failure,
    FakeClock,
    TwilioMessages,
    dropped_connection,
    outage_with_subscribers,
    refused_connection,
)
from sqlalchemy import Engine, select, update

from bot.channels import store
from bot.channels.gateway import ChannelGateway
from bot.channels.outbound import SendResult
from bot.delivery import Deliverer, MemoryRateLimiter, Outcome, Rate, backoff_seconds
from bot.delivery.dispatch import Dispatcher, EmbeddedDelivery, job_id
from bot.delivery.ratelimit import rate_for, sender_key
from bot.delivery.store import DueMessage, queue_health, take_due
from bot.messages import render_outbox
from bot.settings import Settings
from bot.storage.db import SessionFactory, make_sessionmaker
from bot.storage.models import ChannelOutbound, OutboxMessage, Subscription

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

# Monday 2 March 2026, 10:00 in Amsterdam: the moment the outage was fixed.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
API_KEY = "test-operations-key"


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "delivery_rate_limits": {},
        "delivery_max_attempts": 4,
        "delivery_backoff_base_seconds": 5.0,
        "delivery_backoff_max_seconds": 60.0,
        "api_key": API_KEY,
    }
    values.update(overrides)
    return channel_settings(tmp_path, **values)


class Worker:
    """One delivery worker: its own gateway (REST client) and deliverer, on the shared fakes."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        twilio: TwilioMessages,
        clock: FakeClock,
        limiter: MemoryRateLimiter | None = None,
    ) -> None:
        self.gateway = ChannelGateway(settings, sessions, twilio_http_client=lambda: twilio)
        self.deliverer = Deliverer(
            settings,
            sessions,
            self.gateway,
            limiter,
            clock=clock.now,
            sleep=clock.sleep,
            jitter=lambda: 1.0,
        )

    async def __aenter__(self) -> Worker:
        await self.gateway.start_sending()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.gateway.stop()

    async def deliver(self, outbox_id: int) -> Outcome:
        return await self.deliverer.deliver(outbox_id)


class Rig:
    """The test database, one fake Twilio, a fake clock, and workers on them."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.sessions = make_sessionmaker(engine)
        self.twilio = TwilioMessages()
        self.clock = FakeClock(T0)

    def worker(self, limiter: MemoryRateLimiter | None = None) -> Worker:
        return Worker(self.settings, self.sessions, self.twilio, self.clock, limiter)

    def deliver(self, *outbox_ids: int) -> list[Outcome]:
        """Deliver the rows one after the other with one worker."""

        async def run() -> list[Outcome]:
            async with self.worker() as worker:
                return [await worker.deliver(i) for i in outbox_ids]

        return asyncio.run(run())

    def outbox(self, outbox_id: int) -> OutboxMessage:
        with self.sessions() as session:
            row = session.get(OutboxMessage, outbox_id)
            assert row is not None
            session.expunge(row)
            return row

    def outbound(self) -> list[ChannelOutbound]:
        with self.sessions() as session:
            rows = list(session.scalars(select(ChannelOutbound).order_by(ChannelOutbound.id)))
            session.expunge_all()
            return rows

    def subscribers(self, *numbers: tuple[str, str, str]) -> list[int]:
        with self.sessions() as session:
            return outage_with_subscribers(session, list(numbers), now=T0)

    def expire_claims(self) -> None:
        """Age every claim past its lease, as if the worker holding it had died long ago."""
        lease = timedelta(seconds=self.settings.delivery_claim_lease_seconds + 1)
        with self.sessions() as session, session.begin():
            for row in session.scalars(select(ChannelOutbound)):
                row.created_at -= lease
                row.claimed_at = (row.claimed_at or row.created_at) - lease

    def due_now(self, outbox_id: int) -> None:
        """Move the clock to the row's next attempt."""
        due = self.outbox(outbox_id).next_attempt_at
        self.clock.elapsed += max(0.0, (due - self.clock.now()).total_seconds())


@pytest.fixture
def rig(tmp_path: Path, db_engine: Engine) -> Rig:
    return Rig(_settings(tmp_path), db_engine)


CUSTOMERS = [f"+316{n:08d}" for n in range(1, 100)]


# -- once, on the right channel, in the right language -----------------------------------------


def test_each_subscriber_gets_the_message_once_in_their_language(rig: Rig) -> None:
    nl, en = CUSTOMERS[0], CUSTOMERS[1]
    ids = rig.subscribers(("sms", f"sms:{nl}", "nl"), ("sms", en, "en"))

    assert rig.deliver(*ids) == [Outcome.SENT, Outcome.SENT]

    for outbox_id, number, language in ((ids[0], nl, "nl"), (ids[1], en, "en")):
        row = rig.outbox(outbox_id)
        expected = render_outbox(
            row.kind, row.payload, language, timezone=rig.settings.timezone, now=T0
        )
        assert rig.twilio.bodies_to(number) == [expected]
        assert (row.status, row.attempts, row.sent_at) == ("sent", 1, T0)
    assert "opgelost" in rig.twilio.bodies_to(nl)[0]
    assert "was fixed" in rig.twilio.bodies_to(en)[0]
    sent = rig.outbound()
    assert [(r.idempotency_key, r.outbox_id) for r in sent] == [
        (rig.outbox(i).dedupe_key, i) for i in ids
    ]
    assert all(r.twilio_sid and r.attempts == 1 for r in sent)
    with rig.sessions() as session:
        assert all(s.notified_at == T0 for s in session.scalars(select(Subscription)))


def test_a_telegram_subscriber_gets_it_in_the_chat(
    tmp_path: Path, db_engine: Engine, fake_bot_api: FakeBotApi
) -> None:
    settings = _settings(
        tmp_path, telegram_bot_token=BOT_TOKEN, telegram_api_base_url=fake_bot_api.base_url
    )
    rig = Rig(settings, db_engine)
    (outbox_id,) = rig.subscribers(("telegram", "telegram:4242", "en"))

    assert rig.deliver(outbox_id) == [Outcome.SENT]

    (sent,) = fake_bot_api.sent()
    assert sent["chat_id"] == 4242 and sent["text"].startswith("Good news")
    assert rig.twilio.requests == []
    assert rig.outbox(outbox_id).status == "sent"


def test_delivering_a_sent_message_again_sends_nothing(rig: Rig) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "nl"))
    rig.deliver(outbox_id)
    # The worker died after Twilio took the message but before the outbox row was updated.
    with rig.sessions() as session, session.begin():
        session.execute(update(OutboxMessage).values(status="pending", sent_at=None))

    assert rig.deliver(outbox_id) == [Outcome.SENT]

    assert len(rig.twilio.created) == 1 and rig.twilio.creates() == 1
    assert rig.outbox(outbox_id).status == "sent"


def test_two_workers_racing_send_each_message_once(rig: Rig) -> None:
    ids = rig.subscribers(*[("sms", number, "nl") for number in CUSTOMERS[:12]])
    start = threading.Barrier(2)
    outcomes: list[list[Outcome]] = []
    errors: list[BaseException] = []

    def work(order: list[int]) -> None:
        async def run() -> list[Outcome]:
            async with rig.worker() as worker:
                start.wait()
                return [await worker.deliver(i) for i in order]

        try:
            outcomes.append(asyncio.run(run()))
        except BaseException as exc:
            errors.append(exc)

    orders = [list(ids), list(reversed(ids))]
    threads = [threading.Thread(target=work, args=(o,)) for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    for number in CUSTOMERS[:12]:
        assert len(rig.twilio.bodies_to(number)) == 1, number
    assert rig.twilio.creates() == 12
    # The loser of each race sent nothing: it found the message sent, or its claim still held.
    assert all(o in (Outcome.SENT, Outcome.LATER, Outcome.SKIPPED) for run in outcomes for o in run)
    assert {rig.outbox(i).status for i in ids} <= {"sent", "pending"}
    pending = [i for i in ids if rig.outbox(i).status == "pending"]
    # A row the loser put back for later is settled at its next attempt without a new message.
    rig.expire_claims()
    for outbox_id in pending:
        rig.due_now(outbox_id)
    rig.deliver(*pending)
    assert all(rig.outbox(i).status == "sent" for i in ids)
    assert rig.twilio.creates() == 12


# -- a crash after the claim -----------------------------------------------------------------


def test_a_message_created_before_the_connection_dropped_is_found_not_resent(rig: Rig) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "nl"))
    rig.twilio.failures.append(Failure(exception=dropped_connection(), created=True))

    assert rig.deliver(outbox_id) == [Outcome.RETRY]
    (claim,) = rig.outbound()
    assert claim.status == "unknown" and claim.twilio_sid is None
    # The retry comes before the lease ran out: it neither sends nor counts an attempt.
    rig.due_now(outbox_id)
    assert rig.deliver(outbox_id) == [Outcome.LATER]
    assert rig.twilio.creates() == 1

    rig.expire_claims()
    rig.due_now(outbox_id)
    assert rig.deliver(outbox_id) == [Outcome.SENT]

    (created,) = rig.twilio.created
    (row,) = rig.outbound()
    assert row.twilio_sid == created["sid"] and row.attempts == 2
    assert rig.twilio.creates() == 1
    looked_up = [q for method, _, q in rig.twilio.requests if method == "GET"]
    assert looked_up == [{"To": CUSTOMERS[0], "From": "+3197010000001", "PageSize": "20"}]
    assert rig.outbox(outbox_id).status == "sent"


@pytest.mark.parametrize("reached_twilio", [True, False])
def test_a_worker_killed_during_the_call_is_settled_by_a_lookup(
    rig: Rig, reached_twilio: bool
) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "en"))
    # The task dies in the REST call (the process was killed): nothing after it runs.
    rig.twilio.failures.append(Failure(exception=asyncio.CancelledError(), created=reached_twilio))
    with pytest.raises(asyncio.CancelledError):
        rig.deliver(outbox_id)
    (claim,) = rig.outbound()
    assert claim.status == "queued" and claim.twilio_sid is None

    rig.expire_claims()
    assert rig.deliver(outbox_id) == [Outcome.SENT]

    assert len(rig.twilio.bodies_to(CUSTOMERS[0])) == 1
    assert rig.twilio.creates() == (1 if reached_twilio else 2)
    (row,) = rig.outbound()
    assert row.twilio_sid == rig.twilio.created[0]["sid"]


def test_a_lookup_that_fails_never_sends_blind(rig: Rig) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "nl"))
    rig.twilio.failures.append(Failure(exception=dropped_connection(), created=True))
    rig.deliver(outbox_id)
    rig.expire_claims()
    rig.twilio.list_fails = True
    rig.due_now(outbox_id)

    assert rig.deliver(outbox_id) == [Outcome.RETRY]

    assert rig.twilio.creates() == 1
    assert rig.outbound()[0].status == "unknown"
    assert "looking up" in (rig.outbox(outbox_id).last_error or "")


def test_a_lookup_does_not_take_another_rows_message(rig: Rig) -> None:
    # Two outages fixed at once for one customer: two outbox rows with the very same text.
    number = CUSTOMERS[0]
    with rig.sessions() as session:
        first = outage_with_subscribers(session, [("sms", number, "nl")], now=T0)
        second = outage_with_subscribers(
            session, [("sms", number, "nl")], now=T0, reference="STO-26-00002"
        )
    rig.deliver(*first)
    rig.twilio.failures.append(Failure(exception=asyncio.CancelledError(), created=False))
    with pytest.raises(asyncio.CancelledError):
        rig.deliver(*second)
    rig.expire_claims()

    assert rig.deliver(*second) == [Outcome.SENT]

    assert len(rig.twilio.bodies_to(number)) == 2
    assert len({r.twilio_sid for r in rig.outbound()}) == 2


# -- backoff, transient and permanent failures -----------------------------------------------


def test_the_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    full = [backoff_seconds(n, base=5.0, cap=60.0, jitter=1.0) for n in range(1, 7)]
    assert full == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    half = [backoff_seconds(n, base=5.0, cap=60.0, jitter=0.0) for n in range(1, 7)]
    assert half == [2.5, 5.0, 10.0, 20.0, 30.0, 30.0]
    spread = {backoff_seconds(3, base=5.0, cap=60.0, jitter=random.random()) for _ in range(50)}
    assert len(spread) > 1 and all(10.0 <= s <= 20.0 for s in spread)
    assert backoff_seconds(10_000, base=5.0, cap=60.0, jitter=1.0) == 60.0
    with pytest.raises(ValueError, match="attempt"):
        backoff_seconds(0, base=5.0, cap=60.0, jitter=1.0)


def test_transient_failures_are_retried_on_the_schedule_then_dead(rig: Rig) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "nl"))
    rig.twilio.failures.extend(
        [
            Failure(503, 20503),
            Failure(429, 20429),
            Failure(exception=refused_connection()),
            Failure(500, 20500),
        ]
    )
    waits: list[float] = []
    for expected in (Outcome.RETRY, Outcome.RETRY, Outcome.RETRY):
        assert rig.deliver(outbox_id) == [expected]
        row = rig.outbox(outbox_id)
        assert row.status == "failed" and row.queued_at is None
        waits.append((row.next_attempt_at - rig.clock.now()).total_seconds())
        rig.due_now(outbox_id)

    assert waits == [5.0, 10.0, 20.0]
    assert rig.deliver(outbox_id) == [Outcome.DEAD]
    row = rig.outbox(outbox_id)
    assert (row.status, row.attempts) == ("dead", 4)
    assert (row.last_error or "").startswith("gave up after 4 attempts")
    assert rig.twilio.creates() == 4 and rig.twilio.created == []


@pytest.mark.parametrize(
    ("status", "code"), [(400, 21211), (400, 21610), (400, 21614), (403, 20003)]
)
def test_permanent_failures_go_to_the_dead_letters_at_once(
    rig: Rig, status: int, code: int
) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "nl"))
    rig.twilio.failures.append(Failure(status, code))

    assert rig.deliver(outbox_id) == [Outcome.DEAD]

    row = rig.outbox(outbox_id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert str(code) in (row.last_error or "")
    assert rig.twilio.creates() == 1
    with rig.sessions() as session:
        opted_out = store.is_opted_out(session, channel="sms", address=CUSTOMERS[0])
    assert opted_out is (code == 21610)


def test_an_opted_out_number_gets_nothing(rig: Rig) -> None:
    (outbox_id,) = rig.subscribers(("sms", f"sms:{CUSTOMERS[0]}", "nl"))
    with rig.sessions() as session, session.begin():
        store.opt_out(session, channel="sms", address=CUSTOMERS[0], keyword="STOP", now=T0)

    assert rig.deliver(outbox_id) == [Outcome.DEAD]

    assert rig.twilio.requests == []
    row = rig.outbox(outbox_id)
    assert row.status == "dead" and "opted out" in (row.last_error or "")


def test_a_message_that_cannot_be_rendered_is_dead_not_retried(rig: Rig) -> None:
    (outbox_id,) = rig.subscribers(("sms", CUSTOMERS[0], "nl"))
    with rig.sessions() as session, session.begin():
        session.execute(update(OutboxMessage).values(payload={"template": "no_such_template"}))

    assert rig.deliver(outbox_id) == [Outcome.DEAD]

    assert "cannot render" in (rig.outbox(outbox_id).last_error or "")
    assert rig.twilio.requests == []


# -- per-sender rate limits --------------------------------------------------------------------


def test_the_rate_limit_paces_a_sender_on_the_fake_clock(tmp_path: Path, db_engine: Engine) -> None:
    settings = _settings(
        tmp_path, delivery_rate_limits={"sms": 4.0}, delivery_max_rate_wait_seconds=30.0
    )
    rig = Rig(settings, db_engine)
    ids = rig.subscribers(*[("sms", number, "nl") for number in CUSTOMERS[:10]])
    sent_at: list[float] = []

    async def run() -> None:
        async with rig.worker(MemoryRateLimiter(rig.clock.monotonic)) as worker:
            send = worker.gateway.send

            async def timed(*args: Any, **kwargs: Any) -> SendResult:
                sent_at.append(rig.clock.monotonic())
                return await send(*args, **kwargs)

            worker.gateway.send = timed  # type: ignore[method-assign]
            for outbox_id in ids:
                assert await worker.deliver(outbox_id) is Outcome.SENT

    asyncio.run(run())

    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(gap == pytest.approx(0.25) for gap in gaps), gaps
    assert sent_at[-1] == pytest.approx(9 * 0.25)
    assert len(rig.twilio.created) == 10


def test_a_slot_too_far_away_puts_the_message_back(tmp_path: Path, db_engine: Engine) -> None:
    settings = _settings(
        tmp_path, delivery_rate_limits={"sms": 1.0}, delivery_max_rate_wait_seconds=2.0
    )
    rig = Rig(settings, db_engine)
    ids = rig.subscribers(*[("sms", number, "nl") for number in CUSTOMERS[:4]])
    limiter = MemoryRateLimiter(rig.clock.monotonic)
    key = sender_key(settings, "sms")
    rate = rate_for(settings, key)
    assert key == "sms:+3197010000001" and rate == Rate(1.0, 1)

    async def book() -> list[float | None]:
        # Three slots booked by other workers in this very second: 0, 1 and 2 s away.
        return [await limiter.reserve(key, rate, 2.0) for _ in range(3)]

    assert asyncio.run(book()) == [0.0, 1.0, 2.0]

    async def run() -> Outcome:
        async with rig.worker(limiter) as worker:
            return await worker.deliver(ids[0])

    assert asyncio.run(run()) is Outcome.LATER
    row = rig.outbox(ids[0])
    assert row.status == "pending" and row.attempts == 0
    assert row.next_attempt_at == rig.clock.now() + timedelta(seconds=2)
    assert rig.twilio.requests == []


def test_rates_are_per_sender_and_configurable_per_number(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        delivery_rate_limits={"sms": 1.0, "sms:+3197010000001": 30.0, "telegram": 25.0},
        delivery_rate_burst=3,
        telegram_bot_token=BOT_TOKEN,
    )
    assert rate_for(settings, sender_key(settings, "sms")) == Rate(30.0, 3)
    assert rate_for(settings, "sms:+3197099999999") == Rate(1.0, 3)
    assert sender_key(settings, "whatsapp") == "whatsapp:+3197010000002"
    assert rate_for(settings, sender_key(settings, "whatsapp")) is None
    assert sender_key(settings, "telegram") == f"telegram:{BOT_TOKEN.split(':')[0]}"
    with pytest.raises(ValueError, match="positive"):
        _settings(tmp_path, delivery_rate_limits={"sms": 0})


def test_the_memory_limiter_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock(T0)
    limiter = MemoryRateLimiter(clock.monotonic)

    async def book(n: int) -> list[float | None]:
        return [await limiter.reserve("sms:+31", Rate(2.0, 3), 10.0) for _ in range(n)]

    assert asyncio.run(book(5)) == [0.0, 0.0, 0.0, 0.5, 1.0]
    clock.elapsed = 10.0  # long idle: the burst is back
    assert asyncio.run(book(4)) == [0.0, 0.0, 0.0, 0.5]


# -- the dispatcher ----------------------------------------------------------------------------


def test_the_dispatcher_takes_due_rows_once_and_requeues_lost_ones(rig: Rig) -> None:
    ids = rig.subscribers(*[("sms", number, "nl") for number in CUSTOMERS[:4]])
    with rig.sessions() as session, session.begin():
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == ids[1])
            .values(next_attempt_at=T0 + timedelta(minutes=5))
        )
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == ids[3]).values(status="dead")
        )

    def take(at: datetime) -> list[int]:
        with rig.sessions() as session, session.begin():
            due = take_due(session, now=at, limit=10, requeue_after=timedelta(minutes=10))
            return [m.id for m in due]

    assert take(T0) == [ids[0], ids[2]]
    assert take(T0 + timedelta(seconds=2)) == []  # queued: not taken twice
    assert take(T0 + timedelta(minutes=6)) == [ids[1]]
    # Queued long ago and never done: the job was lost, hand it over again.
    assert take(T0 + timedelta(minutes=11)) == [ids[0], ids[2]]


def test_a_round_hands_back_what_could_not_be_queued(rig: Rig) -> None:
    ids = rig.subscribers(*[("sms", number, "nl") for number in CUSTOMERS[:3]])
    seen: list[str] = []

    async def enqueue(message: DueMessage) -> bool:
        seen.append(job_id("q", message))
        return message.id != ids[1]

    dispatcher = Dispatcher(rig.settings, rig.sessions, enqueue, clock=rig.clock.now)
    assert asyncio.run(dispatcher.dispatch_once()) == 2

    assert seen[1] == f"q:outbox:{ids[1]}:sms:{CUSTOMERS[1]}"
    assert rig.outbox(ids[0]).queued_at == T0
    assert rig.outbox(ids[1]).queued_at is None


def test_the_embedded_delivery_sends_the_outbox_without_redis(rig: Rig) -> None:
    ids = rig.subscribers(("sms", CUSTOMERS[0], "nl"), ("sms", CUSTOMERS[1], "en"))

    async def run() -> int:
        async with rig.worker() as worker:
            embedded = EmbeddedDelivery(
                rig.settings, rig.sessions, worker.deliverer.deliver, clock=rig.clock.now
            )
            return await embedded.run_once()

    assert asyncio.run(run()) == 2
    assert [rig.outbox(i).status for i in ids] == ["sent", "sent"]


# -- dead letters and queue health through the API ---------------------------------------------


@pytest.fixture
def app_rig(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer
) -> Iterator[tuple[Any, Rig]]:
    settings = _settings(tmp_path, delivery_dispatch_interval_seconds=1, delivery_max_attempts=2)
    rig = Rig(settings, db_engine)
    for app in start_app(settings, db_engine, fake_rasa, lambda: rig.twilio):
        yield app, rig


def test_dead_letters_can_be_seen_and_retried_by_a_supervisor(app_rig: tuple[Any, Rig]) -> None:
    app, rig = app_rig
    client = app.client
    headers = {"X-API-Key": API_KEY}
    rig.twilio.failures.append(Failure(400, 21211))
    now = datetime.now(UTC)
    with rig.sessions() as session:
        (bad, good) = outage_with_subscribers(
            session, [("sms", CUSTOMERS[0], "nl"), ("sms", CUSTOMERS[1], "en")], now=now
        )

    # The service delivers by itself (no Redis): one message fails for good.
    wait_until(lambda: {rig.outbox(i).status for i in (bad, good)} == {"dead", "sent"})
    dead_id = bad if rig.outbox(bad).status == "dead" else good

    assert client.get("/api/v1/outbox/dead-letters").status_code == 401
    letters = client.get("/api/v1/outbox/dead-letters", headers=headers).json()
    assert letters["total"] == 1
    (letter,) = letters["items"]
    assert (letter["id"], letter["outage"], letter["attempts"]) == (dead_id, "STO-26-00001", 1)
    assert "21211" in letter["last_error"]
    health = client.get("/api/v1/outbox/health", headers=headers).json()
    assert health == {
        "pending": 0,
        "retrying": 0,
        "in_flight": 0,
        "sent_last_hour": 1,
        "dead": 1,
        "oldest_pending_age_seconds": None,
    }

    retried = client.post(f"/api/v1/outbox/{dead_id}/retry", headers=headers)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    wait_until(lambda: rig.outbox(dead_id).status == "sent")
    assert len(rig.twilio.created) == 2
    health = client.get("/api/v1/outbox/health", headers=headers).json()
    assert (health["dead"], health["sent_last_hour"]) == (0, 2)
    assert client.get("/api/v1/outbox/dead-letters", headers=headers).json()["total"] == 0

    again = client.post(f"/api/v1/outbox/{dead_id}/retry", headers=headers)
    assert again.status_code == 409 and "sent" in again.json()["detail"]
    assert client.post("/api/v1/outbox/999999/retry", headers=headers).status_code == 404
    assert client.post(f"/api/v1/outbox/{dead_id}/retry").status_code == 401


def test_health_counts_pending_retrying_and_the_oldest_age(rig: Rig) -> None:
    ids = rig.subscribers(*[("sms", number, "nl") for number in CUSTOMERS[:4]])
    with rig.sessions() as s, s.begin():
        s.execute(update(OutboxMessage).where(OutboxMessage.id == ids[0]).values(queued_at=T0))
        s.execute(update(OutboxMessage).where(OutboxMessage.id == ids[1]).values(status="failed"))
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == ids[2])
            .values(status="sent", sent_at=T0 - timedelta(hours=2))
        )
    with rig.sessions() as s:
        health = queue_health(s, now=T0 + timedelta(seconds=90))
    assert (health.pending, health.retrying, health.in_flight) == (2, 1, 1)
    assert (health.sent_last_hour, health.dead) == (0, 0)
    assert health.oldest_pending_age_seconds == 90.0


# -- who delivers: the service without Redis, workers with it ------------------------------------


def test_with_redis_the_service_leaves_delivery_to_the_workers(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer
) -> None:
    twilio = TwilioMessages()
    with_redis = _settings(tmp_path, redis_url="redis://127.0.0.1:6379/13")
    for app in start_app(with_redis, db_engine, fake_rasa, lambda: twilio):
        assert app.client.app.state.delivery is None
    for app in start_app(_settings(tmp_path), db_engine, fake_rasa, lambda: twilio):
        assert isinstance(app.client.app.state.delivery, EmbeddedDelivery)


def test_the_worker_command_needs_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app
    from bot.settings import get_settings

    monkeypatch.setenv("BELOFTE_HOME", str(tmp_path))
    monkeypatch.delenv("BELOFTE_REDIS_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "BELOFTE_REDIS_URL is not set" in result.output
