"""Telegram end to end: PTB's own types posted to the webhook, PTB's bot talking to a loopback
Bot API, the assistant played by the fake Rasa server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channel_fakes import (
    BOT_TOKEN,
    ChannelApp,
    FakeBotApi,
    channel_settings,
    free_port,
    start_app,
)
from sqlalchemy import Engine, func, select
from telegram import (
    CallbackQuery,
    Chat,
    Message,
    MessageEntity,
    PhotoSize,
    Sticker,
    Update,
    User,
    Voice,
)
from telegram.constants import MessageEntityType, MessageLimit

from bot.channels.outbound import SendResult
from bot.channels.telegram import SECRET_HEADER, split_message
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import (
    ChannelCallbackPayload,
    ChannelIdentity,
    ChannelInbound,
    ChannelOutbound,
    Conversation,
    Outage,
    Subscription,
)
from bot.storage.models import (
    Message as StoredMessage,
)

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

SECRET = "telegram-test-secret_123"
CHAT = 4242


@pytest.fixture
def settings(tmp_path: Path, fake_bot_api: FakeBotApi) -> Settings:
    return channel_settings(
        tmp_path,
        telegram_bot_token=BOT_TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base_url=fake_bot_api.base_url,
    )


@pytest.fixture
def bot(settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer) -> Iterator[ChannelApp]:
    yield from start_app(settings, db_engine, fake_rasa)


# -- updates, built with PTB's own types --------------------------------------------------------


def _user(chat_id: int = CHAT, language: str | None = "nl") -> User:
    return User(
        id=chat_id, is_bot=False, first_name="Anna", last_name="de Vries", language_code=language
    )


def _message(update_id: int, chat_id: int, language: str | None, **content: Any) -> dict[str, Any]:
    message = Message(
        message_id=update_id,
        date=datetime.now(UTC),
        chat=Chat(id=chat_id, type=Chat.PRIVATE),
        from_user=_user(chat_id, language),
        **content,
    )
    return Update(update_id=update_id, message=message).to_dict()


def text_update(
    update_id: int, text: str, chat_id: int = CHAT, language: str | None = "nl"
) -> dict[str, Any]:
    entities = ()
    if text.startswith("/"):
        command = text.split()[0]
        entities = (MessageEntity(MessageEntityType.BOT_COMMAND, 0, len(command)),)
    return _message(update_id, chat_id, language, text=text, entities=entities)


def button_update(update_id: int, data: str, chat_id: int = CHAT) -> dict[str, Any]:
    shown = Message(
        message_id=77,
        date=datetime.now(UTC),
        chat=Chat(id=chat_id, type=Chat.PRIVATE),
        from_user=User(id=123456789, is_bot=True, first_name="Belofte"),
        text="Om welke dienst gaat het?",
    )
    query = CallbackQuery(
        id=f"cq-{update_id}",
        from_user=_user(chat_id),
        chat_instance="ci-1",
        data=data,
        message=shown,
    )
    return Update(update_id=update_id, callback_query=query).to_dict()


def post(bot: ChannelApp, update: dict[str, Any], secret: str | None = SECRET) -> Any:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    return bot.client.post("/webhooks/telegram", json=update, headers=headers)


# -- the webhook's guard -------------------------------------------------------------------------


def test_wrong_or_missing_secret_is_refused(bot: ChannelApp, fake_bot_api: FakeBotApi) -> None:
    assert post(bot, text_update(1, "hallo"), secret="wrong").status_code == 403
    assert post(bot, text_update(2, "hallo"), secret=None).status_code == 403
    bot.drain()
    assert fake_bot_api.sent() == []
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ChannelInbound)) == 0


def test_disabled_without_a_token(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer
) -> None:
    for app in start_app(channel_settings(tmp_path), db_engine, fake_rasa):
        response = post(app, text_update(1, "hallo"))
        assert response.status_code == 404
        assert "BELOFTE_TELEGRAM_BOT_TOKEN" in response.json()["detail"]


def test_generated_secret_is_kept_in_home(tmp_path: Path) -> None:
    settings = channel_settings(tmp_path, telegram_bot_token=BOT_TOKEN)
    secret = settings.telegram_secret_token()
    assert secret == settings.telegram_secret_token()
    assert (tmp_path / "telegram-webhook-secret").stat().st_mode & 0o777 == 0o600
    # Telegram allows A-Z, a-z, 0-9, _ and - in a secret token, up to 256 characters.
    assert 1 <= len(secret) <= 256
    assert all(c.isalnum() or c in "_-" for c in secret)


# -- text, buttons, callbacks --------------------------------------------------------------------


def test_text_is_answered_by_the_assistant(
    bot: ChannelApp, fake_bot_api: FakeBotApi, db_engine: Engine
) -> None:
    bot.rasa.reply = [{"recipient_id": "x", "text": "Hoi! Waarmee kan ik helpen?"}]

    response = post(bot, text_update(10, "hallo"))
    bot.drain()

    assert response.status_code == 200
    sent = fake_bot_api.sent()
    assert [(m["chat_id"], m["text"]) for m in sent] == [(CHAT, "Hoi! Waarmee kan ik helpen?")]
    assert "reply_markup" not in sent[0]
    with make_sessionmaker(db_engine)() as session:
        conversation = session.get(Conversation, f"telegram:{CHAT}")
        assert conversation is not None and conversation.channel == "telegram"
        texts = [m.text for m in session.scalars(select(StoredMessage).order_by(StoredMessage.id))]
        assert texts == ["hallo", "Hoi! Waarmee kan ik helpen?"]
        identity = session.scalars(
            select(ChannelIdentity).where(ChannelIdentity.channel == "telegram")
        ).one()
        assert identity.external_id == str(CHAT)
        assert conversation.customer_id == identity.customer_id
        assert identity.customer.display_name == "Anna de Vries"
        inbound = session.scalars(select(ChannelInbound)).one()
        assert (inbound.status, inbound.external_id) == ("done", "123456789:10")


def test_buttons_become_an_inline_keyboard_within_64_bytes(
    bot: ChannelApp, fake_bot_api: FakeBotApi
) -> None:
    long_payload = '/inform{"service": "electricity", "postcode": "3511 AB", "note": "long"}'
    bot.rasa.reply = [
        {
            "recipient_id": "x",
            "text": "Om welke dienst gaat het?",
            "buttons": [
                {"title": "Internet", "payload": '/inform{"service": "internet"}'},
                {"title": "Stroom", "payload": long_payload},
            ],
        }
    ]

    post(bot, text_update(11, "storing in 3511 AB"))
    bot.drain()

    (sent,) = fake_bot_api.sent()
    keyboard = sent["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == ["Internet", "Stroom"]
    datas = [row[0]["callback_data"] for row in keyboard]
    assert all(1 <= len(d.encode("utf-8")) < 64 for d in datas)
    assert datas[0] == 't:/inform{"service": "internet"}'
    assert datas[1].startswith("h:")
    with bot.sessions() as session:
        stored = session.get(ChannelCallbackPayload, datas[1][2:])
        assert stored is not None and stored.payload == long_payload

    # Pressing the long button sends its payload to the assistant, as if typed.
    bot.rasa.reply = [{"recipient_id": "x", "text": "Ik kijk het na."}]
    post(bot, button_update(12, datas[1]))
    bot.drain()
    sent_to_rasa = [r for r in bot.rasa.requests if r.url.path == "/webhooks/rest/webhook"]
    assert json.loads(sent_to_rasa[-1].content)["message"] == long_payload
    assert fake_bot_api.sent("answerCallbackQuery") == [{"callback_query_id": "cq-12"}]


def test_every_button_press_is_answered(bot: ChannelApp, fake_bot_api: FakeBotApi) -> None:
    bot.rasa.reply = [{"recipient_id": "x", "text": "Prima."}]

    post(bot, button_update(20, "t:/affirm"))
    post(bot, button_update(21, "h:unknown-key", chat_id=2121))
    bot.drain()

    answers = fake_bot_api.sent("answerCallbackQuery")
    assert [a["callback_query_id"] for a in answers] == ["cq-20", "cq-21"]
    assert "werkt niet meer" in answers[1]["text"]
    assert [m["text"] for m in fake_bot_api.sent()] == ["Prima."]


def test_a_repeated_update_id_is_processed_once(
    bot: ChannelApp,
    fake_bot_api: FakeBotApi,
    settings: Settings,
    db_engine: Engine,
    fake_rasa: FakeRasaServer,
) -> None:
    bot.rasa.reply = [{"recipient_id": "x", "text": "Hoi!"}]
    update = text_update(30, "hallo")

    first = post(bot, update)
    second = post(bot, update)
    bot.drain()

    assert first.json() == {"ok": True}
    assert second.status_code == 200 and second.json()["duplicate"] is True
    assert len(fake_bot_api.sent()) == 1
    assert sum(r.url.path == "/webhooks/rest/webhook" for r in bot.rasa.requests) == 1


def test_processed_once_survives_a_restart(
    settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, fake_bot_api: FakeBotApi
) -> None:
    fake_rasa.reply = [{"recipient_id": "x", "text": "Hoi!"}]
    update = text_update(31, "hallo")
    for app in start_app(settings, db_engine, fake_rasa):
        post(app, update)
        app.drain()
    for app in start_app(settings, db_engine, fake_rasa):  # a new process, same database
        assert post(app, update).json()["duplicate"] is True
        app.drain()
    assert len(fake_bot_api.sent()) == 1


# -- keep me posted, /start, /stop ---------------------------------------------------------------


def _outage(db_engine: Engine, reference: str = "STO-26-00042") -> int:
    with make_sessionmaker(db_engine)() as session, session.begin():
        outage = Outage(
            reference=reference,
            service="internet",
            cause="fiber_cut",
            region_name="Utrecht",
            country="NL",
            started_at=datetime.now(UTC) - timedelta(hours=1),
            customers_affected=1840,
        )
        session.add(outage)
        session.flush()
        return outage.id


def test_keep_me_posted_subscribes_the_chat_and_stop_unsubscribes(
    bot: ChannelApp, fake_bot_api: FakeBotApi, db_engine: Engine
) -> None:
    outage_id = _outage(db_engine)
    outage = {"reference": "STO-26-00042", "service": "internet", "region": "Utrecht"}
    bot.rasa.turn_events = [{"event": "slot", "name": "outage", "value": outage}]
    bot.rasa.reply = [{"recipient_id": "x", "text": "Er is een internetstoring in Utrecht."}]

    post(bot, text_update(40, "storing internet 3511 AB"))
    bot.drain()
    (found,) = fake_bot_api.sent()
    (row,) = found["reply_markup"]["inline_keyboard"]
    assert row[0]["text"] == "🔔 Houd me op de hoogte"
    assert row[0]["callback_data"] == "sub:STO-26-00042"

    bot.rasa.turn_events = []
    post(bot, button_update(41, "sub:STO-26-00042"))
    bot.drain()
    (answer,) = fake_bot_api.sent("answerCallbackQuery")
    assert answer["callback_query_id"] == "cq-41" and "opgelost" in answer["text"]
    assert "zodra de storing is opgelost" in fake_bot_api.sent()[-1]["text"]
    with bot.sessions() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert (subscription.channel, subscription.address) == ("telegram", f"telegram:{CHAT}")
        assert subscription.outage_id == outage_id and subscription.language == "nl"
        assert subscription.is_active

    post(bot, text_update(42, "/stop"))
    bot.drain()
    assert "afgemeld" in fake_bot_api.sent()[-1]["text"]
    with bot.sessions() as session:
        assert not session.scalars(select(Subscription)).one().is_active


def test_keep_me_posted_for_a_fixed_outage_says_so(
    bot: ChannelApp, fake_bot_api: FakeBotApi
) -> None:
    post(bot, button_update(43, "sub:STO-UNKNOWN"))
    bot.drain()
    (answer,) = fake_bot_api.sent("answerCallbackQuery")
    assert answer["show_alert"] is True and "opgelost" in answer["text"]


def test_start_greets_in_the_users_language(bot: ChannelApp, fake_bot_api: FakeBotApi) -> None:
    post(bot, text_update(50, "/start", chat_id=501, language="en"))
    post(bot, text_update(51, "/start", chat_id=502, language="nl-BE"))
    bot.drain()
    greetings = {m["chat_id"]: m["text"] for m in fake_bot_api.sent()}
    assert greetings[501].startswith("Hello! I'm the outage assistant")
    assert greetings[502].startswith("Hallo! Ik ben de storingsassistent")
    assert not [r for r in bot.rasa.requests if r.url.path == "/webhooks/rest/webhook"]


# -- what is not text, and long replies ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "language", "expected"),
    [
        ({"photo": (PhotoSize("p1", "u1", 90, 90),)}, "nl", "ik kan alleen tekstberichten lezen"),
        ({"photo": (PhotoSize("p2", "u2", 90, 90),)}, "en", "I can only read text messages"),
        ({"voice": Voice("v1", "uv1", 3)}, "en", "I can only read text messages"),
        (
            {"sticker": Sticker("s1", "us1", 512, 512, False, False, Sticker.REGULAR)},
            "nl",
            "ik kan alleen tekstberichten lezen",
        ),
    ],
)
def test_photos_voice_and_stickers_get_a_polite_text_only_reply(
    bot: ChannelApp, fake_bot_api: FakeBotApi, content: dict[str, Any], language: str, expected: str
) -> None:
    post(bot, _message(60, 600, language, **content))
    bot.drain()
    (sent,) = fake_bot_api.sent()
    assert sent["chat_id"] == 600 and expected in sent["text"]
    assert not [r for r in bot.rasa.requests if r.url.path == "/webhooks/rest/webhook"]


def test_a_long_reply_is_split_within_telegrams_limit(
    bot: ChannelApp, fake_bot_api: FakeBotApi
) -> None:
    paragraph = "Dit is een lange uitleg over de storing en wat je zelf kunt doen. " * 20
    long_text = "\n\n".join([paragraph.strip()] * 8)  # about 10,700 characters
    bot.rasa.reply = [
        {
            "recipient_id": "x",
            "text": long_text,
            "buttons": [{"title": "Ja", "payload": "/affirm"}],
        }
    ]

    post(bot, text_update(70, "vertel alles"))
    bot.drain()

    pieces = fake_bot_api.sent()
    assert len(pieces) == 3
    assert all(len(p["text"]) <= MessageLimit.MAX_TEXT_LENGTH for p in pieces)
    assert " ".join(p["text"] for p in pieces).split() == long_text.split()
    # The keyboard belongs under the last piece only.
    assert ["reply_markup" in p for p in pieces] == [False, False, True]


def test_split_counts_utf16_units_and_cuts_at_words() -> None:
    emoji = "🔔" * 3000  # 6000 UTF-16 code units
    pieces = split_message(emoji)
    assert len(pieces) == 2
    assert all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in pieces)
    words = split_message("woord " * 1000)
    assert all(not p.endswith(" ") and not p.startswith(" ") for p in words)
    assert all(set(p.split()) == {"woord"} for p in words)
    assert split_message("") == []


# -- proactive messages, and a Bot API that is away ----------------------------------------------


def test_proactive_messages_are_recorded_and_sent_once_per_key(
    bot: ChannelApp, fake_bot_api: FakeBotApi
) -> None:
    async def notify() -> SendResult:
        return await bot.gateway.send(
            "telegram",
            f"telegram:{CHAT}",
            "Goed nieuws: de storing is opgelost.",
            kind="notification",
            idempotency_key="fixed:1:1",
        )

    first, second = bot.run(notify), bot.run(notify)

    assert first.status == "sent" and second.status == "duplicate"
    assert [(m["chat_id"], m["text"]) for m in fake_bot_api.sent()] == [
        (CHAT, "Goed nieuws: de storing is opgelost.")
    ]
    with bot.sessions() as session:
        row = session.scalars(select(ChannelOutbound)).one()
        assert (row.channel, row.address, row.status) == ("telegram", str(CHAT), "sent")


def test_an_unreachable_bot_api_does_not_stop_the_service(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/bot"
    settings = channel_settings(
        tmp_path,
        telegram_bot_token=BOT_TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base_url=closed,
    )
    for app in start_app(settings, db_engine, fake_rasa):
        assert app.client.get("/health").status_code in (200, 503)
        response = post(app, text_update(80, "hallo"))
        # Telegram delivers the update again later; nothing was recorded as taken in.
        assert response.status_code == 503
        with app.sessions() as session:
            assert session.scalar(select(func.count()).select_from(ChannelInbound)) == 0


def test_a_body_that_is_not_an_update_is_refused(bot: ChannelApp) -> None:
    headers = {SECRET_HEADER: SECRET}
    assert bot.client.post("/webhooks/telegram", content=b"{", headers=headers).status_code == 400
    assert bot.client.post("/webhooks/telegram", json={"x": 1}, headers=headers).status_code == 400
