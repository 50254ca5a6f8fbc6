"""Promises on the database: decisions, overrides, promises given, scoring, renewals, outbox.

Runs on SQLite and PostgreSQL (the ``session`` fixture). Most tests drive the service with a
scripted engine whose promise the test sets; ``test_the_real_engine_*`` use the promise engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine, event, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.customers import identities, notifications
from bot.customers.identities import link_customer, link_phone, set_preferred_channel
from bot.customers.notifications import notification_target
from bot.promises import history_store
from bot.promises import service as promise_service
from bot.promises.history_store import (
    HistoryImportError,
    ImportSummary,
    import_incidents,
    load_incidents,
)
from bot.promises.service import (
    InvalidPromise,
    OutageResolved,
    PromiseService,
    history_fingerprint,
    queue_message,
)
from bot.promises.watch import PromiseWatch
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import (
    ChannelOptOut,
    Conversation,
    Outage,
    OutageState,
    OutboxMessage,
    Promise,
    PromiseAudit,
    PromiseGiven,
    Subscription,
)
from bot.subscriptions.service import subscribe
from promise.engine import EngineConfig
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

T0 = datetime(2025, 11, 20, 9, 0, tzinfo=UTC)


class ScriptedEngine:
    """A stand-in engine: promises ``deadline`` (None: only a next update), counts fits."""

    def __init__(self) -> None:
        self.deadline: datetime | None = T0 + timedelta(hours=2)
        self.fits = 0
        self.fitted_on = 0
        self.targets: list[float] = []

    def fit(self, history: Sequence[Incident], now: datetime) -> ScriptedEngine:
        self.fits += 1
        self.fitted_on = len(history)
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        self.targets.append(target)
        return Estimate(
            made_at=now,
            target=target,
            deadline=self.deadline,
            next_update_at=None if self.deadline else now + timedelta(minutes=60),
            remaining_minutes=None
            if self.deadline is None
            else (self.deadline - now).total_seconds() / 60,
            explanation=Explanation(
                segment="service=internet, cause=fiber_cut",
                similar=42,
                fixed_within=35,
                open_minutes=(now - outage.started_at).total_seconds() / 60,
                method_version="scripted/1",
            ),
        )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, promise_default_target=0.8, promise_renew_at_fraction=0.9)


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def service(settings: Settings, engine: ScriptedEngine) -> PromiseService:
    return PromiseService(
        settings, engine_factory=lambda _config: engine, min_refit_interval=timedelta(0)
    )


def _outage(session: Session, reference: str = "STO-25-00001", **values: object) -> Outage:
    fields: dict[str, object] = {
        "reference": reference,
        "service": "internet",
        "cause": "fiber_cut",
        "region_name": "Utrecht",
        "country": "NL",
        "started_at": T0 - timedelta(minutes=30),
        "customers_affected": 1200,
    }
    fields.update(values)
    outage = Outage(**fields)
    session.add(outage)
    session.flush()
    return outage


def _subscribe(session: Session, outage: Outage, channel: str, address: str) -> Subscription:
    return subscribe(
        session,
        channel=channel,
        address=address,
        language="nl",
        now=T0,
        outage_id=outage.id,
    )


def _outbox(session: Session) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


# -- the current promise, approvals and overrides -----------------------------------------------


def test_current_stores_a_suggestion_only_when_it_changes(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    first = service.current(session, outage.id, T0)
    assert first is not None
    assert (first.status, first.deadline, first.target) == ("suggested", engine.deadline, 0.8)
    assert first.approved_by is None
    assert first.explanation["similar"] == 42
    assert first.to_dict()["outage"] == "STO-25-00001"

    again = service.current(session, outage.id, T0 + timedelta(minutes=5))
    assert again is not None and again.promise_id == first.promise_id

    engine.deadline = T0 + timedelta(hours=3)
    moved = service.current(session, outage.id, T0 + timedelta(minutes=10))
    assert moved is not None and moved.promise_id != first.promise_id
    statuses = session.scalars(select(Promise.status).order_by(Promise.id)).all()
    assert statuses == ["superseded", "suggested"]

    assert service.current(session, 999_999, T0) is None


def test_without_evidence_the_next_update_time_is_kept_until_nearly_due(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    engine.deadline = None
    first = service.current(session, outage.id, T0)
    assert first is not None
    assert first.deadline is None and first.next_update_at == T0 + timedelta(minutes=60)
    # Everyone asking in the next 50 minutes hears the same update time.
    later = service.current(session, outage.id, T0 + timedelta(minutes=50))
    assert later is not None and later.next_update_at == first.next_update_at
    # From 90 % of the hour on, a new update time is announced.
    renewed = service.current(session, outage.id, T0 + timedelta(minutes=55))
    assert renewed is not None
    assert renewed.next_update_at == T0 + timedelta(minutes=115)


def test_override_is_audited_and_stands_until_its_deadline(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    suggested = service.current(session, outage.id, T0)
    assert suggested is not None
    deadline = T0 + timedelta(hours=5)

    with pytest.raises(InvalidPromise, match="reason"):
        service.override(session, outage.id, deadline, "  ", "sam", T0)
    with pytest.raises(InvalidPromise, match="future"):
        service.override(session, outage.id, T0 - timedelta(minutes=1), "graafwerk", "sam", T0)

    view = service.override(session, outage.id, deadline, "graafwerk duurt langer", "sam", T0)
    assert (view.status, view.deadline, view.approved_by) == ("overridden", deadline, "sam")
    assert view.reason == "graafwerk duurt langer"
    assert view.explanation["segment"] == "service=internet, cause=fiber_cut"

    audit = session.scalars(select(PromiseAudit)).one()
    assert (audit.action, audit.actor, audit.reason) == (
        "override",
        "sam",
        "graafwerk duurt langer",
    )
    assert (audit.old_deadline, audit.new_deadline) == (suggested.deadline, deadline)
    assert audit.at == T0 and audit.promise_id == view.promise_id

    # The engine changes its mind: the override still stands ...
    engine.deadline = T0 + timedelta(hours=1)
    current = service.current(session, outage.id, T0 + timedelta(hours=2))
    assert current is not None and current.promise_id == view.promise_id
    assert current.status == "overridden" and current.deadline == deadline
    # ... until its deadline has passed.
    engine.deadline = T0 + timedelta(hours=7)
    after = service.current(session, outage.id, T0 + timedelta(hours=5, minutes=1))
    assert after is not None and after.status == "suggested"
    assert after.deadline == T0 + timedelta(hours=7)


def test_approve_fixes_the_suggestion(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    suggested = service.current(session, outage.id, T0)
    assert suggested is not None
    approved = service.approve(session, outage.id, "noor", T0 + timedelta(minutes=1))
    assert (approved.status, approved.approved_by) == ("approved", "noor")
    assert approved.deadline == suggested.deadline
    audit = session.scalars(select(PromiseAudit)).one()
    assert (audit.action, audit.actor, audit.old_deadline) == (
        "approve",
        "noor",
        suggested.deadline,
    )

    engine.deadline = T0 + timedelta(hours=4)
    current = service.current(session, outage.id, T0 + timedelta(minutes=30))
    assert current is not None and current.promise_id == approved.promise_id
    # Approving what is already approved changes nothing.
    assert service.approve(session, outage.id, "piet", T0).promise_id == approved.promise_id
    assert session.scalar(select(func.count(PromiseAudit.id))) == 1


def test_resolved_outage_has_no_promise(session: Session, service: PromiseService) -> None:
    outage = _outage(session, resolved_at=T0)
    with pytest.raises(OutageResolved, match="STO-25-00001"):
        service.current(session, outage.id, T0 + timedelta(minutes=1))
    with pytest.raises(OutageResolved):
        service.approve(session, outage.id, "noor", T0 + timedelta(minutes=1))


def test_target_per_service(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    internet = _outage(session, "STO-25-00001")
    tv = _outage(session, "STO-25-00002", service="tv")
    assert service.target_for(session, "internet") == 0.8

    stored = service.set_target(session, "internet", 0.9, "noor", T0)
    assert (stored.target, stored.updated_by) == (0.9, "noor")
    assert service.target_for(session, "internet") == 0.9
    assert service.target_for(session, "tv") == 0.8
    with pytest.raises(InvalidPromise):
        service.set_target(session, "tv", 1.0, "noor", T0)

    internet_view = service.current(session, internet.id, T0)
    tv_view = service.current(session, tv.id, T0)
    assert internet_view is not None and tv_view is not None
    assert (internet_view.target, tv_view.target) == (0.9, 0.8)
    assert engine.targets == [0.9, 0.8]
    targets = {t.service: t for t in service.targets(session)}
    assert targets["internet"].target == 0.9 and targets["internet"].updated_by == "noor"
    assert targets["gas"].target == 0.8 and targets["gas"].updated_by is None


# -- promises given and scoring -----------------------------------------------------------------


def test_record_given_is_idempotent_per_recipient_and_promise(
    session: Session, service: PromiseService
) -> None:
    outage = _outage(session)
    session.add(Conversation(id="tg:42", channel="telegram", language="en"))
    view = service.current(session, outage.id, T0)
    assert view is not None
    first = service.record_given(
        session,
        view,
        channel="telegram",
        recipient="42",
        language="en",
        conversation_id="tg:42",
        now=T0,
    )
    second = service.record_given(
        session,
        view,
        channel="telegram",
        recipient="42",
        language="en",
        conversation_id="tg:42",
        now=T0 + timedelta(minutes=3),
    )
    assert second.id == first.id
    assert first.deadline == view.deadline and first.target_quantile == 0.8
    assert first.evidence == {
        "n": 42,
        "segment": "service=internet, cause=fiber_cut",
        "fixed_within": 35,
        "method_version": "scripted/1",
        "status": "suggested",
    }
    with pytest.raises(InvalidPromise):
        service.record_given(
            session,
            view,
            channel="sms",
            recipient="+1",
            language="de",
            conversation_id=None,
            now=T0,
        )
    assert session.scalar(select(func.count(PromiseGiven.id))) == 1


def test_resolve_scores_kept_broken_and_no_deadline(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)

    def tell(recipient: str, now: datetime) -> PromiseGiven:
        view = service.current(session, outage.id, now)
        assert view is not None
        return service.record_given(
            session, view, channel="sms", recipient=recipient, language="nl",
            conversation_id=None, now=now,
        )  # fmt: skip

    engine.deadline = T0 + timedelta(hours=2)
    late = tell("+31600000001", T0)
    engine.deadline = T0 + timedelta(minutes=45)
    early = tell("+31600000002", T0 + timedelta(minutes=5))
    engine.deadline = None
    vague = tell("+31600000003", T0 + timedelta(minutes=10))

    resolved_at = T0 + timedelta(hours=1)
    summary = service.resolve(session, outage.id, resolved_at, T0 + timedelta(hours=1, minutes=2))
    assert (summary.kept, summary.broken, summary.no_deadline) == (1, 1, 1)
    session.expire_all()
    assert (late.outcome, early.outcome, vague.outcome) == ("kept", "broken", "no_deadline")
    assert late.scored_at == T0 + timedelta(hours=1, minutes=2)
    assert session.get(Outage, outage.id).resolved_at == resolved_at  # type: ignore[union-attr]

    # A corrected resolution time re-scores.
    service.resolve(session, outage.id, T0 + timedelta(hours=3), T0 + timedelta(hours=3))
    session.expire_all()
    assert (late.outcome, early.outcome) == ("broken", "broken")

    with pytest.raises(InvalidPromise, match="before the outage started"):
        service.resolve(session, outage.id, T0 - timedelta(hours=1), T0)


def test_resolve_queues_fixed_for_every_active_subscriber_and_never_twice(
    session: Session, service: PromiseService
) -> None:
    outage = _outage(session)
    other = _outage(session, "STO-25-00002")
    sms = _subscribe(session, outage, "sms", "+31611111111")
    telegram = _subscribe(session, outage, "telegram", "4242")
    cancelled = _subscribe(session, outage, "sms", "+31622222222")
    cancelled.cancelled_at = T0 + timedelta(minutes=1)
    _subscribe(session, other, "sms", "+31633333333")
    session.flush()

    summary = service.resolve(session, outage.id, T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    assert summary.queued == 2
    messages = _outbox(session)
    assert [(m.kind, m.channel, m.address, m.subscription_id) for m in messages] == [
        ("outage_fixed", "sms", "+31611111111", sms.id),
        ("outage_fixed", "telegram", "4242", telegram.id),
    ]
    assert messages[0].dedupe_key == f"fixed:{outage.id}:{sms.id}"
    assert messages[0].payload == {
        "template": "outage_fixed",
        "params": {
            "outage": "STO-25-00001",
            "service": "internet",
            "region": "Utrecht",
            "started_at": (T0 - timedelta(minutes=30)).isoformat(),
            "resolved_at": (T0 + timedelta(hours=1)).isoformat(),
        },
    }
    assert (messages[0].status, messages[0].attempts, messages[0].language) == ("pending", 0, "nl")

    again = service.resolve(session, outage.id, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert again.queued == 0
    assert len(_outbox(session)) == 2


def test_outbox_dedupe_key_is_unique(session: Session) -> None:
    outage = _outage(session)

    def queue() -> int | None:
        return queue_message(
            session,
            kind="outage_fixed",
            outage_id=outage.id,
            channel="sms",
            address="+31611111111",
            language="nl",
            template="outage_fixed",
            params={"outage": outage.reference},
            dedupe_key="fixed:test",
            now=T0,
        )

    first = queue()
    assert first is not None
    assert queue() is None
    assert len(_outbox(session)) == 1
    session.commit()
    # The database itself refuses a second row with the key, whoever writes it.
    session.add(
        OutboxMessage(
            kind="outage_fixed",
            outage_id=outage.id,
            channel="sms",
            address="+31699999999",
            language="nl",
            payload={},
            dedupe_key="fixed:test",
        )
    )
    with pytest.raises(IntegrityError):
        session.commit()


# -- resolving outages with many subscribers (set-based) ---------------------------------------


@contextmanager
def _statements(db_engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent to ``db_engine`` inside the block."""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db_engine, "before_cursor_execute", count)


def _bulk_subscribe(session: Session, outage: Outage, count: int) -> list[Subscription]:
    """``count`` SMS subscriptions in one INSERT; every tenth is cancelled."""
    session.execute(
        insert(Subscription),
        [
            {
                "outage_id": outage.id,
                "channel": "sms",
                "address": f"sms:+316{10_000_000 + i:08d}",
                "language": "nl" if i % 2 == 0 else "en",
                "created_at": T0,
                "cancelled_at": T0 + timedelta(minutes=5) if i % 10 == 3 else None,
            }
            for i in range(count)
        ],
    )
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.outage_id == outage.id)
            .order_by(Subscription.id)
        )
    )


def test_resolve_with_thousands_of_subscribers_takes_a_few_queries(
    session: Session, service: PromiseService, db_engine: Engine
) -> None:
    outage = _outage(session)
    view = service.current(session, outage.id, T0)
    assert view is not None  # the scripted deadline: T0 + 2 h
    told = service.record_given(
        session, view, channel="sms", recipient="sms:+31610000000", language="nl",
        conversation_id=None, now=T0,
    )  # fmt: skip
    subscriptions = _bulk_subscribe(session, outage, 2500)
    active = [s for s in subscriptions if s.cancelled_at is None]
    with _statements(db_engine) as statements:
        summary = service.resolve(
            session, outage.id, T0 + timedelta(hours=1), T0 + timedelta(hours=1)
        )
    assert summary.queued == len(active) == 2250
    assert (summary.kept, summary.broken, summary.no_deadline) == (1, 0, 0)
    # Scored in SQL; the promise given this session holds shows it without a reload.
    assert (told.outcome, told.scored_at) == ("kept", T0 + timedelta(hours=1))
    # Per subscriber it took several queries (one outbox INSERT alone each): now a few per
    # thousand subscribers.
    assert len(statements) < 40, statements

    rows = session.execute(
        select(
            OutboxMessage.subscription_id,
            OutboxMessage.channel,
            OutboxMessage.address,
            OutboxMessage.language,
            OutboxMessage.dedupe_key,
        ).order_by(OutboxMessage.id)
    ).all()
    assert [tuple(row) for row in rows] == [
        (s.id, "sms", s.address, s.language, f"fixed:{outage.id}:{s.id}") for s in active
    ]

    # Resolving again (a corrected time) queues nothing new.
    again = service.resolve(session, outage.id, T0 + timedelta(hours=2), T0 + timedelta(hours=2))
    assert again.queued == 0
    assert session.scalar(select(func.count(OutboxMessage.id))) == 2250


def test_renewal_to_thousands_of_subscribers_takes_a_few_queries(
    session: Session, service: PromiseService, engine: ScriptedEngine, db_engine: Engine
) -> None:
    outage = _outage(session)
    engine.deadline = T0 + timedelta(hours=2)
    old = service.current(session, outage.id, T0)
    assert old is not None
    subscriptions = _bulk_subscribe(session, outage, 2500)
    active = [s for s in subscriptions if s.cancelled_at is None]
    # Every subscriber was told the old promise where they subscribed.
    session.execute(
        insert(PromiseGiven),
        [
            {
                "promise_id": old.promise_id,
                "outage_id": outage.id,
                "given_at": T0,
                "channel": s.channel,
                "recipient": s.address,
                "language": s.language,
                "deadline": old.deadline,
                "target_quantile": old.target,
                "evidence": {},
            }
            for s in subscriptions
        ],
    )
    engine.deadline = T0 + timedelta(hours=3)
    now = T0 + timedelta(minutes=110)
    with _statements(db_engine) as statements:
        queued = service.renew_due(session, now)
    assert queued == len(active) == 2250
    # Per recipient it took several queries each (a lookup, a promise given, an outbox INSERT).
    assert len(statements) < 40, statements

    messages = session.execute(
        select(
            OutboxMessage.subscription_id,
            OutboxMessage.address,
            OutboxMessage.language,
            OutboxMessage.promise_given_id,
            OutboxMessage.payload,
        ).order_by(OutboxMessage.subscription_id)
    ).all()
    assert [(m.subscription_id, m.address, m.language) for m in messages] == [
        (s.id, s.address, s.language) for s in active
    ]
    assert {m.payload["params"]["new_deadline"] for m in messages} == {
        (T0 + timedelta(hours=3)).isoformat()
    }
    # Each message is linked to the new promise as recorded for its own subscriber.
    given = {
        g.id: g
        for g in session.scalars(
            select(PromiseGiven).where(PromiseGiven.promise_id != old.promise_id)
        )
    }
    assert len(given) == 2250
    assert all(given[m.promise_given_id].recipient == m.address for m in messages)
    assert all(given[m.promise_given_id].language == m.language for m in messages)
    # Nothing twice.
    assert service.renew_due(session, now + timedelta(minutes=1)) == 0
    assert session.scalar(select(func.count(OutboxMessage.id))) == 2250


def test_resolve_in_bulk_honours_preferred_channels_opt_outs_and_cancellations(
    session: Session, service: PromiseService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny chunks, so every lookup and insert crosses chunk boundaries on a few subscribers.
    monkeypatch.setattr(identities, "LOOKUP_CHUNK", 3)
    monkeypatch.setattr(notifications, "LOOKUP_CHUNK", 3)
    monkeypatch.setattr(promise_service, "OUTBOX_INSERT_BATCH", 2)
    outage = _outage(session)

    def chat_with_number(chat: str, number: str, preferred: str) -> None:
        customer = link_customer(session, "telegram", chat)
        customer = link_phone(session, customer.id, number)
        set_preferred_channel(session, customer.id, preferred)

    fillers: list[Subscription] = []

    def filler(n: int) -> None:
        # Numbers nobody is known by: their subscription channel, unchanged.
        for _ in range(n):
            number = f"+316990000{len(fillers):02d}"
            fillers.append(_subscribe(session, outage, "sms", f"sms:{number}"))

    chat_with_number("1001", "+31611110001", "sms")  # reachable by SMS: rerouted
    chat_with_number("1002", "+31611110002", "sms")  # opted out of SMS: stays on Telegram
    session.add(ChannelOptOut(channel="sms", address="+31611110002", opted_out_at=T0))
    chat_with_number("1003", "+31611110003", "telegram")  # subscribed twice: one message
    session.add(ChannelOptOut(channel="sms", address="+31644440004", opted_out_at=T0))
    session.flush()

    filler(2)
    rerouted = _subscribe(session, outage, "telegram", "telegram:1001")
    both_sms = _subscribe(session, outage, "sms", "sms:+31611110003")
    filler(3)
    blocked = _subscribe(session, outage, "telegram", "telegram:1002")
    # Opted out without a choice of channel: queued as before (delivery checks the opt-out
    # right before sending, so a START in between still gets the message).
    opted_out = _subscribe(session, outage, "sms", "sms:+31644440004")
    cancelled = _subscribe(session, outage, "sms", "sms:+31655550005")
    cancelled.cancelled_at = T0 + timedelta(minutes=1)
    filler(2)
    both_telegram = _subscribe(session, outage, "telegram", "telegram:1003")
    filler(1)
    session.flush()

    summary = service.resolve(session, outage.id, T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    rows = {m.subscription_id: (m.channel, m.address) for m in _outbox(session)}
    special = {
        rerouted.id: ("sms", "sms:+31611110001"),
        both_sms.id: ("telegram", "telegram:1003"),
        blocked.id: ("telegram", "telegram:1002"),
        opted_out.id: ("sms", "sms:+31644440004"),
    }
    for subscription_id, target in special.items():
        assert rows.pop(subscription_id) == target
    # The second subscription of the customer who chose Telegram and the cancelled one: nothing.
    assert both_telegram.id not in rows and cancelled.id not in rows
    assert rows == {f.id: ("sms", f.address) for f in fillers}
    assert summary.queued == 12
    # The single-subscriber lookup agrees with the bulk one.
    assert notification_target(session, "telegram", "telegram:1001") == special[rerouted.id]
    assert notification_target(session, "telegram", "telegram:1002") == special[blocked.id]

    again = service.resolve(session, outage.id, T0 + timedelta(hours=2), T0 + timedelta(hours=2))
    assert again.queued == 0
    assert len(_outbox(session)) == 12


def test_concurrent_resolves_queue_every_message_once(
    session: Session, service: PromiseService, db_engine: Engine
) -> None:
    if db_engine.dialect.name != "postgresql":
        # SQLite has one writer at a time and no row locks: nothing runs concurrently there.
        pytest.skip("row locks and concurrent writers: PostgreSQL only")
    outage = _outage(session)
    _bulk_subscribe(session, outage, 300)
    session.commit()
    factory = make_sessionmaker(db_engine)
    resolved_at = T0 + timedelta(hours=1)
    second: list[int] = []

    def resolve_too() -> None:
        with factory() as other, other.begin():
            second.append(service.resolve(other, outage.id, resolved_at, resolved_at).queued)

    with factory() as first, first.begin():
        assert service.resolve(first, outage.id, resolved_at, resolved_at).queued == 270
        thread = threading.Thread(target=resolve_too)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the outage row the first resolve locked
    thread.join(30)
    assert second == [0]
    keys = session.scalars(select(OutboxMessage.dedupe_key)).all()
    assert len(keys) == len(set(keys)) == 270


# -- renewals -----------------------------------------------------------------------------------


def test_renew_due_queues_one_apology_per_subscribed_recipient_and_is_idempotent(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    engine.deadline = T0 + timedelta(hours=2)
    old = service.current(session, outage.id, T0)
    assert old is not None

    def tell(channel: str, recipient: str, now: datetime) -> PromiseGiven:
        assert old is not None
        return service.record_given(
            session, old, channel=channel, recipient=recipient, language="nl",
            conversation_id=None, now=now,
        )  # fmt: skip

    told = [
        tell("sms", "+31611111111", T0),
        tell("sms", "+31611111111", T0 + timedelta(minutes=20)),  # told twice: one record
        tell("telegram", "4242", T0 + timedelta(minutes=5)),
        tell("web", "conversation-7", T0 + timedelta(minutes=6)),  # never asked for updates
        tell("sms", "+31622222222", T0 + timedelta(minutes=7)),  # cancelled below
    ]
    sms = _subscribe(session, outage, "sms", "+31611111111")
    telegram = _subscribe(session, outage, "telegram", "4242")
    _subscribe(session, outage, "sms", "+31622222222").cancelled_at = T0 + timedelta(minutes=8)
    session.flush()

    # Half-way: nothing is due.
    assert service.renew_due(session, T0 + timedelta(hours=1)) == 0
    # At 90 % of the time (108 of 120 minutes) the engine still says the same: nothing to tell.
    assert service.renew_due(session, T0 + timedelta(minutes=109)) == 0
    assert _outbox(session) == []

    engine.deadline = T0 + timedelta(hours=3, minutes=30)
    now = T0 + timedelta(minutes=110)
    assert service.renew_due(session, now) == 2
    messages = _outbox(session)
    assert sorted((m.kind, m.channel, m.address) for m in messages) == [
        ("promise_renewed", "sms", "+31611111111"),
        ("promise_renewed", "telegram", "4242"),
    ]
    by_address = {m.address: m for m in messages}
    assert by_address["+31611111111"].subscription_id == sms.id
    assert by_address["4242"].subscription_id == telegram.id
    assert by_address["4242"].payload == {
        "template": "promise_renewed",
        "params": {
            "outage": "STO-25-00001",
            "service": "internet",
            "old_deadline": (T0 + timedelta(hours=2)).isoformat(),
            "old_next_update_at": None,
            "new_deadline": (T0 + timedelta(hours=3, minutes=30)).isoformat(),
            "new_next_update_at": None,
        },
    }
    # The promises given this session holds show the renewal without a reload.
    assert {given.renewed_at for given in told} == {now}
    session.expire_all()
    # The new promise is recorded as given to the two subscribers, linked from their message.
    new_given = session.scalars(
        select(PromiseGiven).where(PromiseGiven.promise_id != old.promise_id)
    ).all()
    assert sorted(g.recipient for g in new_given) == ["+31611111111", "4242"]
    assert {m.promise_given_id for m in messages} == {g.id for g in new_given}
    assert {g.deadline for g in new_given} == {T0 + timedelta(hours=3, minutes=30)}

    # Idempotent: again at once, and later before the new promise is due.
    assert service.renew_due(session, now) == 0
    assert service.renew_due(session, now + timedelta(minutes=30)) == 0
    assert len(_outbox(session)) == 2


def test_a_caller_told_on_the_phone_gets_the_apology_by_sms(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    """The voice line tells the promise on ``voice:+31...``; pressing 1 subscribes ``sms:+31...``.

    Same number, same customer: the renewal reaches the subscription, once, however often the
    caller was told the promise.
    """
    outage = _outage(session)
    link_customer(session, "voice", "+31611111111")
    link_customer(session, "sms", "+31611111111")
    link_customer(session, "voice", "+31633333333")  # told, but subscribed nowhere
    engine.deadline = T0 + timedelta(hours=2)
    old = service.current(session, outage.id, T0)
    assert old is not None
    for recipient in ("voice:+31611111111", "voice:+31633333333"):
        service.record_given(
            session, old, channel="voice", recipient=recipient, language="en",
            conversation_id=None, now=T0,
        )  # fmt: skip
    sms = _subscribe(session, outage, "sms", "sms:+31611111111")
    session.flush()

    engine.deadline = T0 + timedelta(hours=3)
    assert service.renew_due(session, T0 + timedelta(minutes=110)) == 1
    [message] = _outbox(session)
    assert (message.channel, message.address, message.subscription_id) == (
        "sms",
        "sms:+31611111111",
        sms.id,
    )
    assert service.renew_due(session, T0 + timedelta(minutes=111)) == 0


def test_renew_replaces_an_approved_promise_about_to_break(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    service.current(session, outage.id, T0)
    approved = service.approve(session, outage.id, "noor", T0)
    service.record_given(
        session, approved, channel="sms", recipient="+31611111111", language="en",
        conversation_id=None, now=T0,
    )  # fmt: skip
    _subscribe(session, outage, "sms", "+31611111111")
    session.flush()

    engine.deadline = T0 + timedelta(hours=4)
    assert service.renew_due(session, T0 + timedelta(minutes=115)) == 1
    current = service.current(session, outage.id, T0 + timedelta(minutes=116))
    assert current is not None
    assert (current.status, current.deadline) == ("suggested", T0 + timedelta(hours=4))
    assert session.get(Promise, approved.promise_id).status == "superseded"  # type: ignore[union-attr]
    message = _outbox(session)[0]
    assert message.payload["params"]["old_deadline"] == (T0 + timedelta(hours=2)).isoformat()


def test_renewal_of_a_next_update_promise_is_an_update_not_an_apology(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    engine.deadline = None
    view = service.current(session, outage.id, T0)
    assert view is not None
    service.record_given(
        session, view, channel="telegram", recipient="7", language="nl",
        conversation_id=None, now=T0,
    )  # fmt: skip
    _subscribe(session, outage, "telegram", "7")
    session.flush()
    assert service.renew_due(session, T0 + timedelta(minutes=30)) == 0
    assert service.renew_due(session, T0 + timedelta(minutes=55)) == 1
    payload = _outbox(session)[0].payload
    assert payload["template"] == "promise_next_update"
    assert payload["params"]["new_next_update_at"] == (T0 + timedelta(minutes=115)).isoformat()


def test_resolved_outages_are_not_renewed(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    view = service.current(session, outage.id, T0)
    assert view is not None
    service.record_given(
        session, view, channel="sms", recipient="+31611111111", language="nl",
        conversation_id=None, now=T0,
    )  # fmt: skip
    _subscribe(session, outage, "sms", "+31611111111")
    service.resolve(session, outage.id, T0 + timedelta(minutes=90), T0 + timedelta(minutes=90))
    engine.deadline = T0 + timedelta(hours=5)
    assert service.renew_due(session, T0 + timedelta(minutes=115)) == 0
    assert [m.kind for m in _outbox(session)] == ["outage_fixed"]


def test_watch_loop_logs_errors_and_keeps_going(
    db_engine: Engine, settings: Settings, engine: ScriptedEngine
) -> None:
    class Flaky(PromiseService):
        calls = 0

        def renew_due(self, session: Session, now: datetime) -> int:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("database went away")
            return 0

    watch = PromiseWatch(
        Flaky(settings, engine_factory=lambda _c: engine), make_sessionmaker(db_engine), 0.01
    )

    async def run() -> None:
        watch.start()
        for _ in range(500):
            if watch.rounds >= 3:
                break
            await asyncio.sleep(0.01)
        await watch.stop()

    asyncio.run(run())
    assert Flaky.calls >= 3 and watch.rounds >= 3
    # The loop fitted the engine before its first round, not on a customer's first question.
    assert engine.fits == 1


def test_a_failed_warm_up_is_logged_and_not_fatal(
    db_engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_config: object) -> ScriptedEngine:
        raise RuntimeError("no history table")

    watch = PromiseWatch(
        PromiseService(settings, engine_factory=broken), make_sessionmaker(db_engine), 60
    )
    asyncio.run(watch.warm_up())
    assert "warm-up failed" in caplog.text


# -- history and the engine cache ---------------------------------------------------------------


def _incident(ident: str, minutes: float | None, **values: object) -> Incident:
    started = values.pop("started_at", T0 - timedelta(days=10))
    assert isinstance(started, datetime)
    fields: dict[str, object] = {
        "id": ident,
        "started_at": started,
        "resolved_at": None if minutes is None else started + timedelta(minutes=minutes),
        "service": "internet",
        "cause": "fiber_cut",
        "region": "Utrecht",
        "customers_affected": 100,
        "description": None,
        "attributes": {"priority": "2"},
    }
    fields.update(values)
    return Incident(**fields)  # type: ignore[arg-type]


def test_import_upserts_by_reference_and_load_round_trips(session: Session) -> None:
    existing = _outage(session, "INC-1", country="NL")
    session.commit()
    summary = import_incidents(
        session,
        [
            _incident("INC-1", 90, cause="cable_damage"),
            _incident("INC-2", None, region="Gent", customers_affected=None),
        ],
        source="servicenow:test.csv",
    )
    assert summary == ImportSummary(created=1, updated=1, unchanged=0)
    session.expire_all()
    updated = session.get(Outage, existing.id)
    assert updated is not None
    assert (updated.cause, updated.country, updated.source) == (
        "cable_damage",
        "NL",  # not part of an incident: left as it was
        "servicenow:test.csv",
    )
    created = session.scalars(select(Outage).where(Outage.reference == "INC-2")).one()
    assert (created.country, created.customers_affected) == (None, 0)

    incidents = {i.id: i for i in load_incidents(session)}
    assert incidents["INC-2"].region == "Gent"
    assert incidents["INC-2"].resolved_at is None
    assert incidents["INC-1"].attributes == {"priority": "2"}
    assert incidents["INC-1"].duration_minutes() == 90

    again = import_incidents(
        session,
        [
            _incident("INC-1", 90, cause="cable_damage"),
            _incident("INC-2", None, region="Gent", customers_affected=None),
        ],
        source="servicenow:test.csv",
    )
    assert again == ImportSummary(created=0, updated=0, unchanged=2)


def test_import_keeps_each_incidents_recorded_states(session: Session) -> None:
    started = T0 - timedelta(days=10)
    first = (started + timedelta(minutes=5), {"incident_state": "New"})
    later = (started + timedelta(hours=2), {"incident_state": "Active", "assigned_to": "R 4"})
    stated = _incident("INC-1", 600, updates=(first, later))

    summary = import_incidents(session, [stated, _incident("INC-2", 30)], source="servicenow:x")
    loaded = {i.id: i for i in load_incidents(session)}
    # Same states: unchanged. One more state: the incident's states are replaced.
    again = import_incidents(session, [stated], source="servicenow:x")
    grown = dataclasses.replace(stated, updates=(*stated.updates, (T0, {"reopen_count": "1"})))
    restated = import_incidents(session, [grown], source="servicenow:x")
    # A history that records no states (canonical) leaves the stored ones alone.
    plain = import_incidents(session, [_incident("INC-1", 600)], source="canonical:y")

    assert summary == ImportSummary(created=2, updated=0, unchanged=0)
    assert loaded["INC-1"].updates == stated.updates
    assert loaded["INC-2"].updates == ()
    assert again == ImportSummary(created=0, updated=0, unchanged=1)
    assert restated == ImportSummary(created=0, updated=1, unchanged=0)
    assert plain == ImportSummary(created=0, updated=1, unchanged=0)  # only the source label
    (final,) = [i for i in load_incidents(session) if i.id == "INC-1"]
    assert final.updates == grown.updates
    assert session.scalar(select(func.count(OutageState.id))) == 3


def test_failed_import_changes_nothing(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    _outage(session, "INC-1", cause="fiber_cut")
    session.commit()
    before = [(i.id, i.cause, i.resolved_at) for i in load_incidents(session)]

    # One incident per statement, and a failure while preparing the third: the update of
    # INC-1 and the insert of INC-2 have been sent to the database by then.
    monkeypatch.setattr(history_store, "CHUNK_SIZE", 1)
    real_values = history_store._values
    calls = []

    def failing_values(incident: Incident, source: str) -> dict[str, object]:
        calls.append(incident.id)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_values(incident, source)

    monkeypatch.setattr(history_store, "_values", failing_values)
    with pytest.raises(RuntimeError, match="disk full"):
        import_incidents(
            session,
            [
                _incident("INC-1", 60, cause="weather"),
                _incident("INC-2", 30),
                _incident("INC-3", 45),
            ],
            source="canonical:test.csv",
        )
    assert calls == ["INC-1", "INC-2", "INC-3"]
    session.expire_all()
    assert [(i.id, i.cause, i.resolved_at) for i in load_incidents(session)] == before


def test_bad_incidents_are_refused_by_name_before_anything_is_written(session: Session) -> None:
    with pytest.raises(HistoryImportError, match=r"INC-9.*resolved before it started"):
        import_incidents(
            session, [_incident("INC-1", 60), _incident("INC-9", -5)], source="canonical"
        )
    with pytest.raises(HistoryImportError, match=r"INC-1.*more than once"):
        import_incidents(session, [_incident("INC-1", 60), _incident("INC-1", 5)], source="x")
    with pytest.raises(HistoryImportError, match="service"):
        import_incidents(session, [_incident("INC-1", 60, service="x" * 17)], source="x")
    assert load_incidents(session) == []


def test_engine_is_refitted_only_when_the_history_changes(
    session: Session, service: PromiseService, engine: ScriptedEngine
) -> None:
    outage = _outage(session)
    _outage(session, "STO-25-00002", resolved_at=T0 - timedelta(minutes=5))
    service.current(session, outage.id, T0)
    service.current(session, outage.id, T0 + timedelta(minutes=1))
    service.current(session, outage.id, T0 + timedelta(minutes=2))
    assert (engine.fits, service.fits, engine.fitted_on) == (1, 1, 2)

    fingerprint = history_fingerprint(session)
    assert (fingerprint.count, fingerprint.resolved) == (2, 1)
    assert fingerprint.max_resolved_at == T0 - timedelta(minutes=5)

    _outage(session, "STO-25-00003")  # a new outage
    service.current(session, outage.id, T0 + timedelta(minutes=3))
    assert engine.fits == 2 and engine.fitted_on == 3
    service.resolve(session, outage.id, T0 + timedelta(minutes=4), T0 + timedelta(minutes=4))
    service.engine(session, T0 + timedelta(minutes=5))
    service.engine(session, T0 + timedelta(minutes=6))
    assert engine.fits == 3

    # A day later the fit is renewed even without changes (recency weights move with time).
    service.engine(session, T0 + timedelta(days=1, minutes=10))
    assert engine.fits == 4


def test_refits_are_rate_limited(settings: Settings, session: Session) -> None:
    engine = ScriptedEngine()
    service = PromiseService(
        settings, engine_factory=lambda _c: engine, min_refit_interval=timedelta(minutes=1)
    )
    outage = _outage(session)
    service.current(session, outage.id, T0)
    _outage(session, "STO-25-00002")
    service.current(session, outage.id, T0 + timedelta(seconds=30))
    assert engine.fits == 1
    service.current(session, outage.id, T0 + timedelta(seconds=61))
    assert engine.fits == 2


class GatedEngine(ScriptedEngine):
    """A scripted engine whose fits wait for ``gate`` and are recorded in ``fits_on``."""

    def __init__(self, gate: threading.Event, fits_on: list[int], fail: bool = False) -> None:
        super().__init__()
        self.gate, self.fits_on, self.fail = gate, fits_on, fail

    def fit(self, history: Sequence[Incident], now: datetime) -> ScriptedEngine:
        assert self.gate.wait(30)
        if self.fail:
            raise RuntimeError("out of memory")
        self.fits_on.append(len(history))
        return super().fit(history, now)


def test_a_changed_history_is_refitted_in_the_background(
    settings: Settings, session: Session, db_engine: Engine
) -> None:
    gate, fits_on = threading.Event(), []
    gate.set()
    service = PromiseService(
        settings,
        engine_factory=lambda _c: GatedEngine(gate, fits_on),
        min_refit_interval=timedelta(0),
        refit_sessions=make_sessionmaker(db_engine),
    )
    _outage(session)
    session.commit()
    first = service.engine(session, T0)  # the first fit is made in the request
    assert fits_on == [1]

    gate.clear()  # from now on a fit takes until the gate opens
    _outage(session, "STO-25-00002")
    session.commit()
    # The history changed: the current fit answers while the next one is learnt, one at a time.
    assert service.engine(session, T0 + timedelta(minutes=1)) is first
    assert service.engine(session, T0 + timedelta(minutes=2)) is first
    assert not service.wait_for_refit(0.05)
    gate.set()

    assert service.wait_for_refit(30)
    assert fits_on == [1, 2] and service.fits == 2
    refitted = service.engine(session, T0 + timedelta(minutes=3))
    assert refitted is not first and cast(GatedEngine, refitted).fitted_on == 2


def test_a_failed_background_refit_leaves_the_previous_fit_answering(
    settings: Settings, session: Session, db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    gate, fits_on = threading.Event(), []
    gate.set()
    engines = iter([GatedEngine(gate, fits_on), GatedEngine(gate, fits_on, fail=True)])
    service = PromiseService(
        settings,
        engine_factory=lambda _c: next(engines),
        min_refit_interval=timedelta(0),
        refit_sessions=make_sessionmaker(db_engine),
    )
    outage = _outage(session)
    session.commit()
    first = service.engine(session, T0)
    _outage(session, "STO-25-00002")
    session.commit()

    with caplog.at_level(logging.ERROR, logger="bot.promises.service"):
        assert service.engine(session, T0 + timedelta(minutes=1)) is first
        assert service.wait_for_refit(30)

    assert "refit failed" in caplog.text
    assert service.fits == 1
    assert service.current(session, outage.id, T0 + timedelta(minutes=2)).deadline is not None


def test_a_failing_refit_is_retried_later_and_later(
    settings: Settings, session: Session, db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    gate, fits_on, failing = threading.Event(), [], [False]
    gate.set()
    built: list[GatedEngine] = []

    def factory(_config: EngineConfig) -> GatedEngine:
        built.append(GatedEngine(gate, fits_on, fail=failing[0]))
        return built[-1]

    service = PromiseService(
        settings,
        engine_factory=factory,
        min_refit_interval=timedelta(0),
        refit_sessions=make_sessionmaker(db_engine),
        refit_backoff=timedelta(minutes=1),
        max_refit_backoff=timedelta(minutes=3),
    )
    _outage(session)
    session.commit()
    first = service.engine(session, T0)
    failing[0] = True
    _outage(session, "STO-25-00002")
    session.commit()

    def refits_tried_by(minutes: float) -> int:
        assert service.engine(session, T0 + timedelta(minutes=minutes)) is first
        assert service.wait_for_refit(30)
        return len(built) - 1

    with caplog.at_level(logging.ERROR, logger="bot.promises.service"):
        # Failures at 10 and 11 min: wait 1 min, then 2 min, then at most 3 min.
        tried = [refits_tried_by(m) for m in (10, 10.5, 11, 12, 13, 16, 18, 19)]
    assert tried == [1, 1, 2, 2, 3, 4, 4, 5]
    assert "3 in a row" in caplog.text and service.fits == 1

    failing[0] = False
    assert service.engine(session, T0 + timedelta(minutes=22)) is first
    assert service.wait_for_refit(30) and service.fits == 2
    # A success forgets the failures: the next change is refitted at once.
    _outage(session, "STO-25-00003")
    session.commit()
    service.engine(session, T0 + timedelta(minutes=22, seconds=1))
    assert service.wait_for_refit(30) and service.fits == 3


def test_the_real_engine_promises_a_clock_time_with_enough_evidence(
    session: Session, settings: Settings
) -> None:
    service = PromiseService(settings, min_refit_interval=timedelta(0))
    assert service.engine_config() == EngineConfig(
        min_evidence=settings.promise_min_evidence,
        half_life_days=settings.promise_half_life_days,
        calibration_days=settings.promise_calibration_days,
        next_update_minutes=settings.promise_next_update_minutes,
        timezone=settings.timezone,
        estimator="boosted",
    )
    history = [
        _incident(f"INC-{n}", 60 + 6 * n, started_at=T0 - timedelta(days=200 - n))
        for n in range(40)
    ]
    import_incidents(session, history, source="canonical:test")
    open_outage = _outage(session, "STO-25-00001", started_at=T0 - timedelta(minutes=10))

    view = service.current(session, open_outage.id, T0)
    assert view is not None
    assert view.deadline is not None and view.deadline > T0
    assert view.deadline.minute % 15 == 0  # rounded to a time people say
    assert view.explanation["segment"] == "service=internet, cause=fiber_cut, region=Utrecht"
    assert view.explanation["similar"] >= settings.promise_min_evidence
    assert view.explanation["method_version"]
    stored = session.get(Promise, view.promise_id)
    assert stored is not None
    assert datetime.fromisoformat(stored.evidence["deadline"]) == view.deadline
    assert view.deadline.tzinfo is UTC and view.to_dict()["deadline"].endswith("+00:00")

    # A kind never seen before falls back to all outages ...
    gas = _outage(session, "STO-25-00002", service="gas", cause="gas_leak")
    pooled = service.current(session, gas.id, T0)
    assert pooled is not None and pooled.deadline is not None
    assert pooled.explanation["segment"] == "all outages"
    # ... and one open longer than any outage before it gets only the time of the next update.
    stuck = _outage(session, "STO-25-00003", started_at=T0 - timedelta(hours=10))
    vague = service.current(session, stuck.id, T0)
    assert vague is not None
    assert vague.deadline is None and vague.next_update_at is not None
    assert vague.next_update_at >= T0 + timedelta(minutes=settings.promise_next_update_minutes)
    assert vague.explanation["similar"] < settings.promise_min_evidence
