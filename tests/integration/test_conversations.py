"""End to end: Rasa and the Belofte service on loopback, six-turn conversations (nl, en).

One Rasa process serves the whole test session (it needs about a minute to start). The model is
the one `make test` trains into ``$BELOFTE_TEST_HOME/models`` (trained here if missing).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_stack import LiveStack, live_stack
from sqlalchemy import select

from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.models import Message, Subscription

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A migrated, seeded SQLite database, the Belofte service and Rasa, all on loopback."""
    home: Path = tmp_path_factory.mktemp("belofte-home")
    with live_stack(home) as running:
        yield running


def _say(stack: LiveStack, conversation: str, text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.base}/api/v1/conversations/{conversation}/messages",
        json={"text": text, "channel": "api"},
        # The conversation API needs a login or the operations key (machine clients).
        headers={"X-API-Key": stack.api_key},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["replies"], f"no reply to {text!r}: {body}"
    return body


def _all_text(body: dict[str, Any]) -> str:
    return " ".join(r["text"] for r in body["replies"])


def test_health_reports_the_loaded_model(stack: LiveStack) -> None:
    body = httpx.get(f"{stack.base}/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["rasa"]["model_file"]


def test_six_turn_dutch_conversation_with_form_interruption_and_outage(
    stack: LiveStack,
) -> None:
    conversation = f"it-nl-{uuid.uuid4().hex[:8]}"

    greet = _say(stack, conversation, "hoi")
    assert greet["intent"]["name"] == "greet"
    assert greet["language"] == "nl"

    ask = _say(stack, conversation, "is er een storing?")
    assert ask["intent"]["name"] == "outage_status"
    assert "postcode" in _all_text(ask).lower()

    interruption = _say(stack, conversation, "wat kost een monteur eigenlijk?")
    assert interruption["intent"]["name"] == "ask_question"
    # The question is answered (or a human offered) and the form asks for the postcode again.
    assert "postcode" in _all_text(interruption).lower()

    postcode = _say(stack, conversation, "3511 AB")
    assert postcode["outage"] is None
    assert any(e["entity"] == "postcode" for e in postcode["entities"])

    found = _say(stack, conversation, "internet")
    outage = found["outage"]
    assert outage is not None, found
    assert outage["service"] == "internet" and "3511" in outage["postcodes"]
    assert "Utrecht" in _all_text(found)
    assert f"{outage['customers_affected']:,}".replace(",", ".") in _all_text(found)
    assert found["language"] == "nl"

    subscribe = _say(stack, conversation, "ja graag, laat me weten als het opgelost is")
    assert subscribe["language"] == "nl"
    engine = make_engine(stack.settings.sqlalchemy_url)
    with make_sessionmaker(engine)() as session:
        subscription = session.scalars(
            select(Subscription).where(Subscription.address == conversation)
        ).one()
        assert subscription.language == "nl"
        stored = session.scalars(
            select(Message.text).where(
                Message.conversation_id == conversation, Message.direction == "in"
            )
        ).all()
        assert len(stored) == 6
    engine.dispose()


def test_six_turn_english_conversation_with_form_interruption_and_outage(
    stack: LiveStack,
) -> None:
    conversation = f"it-en-{uuid.uuid4().hex[:8]}"

    greet = _say(stack, conversation, "hello there")
    assert greet["language"] == "en"
    assert greet["intent"]["name"] == "greet"
    # The first message of a conversation is answered in its language too (a slot event sent
    # before the turn used to land before the session start, where Rasa's turn missed it).
    assert _all_text(greet).startswith("Hi!"), greet

    ask = _say(stack, conversation, "is there an outage in my area?")
    assert ask["intent"]["name"] == "outage_status"
    assert "postcode" in _all_text(ask).lower()

    postcode = _say(stack, conversation, "1012 ab")
    assert postcode["language"] == "en"

    interruption = _say(stack, conversation, "how much does an engineer visit cost?")
    assert interruption["intent"]["name"] == "ask_question"
    assert interruption["language"] == "en"

    found = _say(stack, conversation, "tv")
    outage = found["outage"]
    assert outage is not None, found
    assert outage["service"] == "tv" and outage["region"].startswith("Amsterdam")
    assert "TV" in _all_text(found)

    bye = _say(stack, conversation, "ok thanks, bye")
    assert bye["language"] == "en"
    assert bye["intent"]["name"] in {"goodbye", "deny"}
