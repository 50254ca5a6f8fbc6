"""The conversation API's ``promise`` field: the turn's promise, shaped as the promise API's.

Rasa is simulated (:class:`FakeRasaServer`); the custom action runs for real through the service's
own action server (``POST /webhook``), and the slot events it returns are what the simulated Rasa
reports for the turn, as a real Rasa would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.promises.service import PromiseService
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

from fake_rasa import FakeRasaServer
from outage_fixtures import add_utrecht_fiber_cut

pytestmark = pytest.mark.usefixtures("session")

STARTED = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
DEADLINE = STARTED + timedelta(hours=4)


class FixedEngine:
    """Always promises :data:`DEADLINE`."""

    def fit(self, history: Sequence[Incident], now: datetime) -> FixedEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        return Estimate(
            made_at=now,
            target=target,
            deadline=DEADLINE,
            next_update_at=None,
            remaining_minutes=(DEADLINE - now).total_seconds() / 60,
            explanation=Explanation("service=internet", 42, 35, 30.0, "fixed/1"),
        )


@pytest.fixture
def client(
    api_settings: Settings, db_engine: Engine, session: Session, fake_rasa: FakeRasaServer
) -> Iterator[TestClient]:
    add_utrecht_fiber_cut(session, STARTED)
    promises = PromiseService(api_settings, engine_factory=lambda _config: FixedEngine())
    engine = RasaClient(api_settings, transport=httpx.MockTransport(fake_rasa.handler))
    app = create_app(
        api_settings,
        dialogue=engine,
        sessions=make_sessionmaker(db_engine),
        promises=promises,
        knowledge=None,
    )
    # Machine client: the conversation API takes the operations key (or a logged-in agent).
    key = {"X-API-Key": api_settings.operations_api_key()}
    with TestClient(app, headers=key) as test_client:
        yield test_client


def _run_action(client: TestClient, action: str, slots: dict[str, Any]) -> dict[str, Any]:
    """Call the service's action server the way Rasa does."""
    tracker = {
        "sender_id": "c-promise",
        "slots": slots,
        "latest_message": {"text": "...", "intent": {}, "entities": [], "metadata": {}},
        "events": [],
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
    }
    # No domain: Rasa's selective domain sends it only to actions that declare `send_domain`.
    call = {"next_action": action, "sender_id": "c-promise", "tracker": tracker}
    response = client.post("/webhook", json=call)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_promise_told_in_the_turn_is_returned_like_the_promise_api(
    client: TestClient, fake_rasa: FakeRasaServer
) -> None:
    slots = {"language": "en", "postcode": "3511 AB", "service": "internet"}
    action = _run_action(client, "action_check_outage", slots)
    assert [r["response"] for r in action["responses"]][1] == "utter_promise_deadline_explained"
    fake_rasa.turn_events = [e for e in action["events"] if e["event"] == "slot"]
    fake_rasa.intent = {"name": "ask_eta", "confidence": 0.93}

    body = client.post(
        "/api/v1/conversations/c-promise/messages",
        json={"text": "when will my internet in 3511 AB be fixed?", "channel": "api"},
    ).json()

    promise = body["promise"]
    assert promise is not None
    assert promise == client.get("/api/v1/outages/STO-26-00042/promise").json()
    assert promise["outage"] == body["outage"]["reference"] == "STO-26-00042"
    assert datetime.fromisoformat(promise["deadline"]) == DEADLINE
    assert promise["next_update_at"] is None
    assert promise["target"] == 0.8
    assert promise["explanation"]["similar"] == 42


def test_no_promise_when_the_turn_told_none(client: TestClient, fake_rasa: FakeRasaServer) -> None:
    slots = {"language": "nl", "postcode": "9999 ZZ", "service": "gas"}
    action = _run_action(client, "action_check_outage", slots)
    fake_rasa.turn_events = [e for e in action["events"] if e["event"] == "slot"]
    body = client.post(
        "/api/v1/conversations/c-none/messages", json={"text": "storing gas 9999 ZZ"}
    ).json()
    assert body["outage"] is None and body["promise"] is None

    fake_rasa.turn_events = []
    body = client.post("/api/v1/conversations/c-none/messages", json={"text": "hoi"}).json()
    assert body["promise"] is None
