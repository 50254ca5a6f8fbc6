"""The HTTP API against a simulated Rasa HTTP interface (the integration test uses a real one).

The calls carry the operations API key, as machine clients do; the agent console's login and
CSRF checks are tested in tests/console/.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select

from bot.app import create_app
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import Conversation, Message

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

KEY = "test-api-operations-key"


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"api_key": SecretStr(KEY)})


@pytest.fixture
def rasa(fake_rasa: FakeRasaServer) -> FakeRasaServer:
    return fake_rasa


@pytest.fixture
def client(settings: Settings, db_engine: Engine, rasa: FakeRasaServer) -> Iterator[TestClient]:
    engine = RasaClient(settings, transport=httpx.MockTransport(rasa.handler))
    app = create_app(settings, dialogue=engine, sessions=make_sessionmaker(db_engine))
    with TestClient(app, headers={"X-API-Key": KEY}) as test_client:
        yield test_client


def _messages(db_engine: Engine, conversation_id: str) -> list[Message]:
    with make_sessionmaker(db_engine)() as session:
        return list(
            session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id)
            )
        )


def test_a_turn_returns_replies_understanding_and_stores_both_sides(
    client: TestClient, rasa: FakeRasaServer, db_engine: Engine
) -> None:
    rasa.reply = [
        {
            "recipient_id": "c1",
            "text": "Wil je bericht als het is opgelost?",
            "buttons": [{"title": "Ja", "payload": "/affirm"}],
        }
    ]
    outage = {"reference": "STO-1", "service": "internet", "customers_affected": 1840}
    rasa.turn_events = [{"event": "slot", "name": "outage", "value": outage}]
    rasa.intent = {"name": "outage_status", "confidence": 0.91}

    response = client.post(
        "/api/v1/conversations/c1/messages",
        json={"text": "is er een storing in 3511 AB?", "channel": "api"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["replies"] == [
        {
            "text": "Wil je bericht als het is opgelost?",
            "buttons": [{"title": "Ja", "payload": "/affirm"}],
        }
    ]
    assert body["intent"] == {"name": "outage_status", "confidence": 0.91}
    assert body["language"] == "nl"
    assert body["outage"] == outage
    assert body["promise"] is None and body["suggestions"] == []
    stored = _messages(db_engine, "c1")
    assert [(m.direction, m.text) for m in stored] == [
        ("in", "is er een storing in 3511 AB?"),
        ("out", "Wil je bericht als het is opgelost?"),
    ]
    assert stored[0].intent == "outage_status"


def test_the_language_slot_follows_the_users_language(
    client: TestClient, rasa: FakeRasaServer
) -> None:
    english = client.post(
        "/api/v1/conversations/c2/messages", json={"text": "when will my internet work again"}
    )
    assert english.json()["language"] == "en"
    # The language travels with the message itself (no separate slot call before the turn).
    assert rasa.metadata[-1]["language"] == "en"
    assert [r.url.path for r in rasa.requests[-2:]] == [
        "/webhooks/rest/webhook",
        "/conversations/c2/tracker",
    ]
    assert rasa.slots["language"] == "en"
    # A bare postcode carries no language: the conversation stays English.
    postcode = client.post("/api/v1/conversations/c2/messages", json={"text": "1012 AB"})
    assert postcode.json()["language"] == "en"
    dutch = client.post(
        "/api/v1/conversations/c2/messages", json={"text": "wanneer doet mijn internet het weer"}
    )
    assert dutch.json()["language"] == "nl"
    assert rasa.slots["language"] == "nl"
    # A button's payload is no language evidence either, even one with English words in it.
    button = client.post(
        "/api/v1/conversations/c2/messages",
        json={"text": '/inform{"service": "electricity"}'},
    )
    assert button.json()["language"] == "nl"


def test_outage_is_only_reported_in_the_turn_that_found_it(
    client: TestClient, rasa: FakeRasaServer
) -> None:
    rasa.slots["outage"] = {"reference": "STO-1"}  # set in an earlier turn
    rasa.turn_events = []
    response = client.post("/api/v1/conversations/c3/messages", json={"text": "bedankt"})
    assert response.json()["outage"] is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "leeg"), ("   \n ", "leeg"), ("x" * 2001, "2000")],
)
def test_empty_or_oversized_messages_get_422_with_a_reason(
    client: TestClient,
    rasa: FakeRasaServer,
    db_engine: Engine,
    text: str,
    reason: str,
) -> None:
    response = client.post("/api/v1/conversations/c4/messages", json={"text": text})
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert not rasa.requests
    assert _messages(db_engine, "c4") == []


def test_a_message_of_exactly_the_limit_is_accepted(client: TestClient) -> None:
    response = client.post("/api/v1/conversations/c5/messages", json={"text": "a" * 2000})
    assert response.status_code == 200


def test_a_malformed_body_gets_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/api/v1/conversations/c6/messages", json={"channel": "api"})
    assert response.status_code == 422
    assert "text" in response.json()["detail"]


def test_rasa_down_gives_503_and_keeps_the_users_message(
    settings: Settings, db_engine: Engine
) -> None:
    # A real client against a port nobody listens on.
    app = create_app(settings, sessions=make_sessionmaker(db_engine))
    with TestClient(app, headers={"X-API-Key": KEY}) as test_client:
        response = test_client.post(
            "/api/v1/conversations/c7/messages",
            json={"text": "is there an outage in 1012 AB", "channel": "api"},
        )
        health = test_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["language"] == "en"
    assert "saved" in body["detail"]
    assert "Traceback" not in response.text
    stored = _messages(db_engine, "c7")
    assert [m.text for m in stored] == ["is there an outage in 1012 AB"]
    assert stored[0].payload is not None and stored[0].payload["status"] == "unanswered"
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is True
    assert health.json()["rasa"]["ok"] is False


def test_unknown_conversation_ids_start_a_new_conversation(
    client: TestClient, db_engine: Engine
) -> None:
    response = client.post(
        "/api/v1/conversations/brand-new-42/messages", json={"text": "hoi", "channel": "console"}
    )
    assert response.status_code == 200
    with make_sessionmaker(db_engine)() as db:
        conversation = db.get(Conversation, "brand-new-42")
        assert conversation is not None and conversation.channel == "console"


def test_health_reports_database_and_loaded_model(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["rasa"]["model_file"] == "belofte.tar.gz"
    assert body["database"]["ok"] is True


def test_rasa_calls_carry_the_token(client: TestClient, rasa: FakeRasaServer) -> None:
    client.post("/api/v1/conversations/c8/messages", json={"text": "hoi"})
    assert rasa.requests
    assert all(r.url.params.get("token") == "test-token" for r in rasa.requests)


def test_messages_without_a_key_or_login_are_refused_and_not_stored(
    client: TestClient, rasa: FakeRasaServer, db_engine: Engine
) -> None:
    for headers in ({"X-API-Key": ""}, {"X-API-Key": "not-the-key"}):
        response = client.post(
            "/api/v1/conversations/c9/messages", json={"text": "hoi"}, headers=headers
        )
        assert response.status_code == 401
    assert not rasa.requests
    assert _messages(db_engine, "c9") == []


def test_console_page_and_openapi_docs_are_served(client: TestClient) -> None:
    # The console is for logged-in agents: a visitor is sent to the login page.
    console = client.get("/console", follow_redirects=False)
    assert console.status_code == 303
    assert console.headers["location"].startswith("/login")
    assert client.get("/static/console/console.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/v1/conversations/{conversation_id}/messages" in schema["paths"]
    assert client.get("/docs").status_code == 200
