"""Next-best answers in the conversation API, suggestion feedback, and the answering action."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import Engine, select

from actions import ActionContext
from actions.knowledge import ActionAnswerQuestion
from bot.app import create_app
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import SuggestionEvent
from knowledge.retriever import Retriever

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")


@pytest.fixture
def client(
    api_settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer, retriever: Retriever
) -> Iterator[TestClient]:
    engine = RasaClient(api_settings, transport=httpx.MockTransport(fake_rasa.handler))
    app = create_app(
        api_settings, dialogue=engine, sessions=make_sessionmaker(db_engine), knowledge=retriever
    )
    # Machine client: the conversation API takes the operations key (or a logged-in agent).
    key = {"X-API-Key": api_settings.operations_api_key()}
    with TestClient(app, headers=key) as test_client:
        yield test_client


def _say(client: TestClient, conversation: str, text: str, channel: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/conversations/{conversation}/messages", json={"text": text, "channel": channel}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _events(db_engine: Engine) -> list[SuggestionEvent]:
    with make_sessionmaker(db_engine)() as db:
        return list(db.scalars(select(SuggestionEvent).order_by(SuggestionEvent.id)))


def test_agents_get_up_to_three_suggestions_on_every_turn(
    client: TestClient, fake_rasa: FakeRasaServer, db_engine: Engine
) -> None:
    fake_rasa.intent = {"name": "report_outage", "confidence": 0.8}
    body = _say(client, "agent-1", "klant wil opzeggen, hoe gaat dat?", channel="console")
    suggestions = body["suggestions"]
    assert 1 <= len(suggestions) <= 3
    assert len({s["article_id"] for s in suggestions}) == len(suggestions)  # one per article
    # Agents also see agent-only articles (here: the retention offer for a leaving customer).
    assert "cancel-subscription" in {s["article_id"] for s in suggestions}
    best = suggestions[0]
    assert best["language"] == "nl"
    assert best["answer"] and best["passage"] and best["title"]
    assert set(best) >= {"id", "score", "confidence", "confident"}
    shown = _events(db_engine)
    assert [(e.suggestion_id, e.event) for e in shown] == [(s["id"], "shown") for s in suggestions]


def test_customers_get_confident_answers_only_to_questions(
    client: TestClient, fake_rasa: FakeRasaServer
) -> None:
    fake_rasa.intent = {"name": "outage_status", "confidence": 0.9}
    assert _say(client, "cust-1", "is er een storing", channel="api")["suggestions"] == []

    fake_rasa.intent = {"name": "ask_question", "confidence": 0.9}
    english = _say(client, "cust-2", "How do I cancel my subscription?", channel="api")
    assert english["suggestions"][0]["article_id"] == "cancel-subscription"
    assert english["suggestions"][0]["language"] == "en"
    assert all(s["confident"] for s in english["suggestions"])

    nonsense = _say(client, "cust-3", "best banana bread recipe with walnuts", channel="api")
    assert nonsense["suggestions"] == []


def test_customers_never_see_agent_only_articles(
    client: TestClient, fake_rasa: FakeRasaServer
) -> None:
    fake_rasa.intent = {"name": "ask_question", "confidence": 0.9}
    body = _say(client, "cust-4", "welke korting krijg ik als ik opzeg?", channel="api")
    assert "retention-offer" not in {s["article_id"] for s in body["suggestions"]}


def test_suggestion_feedback_is_recorded_against_the_conversation(
    client: TestClient, db_engine: Engine
) -> None:
    body = _say(client, "agent-2", "hoe zeg ik op", channel="console")
    suggestion = body["suggestions"][0]
    for event in ("used", "thumbs_up"):
        response = client.post(
            f"/api/v1/suggestions/{suggestion['id']}/feedback",
            json={"event": event, "conversation_id": "agent-2", "author": "agent-007"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["event"] == event
    recorded = [(e.event, e.author) for e in _events(db_engine) if e.event != "shown"]
    assert recorded == [("used", "agent-007"), ("thumbs_up", "agent-007")]


def test_suggestion_feedback_rejects_unknown_conversations_and_events(client: TestClient) -> None:
    unknown = client.post(
        "/api/v1/suggestions/abc123/feedback",
        json={"event": "used", "conversation_id": "never-seen"},
    )
    assert unknown.status_code == 404
    assert "never-seen" in unknown.json()["detail"]
    invalid = client.post("/api/v1/suggestions/abc123/feedback", json={"event": "loved_it"})
    assert invalid.status_code == 422
    assert "event" in invalid.json()["detail"]


def _answer(retriever: Retriever | None, text: str, language: str) -> list[dict[str, Any]]:
    context = ActionContext(settings=Settings(), sessions=lambda: None, knowledge=retriever)  # type: ignore[arg-type, return-value]
    tracker = Tracker(
        sender_id="c",
        slots={"language": language},
        latest_message={"text": text},
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name=None,
    )
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionAnswerQuestion(context).run(dispatcher, tracker, {}))
    return dispatcher.messages


def test_the_answer_action_answers_in_the_askers_language(retriever: Retriever) -> None:
    [message] = _answer(retriever, "Hoe zeg ik mijn abonnement op?", "nl")
    assert message["response"] == "utter_knowledge_answer"
    dutch = retriever.suggest("opzeggen", language="nl", audience="customer").candidates[0]
    assert message["answer"] == dutch.answer and dutch.language == "nl"


def test_the_answer_action_offers_a_human_when_unsure_or_without_an_index(
    retriever: Retriever,
) -> None:
    [unsure] = _answer(retriever, "best banana bread recipe with walnuts", "en")
    assert unsure["response"] == "utter_no_confident_answer"
    [no_index] = _answer(None, "Hoe zeg ik op?", "nl")
    assert no_index["response"] == "utter_no_confident_answer"
