"""Custom actions on a seeded database, through rasa-sdk's executor as Rasa calls them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from rasa_sdk.executor import ActionExecutor
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from actions import ActionContext, build_actions
from bot.demo.seed import seed_demo
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import Conversation, Feedback, Handoff, Subscription

pytestmark = pytest.mark.usefixtures("session")

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def executor(db_engine: Engine, session: Session, tmp_path: Any) -> ActionExecutor:
    seed_demo(session, now=NOW)
    session.add(Conversation(id="conv-1", channel="api", language="nl"))
    session.commit()
    context = ActionContext(
        settings=Settings(home=tmp_path), sessions=make_sessionmaker(db_engine), clock=lambda: NOW
    )
    executor = ActionExecutor()
    for action in build_actions(context):
        executor.register_action(action)
    return executor


def _call(
    executor: ActionExecutor,
    action: str,
    slots: dict[str, Any],
    text: str = "...",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``action`` with an action-server request shaped like Rasa 3.6's.

    As with the endpoint's selective domain, only form validation is given the domain.
    """
    tracker = {
        "sender_id": "conv-1",
        "slots": {"language": "nl", **slots},
        "latest_message": {
            "text": text,
            "intent": {},
            "entities": [],
            "metadata": metadata if metadata is not None else {"channel": "api"},
        },
        # Forms validate the slots extracted since the user's message: replay them as events.
        "events": [
            {"event": "user", "text": text},
            *({"event": "slot", "name": k, "value": v} for k, v in slots.items()),
        ],
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": "outage_form"} if action.startswith("validate_") else {},
        "latest_action_name": "action_listen",
    }
    domain = {
        "slots": {name: {} for name in ("postcode", "service")},
        "forms": {"outage_form": {"required_slots": ["postcode", "service"]}},
    }
    call: dict[str, Any] = {
        "next_action": action,
        "sender_id": "conv-1",
        "tracker": tracker,
        # What the service's action router hands the executor when Rasa sent no domain.
        "domain": domain if action.startswith("validate_") else {},
    }
    result = asyncio.run(executor.run(call))
    assert result is not None
    return result.model_dump()


def _slot_events(result: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result["events"] if e["event"] == "slot"}


def test_check_outage_finds_the_utrecht_internet_outage(executor: ActionExecutor) -> None:
    result = _call(executor, "action_check_outage", {"postcode": "3511 AB", "service": "internet"})
    slots = _slot_events(result)
    assert slots["outage_found"] is True
    outage = slots["outage"]
    assert outage["service"] == "internet" and outage["country"] == "NL"
    assert "3511" in outage["postcodes"]
    response, promise = result["responses"]
    assert response["response"] == "utter_outage_found"
    # Without a promise service no repair time is known (tests/test_promise_dialogue.py has one).
    assert promise["response"] == "utter_promise_unknown"
    assert slots["promise"] is None
    # 95 minutes before 10:00 UTC is 08:25 UTC, 09:25 in Amsterdam (CET in November).
    assert response["since"] == "09:25"
    assert response["affected"] == f"{outage['customers_affected']:,}".replace(",", ".")
    assert "Utrecht" in response["area"]


def test_check_outage_answers_in_english_with_english_service_names(
    executor: ActionExecutor,
) -> None:
    result = _call(
        executor, "action_check_outage", {"postcode": "1012 AB", "service": "tv", "language": "en"}
    )
    response = result["responses"][0]
    assert response["response"] == "utter_outage_found"
    assert response["service_name"] == "TV"


def test_check_outage_finds_belgian_postcodes(executor: ActionExecutor) -> None:
    result = _call(executor, "action_check_outage", {"postcode": "2000", "service": "electricity"})
    assert _slot_events(result)["outage"]["country"] == "BE"


def test_no_outage_is_said_plainly_and_sets_no_outage(executor: ActionExecutor) -> None:
    result = _call(executor, "action_check_outage", {"postcode": "9999 ZZ", "service": "gas"})
    assert _slot_events(result) == {"outage": None, "outage_found": False, "promise": None}
    assert [r["response"] for r in result["responses"]] == ["utter_no_outage"]


def test_form_validation_normalises_postcode_and_service(executor: ActionExecutor) -> None:
    result = _call(
        executor,
        "validate_outage_form",
        {"postcode": "3511ab", "service": "wifi", "requested_slot": "postcode"},
    )
    slots = _slot_events(result)
    assert slots["postcode"] == "3511 AB"
    assert slots["service"] == "internet"


def test_form_validation_rejects_an_invalid_postcode(executor: ActionExecutor) -> None:
    result = _call(executor, "validate_outage_form", {"postcode": "0123", "service": None})
    assert _slot_events(result)["postcode"] is None
    assert result["responses"][0]["response"] == "utter_invalid_postcode"


def test_subscribe_stores_one_subscription_even_when_asked_twice(
    executor: ActionExecutor, db_engine: Engine
) -> None:
    found = _call(executor, "action_check_outage", {"postcode": "3511 AB", "service": "internet"})
    outage = _slot_events(found)["outage"]
    for _ in range(2):
        result = _call(
            executor, "action_subscribe_updates", {"outage": outage, "service": "internet"}
        )
        assert result["responses"][0]["response"] == "utter_subscribed"
    with make_sessionmaker(db_engine)() as db:
        subscriptions = db.scalars(select(Subscription)).all()
        assert len(subscriptions) == 1
        assert subscriptions[0].address == "conv-1"
        assert subscriptions[0].outage is not None
        assert subscriptions[0].outage.reference == outage["reference"]

    _call(executor, "action_unsubscribe", {})
    with make_sessionmaker(db_engine)() as db:
        assert db.scalars(select(Subscription)).one().cancelled_at is not None


def test_subscribe_without_a_known_outage_says_so(executor: ActionExecutor) -> None:
    result = _call(executor, "action_subscribe_updates", {"outage": None})
    assert result["responses"][0]["response"] == "utter_subscribe_needs_outage"


def test_feedback_is_stored_and_the_slot_cleared(
    executor: ActionExecutor, db_engine: Engine
) -> None:
    text = "de monteur kwam niet opdagen"
    result = _call(executor, "action_record_feedback", {"feedback_text": text})
    assert _slot_events(result) == {"feedback_text": None}
    with make_sessionmaker(db_engine)() as db:
        feedback = db.scalars(select(Feedback)).one()
        assert (feedback.text, feedback.source, feedback.conversation_id) == (
            text,
            "customer",
            "conv-1",
        )


def test_handoff_is_recorded(executor: ActionExecutor, db_engine: Engine) -> None:
    _call(executor, "action_handoff", {}, text="ik wil een mens spreken")
    with make_sessionmaker(db_engine)() as db:
        handoff = db.scalars(select(Handoff)).one()
        assert handoff.reason == "ik wil een mens spreken"


def test_questions_get_an_offer_of_a_human_not_a_guess(executor: ActionExecutor) -> None:
    result = _call(executor, "action_answer_question", {}, text="wat kost een monteur")
    assert result["responses"][0]["response"] == "utter_no_confident_answer"


def test_language_is_set_from_the_messages_metadata(executor: ActionExecutor) -> None:
    english = _call(
        executor, "action_set_language", {"language": "nl"}, metadata={"language": "en"}
    )
    assert _slot_events(english) == {"language": "en"}
    assert english["responses"] == []


def test_language_unchanged_or_missing_adds_no_event(executor: ActionExecutor) -> None:
    same = _call(executor, "action_set_language", {"language": "en"}, metadata={"language": "en"})
    assert same["events"] == []
    # rasa shell and the model's own tests send no metadata: the slot keeps its value.
    missing = _call(executor, "action_set_language", {"language": "en"}, metadata={})
    assert missing["events"] == []
    german = {"language": "de"}
    unknown = _call(executor, "action_set_language", {"language": "nl"}, metadata=german)
    assert unknown["events"] == []
