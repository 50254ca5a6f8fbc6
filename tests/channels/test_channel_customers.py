"""One customer across channels, and the unique rows behind "processed once" (both databases)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.channels import store
from bot.channels.customers import channel_address, link_customer, phone_number
from bot.channels.keywords import KeywordAction, parse_keyword
from bot.storage.db import make_sessionmaker
from bot.storage.models import ChannelIdentity, ChannelInbound, Customer

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_phone_channels_share_one_customer_and_telegram_is_separate(session: Session) -> None:
    by_sms = link_customer(session, "sms", "+31 6 1234 5678", language="en")
    by_whatsapp = link_customer(session, "whatsapp", "whatsapp:+31612345678")
    by_voice = link_customer(session, "voice", "+31612345678", display_name="Anna")
    by_telegram = link_customer(session, "telegram", "4242")
    session.commit()
    assert by_sms.id == by_whatsapp.id == by_voice.id != by_telegram.id
    assert by_sms.language == "en" and by_voice.display_name == "Anna"
    identities = session.scalars(
        select(ChannelIdentity.channel).where(ChannelIdentity.customer_id == by_sms.id)
    ).all()
    assert sorted(identities) == ["phone", "sms", "voice", "whatsapp"]
    assert link_customer(session, "sms", "+31612345678").id == by_sms.id


def test_simultaneous_first_contacts_make_one_customer(db_engine: Engine, session: Session) -> None:
    factory = make_sessionmaker(db_engine)
    barrier = threading.Barrier(2)
    ids: list[int] = []
    errors: list[BaseException] = []

    def contact(channel: str) -> None:
        try:
            barrier.wait(timeout=10)
            with factory() as own, own.begin():
                ids.append(link_customer(own, channel, "+32470123456").id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=contact, args=(c,)) for c in ("sms", "whatsapp")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(set(ids)) == 1
    assert session.scalar(select(func.count()).select_from(Customer)) == 1


def test_an_inbound_event_is_claimed_once(db_engine: Engine, session: Session) -> None:
    factory = make_sessionmaker(db_engine)
    claims: list[int | None] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait(timeout=10)
        with factory() as own, own.begin():
            claims.append(
                store.claim_inbound(
                    own, channel="sms", external_id="SM1", address="+31612345678", now=NOW
                )
            )

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(c is not None for c in claims) == 1
    assert session.scalar(select(func.count()).select_from(ChannelInbound)) == 1


def test_opt_out_and_back_in(session: Session) -> None:
    with session.begin():
        assert not store.is_opted_out(session, channel="sms", address="+31612345678")
        store.opt_out(session, channel="sms", address="+31612345678", keyword="STOP", now=NOW)
        assert store.is_opted_out(session, channel="sms", address="+31612345678")
        assert not store.is_opted_out(session, channel="whatsapp", address="+31612345678")
        store.opt_in(session, channel="sms", address="+31612345678", keyword="START", now=NOW)
        assert not store.is_opted_out(session, channel="sms", address="+31612345678")


def test_status_never_moves_back() -> None:
    assert store.advance_status("delivered", "sent") == "delivered"
    assert store.advance_status("sent", "delivered") == "delivered"
    assert store.advance_status("delivered", "read") == "read"
    assert store.advance_status("sent", "undelivered") == "undelivered"


def test_addresses_and_keywords() -> None:
    assert phone_number("whatsapp:+31 (6) 1234-5678") == "+31612345678"
    assert channel_address("telegram", "telegram:4242") == "4242"
    assert channel_address("sms", "+31612345678") == "+31612345678"
    stop = parse_keyword(" Stop! ")
    assert stop is not None and stop.action is KeywordAction.OPT_OUT and stop.language is None
    dutch = parse_keyword("afmelden")
    assert dutch is not None and dutch.language == "nl"
    assert parse_keyword("stop de storing") is None
    assert parse_keyword("ja") is None
