"""The sweep for inbound events stuck in "received": a webhook recorded them, then the process
died before their turn ran. They are processed once more, by one worker only, on start and
periodically; an event that fails to finish twice is given up (both databases)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channel_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_TOKEN,
    PUBLIC_BASE,
    ChannelApp,
    FakeBotApi,
    FakeTwilioApi,
    channel_settings,
    start_app,
    wait_until,
)
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from telegram import Chat, Message, Update, User
from twilio.request_validator import RequestValidator

from bot.channels import store
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import ChannelInbound, ChannelOutbound
from bot.storage.models import Message as StoredMessage

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

NUMBER = "+31612345678"
CHAT = 4242
AGE = 120.0


@pytest.fixture
def settings(tmp_path: Path, fake_bot_api: FakeBotApi) -> Settings:
    return channel_settings(
        tmp_path,
        telegram_bot_token=BOT_TOKEN,
        telegram_webhook_secret="sweep-test-secret",
        telegram_api_base_url=fake_bot_api.base_url,
        channel_sweep_age_seconds=AGE,
        # Only the sweep at start and the explicit ones of the tests.
        channel_sweep_interval_seconds=3600,
    )


def _start(
    settings: Settings, db_engine: Engine, rasa: FakeRasaServer, twilio: FakeTwilioApi
) -> Iterator[ChannelApp]:
    return start_app(settings, db_engine, rasa, lambda: twilio)


def _sms_payload(sid: str, body: str) -> dict[str, Any]:
    form = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": NUMBER,
        "To": "+3197010000001",
        "Body": body,
        "NumMedia": "0",
    }
    return {"form": form, "callback_base": PUBLIC_BASE}


def _telegram_payload(update_id: int, text: str) -> dict[str, Any]:
    message = Message(
        message_id=update_id,
        date=datetime.now(UTC),
        chat=Chat(id=CHAT, type=Chat.PRIVATE),
        from_user=User(id=CHAT, is_bot=False, first_name="Anna", language_code="nl"),
        text=text,
    )
    return Update(update_id=update_id, message=message).to_dict()


def _stuck(
    db_engine: Engine,
    channel: str,
    external_id: str,
    payload: dict[str, Any] | None,
    *,
    age: timedelta,
    swept_ago: timedelta | None = None,
) -> int:
    """Record an event as a webhook would have, ``age`` ago, and leave it unprocessed."""
    now = datetime.now(UTC)
    with make_sessionmaker(db_engine)() as session, session.begin():
        inbound_id = store.claim_inbound(
            session,
            channel=channel,
            external_id=external_id,
            address=NUMBER if channel != "telegram" else str(CHAT),
            now=now - age,
            payload=payload,
        )
        assert inbound_id is not None
        if swept_ago is not None:
            row = session.get(ChannelInbound, inbound_id)
            assert row is not None
            row.swept_at = now - swept_ago
        return inbound_id


def _status(app: ChannelApp, inbound_id: int) -> str:
    with app.sessions() as session:
        row = session.get(ChannelInbound, inbound_id)
        assert row is not None
        return row.status


def _wait_for(app: ChannelApp, status: str, *inbound_ids: int) -> None:
    wait_until(lambda: all(_status(app, i) == status for i in inbound_ids))


def _sweep_together(apps: tuple[ChannelApp, ...]) -> list[int]:
    """Run every app's sweep at the same moment, each from its own thread; their results."""
    barrier = threading.Barrier(len(apps))
    started: list[int] = []
    errors: list[BaseException] = []

    def sweep(app: ChannelApp) -> None:
        try:
            barrier.wait(timeout=10)
            started.append(app.run(lambda: app.gateway.sweep(older_than=timedelta(seconds=1))))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return started


def _turns(rasa: FakeRasaServer) -> int:
    return sum(r.url.path == "/webhooks/rest/webhook" for r in rasa.requests)


def test_stuck_events_are_processed_again_on_start(
    settings: Settings,
    db_engine: Engine,
    fake_rasa: FakeRasaServer,
    fake_twilio: FakeTwilioApi,
    fake_bot_api: FakeBotApi,
) -> None:
    fake_rasa.reply = [{"recipient_id": "x", "text": "Er is geen storing bekend."}]
    old = timedelta(seconds=AGE * 2)
    sms = _stuck(db_engine, "sms", "SMstuck1", _sms_payload("SMstuck1", "storing?"), age=old)
    chat = _stuck(
        db_engine, "telegram", "123456789:900", _telegram_payload(900, "storing?"), age=old
    )
    young = _stuck(db_engine, "sms", "SMyoung", _sms_payload("SMyoung", "hoi"), age=timedelta(0))

    for app in _start(settings, db_engine, fake_rasa, fake_twilio):
        _wait_for(app, "done", sms, chat)
        app.drain()
        # A young event may still be in the hands of a live worker: left alone.
        assert _status(app, young) == "received"
        with app.sessions() as session:
            swept = session.get(ChannelInbound, sms)
            assert swept is not None and swept.swept_at is not None and swept.payload is None
            said = list(session.scalars(select(StoredMessage.text).order_by(StoredMessage.id)))
        assert sorted(said) == sorted(["storing?", "storing?", *["Er is geen storing bekend."] * 2])
    assert [m["Body"] for m in fake_twilio.messages()] == ["Er is geen storing bekend."]
    assert [m["chat_id"] for m in fake_bot_api.sent()] == [CHAT]
    assert _turns(fake_rasa) == 2


def test_a_payload_is_kept_only_until_the_event_is_finished(
    settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> None:
    params = dict(_sms_payload("SMlive", "hallo")["form"])
    path = "/webhooks/twilio/sms"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + path, params)
    for app in _start(settings, db_engine, fake_rasa, fake_twilio):
        fake_twilio.gate = asyncio.Event()
        response = app.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200
        with app.sessions() as session:
            row = session.scalars(select(ChannelInbound)).one()
            # Taken in, not yet processed: what a sweep would need is there.
            assert row.payload == {"form": params, "callback_base": PUBLIC_BASE}
        app.run(_open(fake_twilio))
        app.drain()
        with app.sessions() as session:
            row = session.scalars(select(ChannelInbound)).one()
            assert row.status == "done" and row.payload is None


def _open(twilio: FakeTwilioApi) -> Any:
    async def release() -> None:
        assert twilio.gate is not None
        twilio.gate.set()

    return release


def test_two_workers_sweeping_at_once_process_an_event_once(
    settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> None:
    for first in _start(settings, db_engine, fake_rasa, fake_twilio):
        for second in _start(settings, db_engine, fake_rasa, fake_twilio):
            # Young for the sweeps at start: only the sweeps below take it.
            sms = _stuck(
                db_engine,
                "sms",
                "SMtwice",
                _sms_payload("SMtwice", "storing?"),
                age=timedelta(seconds=2),
            )
            started = _sweep_together((first, second))
            first.drain()
            second.drain()
            assert sorted(started) == [0, 1]
            assert _status(first, sms) == "done"
    assert _turns(fake_rasa) == 1
    assert len(fake_twilio.messages()) == 1


def test_concurrent_claims_hand_each_event_to_one_sweeper(
    db_engine: Engine, session: Session
) -> None:
    old = timedelta(seconds=AGE * 2)
    ids = [
        _stuck(db_engine, "sms", f"SMc{i}", _sms_payload(f"SMc{i}", "x"), age=old) for i in range(5)
    ]
    factory = make_sessionmaker(db_engine)
    barrier = threading.Barrier(4)
    claimed: list[int] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            now = datetime.now(UTC)
            with factory() as own, own.begin():
                events = store.claim_stuck_inbound(
                    own,
                    channels=("sms", "whatsapp"),
                    received_before=now - timedelta(seconds=AGE),
                    now=now,
                )
                claimed.extend(e.id for e in events)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(claimed) == sorted(ids)


def test_an_event_that_fails_twice_is_given_up_and_one_without_payload_too(
    settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> None:
    old = timedelta(seconds=AGE * 3)
    twice = _stuck(
        db_engine,
        "sms",
        "SMtwice-dead",
        _sms_payload("SMtwice-dead", "x"),
        age=old,
        swept_ago=timedelta(seconds=AGE * 2),
    )
    bare = _stuck(db_engine, "whatsapp", "SMbare", None, age=old)

    for app in _start(settings, db_engine, fake_rasa, fake_twilio):
        _wait_for(app, "failed", twice, bare)
        app.drain()
        with app.sessions() as session:
            rows = {r.id: r for r in session.scalars(select(ChannelInbound))}
        assert "second try" in (rows[twice].error or "")
        assert rows[twice].payload is None
        assert "nothing to process" in (rows[bare].error or "")
    assert _turns(fake_rasa) == 0
    with make_sessionmaker(db_engine)() as session:
        assert session.scalar(select(func.count()).select_from(ChannelOutbound)) == 0
