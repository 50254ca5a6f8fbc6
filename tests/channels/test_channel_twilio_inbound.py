"""Twilio SMS and WhatsApp webhooks: requests signed with twilio's own RequestValidator, the
assistant played by the fake Rasa server, the REST API by an in-process stand-in (the tests
against Prism are in test_channel_twilio_outbound.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channel_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_BASE,
    ChannelApp,
    FakeTwilioApi,
    channel_settings,
    start_app,
    wait_until,
)
from httpx import Response
from sqlalchemy import Engine, func, select
from twilio.request_validator import RequestValidator

from bot.channels import store
from bot.channels.outbound import SendResult
from bot.settings import Settings
from bot.storage.models import (
    ChannelDeliveryEvent,
    ChannelIdentity,
    ChannelInbound,
    ChannelOptOut,
    ChannelOutbound,
    Conversation,
    Customer,
    Subscription,
)

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

CUSTOMER = "+31612345678"
OUR_SMS = "+3197010000001"
OUR_WHATSAPP = "+3197010000002"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return channel_settings(tmp_path)


@pytest.fixture
def twilio(
    settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> Iterator[ChannelApp]:
    yield from start_app(settings, db_engine, fake_rasa, lambda: fake_twilio)


def message_params(
    sid: str, body: str, *, channel: str = "sms", sender: str = CUSTOMER, **extra: str
) -> dict[str, str]:
    """The form Twilio posts for an inbound message."""
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    ours = OUR_WHATSAPP if channel == "whatsapp" else OUR_SMS
    params = {
        "ToCountry": "NL",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": prefix + ours,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": prefix + sender,
        "ApiVersion": "2010-04-01",
    }
    params.update(extra)
    return params


def signed_post(
    app: ChannelApp,
    path: str,
    params: dict[str, str],
    *,
    url: str | None = None,
    token: str = AUTH_TOKEN,
    headers: dict[str, str] | None = None,
) -> Response:
    """POST ``params`` to ``path`` as Twilio would, signed for ``url`` (default: the public URL)."""
    signature = RequestValidator(token).compute_signature(url or PUBLIC_BASE + path, params)
    all_headers = {"X-Twilio-Signature": signature, **(headers or {})}
    return app.client.post(path, data=params, headers=all_headers)


def sms(app: ChannelApp, sid: str, body: str, **kwargs: Any) -> Response:
    return signed_post(app, "/webhooks/twilio/sms", message_params(sid, body, **kwargs))


def outbound(app: ChannelApp) -> list[ChannelOutbound]:
    with app.sessions() as session:
        return list(session.scalars(select(ChannelOutbound).order_by(ChannelOutbound.id)))


def rasa_turns(app: ChannelApp) -> int:
    return sum(r.url.path == "/webhooks/rest/webhook" for r in app.rasa.requests)


# -- signatures and accounts ---------------------------------------------------------------------


def test_a_signed_sms_is_answered_through_the_rest_api(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    twilio.rasa.reply = [
        {
            "recipient_id": "x",
            "text": "Om welke dienst gaat het?",
            "buttons": [
                {"title": "Internet", "payload": "/inform"},
                {"title": "TV", "payload": "/inform"},
            ],
        }
    ]

    response = sms(twilio, "SM" + "1" * 32, "is er een storing in 3511 AB?")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Response" in response.text and "<Message" not in response.text
    twilio.drain()
    (sent,) = fake_twilio.messages()
    assert sent["To"] == CUSTOMER and sent["From"] == OUR_SMS
    assert sent["Body"] == "Om welke dienst gaat het?\nAntwoord met: Internet / TV"
    assert sent["StatusCallback"] == PUBLIC_BASE + "/webhooks/twilio/status"
    assert fake_twilio.requests[0]["url"].endswith(f"/Accounts/{ACCOUNT_SID}/Messages.json")
    (row,) = outbound(twilio)
    assert (row.channel, row.address, row.kind, row.status) == ("sms", CUSTOMER, "reply", "queued")
    assert row.twilio_sid is not None and row.twilio_sid.startswith("SM")
    assert row.conversation_id == f"sms:{CUSTOMER}"
    with twilio.sessions() as session:
        inbound = session.scalars(select(ChannelInbound)).one()
        assert (inbound.status, inbound.address) == ("done", CUSTOMER)
        conversation = session.get(Conversation, f"sms:{CUSTOMER}")
        assert conversation is not None and conversation.customer_id is not None


@pytest.mark.parametrize(
    "forgery",
    ["missing", "wrong token", "wrong url", "tampered body", "http instead of https"],
)
def test_unsigned_or_forged_requests_are_refused_and_logged_without_the_body(
    twilio: ChannelApp,
    fake_twilio: FakeTwilioApi,
    caplog: pytest.LogCaptureFixture,
    forgery: str,
) -> None:
    path = "/webhooks/twilio/sms"
    secret_text = "mijn adres is Geheimstraat 12"
    params = message_params("SM" + "2" * 32, secret_text)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + path, params)
    if forgery == "wrong token":
        signature = RequestValidator("not-our-token").compute_signature(PUBLIC_BASE + path, params)
    elif forgery == "wrong url":
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            "https://elders.example.com" + path, params
        )
    elif forgery == "http instead of https":
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            "http://belofte.example.nl" + path, params
        )
    elif forgery == "tampered body":
        params = {**params, "Body": "iets anders"}
    headers = {} if forgery == "missing" else {"X-Twilio-Signature": signature}

    with caplog.at_level(logging.WARNING, logger="bot.channels.twilio"):
        response = twilio.client.post(path, data=params, headers=headers)
    twilio.drain()

    assert response.status_code == 403
    assert fake_twilio.requests == [] and rasa_turns(twilio) == 0
    with twilio.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ChannelInbound)) == 0
    assert "Rejected Twilio webhook /webhooks/twilio/sms" in caplog.text
    assert "Geheimstraat" not in caplog.text and CUSTOMER not in caplog.text


def test_a_foreign_account_is_refused(twilio: ChannelApp, fake_twilio: FakeTwilioApi) -> None:
    params = message_params("SM" + "3" * 32, "hallo", AccountSid="AC" + "f" * 32)
    response = signed_post(twilio, "/webhooks/twilio/sms", params)
    assert response.status_code == 403
    twilio.drain()
    assert fake_twilio.requests == []


def test_the_public_url_is_rebuilt_from_trusted_proxy_headers(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> None:
    path = "/webhooks/twilio/sms"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "belofte.example.nl"}
    trusting = channel_settings(tmp_path, public_base_url=None, trust_proxy_headers=True)
    for app in start_app(trusting, db_engine, fake_rasa, lambda: fake_twilio):
        response = signed_post(app, path, message_params("SM" + "4" * 32, "hoi"), headers=forwarded)
        assert response.status_code == 200
        app.drain()
    assert len(fake_twilio.messages()) == 1
    # Without trust the headers are ignored: the signature is for a URL this server was not
    # called on.
    untrusting = channel_settings(tmp_path, public_base_url=None)
    for app in start_app(untrusting, db_engine, fake_rasa, lambda: fake_twilio):
        response = signed_post(app, path, message_params("SM" + "5" * 32, "hoi"), headers=forwarded)
        assert response.status_code == 403


def test_twilio_is_disabled_without_credentials(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer
) -> None:
    settings = channel_settings(tmp_path, twilio_account_sid=None, twilio_auth_token=None)
    for app in start_app(settings, db_engine, fake_rasa):
        for path in (
            "/webhooks/twilio/sms",
            "/webhooks/twilio/whatsapp",
            "/webhooks/twilio/status",
        ):
            response = app.client.post(path, data={"Body": "hoi"})
            assert response.status_code == 404
            assert "BELOFTE_TWILIO_AUTH_TOKEN" in response.json()["detail"]


# -- once, and after the webhook ------------------------------------------------------------------


def test_a_repeated_message_sid_is_processed_once(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    sid = "SM" + "6" * 32
    assert sms(twilio, sid, "hallo").status_code == 200
    assert sms(twilio, sid, "hallo").status_code == 200
    twilio.drain()
    assert rasa_turns(twilio) == 1
    assert len(fake_twilio.messages()) == 1
    with twilio.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ChannelInbound)) == 1


def test_the_webhook_does_not_wait_for_the_rest_call(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    async def closed_gate() -> asyncio.Event:
        return asyncio.Event()

    fake_twilio.gate = twilio.run(closed_gate)
    response = sms(twilio, "SM" + "7" * 32, "hallo")

    assert response.status_code == 200
    # The reply is recorded and waiting for Twilio; the webhook has long answered.
    wait_until(lambda: len(outbound(twilio)) == 1)
    assert outbound(twilio)[0].status == "queued" and outbound(twilio)[0].twilio_sid is None
    assert fake_twilio.requests == []
    twilio.client.portal.call(fake_twilio.gate.set)  # type: ignore[union-attr]
    twilio.drain()
    assert outbound(twilio)[0].twilio_sid is not None


def test_a_media_only_message_gets_the_text_only_reply(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    sms(twilio, "MM" + "8" * 32, "", NumMedia="1", MediaContentType0="image/jpeg")
    twilio.drain()
    (sent,) = fake_twilio.messages()
    assert "alleen tekstberichten" in sent["Body"]
    assert rasa_turns(twilio) == 0


# -- STOP, START, HELP ---------------------------------------------------------------------------


def _send(app: ChannelApp, channel: str = "sms", to: str = CUSTOMER, **kwargs: Any) -> SendResult:
    async def send() -> SendResult:
        return await app.gateway.twilio.sender.send(
            channel, to, "De storing is opgelost.", kind="notification", **kwargs
        )

    result: SendResult = app.run(send)
    return result


def test_stop_opts_out_until_start(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi, db_engine: Engine
) -> None:
    with twilio.sessions() as session, session.begin():
        session.add(
            Subscription(
                channel="sms",
                address=f"sms:{CUSTOMER}",
                language="nl",
                created_at=datetime.now(UTC),
            )
        )

    sms(twilio, "SM" + "a" * 32, "STOP")
    twilio.drain()

    (confirmation,) = fake_twilio.messages()
    assert "Stuur START" in confirmation["Body"]
    assert outbound(twilio)[0].kind == "opt_out_confirmation"
    with twilio.sessions() as session:
        opt_out = session.scalars(select(ChannelOptOut)).one()
        assert (opt_out.channel, opt_out.address, opt_out.keyword) == ("sms", CUSTOMER, "STOP")
        assert store.is_opted_out(session, channel="sms", address=CUSTOMER)
        assert not session.scalars(select(Subscription)).one().is_active

    # Nothing reaches the number now: not a notification, not a reply to a question.
    refused = _send(twilio)
    assert refused.status == "refused" and "opted out" in (refused.reason or "")
    sms(twilio, "SM" + "b" * 32, "is er een storing?")
    twilio.drain()
    assert len(fake_twilio.messages()) == 1
    assert [r.status for r in outbound(twilio)] == ["queued", "refused", "refused"]
    # ... nor on another path to the same number (an SMS opt-out is per sender channel).
    assert _send(twilio, to=f"sms:{CUSTOMER}").status == "refused"

    sms(twilio, "SM" + "c" * 32, "start")
    twilio.drain()
    assert "weer aangemeld" in fake_twilio.messages()[-1]["Body"]
    assert _send(twilio).status == "queued"
    assert fake_twilio.messages()[-1]["Body"] == "De storing is opgelost."
    with twilio.sessions() as session:
        assert not store.is_opted_out(session, channel="sms", address=CUSTOMER)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("Stoppen", "Je bent afgemeld"),
        ("AFMELDEN!", "Je bent afgemeld"),
        ("UNSUBSCRIBE", "You're unsubscribed"),
        ("STOPP", "Je bent afgemeld"),
        ("aanmelden", "Je bent weer aangemeld"),
        ("HELP", "storingsassistent"),
        ("info", "STOP"),
    ],
)
def test_keywords_in_dutch_and_english(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi, word: str, expected: str
) -> None:
    sms(twilio, "SM" + "d" * 32, word)
    twilio.drain()
    assert expected in fake_twilio.messages()[-1]["Body"]
    assert rasa_turns(twilio) == 0


def test_a_sentence_with_stop_in_it_is_not_an_opt_out(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    sms(twilio, "SM" + "e" * 32, "stop maar met die storing")
    twilio.drain()
    assert rasa_turns(twilio) == 1
    with twilio.sessions() as session:
        assert not store.is_opted_out(session, channel="sms", address=CUSTOMER)


def test_a_twilio_unsubscribed_error_is_honoured(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    fake_twilio.fail_with = (400, 21610, "Attempt to send to unsubscribed recipient")
    result = _send(twilio)
    assert result.status == "failed" and "21610" in (result.reason or "")
    fake_twilio.fail_with = None
    assert _send(twilio).status == "refused"


def test_an_idempotency_key_sends_once(twilio: ChannelApp, fake_twilio: FakeTwilioApi) -> None:
    first = _send(twilio, idempotency_key="fixed:1:7")
    second = _send(twilio, idempotency_key="fixed:1:7")
    assert first.status == "queued"
    assert second.status == "duplicate" and second.outbound_id == first.outbound_id
    assert len(fake_twilio.messages()) == 1


# -- WhatsApp ------------------------------------------------------------------------------------


def test_whatsapp_replies_free_form_inside_the_window(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    twilio.rasa.reply = [{"recipient_id": "x", "text": "Hoi Anna!"}]
    params = message_params("SM" + "f" * 32, "hallo", channel="whatsapp", ProfileName="Anna")
    assert signed_post(twilio, "/webhooks/twilio/whatsapp", params).status_code == 200
    twilio.drain()
    (sent,) = fake_twilio.messages()
    assert sent["To"] == f"whatsapp:{CUSTOMER}" and sent["From"] == f"whatsapp:{OUR_WHATSAPP}"
    assert sent["Body"] == "Hoi Anna!" and "ContentSid" not in sent
    with twilio.sessions() as session:
        customer = session.scalars(select(Customer)).one()
        assert customer.display_name == "Anna"


def _wrote_at(app: ChannelApp, when: datetime) -> None:
    with app.sessions() as session, session.begin():
        session.add(
            ChannelInbound(
                channel="whatsapp",
                external_id="SM-old",
                address=CUSTOMER,
                status="done",
                received_at=when,
            )
        )


def test_whatsapp_outside_the_window_without_a_template_sends_nothing(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    _wrote_at(twilio, datetime.now(UTC) - timedelta(hours=25))
    result = _send(twilio, channel="whatsapp")
    assert result.status == "refused" and "24-hour window" in (result.reason or "")
    assert fake_twilio.requests == []


def test_whatsapp_outside_the_window_sends_the_approved_template(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer, fake_twilio: FakeTwilioApi
) -> None:
    template = "HX" + "9" * 32
    settings = channel_settings(tmp_path, twilio_whatsapp_template_sid=template)
    for app in start_app(settings, db_engine, fake_rasa, lambda: fake_twilio):
        _wrote_at(app, datetime.now(UTC) - timedelta(hours=23))
        assert _send(app, channel="whatsapp").status == "queued"
        assert "Body" in fake_twilio.messages()[-1]
        with app.sessions() as session, session.begin():
            row = session.scalars(select(ChannelInbound)).one()
            row.received_at = datetime.now(UTC) - timedelta(hours=24, minutes=1)
        assert _send(app, channel="whatsapp").status == "queued"
        sent = fake_twilio.messages()[-1]
        assert sent["ContentSid"] == template and "Body" not in sent
        assert sent["ContentVariables"] == '{"1": "De storing is opgelost."}'


# -- one customer --------------------------------------------------------------------------------


def test_the_same_number_on_sms_and_whatsapp_is_one_customer(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    sms(twilio, "SM" + "0" * 31 + "1", "hallo")
    params = message_params("SM" + "0" * 31 + "2", "hallo", channel="whatsapp")
    signed_post(twilio, "/webhooks/twilio/whatsapp", params)
    twilio.drain()
    with twilio.sessions() as session:
        (customer,) = session.scalars(select(Customer)).all()
        identities = {
            (i.channel, i.external_id)
            for i in session.scalars(
                select(ChannelIdentity).where(ChannelIdentity.customer_id == customer.id)
            )
        }
        assert identities == {("phone", CUSTOMER), ("sms", CUSTOMER), ("whatsapp", CUSTOMER)}
        conversations = session.scalars(select(Conversation).order_by(Conversation.id)).all()
        assert [(c.id, c.customer_id) for c in conversations] == [
            (f"sms:{CUSTOMER}", customer.id),
            (f"whatsapp:{CUSTOMER}", customer.id),
        ]


# -- delivery status -----------------------------------------------------------------------------


def test_status_callbacks_are_signed_stored_once_and_never_go_back(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    sent = _send(twilio)
    assert sent.twilio_sid is not None
    path = "/webhooks/twilio/status"

    def callback(status: str, **extra: str) -> Response:
        params = {
            "AccountSid": ACCOUNT_SID,
            "MessageSid": sent.twilio_sid or "",
            "SmsSid": sent.twilio_sid or "",
            "MessageStatus": status,
            "SmsStatus": status,
            "To": CUSTOMER,
            "From": OUR_SMS,
            "ApiVersion": "2010-04-01",
            **extra,
        }
        return signed_post(twilio, path, params)

    assert callback("sent").status_code == 204
    assert callback("delivered").status_code == 204
    assert callback("delivered").status_code == 204  # Twilio retried: stored once
    assert callback("sent").status_code == 204  # late and out of order: ignored
    forged = twilio.client.post(path, data={"MessageSid": sent.twilio_sid, "MessageStatus": "x"})
    assert forged.status_code == 403

    with twilio.sessions() as session:
        row = session.get(ChannelOutbound, sent.outbound_id)
        assert row is not None and row.status == "delivered"
        events = session.scalars(select(ChannelDeliveryEvent).order_by(ChannelDeliveryEvent.id))
        assert [(e.status, e.outbound_id) for e in events] == [
            ("sent", row.id),
            ("delivered", row.id),
        ]


def test_an_undelivered_callback_for_an_unsubscribed_number_opts_it_out(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    sent = _send(twilio)
    params = {
        "AccountSid": ACCOUNT_SID,
        "MessageSid": sent.twilio_sid or "",
        "MessageStatus": "undelivered",
        "ErrorCode": "21610",
    }
    assert signed_post(twilio, "/webhooks/twilio/status", params).status_code == 204
    with twilio.sessions() as session:
        row = session.get(ChannelOutbound, sent.outbound_id)
        assert row is not None and (row.status, row.error_code) == ("undelivered", 21610)
        assert store.is_opted_out(session, channel="sms", address=CUSTOMER)


def test_the_gateway_sends_to_a_subscription_address(
    twilio: ChannelApp, fake_twilio: FakeTwilioApi
) -> None:
    result = twilio.run(
        lambda: twilio.gateway.send("sms", f"sms:{CUSTOMER}", "Opgelost.", kind="notification")
    )
    assert result.status == "queued"
    assert fake_twilio.messages()[-1]["To"] == CUSTOMER
    unknown = twilio.run(lambda: twilio.gateway.send("fax", "1", "x", kind="notification"))
    assert unknown.status == "refused"
