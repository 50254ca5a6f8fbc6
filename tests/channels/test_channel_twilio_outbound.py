"""Outbound SMS and WhatsApp through the real twilio client against Stoplight Prism serving
Twilio's own OpenAPI description: Prism checks every request against the spec and answers with
generated messages; a recording HTTP client keeps what was sent."""

from __future__ import annotations

import base64
import json
import re
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
    RecordingTwilioHttpClient,
    channel_settings,
    start_app,
)
from sqlalchemy import Engine, select
from twilio.request_validator import RequestValidator

from bot.channels.outbound import SendResult
from bot.storage.models import ChannelDeliveryEvent, ChannelInbound, ChannelOutbound

from fake_rasa import FakeRasaServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("session")]

CUSTOMER = "+31612345678"
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TEMPLATE = "HX" + "0123456789abcdef" * 2


class Prismed:
    """The app sending to Prism, and the HTTP clients it made (one per app start)."""

    def __init__(self, app: ChannelApp, clients: list[RecordingTwilioHttpClient]) -> None:
        self.app = app
        self.clients = clients

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [r for client in self.clients for r in client.requests]

    def send(self, channel: str, **kwargs: Any) -> SendResult:
        async def send() -> SendResult:
            return await self.app.gateway.twilio.sender.send(
                channel, CUSTOMER, "De storing in 3511 is opgelost.", kind="notification", **kwargs
            )

        result: SendResult = self.app.run(send)
        return result


@pytest.fixture
def prismed(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer, prism: str
) -> Iterator[Prismed]:
    settings = channel_settings(
        tmp_path, twilio_api_base_url=prism, twilio_whatsapp_template_sid=TEMPLATE
    )
    clients: list[RecordingTwilioHttpClient] = []

    def make_client() -> RecordingTwilioHttpClient:
        client = RecordingTwilioHttpClient(prism)
        clients.append(client)
        return client

    for app in start_app(settings, db_engine, fake_rasa, make_client):
        yield Prismed(app, clients)


def _signed(app: ChannelApp, path: str, params: dict[str, str]) -> int:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + path, params)
    response = app.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
    return response.status_code


def test_a_reply_goes_through_the_real_client_and_prism_accepts_it(prismed: Prismed) -> None:
    app = prismed.app
    app.rasa.reply = [{"recipient_id": "x", "text": "Er is een internetstoring in Utrecht."}]
    params = {
        "MessageSid": "SM" + "a1" * 16,
        "AccountSid": ACCOUNT_SID,
        "From": CUSTOMER,
        "To": "+3197010000001",
        "Body": "storing internet 3511 AB",
        "NumMedia": "0",
    }

    assert _signed(app, "/webhooks/twilio/sms", params) == 200
    app.drain()

    (request,) = prismed.requests
    assert request["method"] == "POST"
    assert request["url"].endswith(MESSAGES_PATH)
    assert request["status"] == 201, request["body"]
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request["authorization"] == f"Basic {credentials}"
    assert request["data"] == {
        "To": CUSTOMER,
        "From": "+3197010000001",
        "Body": "Er is een internetstoring in Utrecht.",
        "StatusCallback": PUBLIC_BASE + "/webhooks/twilio/status",
    }
    created = json.loads(request["body"])
    with app.sessions() as session:
        row = session.scalars(select(ChannelOutbound)).one()
        assert row.twilio_sid == created["sid"] and MESSAGE_SID.match(row.twilio_sid)
        assert row.status and row.error_message is None


def test_every_message_gets_its_own_sid_and_status_callbacks_attach_to_it(
    prismed: Prismed,
) -> None:
    results = [prismed.send("sms") for _ in range(3)]
    sids = [r.twilio_sid for r in results]
    assert all(s and MESSAGE_SID.match(s) for s in sids) and len(set(sids)) == 3
    assert [r["status"] for r in prismed.requests] == [201, 201, 201]

    app = prismed.app
    callback = {
        "AccountSid": ACCOUNT_SID,
        "MessageSid": sids[0] or "",
        "MessageStatus": "delivered",
        "To": CUSTOMER,
    }
    assert _signed(app, "/webhooks/twilio/status", callback) == 204
    with app.sessions() as session:
        event = session.scalars(select(ChannelDeliveryEvent)).one()
        assert event.outbound_id == results[0].outbound_id and event.status == "delivered"
        assert event.details == {"MessageStatus": "delivered", "To": CUSTOMER}


def test_whatsapp_outside_the_window_sends_the_template_and_prism_accepts_it(
    prismed: Prismed,
) -> None:
    with prismed.app.sessions() as session, session.begin():
        session.add(
            ChannelInbound(
                channel="whatsapp",
                external_id="SM-earlier",
                address=CUSTOMER,
                status="done",
                received_at=datetime.now(UTC) - timedelta(days=2),
            )
        )

    result = prismed.send("whatsapp", template_variables={"1": "internet", "2": "3511"})

    assert result.twilio_sid and MESSAGE_SID.match(result.twilio_sid)
    (request,) = prismed.requests
    assert request["status"] == 201, request["body"]
    assert request["data"]["To"] == f"whatsapp:{CUSTOMER}"
    assert request["data"]["From"] == "whatsapp:+3197010000002"
    assert request["data"]["ContentSid"] == TEMPLATE
    assert json.loads(request["data"]["ContentVariables"]) == {"1": "internet", "2": "3511"}
    assert "Body" not in request["data"]


def test_the_default_client_reaches_the_configured_api_base_url(
    tmp_path: Path, db_engine: Engine, fake_rasa: FakeRasaServer, prism: str
) -> None:
    settings = channel_settings(tmp_path, twilio_api_base_url=prism)
    for app in start_app(settings, db_engine, fake_rasa):
        result = Prismed(app, []).send("sms")
        assert result.twilio_sid and MESSAGE_SID.match(result.twilio_sid), result
