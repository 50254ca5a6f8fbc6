"""The arq side of delivery against a real Redis: job ids that make enqueueing idempotent, the
shared rate limiter, and real arq workers sending through the real twilio client to Stoplight
Prism (serving Twilio's OpenAPI description).

Every test uses Redis database 13 and its own queue name (which prefixes every key it makes),
so it neither sees nor disturbs anything else on the server; its keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from channel_fakes import RecordingTwilioHttpClient, channel_settings
from delivery_fakes import FakeClock, outage_with_subscribers
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, select

from bot.delivery import Rate, RedisRateLimiter, build_worker
from bot.delivery.dispatch import ArqEnqueuer, job_id
from bot.delivery.store import DueMessage
from bot.messages import render_outbox
from bot.storage.db import make_sessionmaker
from bot.storage.models import ChannelOutbound, OutboxMessage

REDIS_URL = os.environ.get("BELOFTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue name of this test's own; its Redis keys are removed afterwards."""
    name = f"belofte-test:{uuid.uuid4().hex[:10]}"

    async def ping() -> None:
        client = Redis.from_url(REDIS_URL)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (RedisConnectionError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is needed in CI at {REDIS_URL}: {exc}", pytrace=False)
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield name

    async def clean() -> None:
        client = Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"*{name}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(clean())


class Recording(RecordingTwilioHttpClient):
    """The service's HTTP client to Prism, recording query parameters too."""

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await super().request(method, url, **kwargs)
        self.requests[-1]["params"] = {k: str(v) for k, v in (kwargs.get("params") or {}).items()}
        return response


async def _pool() -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(REDIS_URL))


def test_enqueueing_a_message_twice_queues_one_job(queue: str) -> None:
    message = DueMessage(7, "sms", "sms:+31612345678")

    async def run() -> tuple[list[bool], int, str]:
        pool = await _pool()
        try:
            enqueue = ArqEnqueuer(pool, queue)
            results = [await enqueue(message), await enqueue(message)]
            jobs = await pool.queued_jobs(queue_name=queue)
            return results, len(jobs), jobs[0].job_id or ""
        finally:
            await pool.aclose()

    results, queued, queued_id = asyncio.run(run())
    assert results == [True, True]
    assert queued == 1
    assert queued_id == job_id(queue, message) == f"{queue}:outbox:7:sms:sms:+31612345678"


def test_the_redis_limiter_shares_the_pace_between_workers(queue: str) -> None:
    clock = FakeClock(T0)

    async def run() -> list[float | None]:
        first = Redis.from_url(REDIS_URL)
        second = Redis.from_url(REDIS_URL)
        try:
            # Two workers (two connections) booking for the same sender at the same moment.
            limiters = [
                RedisRateLimiter(first, queue, clock.monotonic),
                RedisRateLimiter(second, queue, clock.monotonic),
            ]
            rate = Rate(4.0, 2)
            waits = [await limiters[i % 2].reserve("sms:+3197", rate, 0.9) for i in range(6)]
            clock.elapsed = 60.0  # long idle: the burst is back
            waits.append(await limiters[0].reserve("sms:+3197", rate, 1.0))
            waits.append(await limiters[1].reserve("whatsapp:+3197", rate, 1.0))
            return waits
        finally:
            await first.aclose()
            await second.aclose()

    waits = asyncio.run(run())
    assert waits[:5] == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75])
    assert waits[5] is None  # 1 s away: longer than the caller waits, and nothing booked
    assert waits[6:] == [0.0, 0.0]


def test_the_redis_limiter_uses_the_server_clock_by_default(queue: str) -> None:
    async def run() -> list[float | None]:
        client = Redis.from_url(REDIS_URL)
        try:
            limiter = RedisRateLimiter(client, queue)
            return [await limiter.reserve("sms:+3197", Rate(1.0), 5.0) for _ in range(3)]
        finally:
            await client.aclose()

    first, second, third = asyncio.run(run())
    assert first == 0.0
    assert second is not None and 0.9 < second <= 1.0
    assert third is not None and 1.9 < third <= 2.0


# -- real arq workers, the real twilio client, Prism ---------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("session")
def test_arq_workers_deliver_each_message_once_through_prism(
    tmp_path: Path, db_engine: Engine, prism: str, queue: str
) -> None:
    settings = channel_settings(
        tmp_path,
        redis_url=REDIS_URL,
        delivery_queue_name=queue,
        twilio_api_base_url=prism,
        delivery_dispatch_interval_seconds=1,
        delivery_rate_limits={"sms": 200.0},
        delivery_concurrency=8,
    )
    sessions = make_sessionmaker(db_engine)
    now = datetime.now(UTC)
    numbers = [f"+3161234{n:04d}" for n in range(24)]
    with sessions() as session:
        ids = outage_with_subscribers(
            session,
            [("sms", number, "nl" if i % 2 else "en") for i, number in enumerate(numbers)],
            now=now,
        )
        # One message whose worker died mid-call long ago: its claim is settled by a lookup
        # at Prism (which keeps nothing, so finds nothing) and then sent once.
        stale = session.get(OutboxMessage, ids[0])
        assert stale is not None
        long_ago = now - timedelta(minutes=5)
        session.add(
            ChannelOutbound(
                channel="sms",
                address=numbers[0],
                sender="+3197010000001",
                kind="outage_fixed",
                body="Good news: ...",
                outbox_id=ids[0],
                idempotency_key=stale.dedupe_key,
                status="queued",
                created_at=long_ago,
                updated_at=long_ago,
                claimed_at=long_ago,
            )
        )
        session.commit()
    clients: list[Recording] = []

    def make_client() -> Recording:
        client = Recording(prism)
        clients.append(client)
        return client

    async def all_sent() -> None:
        deadline = asyncio.get_running_loop().time() + 90
        while True:
            with sessions() as session:
                statuses = set(session.scalars(select(OutboxMessage.status)))
            if statuses == {"sent"}:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not delivered in time: {statuses}")
            await asyncio.sleep(0.2)

    async def run() -> None:
        context: dict[str, Any] = {"sessions": sessions, "twilio_http_client": make_client}
        workers = [build_worker(settings, ctx=context, handle_signals=False) for _ in range(2)]
        runs = [asyncio.create_task(w.async_run()) for w in workers]
        try:
            await all_sent()
        finally:
            for worker in workers:
                await worker.close()
            await asyncio.gather(*runs, return_exceptions=True)

    asyncio.run(run())

    requests = [r for client in clients for r in client.requests]
    posts = [r for r in requests if r["method"] == "POST"]
    assert len(clients) == 2  # one REST client per worker
    assert Counter(r["data"]["To"] for r in posts) == Counter(numbers)
    assert all(r["status"] == 201 for r in posts), [r["body"] for r in posts if r["status"] != 201]
    (lookup,) = [r for r in requests if r["method"] == "GET"]
    assert lookup["status"] == 200, lookup["body"]
    assert lookup["params"] == {"To": numbers[0], "From": "+3197010000001", "PageSize": "20"}
    with sessions() as session:
        rows = {r.outbox_id: r for r in session.scalars(select(ChannelOutbound))}
        for outbox_id in ids:
            outbox = session.get(OutboxMessage, outbox_id)
            assert outbox is not None and outbox.status == "sent"
            assert rows[outbox_id].twilio_sid
            expected = render_outbox(
                outbox.kind,
                outbox.payload,
                outbox.language,
                timezone=settings.timezone,
                now=outbox.sent_at or now,
            )
            sent = [r for r in posts if r["data"]["To"] == rows[outbox_id].address]
            assert sent[0]["data"]["Body"] == expected
        assert rows[ids[0]].attempts == 2
