"""One customer across channels: the same number on SMS and WhatsApp, a Telegram chat tied by its
own shared contact or a one-time code, the history for agents, the preferred channel for the
outbox, and a chat that blocked the bot. Telegram updates are built with PTB's types and answered
by the loopback Bot API; Twilio requests are signed with twilio's own RequestValidator."""

from __future__ import annotations

import re
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
)
from httpx import Response
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from telegram import Chat, Contact, Message, MessageEntity, Update, User
from telegram.constants import MessageEntityType
from twilio.request_validator import RequestValidator

from bot.channels.linking import LinkAction, parse_link_command
from bot.channels.outbound import SendResult
from bot.channels.telegram import SECRET_HEADER
from bot.customers.identities import (
    link_customer,
    merge_customers,
    notification_address,
    phone_number,
)
from bot.customers.link_codes import (
    LinkCodePolicy,
    RedeemStatus,
    code_hash,
    issue_code,
    redeem_code,
)
from bot.customers.notifications import notification_target
from bot.promises.service import PromiseService
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import (
    ChannelIdentity,
    ChannelOptOut,
    Conversation,
    Customer,
    CustomerLinkAttempt,
    CustomerLinkCode,
    Outage,
    OutboxMessage,
    Subscription,
)
from bot.storage.models import Message as StoredMessage

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

SECRET = "telegram-test-secret_123"
API_KEY = "customer-history-test-key"
CHAT = 4242
NUMBER = "+31612345678"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
POLICY = LinkCodePolicy(
    ttl=timedelta(minutes=10),
    max_attempts=3,
    attempt_window=timedelta(hours=1),
    key=b"test-link-code-key",
)


@pytest.fixture
def settings(tmp_path: Path, fake_bot_api: FakeBotApi) -> Settings:
    return channel_settings(
        tmp_path,
        telegram_bot_token=BOT_TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base_url=fake_bot_api.base_url,
        api_key=API_KEY,
    )


@pytest.fixture
def app(
    settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> Iterator[ChannelApp]:
    yield from start_app(settings, db_engine, fake_rasa, lambda: fake_twilio)


# -- building requests ---------------------------------------------------------------------------


def _user(user_id: int = CHAT) -> User:
    return User(
        id=user_id, is_bot=False, first_name="Anna", last_name="de Vries", language_code="nl"
    )


def telegram_message(update_id: int, chat_id: int = CHAT, **content: Any) -> dict[str, Any]:
    message = Message(
        message_id=update_id,
        date=datetime.now(UTC),
        chat=Chat(id=chat_id, type=Chat.PRIVATE),
        from_user=_user(chat_id),
        **content,
    )
    return Update(update_id=update_id, message=message).to_dict()


def telegram_text(update_id: int, text: str, chat_id: int = CHAT) -> dict[str, Any]:
    entities = ()
    if text.startswith("/"):
        command = text.split()[0]
        entities = (MessageEntity(MessageEntityType.BOT_COMMAND, 0, len(command)),)
    return telegram_message(update_id, chat_id, text=text, entities=entities)


def telegram_contact(
    update_id: int, phone: str, user_id: int | None, chat_id: int = CHAT
) -> dict[str, Any]:
    contact = Contact(phone_number=phone, first_name="Anna", user_id=user_id)
    return telegram_message(update_id, chat_id, contact=contact)


def post_telegram(app: ChannelApp, update: dict[str, Any]) -> Response:
    response = app.client.post("/webhooks/telegram", json=update, headers={SECRET_HEADER: SECRET})
    app.drain()
    return response


def post_twilio(
    app: ChannelApp, sid: str, body: str, *, channel: str = "sms", sender: str = NUMBER
) -> Response:
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    ours = "+3197010000002" if channel == "whatsapp" else "+3197010000001"
    params = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": prefix + sender,
        "To": prefix + ours,
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    path = f"/webhooks/twilio/{channel}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + path, params)
    response = app.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
    app.drain()
    return response


def texts_sent(fake_twilio: FakeTwilioApi) -> list[str]:
    return [m.get("Body", "") for m in fake_twilio.messages()]


def customers(app: ChannelApp) -> list[tuple[int, list[tuple[str, str]]]]:
    """Every customer with its identities, sorted."""
    with app.sessions() as session:
        rows = session.execute(
            select(
                ChannelIdentity.customer_id, ChannelIdentity.channel, ChannelIdentity.external_id
            )
        ).all()
    found: dict[int, list[tuple[str, str]]] = {}
    for customer_id, channel, external in rows:
        found.setdefault(customer_id, []).append((channel, external))
    return sorted((c, sorted(ids)) for c, ids in found.items())


def code_in(text: str) -> str:
    match = re.search(r"(?:KOPPEL|LINK|/koppel|/link) ([A-Z2-9]{6})\b", text)
    assert match is not None, text
    return match.group(1)


# -- the same number on SMS and WhatsApp ---------------------------------------------------------


def test_sms_and_whatsapp_from_one_number_are_one_customer(
    app: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    assert post_twilio(app, "SM1", "storing in 3511 AB?").status_code == 200
    assert post_twilio(app, "SM2", "en nu?", channel="whatsapp").status_code == 200

    ((customer_id, identities),) = customers(app)
    assert identities == [("phone", NUMBER), ("sms", NUMBER), ("whatsapp", NUMBER)]
    with app.sessions() as session:
        held = session.scalars(
            select(Conversation.id).where(Conversation.customer_id == customer_id)
        )
        assert sorted(held) == [f"sms:{NUMBER}", f"whatsapp:{NUMBER}"]


def test_phone_numbers_are_normalised_to_e164() -> None:
    assert phone_number("0612345678") == NUMBER
    assert phone_number("0031 6 1234 5678") == NUMBER
    assert phone_number("whatsapp:+31 (6) 1234-5678") == NUMBER
    assert phone_number("tel:+32 470 12 34 56") == "+32470123456"
    # Not a possible number: kept as sent, less punctuation (nothing is lost).
    assert phone_number("12-34") == "1234"


# -- Telegram: a shared contact ------------------------------------------------------------------


def test_sharing_the_own_contact_links_the_chat_to_the_number(
    app: ChannelApp, fake_bot_api: FakeBotApi, fake_twilio: FakeTwilioApi
) -> None:
    post_twilio(app, "SM10", "hallo")
    post_telegram(app, telegram_text(100, "hallo"))
    assert len(customers(app)) == 2

    # /koppel offers the share-contact keyboard (and a code for the other direction).
    post_telegram(app, telegram_text(101, "/koppel"))
    offer = fake_bot_api.sent()[-1]
    (row,) = offer["reply_markup"]["keyboard"]
    assert row[0]["request_contact"] is True and "telefoonnummer" in row[0]["text"]

    # Telegram gives the number without "+".
    post_telegram(app, telegram_contact(102, "31612345678", user_id=CHAT))

    ((customer_id, identities),) = customers(app)
    assert identities == [("phone", NUMBER), ("sms", NUMBER), ("telegram", str(CHAT))]
    answer = fake_bot_api.sent()[-1]
    assert "5678" in answer["text"] and answer["reply_markup"] == {"remove_keyboard": True}
    with app.sessions() as session:
        held = session.scalars(
            select(Conversation.id).where(Conversation.customer_id == customer_id)
        )
        assert sorted(held) == [f"sms:{NUMBER}", f"telegram:{CHAT}"]
        assert session.scalar(select(func.count()).select_from(Customer)) == 1


def test_someone_elses_contact_does_not_link(app: ChannelApp, fake_bot_api: FakeBotApi) -> None:
    post_twilio(app, "SM20", "hallo")
    post_telegram(app, telegram_text(200, "hallo"))

    # A forwarded contact of another Telegram user, and one of somebody not on Telegram.
    post_telegram(app, telegram_contact(201, "+31612345678", user_id=999))
    post_telegram(app, telegram_contact(202, "+31612345678", user_id=None))

    assert len(customers(app)) == 2
    refusals = fake_bot_api.sent()[-2:]
    assert all("alleen je eigen telefoonnummer" in m["text"] for m in refusals)
    with app.sessions() as session:
        telegram = session.scalars(
            select(ChannelIdentity).where(ChannelIdentity.channel == "telegram")
        ).one()
        phone = session.scalars(
            select(ChannelIdentity).where(ChannelIdentity.channel == "phone")
        ).one()
        assert telegram.customer_id != phone.customer_id


# -- link codes ----------------------------------------------------------------------------------


def test_a_code_asked_for_by_sms_links_telegram(
    app: ChannelApp, fake_bot_api: FakeBotApi, fake_twilio: FakeTwilioApi
) -> None:
    post_telegram(app, telegram_text(300, "hallo"))
    post_twilio(app, "SM30", "KOPPEL")
    (sms,) = texts_sent(fake_twilio)
    code = code_in(sms)
    assert f"/koppel {code}" in sms

    post_telegram(app, telegram_text(301, f"/koppel {code.lower()}"))

    ((_, identities),) = customers(app)
    assert identities == [("phone", NUMBER), ("sms", NUMBER), ("telegram", str(CHAT))]
    assert fake_bot_api.sent()[-1]["text"].startswith("Gekoppeld!")
    with app.sessions() as session:
        (row,) = session.scalars(select(CustomerLinkCode)).all()
        # Only the keyed hash is stored, and the code is used up.
        assert row.code_hash != code and code not in row.code_hash and row.used_at is not None


def test_a_code_asked_for_on_telegram_links_the_phone(
    app: ChannelApp, fake_bot_api: FakeBotApi, fake_twilio: FakeTwilioApi
) -> None:
    post_telegram(app, telegram_text(400, "/link"))
    code = code_in(fake_bot_api.sent()[-1]["text"])

    post_twilio(app, "SM40", f"link {code}", channel="whatsapp")

    ((_, identities),) = customers(app)
    assert identities == [("phone", NUMBER), ("telegram", str(CHAT)), ("whatsapp", NUMBER)]
    assert "KANAAL TELEGRAM" in texts_sent(fake_twilio)[-1]


def test_a_wrong_code_is_refused_and_the_reply_says_how_to_get_one(
    app: ChannelApp, fake_bot_api: FakeBotApi
) -> None:
    post_telegram(app, telegram_text(500, "/koppel ZZZZZZ"))
    assert "klopt niet" in fake_bot_api.sent()[-1]["text"]
    assert "/koppel" in fake_bot_api.sent()[-1]["text"]
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CustomerLinkAttempt)) == 1


def _two_customers(session: Session) -> tuple[int, int]:
    by_sms = link_customer(session, "sms", NUMBER)
    by_telegram = link_customer(session, "telegram", str(CHAT))
    session.flush()
    return by_sms.id, by_telegram.id


def test_code_happy_path_merges_the_two_customers(session: Session) -> None:
    phone_id, chat_id = _two_customers(session)
    code = issue_code(session, phone_id, channel="sms", policy=POLICY, now=NOW)

    result = redeem_code(
        session,
        code,
        customer_id=chat_id,
        channel="telegram",
        address=str(CHAT),
        policy=POLICY,
        now=NOW + timedelta(minutes=9),
    )
    session.commit()

    assert result.status is RedeemStatus.LINKED and result.customer is not None
    assert result.customer.id == min(phone_id, chat_id)
    owners = set(session.scalars(select(ChannelIdentity.customer_id)))
    assert owners == {result.customer.id}


def test_an_expired_code_is_refused(session: Session) -> None:
    phone_id, chat_id = _two_customers(session)
    code = issue_code(session, phone_id, channel="sms", policy=POLICY, now=NOW)

    result = redeem_code(
        session,
        code,
        customer_id=chat_id,
        channel="telegram",
        address=str(CHAT),
        policy=POLICY,
        now=NOW + POLICY.ttl + timedelta(seconds=1),
    )

    assert result.status is RedeemStatus.EXPIRED and result.refused
    assert session.scalar(select(func.count()).select_from(Customer)) == 2


def test_a_code_works_once(session: Session) -> None:
    phone_id, chat_id = _two_customers(session)
    third = link_customer(session, "telegram", "5151").id
    code = issue_code(session, phone_id, channel="sms", policy=POLICY, now=NOW)

    def redeem(customer_id: int, address: str) -> RedeemStatus:
        return redeem_code(
            session,
            code,
            customer_id=customer_id,
            channel="telegram",
            address=address,
            policy=POLICY,
            now=NOW + timedelta(minutes=1),
        ).status

    assert redeem(chat_id, str(CHAT)) is RedeemStatus.LINKED
    assert redeem(third, "5151") is RedeemStatus.USED
    session.commit()
    assert session.scalar(select(func.count()).select_from(Customer)) == 2


def test_wrong_codes_lock_the_address_out_for_the_window(session: Session) -> None:
    phone_id, chat_id = _two_customers(session)
    code = issue_code(session, phone_id, channel="sms", policy=POLICY, now=NOW)

    def redeem(attempt: str, at: datetime) -> RedeemStatus:
        return redeem_code(
            session,
            attempt,
            customer_id=chat_id,
            channel="telegram",
            address=str(CHAT),
            policy=POLICY,
            now=at,
        ).status

    wrong = ["AAAAAA", "BBBBBB", "CCCCCC"]
    assert [redeem(w, NOW) for w in wrong] == [RedeemStatus.UNKNOWN] * POLICY.max_attempts
    # Locked out: even the right code is refused now, and stays usable.
    assert redeem(code, NOW + timedelta(minutes=1)) is RedeemStatus.LOCKED
    assert session.scalars(select(CustomerLinkCode.used_at)).one() is None
    # Another address is not locked out by these attempts.
    assert (
        redeem_code(
            session,
            "DDDDDD",
            customer_id=chat_id,
            channel="telegram",
            address="777",
            policy=POLICY,
            now=NOW,
        ).status
        is RedeemStatus.UNKNOWN
    )
    # Once the window has passed, the right code works (a fresh one: the old one expired).
    later = NOW + POLICY.attempt_window + timedelta(minutes=1)
    fresh = issue_code(session, phone_id, channel="sms", policy=POLICY, now=later)
    assert redeem(fresh, later) is RedeemStatus.LINKED


def test_codes_are_stored_as_keyed_hashes(session: Session) -> None:
    phone_id, _ = _two_customers(session)
    code = issue_code(session, phone_id, channel="sms", policy=POLICY, now=NOW)
    stored = session.scalars(select(CustomerLinkCode.code_hash)).one()
    assert stored == code_hash(code, POLICY.key)
    assert stored != code_hash(code, b"another deployment's key")
    # A new code replaces the unused old one.
    newer = issue_code(session, phone_id, channel="sms", policy=POLICY, now=NOW)
    assert session.scalars(select(CustomerLinkCode.code_hash)).all() == [
        code_hash(newer, POLICY.key)
    ]


def test_one_code_sent_twice_at_once_links_once(db_engine: Engine, session: Session) -> None:
    factory = make_sessionmaker(db_engine)
    with factory() as setup, setup.begin():
        phone_id = link_customer(setup, "sms", NUMBER).id
        chats = [link_customer(setup, "telegram", str(c)).id for c in (61, 62)]
        code = issue_code(setup, phone_id, channel="sms", policy=POLICY, now=NOW)
    barrier = threading.Barrier(2)
    outcomes: list[RedeemStatus] = []
    errors: list[BaseException] = []

    def redeem(customer_id: int, address: str) -> None:
        try:
            barrier.wait(timeout=10)
            with factory() as own, own.begin():
                result = redeem_code(
                    own,
                    code,
                    customer_id=customer_id,
                    channel="telegram",
                    address=address,
                    policy=POLICY,
                    now=NOW + timedelta(minutes=1),
                )
                outcomes.append(result.status)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=redeem, args=(c, str(a)))
        for c, a in zip(chats, (61, 62), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(outcomes) == sorted([RedeemStatus.LINKED, RedeemStatus.USED])
    assert session.scalar(select(func.count()).select_from(Customer)) == 2


# -- merging keeps everything ---------------------------------------------------------------------


def test_merging_keeps_identities_conversations_and_subscriptions(session: Session) -> None:
    phone_id, chat_id = _two_customers(session)
    session.add_all(
        [
            Conversation(id=f"sms:{NUMBER}", channel="sms", customer_id=phone_id),
            Conversation(id=f"telegram:{CHAT}", channel="telegram", customer_id=chat_id),
        ]
    )
    session.flush()
    session.add_all(
        [
            Subscription(channel="sms", address=f"sms:{NUMBER}", conversation_id=f"sms:{NUMBER}"),
            Subscription(
                channel="telegram",
                address=f"telegram:{CHAT}",
                conversation_id=f"telegram:{CHAT}",
            ),
        ]
    )
    session.get(Customer, chat_id).preferred_channel = "telegram"  # type: ignore[union-attr]
    session.commit()

    kept = merge_customers(session, chat_id, phone_id)
    session.commit()

    assert kept.id == min(phone_id, chat_id) and kept.preferred_channel == "telegram"
    assert session.get(Customer, max(phone_id, chat_id)) is None
    assert sorted((i.channel, i.external_id) for i in kept.identities) == [
        ("phone", NUMBER),
        ("sms", NUMBER),
        ("telegram", str(CHAT)),
    ]
    assert set(session.scalars(select(Conversation.customer_id))) == {kept.id}
    subscriptions = session.scalars(select(Subscription)).all()
    assert len(subscriptions) == 2 and all(s.is_active for s in subscriptions)


# -- the history across channels, for agents -----------------------------------------------------


def _say(
    session: Session, conversation: str, channel: str, text: str, at: datetime, out: bool = False
) -> None:
    session.add(
        StoredMessage(
            conversation_id=conversation,
            direction="out" if out else "in",
            text=text,
            channel=channel,
            created_at=at,
        )
    )


def test_history_api_returns_every_channel_in_time_order(app: ChannelApp) -> None:
    with app.sessions() as session, session.begin():
        customer = link_customer(session, "sms", NUMBER)
        other = link_customer(session, "telegram", str(CHAT))
        stranger = link_customer(session, "sms", "+32470123456")
        for cid, channel, owner in (
            (f"sms:{NUMBER}", "sms", customer.id),
            (f"telegram:{CHAT}", "telegram", other.id),
            ("sms:+32470123456", "sms", stranger.id),
        ):
            session.add(Conversation(id=cid, channel=channel, customer_id=owner))
        session.flush()
        # Interleaved in time, written out of order.
        _say(
            session, f"telegram:{CHAT}", "telegram", "nog steeds niks", NOW + timedelta(minutes=30)
        )
        _say(session, f"sms:{NUMBER}", "sms", "storing 3511 AB?", NOW)
        _say(session, f"sms:{NUMBER}", "sms", "Ja, sinds 08:00.", NOW + timedelta(seconds=1), True)
        _say(session, "sms:+32470123456", "sms", "iemand anders", NOW + timedelta(minutes=5))
        _say(session, f"telegram:{CHAT}", "telegram", "Sorry!", NOW + timedelta(minutes=31), True)
        merge_customers(session, customer.id, other.id)
        customer_id = min(customer.id, other.id)

    headers = {"X-API-Key": API_KEY}
    response = app.client.get(f"/api/v1/customers/{customer_id}/history", headers=headers)

    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == customer_id
    assert [(m["channel"], m["direction"], m["text"]) for m in body["messages"]] == [
        ("sms", "in", "storing 3511 AB?"),
        ("sms", "out", "Ja, sinds 08:00."),
        ("telegram", "in", "nog steeds niks"),
        ("telegram", "out", "Sorry!"),
    ]
    assert {"channel": "telegram", "external_id": str(CHAT)} in body["identities"]
    assert body["truncated"] is False

    by_conversation = app.client.get(
        f"/api/v1/conversations/telegram:{CHAT}/history", headers=headers
    )
    assert by_conversation.json()["messages"] == body["messages"]
    latest = app.client.get(
        f"/api/v1/customers/{customer_id}/history", params={"limit": 2}, headers=headers
    ).json()
    assert [m["text"] for m in latest["messages"]] == ["nog steeds niks", "Sorry!"]
    assert latest["truncated"] is True


def test_history_api_needs_the_key_and_known_ids(app: ChannelApp) -> None:
    assert app.client.get("/api/v1/customers/1/history").status_code == 401
    wrong = {"X-API-Key": "wrong"}
    assert app.client.get("/api/v1/customers/1/history", headers=wrong).status_code == 401
    headers = {"X-API-Key": API_KEY}
    assert app.client.get("/api/v1/customers/999/history", headers=headers).status_code == 404
    assert app.client.get("/api/v1/conversations/nope/history", headers=headers).status_code == 404
    assert app.client.get("/api/v1/customers/0/history", headers=headers).status_code == 422


# -- the preferred channel routes the outbox -----------------------------------------------------


def _outage(session: Session) -> Outage:
    outage = Outage(
        reference="STO-26-00077",
        service="internet",
        cause="fiber_cut",
        region_name="Utrecht",
        country="NL",
        started_at=NOW - timedelta(hours=2),
        customers_affected=120,
    )
    session.add(outage)
    session.flush()
    return outage


def _resolve(app: ChannelApp, settings: Settings, outage_id: int) -> list[tuple[str, str]]:
    with app.sessions() as session, session.begin():
        PromiseService(settings).resolve(session, outage_id, NOW, NOW)
    with app.sessions() as session:
        rows = session.execute(
            select(OutboxMessage.channel, OutboxMessage.address).order_by(OutboxMessage.id)
        ).all()
    return [(row[0], row[1]) for row in rows]


def test_the_chosen_channel_gets_the_outbox_row(
    app: ChannelApp, settings: Settings, fake_bot_api: FakeBotApi, fake_twilio: FakeTwilioApi
) -> None:
    # The customer subscribed on Telegram and tied the chat to their number.
    post_telegram(app, telegram_text(700, "hallo"))
    post_telegram(app, telegram_contact(701, NUMBER, user_id=CHAT))
    with app.sessions() as session, session.begin():
        outage_id = _outage(session).id
        session.add(
            Subscription(
                channel="telegram", address=f"telegram:{CHAT}", outage_id=outage_id, language="nl"
            )
        )

    # Not linked by SMS yet is fine: the number they shared takes SMS.
    post_telegram(app, telegram_text(702, "/kanaal sms"))
    assert "via sms" in fake_bot_api.sent()[-1]["text"]

    assert _resolve(app, settings, outage_id) == [("sms", f"sms:{NUMBER}")]


def test_without_a_choice_the_subscription_channel_is_kept_and_one_message_per_customer(
    app: ChannelApp, settings: Settings, fake_twilio: FakeTwilioApi
) -> None:
    post_telegram(app, telegram_text(800, "hallo"))
    post_telegram(app, telegram_contact(801, NUMBER, user_id=CHAT))
    with app.sessions() as session, session.begin():
        outage_id = _outage(session).id
        for channel, address in (("telegram", f"telegram:{CHAT}"), ("sms", f"sms:{NUMBER}")):
            session.add(Subscription(channel=channel, address=address, outage_id=outage_id))
        session.flush()
        target = notification_target(session, "telegram", f"telegram:{CHAT}")
        assert target == ("telegram", f"telegram:{CHAT}")
    # Chosen by SMS: both subscriptions end in one message on Telegram.
    post_twilio(app, "SM80", "kanaal telegram")
    assert "Telegram" in texts_sent(fake_twilio)[-1]

    assert _resolve(app, settings, outage_id) == [("telegram", f"telegram:{CHAT}")]


def test_a_channel_not_linked_cannot_be_chosen(
    app: ChannelApp, fake_bot_api: FakeBotApi, fake_twilio: FakeTwilioApi
) -> None:
    post_twilio(app, "SM90", "KANAAL TELEGRAM")
    assert "nog niet bereiken via Telegram" in texts_sent(fake_twilio)[-1]
    post_telegram(app, telegram_text(900, "/channel whatsapp"))
    assert "can't reach you via WhatsApp" in fake_bot_api.sent()[-1]["text"]
    with app.sessions() as session:
        assert set(session.scalars(select(Customer.preferred_channel))) == {None}


def test_an_opted_out_preferred_channel_falls_back(session: Session) -> None:
    phone_id, chat_id = _two_customers(session)
    kept = merge_customers(session, phone_id, chat_id)
    kept.preferred_channel = "sms"
    session.add(ChannelOptOut(channel="sms", address=NUMBER, opted_out_at=NOW, updated_at=NOW))
    session.flush()
    assert notification_target(session, "telegram", f"telegram:{CHAT}") == (
        "telegram",
        f"telegram:{CHAT}",
    )
    assert notification_address(session, kept.id, "sms") == NUMBER


def test_agents_can_set_the_preferred_channel(app: ChannelApp) -> None:
    with app.sessions() as session, session.begin():
        customer_id = link_customer(session, "sms", NUMBER).id
    headers = {"X-API-Key": API_KEY}
    url = f"/api/v1/customers/{customer_id}/preferred-channel"

    refused = app.client.put(url, json={"channel": "telegram"}, headers=headers)
    chosen = app.client.put(url, json={"channel": "whatsapp"}, headers=headers)
    chosen_sms = app.client.put(url, json={"channel": "sms"}, headers=headers)

    assert refused.status_code == 409 and chosen.status_code == 409
    assert chosen_sms.status_code == 200 and chosen_sms.json()["preferred_channel"] == "sms"
    assert app.client.put(url, json={"channel": "fax"}, headers=headers).status_code == 422


def test_link_commands_are_whole_messages() -> None:
    request = parse_link_command(" Koppel! ")
    assert request is not None and request.action is LinkAction.REQUEST_CODE
    redeem = parse_link_command("link abc-234")
    assert redeem is not None and redeem.action is LinkAction.REDEEM_CODE
    choose = parse_link_command("/kanaal@belofte_bot SMS")
    assert choose is not None and (choose.action, choose.argument) == (
        LinkAction.CHOOSE_CHANNEL,
        "sms",
    )
    # Sentences for the assistant, not commands.
    assert parse_link_command("link werkt niet") is None
    assert parse_link_command("stuur hulp") is None
    assert parse_link_command("storing in 3511 AB") is None


# -- a chat that blocked the bot -----------------------------------------------------------------


def test_a_blocked_bot_opts_the_chat_out_until_it_writes_again(
    app: ChannelApp, fake_bot_api: FakeBotApi
) -> None:
    def notify(key: str) -> SendResult:
        async def send() -> SendResult:
            return await app.gateway.send(
                "telegram",
                f"telegram:{CHAT}",
                "Opgelost!",
                kind="notification",
                idempotency_key=key,
            )

        result: SendResult = app.run(send)
        return result

    fake_bot_api.blocked.add(CHAT)
    first = notify("k1")
    assert first.status == "refused" and "blocked" in (first.reason or "")
    with app.sessions() as session:
        row = session.scalars(select(ChannelOptOut)).one()
        assert (row.channel, row.address, row.keyword) == ("telegram", str(CHAT), "blocked")
        assert row.is_opted_out
    attempts = len(fake_bot_api.sent())
    # Never messaged again: not even an attempt reaches the Bot API.
    assert notify("k2").status == "refused"
    assert len(fake_bot_api.sent()) == attempts

    # The customer unblocks the bot and writes /start: they may be messaged again.
    fake_bot_api.blocked.discard(CHAT)
    post_telegram(app, telegram_text(1000, "/start"))
    assert notify("k3").status == "sent"


def test_a_blocked_reply_opts_the_chat_out_too(app: ChannelApp, fake_bot_api: FakeBotApi) -> None:
    fake_bot_api.blocked.add(CHAT)
    post_telegram(app, telegram_text(1100, "hallo"))
    with app.sessions() as session:
        assert session.scalars(select(ChannelOptOut.opted_out_at)).one() is not None
