"""Forwarding observations to the CX webhook: retries, claims, leases, payloads.

The webhook is a real HTTP server on loopback (aiohttp) that answers what each test tells it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from cx_helpers import make_app
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from web_login import login

from bot.cx.forwarding import (
    WebhookForwarder,
    build_payload,
    claim_due,
    record_sent,
    retry_failed,
)
from bot.feedback.service import record_feedback
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import Conversation, Feedback, FeedbackForward

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class MockWebhook:
    """An aiohttp server in its own thread; ``statuses`` are answered in turn (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status == 200 else "no_service")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def webhook() -> Iterator[MockWebhook]:
    server = MockWebhook()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(api_settings: Settings, webhook: MockWebhook) -> Settings:
    return api_settings.model_copy(
        update={
            "cx_webhook_url": SecretStr(webhook.url),
            "cx_webhook_max_attempts": 3,
            "cx_webhook_backoff_base_seconds": 10.0,
            "cx_webhook_timeout_seconds": 5.0,
            "cx_forward_lease_seconds": 60.0,
            "cx_forward_interval_seconds": 0.2,
            "public_base_url": "https://belofte.example.nl",
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _observation(session: Session, **kwargs: Any) -> Feedback:
    values: dict[str, Any] = {
        "text": "De storingskaart loopt achter",
        "channel": "web",
        "source": "agent",
        "language": "nl",
        "now": T0,
        "category": "tooling",
        "author": "Anna de Vries",
        "forward": True,
        **kwargs,
    }
    feedback = record_feedback(session, **values)
    session.commit()
    return feedback


def _forward(session: Session, feedback_id: int) -> FeedbackForward:
    session.expire_all()
    return session.scalars(
        select(FeedbackForward).where(FeedbackForward.feedback_id == feedback_id)
    ).one()


def _run(
    forwarder_factory: Callable[[], WebhookForwarder], *steps: Callable[[], None]
) -> list[int]:
    """Run ``forwarder.run_once()`` once per step (each step first sets the clock etc.)."""

    async def main() -> list[int]:
        forwarder = forwarder_factory()
        try:
            claimed = []
            for step in steps:
                step()
                claimed.append(await forwarder.run_once())
            return claimed
        finally:
            await forwarder.stop()

    return asyncio.run(main())


def test_a_failing_webhook_is_retried_after_a_backoff_and_loses_nothing(
    settings: Settings, db_engine: Engine, session: Session, webhook: MockWebhook
) -> None:
    feedback = _observation(session)
    webhook.statuses = [500]
    clock = Clock()

    def forwarder() -> WebhookForwarder:
        return WebhookForwarder(
            settings, make_sessionmaker(db_engine), clock=clock, jitter=lambda: 0.0
        )

    def at(seconds: float) -> Callable[[], None]:
        def step() -> None:
            clock.now = T0 + timedelta(seconds=seconds)

        return step

    assert _run(forwarder, at(0)) == [1]
    row = _forward(session, feedback.id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "500" in row.last_error
    # Backoff: base 10 s, jitter 0 -> 5 s (the lower half of "equal jitter").
    assert row.next_attempt_at == T0 + timedelta(seconds=5)
    # Not due yet, then due: a new forwarder (a restarted service) picks it up from the table.
    assert _run(forwarder, at(4)) == [0]
    assert _run(forwarder, at(6)) == [1]
    row = _forward(session, feedback.id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert row.sent_at == T0 + timedelta(seconds=6)
    assert len(webhook.received) == 2
    assert webhook.received[0] == webhook.received[1]
    assert "De storingskaart loopt achter" in webhook.received[1]["text"]


def test_after_the_last_attempt_it_is_kept_as_failed_and_can_be_retried(
    settings: Settings, db_engine: Engine, session: Session, webhook: MockWebhook
) -> None:
    feedback = _observation(session)
    webhook.statuses = [503, 503, 503]
    clock = Clock()

    def forwarder() -> WebhookForwarder:
        return WebhookForwarder(
            settings, make_sessionmaker(db_engine), clock=clock, jitter=lambda: 1.0
        )

    def later() -> None:
        clock.now += timedelta(hours=1)

    assert _run(forwarder, later, later, later, later) == [1, 1, 1, 0]
    row = _forward(session, feedback.id)
    assert (row.status, row.attempts) == ("failed", 3)
    assert retry_failed(session, now=clock.now) == 1
    session.commit()
    assert _run(forwarder, later) == [1]
    assert _forward(session, feedback.id).status == "sent"
    assert len(webhook.received) == 4


def test_a_client_error_fails_at_once(
    settings: Settings, db_engine: Engine, session: Session, webhook: MockWebhook
) -> None:
    feedback = _observation(session)
    webhook.statuses = [404]
    clock = Clock()
    _run(
        lambda: WebhookForwarder(settings, make_sessionmaker(db_engine), clock=clock), lambda: None
    )
    row = _forward(session, feedback.id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None and "404" in row.last_error


def test_an_unreachable_webhook_is_retried(
    settings: Settings, db_engine: Engine, session: Session
) -> None:
    feedback = _observation(session)
    closed = settings.model_copy(update={"cx_webhook_url": SecretStr("http://127.0.0.1:9/hook")})
    _run(
        lambda: WebhookForwarder(closed, make_sessionmaker(db_engine), clock=Clock()), lambda: None
    )
    row = _forward(session, feedback.id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "127.0.0.1" not in row.last_error  # no URL in errors


def test_a_claim_is_taken_by_one_process_only(db_engine: Engine, session: Session) -> None:
    ids = [_observation(session, text=f"observatie {i}").id for i in range(12)]
    factory = make_sessionmaker(db_engine)
    barrier = threading.Barrier(2)
    claimed: list[list[int]] = []

    def claim() -> None:
        with factory() as db:
            barrier.wait()
            with db.begin():
                got = claim_due(
                    db, now=T0, lease=timedelta(seconds=60), max_attempts=3, limit=len(ids)
                )
            claimed.append([c.feedback_id for c in got])

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    first, second = claimed
    assert not set(first) & set(second)
    assert sorted(first + second) == ids


def test_a_crashed_claim_is_taken_over_after_the_lease(db_engine: Engine, session: Session) -> None:
    feedback = _observation(session)
    lease = timedelta(seconds=60)
    (old,) = claim_due(session, now=T0, lease=lease, max_attempts=3)
    session.commit()
    # Another process, before the lease ends: nothing to take.
    assert claim_due(session, now=T0 + timedelta(seconds=59), lease=lease, max_attempts=3) == []
    (new,) = claim_due(session, now=T0 + timedelta(seconds=61), lease=lease, max_attempts=3)
    session.commit()
    assert new.feedback_id == feedback.id and new.token != old.token and new.attempts == 2
    # The first process comes back late: its result is not recorded over the new claim.
    assert record_sent(session, old, now=T0 + timedelta(seconds=62)) is False
    assert record_sent(session, new, now=T0 + timedelta(seconds=62)) is True
    session.commit()
    assert _forward(session, feedback.id).status == "sent"


def test_a_crashed_last_attempt_becomes_failed(session: Session) -> None:
    feedback = _observation(session)
    lease = timedelta(seconds=60)
    claim_due(session, now=T0, lease=lease, max_attempts=1)
    session.commit()
    assert claim_due(session, now=T0 + timedelta(minutes=5), lease=lease, max_attempts=1) == []
    session.commit()
    row = _forward(session, feedback.id)
    assert (row.status, row.attempts) == ("failed", 1)


def test_payloads_name_no_one_for_anonymous_and_never_a_conversation_id(
    settings: Settings, session: Session
) -> None:
    session.add(Conversation(id="sms:+31612345678", channel="sms", language="nl"))
    session.commit()
    named = _observation(session, conversation_id="sms:+31612345678")
    anonymous = _observation(
        session, author=None, anonymous=True, text="Anoniem: script klopt niet"
    )
    customer = _observation(
        session, author=None, source="customer", channel="sms", category=None,
        conversation_id="sms:+31612345678",
    )  # fmt: skip
    named_payload = build_payload(named, "STO-26-00042", settings)
    assert named_payload["observation"]["author"] == "Anna de Vries"
    assert "Anna de Vries" in named_payload["text"]
    assert "STO-26-00042" in named_payload["text"]
    assert named_payload["observation"]["url"] == (
        f"https://belofte.example.nl/cx#observation-{named.id}"
    )
    anonymous_payload = build_payload(anonymous, None, settings)
    assert anonymous_payload["observation"]["author"] is None
    assert anonymous_payload["observation"]["created_at"] == "2026-12-01"
    assert "Anoniem" in anonymous_payload["text"]
    for payload in (named_payload, anonymous_payload, build_payload(customer, None, settings)):
        assert "+31612345678" not in str(payload)
        assert isinstance(payload["text"], str) and payload["text"]
    english = settings.model_copy(update={"cx_webhook_language": "en"})
    assert build_payload(named, None, english)["text"].startswith("New observation")


def test_the_service_forwards_a_new_observation_right_after_the_201(
    settings: Settings, db_engine: Engine, session: Session, webhook: MockWebhook
) -> None:
    # The long interval shows the forward comes from the wake-up, not from the next round.
    slow_rounds = settings.model_copy(update={"cx_forward_interval_seconds": 300.0})
    with TestClient(make_app(slow_rounds, db_engine)) as client:
        time.sleep(0.3)  # let the first (empty) round pass
        csrf = login(client, session, "agent")
        answer = client.post(
            "/api/v1/feedback",
            json={"text": "Wachtmuziek is te hard", "category": "other", "anonymous": True},
            headers={"X-CSRF-Token": csrf},
        )
        assert answer.status_code == 201
        deadline = time.monotonic() + 10
        while not webhook.received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(webhook.received) == 1
    assert webhook.received[0]["observation"]["text"] == "Wachtmuziek is te hard"
    assert webhook.received[0]["observation"]["author"] is None
    assert _forward(session, answer.json()["id"]).status == "sent"
