"""Storage: schema, constraints and sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from bot.settings import Settings
from bot.storage.db import (
    dispose_engines,
    get_sessionmaker,
    make_engine,
    make_sessionmaker,
    session_scope,
)
from bot.storage.migrate import alembic_config, current_revision, upgrade_database
from bot.storage.models import (
    Base,
    ChannelIdentity,
    Conversation,
    Customer,
    Feedback,
    Handoff,
    Message,
    Outage,
    OutageArea,
    Promise,
    Subscription,
)

T0 = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # the night the clocks go forward in NL/BE


def _outage(reference: str = "STO-25-00001", **overrides: object) -> Outage:
    values: dict[str, object] = {
        "reference": reference,
        "service": "internet",
        "cause": "fiber_cut",
        "region_name": "Utrecht",
        "country": "NL",
        "started_at": T0,
        "customers_affected": 100,
    }
    values.update(overrides)
    return Outage(**values)


def test_migrated_schema_matches_models(db_engine: Engine) -> None:
    with db_engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []


def test_database_is_at_head(db_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert head is not None
    assert current_revision(db_url) == head
    upgrade_database(db_url)  # idempotent
    assert current_revision(db_url) == head


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'x.db'}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade_database(url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_channel_identity_unique_per_channel(session: Session) -> None:
    customer = Customer(display_name="Anouk", language="nl")
    session.add(customer)
    session.flush()
    session.add(ChannelIdentity(customer_id=customer.id, channel="telegram", external_id="42"))
    session.add(ChannelIdentity(customer_id=customer.id, channel="sms", external_id="42"))
    session.commit()

    session.add(ChannelIdentity(customer_id=customer.id, channel="telegram", external_id="42"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_outage_reference_unique(session: Session) -> None:
    session.add(_outage("STO-25-00007"))
    session.commit()
    session.add(_outage("STO-25-00007", service="tv"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_foreign_keys_enforced(session: Session) -> None:
    session.add(Message(conversation_id="nope", direction="in", text="hoi", channel="web"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_check_constraints(session: Session) -> None:
    session.add(Conversation(id="c-1", channel="web", language="de"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_subscription_one_active_per_channel_address_outage(session: Session) -> None:
    outage, other = _outage("STO-25-00001"), _outage("STO-25-00002")
    session.add_all([outage, other])
    session.flush()

    def subscribe(outage_id: int | None) -> Subscription:
        sub = Subscription(
            outage_id=outage_id, channel="sms", address="+31612345678", language="nl"
        )
        session.add(sub)
        return sub

    first = subscribe(outage.id)
    subscribe(other.id)  # another outage: fine
    session.add(
        Subscription(outage_id=outage.id, channel="telegram", address="+31612345678")
    )  # another channel: fine
    session.commit()

    subscribe(outage.id)
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    # Once cancelled, the same customer may subscribe again.
    first.cancelled_at = T0 + timedelta(hours=1)
    session.commit()
    subscribe(outage.id)
    session.commit()
    active = session.scalars(
        select(Subscription).where(
            Subscription.is_active,
            Subscription.outage_id == outage.id,
            Subscription.channel == "sms",
        )
    ).all()
    assert len(active) == 1


def test_subscription_without_outage_also_unique(session: Session) -> None:
    session.add(Subscription(channel="telegram", address="99", postcode="3511 AB"))
    session.commit()
    session.add(Subscription(channel="telegram", address="99", postcode="3512 CD"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_aware_datetimes_round_trip(session: Session) -> None:
    cest = timezone(timedelta(hours=2))
    started = datetime(2025, 7, 1, 14, 30, 15, 123456, tzinfo=cest)
    session.add(_outage(started_at=started, resolved_at=started + timedelta(minutes=90)))
    session.commit()
    session.expunge_all()

    stored = session.scalars(select(Outage)).one()
    assert stored.started_at == started
    assert stored.started_at.tzinfo is UTC
    assert stored.started_at.hour == 12
    assert stored.duration == timedelta(minutes=90)

    # Comparisons in SQL use the same UTC instants.
    assert session.scalars(select(Outage).where(Outage.started_at < started)).all() == []
    later = started + timedelta(seconds=1)
    assert session.scalars(select(Outage.id).where(Outage.started_at < later)).all() != []


def test_naive_datetime_rejected(session: Session) -> None:
    session.add(_outage(started_at=datetime(2025, 1, 1, 12, 0)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_defaults_are_aware(session: Session) -> None:
    conversation = Conversation(id="tg:1", channel="telegram")
    session.add(conversation)
    session.commit()
    session.expunge_all()
    stored = session.get(Conversation, "tg:1")
    assert stored is not None
    assert stored.created_at.tzinfo is UTC
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert stored.language == "nl"


def test_messages_payload_and_order(session: Session) -> None:
    conversation = Conversation(id="web:abc", channel="web", language="en")
    session.add(conversation)
    session.flush()
    session.add(
        Message(
            conversation_id="web:abc", direction="in", text="is there an outage?", channel="web"
        )
    )
    session.flush()
    session.add(
        Message(
            conversation_id="web:abc",
            direction="out",
            text="Yes.",
            channel="web",
            intent="check_outage",
            intent_confidence=0.93,
            payload={"buttons": [{"title": "Ja", "payload": "/affirm"}]},
        )
    )
    session.commit()
    session.expunge_all()

    stored = session.get(Conversation, "web:abc")
    assert stored is not None
    assert [m.direction for m in stored.messages] == ["in", "out"]
    assert stored.messages[1].payload == {"buttons": [{"title": "Ja", "payload": "/affirm"}]}
    assert stored.messages[1].intent_confidence == pytest.approx(0.93)


def test_outage_active_expression_and_cascade(session: Session) -> None:
    active = _outage("STO-25-00001")
    resolved = _outage("STO-25-00002", resolved_at=T0 + timedelta(hours=2))
    active.areas.append(OutageArea(country="NL", postcode_prefix="3511"))
    session.add_all([active, resolved])
    session.flush()
    session.add(Promise(outage_id=active.id, deadline=T0 + timedelta(hours=4), target_quantile=0.8))
    session.commit()

    refs = session.scalars(select(Outage.reference).where(Outage.is_active)).all()
    assert refs == ["STO-25-00001"]
    assert active.is_active and not resolved.is_active

    session.delete(active)
    session.commit()
    assert session.scalars(select(OutageArea)).all() == []
    assert session.scalars(select(Promise)).all() == []


def test_promise_quantile_checked(session: Session) -> None:
    outage = _outage()
    session.add(outage)
    session.flush()
    session.add(Promise(outage_id=outage.id, deadline=T0, target_quantile=1.5))
    with pytest.raises(IntegrityError):
        session.commit()


def test_feedback_and_handoff(session: Session) -> None:
    session.add(Conversation(id="c", channel="console"))
    session.flush()
    session.add(
        Feedback(
            conversation_id="c",
            channel="console",
            source="agent",
            author="Sam",
            text="Antwoord over glasvezel was fout",
            theme="knowledge",
        )
    )
    session.add(Handoff(conversation_id="c", reason="wil een mens spreken"))
    session.commit()
    assert session.scalars(select(Feedback.source)).all() == ["agent"]
    handoff = session.scalars(select(Handoff)).one()
    assert handoff.resolved_at is None


def test_session_scope_commits_and_rolls_back(db_engine: Engine, session: Session) -> None:
    factory = make_sessionmaker(db_engine)
    with session_scope(factory) as scoped:
        scoped.add(Conversation(id="kept", channel="api"))
    with pytest.raises(RuntimeError), session_scope(factory) as scoped:
        scoped.add(Conversation(id="dropped", channel="api"))
        scoped.flush()
        raise RuntimeError("boom")
    ids = session.scalars(select(Conversation.id)).all()
    assert ids == ["kept"]


def test_get_sessionmaker_uses_settings_and_caches(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=None)
    try:
        factory = get_sessionmaker(settings)
        assert get_sessionmaker(settings) is factory
        upgrade_database(settings.sqlalchemy_url)
        with session_scope(factory) as scoped:
            scoped.add(Customer(language="en"))
        assert (tmp_path / "belofte.db").exists()
    finally:
        dispose_engines()
