"""``POST /api/v1/feedback``: what is stored (and what is not, for anonymous observations)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cx_helpers import make_app
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from web_login import login

from bot.feedback.service import record_feedback
from bot.settings import Settings
from bot.storage.models import (
    Conversation,
    Feedback,
    FeedbackForward,
    Outage,
    User,
    WebSession,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings


@pytest.fixture
def client(settings: Settings, db_engine: Engine, session: Session) -> Iterator[TestClient]:
    session.add(Conversation(id="sms:+31612345678", channel="sms", language="nl"))
    session.add(
        Outage(
            reference="STO-26-00042",
            service="internet",
            cause="fiber_cut",
            region_name="Utrecht",
            country="NL",
            started_at=NOW,
            customers_affected=10,
        )
    )
    session.commit()
    with TestClient(make_app(settings, db_engine)) as test_client:
        yield test_client


def _send(client: TestClient, csrf: str, **body: Any) -> Any:
    payload = {"text": "De storingskaart loopt achter", "category": "tooling", **body}
    return client.post("/api/v1/feedback", json=payload, headers={"X-CSRF-Token": csrf})


def test_named_feedback_is_stored_with_its_author_and_links(
    client: TestClient, session: Session
) -> None:
    csrf = login(client, session, "agent", display_name="Anna de Vries")
    answer = _send(
        client,
        csrf,
        conversation_id="sms:+31612345678",
        outage_reference="STO-26-00042",
        category="promise",
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["state"] == "new" and body["anonymous"] is False
    session.expire_all()
    row = session.get(Feedback, body["id"])
    assert row is not None
    user = session.scalars(select(User).where(User.username == "agent")).one()
    assert (row.author, row.user_id, row.source, row.channel) == (
        "Anna de Vries",
        user.id,
        "agent",
        "web",
    )
    assert row.conversation_id == "sms:+31612345678"
    assert row.category == "promise"
    outage = session.scalars(select(Outage)).one()
    assert row.outage_id == outage.id


def test_anonymous_feedback_keeps_nothing_of_the_author(
    client: TestClient, session: Session
) -> None:
    csrf = login(client, session, "agent", username="bram.j", display_name="Bram Jansen")
    answer = _send(client, csrf, anonymous=True, text="Het script voor terugbellen klopt niet")
    assert answer.status_code == 201, answer.text
    session.expire_all()
    row = session.get(Feedback, answer.json()["id"])
    assert row is not None
    assert row.anonymous is True
    assert row.user_id is None and row.author is None
    # Nothing in any column ties it to the user, their session or their address.
    user = session.scalars(select(User).where(User.username == "bram.j")).one()
    web_session = session.scalars(select(WebSession).where(WebSession.user_id == user.id)).one()
    stored = " ".join(str(getattr(row, c.key)) for c in Feedback.__table__.columns)
    for secret in ("Bram", "Jansen", "bram.j", web_session.id, "testclient", "127.0.0.1"):
        assert secret not in stored, secret


def test_the_database_refuses_an_anonymous_row_with_a_name(session: Session) -> None:
    with pytest.raises(ValueError, match="anonymous"):
        record_feedback(
            session,
            text="x",
            channel="web",
            source="agent",
            language="nl",
            now=NOW,
            author="Anna",
            anonymous=True,
        )
    session.add(
        Feedback(
            text="x", channel="web", source="agent", language="nl", author="Anna", anonymous=True
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()


BAD_INPUT = [
    ({"conversation_id": "no-such-conversation"}, "no-such-conversation"),
    ({"outage_reference": "STO-00-99999"}, "STO-00-99999"),
    ({"category": "weather"}, "category"),
    ({"text": "   "}, ""),
    ({"surprise": 1}, "surprise"),
]


def test_bad_input_is_a_422_naming_it_and_stores_nothing(
    client: TestClient, session: Session
) -> None:
    csrf = login(client, session, "agent")
    for body, named in BAD_INPUT:
        answer = _send(client, csrf, **body)
        assert answer.status_code == 422, body
        assert named in answer.json()["detail"], body
    session.expire_all()
    assert session.scalars(select(Feedback)).all() == []


def test_too_long_text_is_refused(client: TestClient, session: Session, settings: Settings) -> None:
    csrf = login(client, session, "agent")
    answer = _send(client, csrf, text="x" * (settings.cx_feedback_max_chars + 1))
    assert answer.status_code == 422
    assert str(settings.cx_feedback_max_chars) in answer.json()["detail"]
    assert _send(client, csrf, text="x" * settings.cx_feedback_max_chars).status_code == 201


def test_every_role_may_send_feedback(client: TestClient, session: Session) -> None:
    for role in ("agent", "supervisor", "cx", "admin"):
        csrf = login(client, session, role)
        assert _send(client, csrf).status_code == 201, role


def test_login_and_csrf_are_required(client: TestClient, session: Session) -> None:
    assert _send(client, "").status_code == 401
    login(client, session, "agent")
    assert _send(client, "not-the-token").status_code == 403
    session.expire_all()
    assert session.scalars(select(Feedback)).all() == []


def test_a_forward_is_queued_with_the_row_only_when_a_webhook_is_configured(
    settings: Settings, db_engine: Engine, session: Session
) -> None:
    # The forwarder of the app is not started here (no lifespan): only the queue is checked.
    with_hook = settings.model_copy(update={"cx_webhook_url": SecretStr("http://127.0.0.1:9/hook")})
    for configured, app_settings in ((False, settings), (True, with_hook)):
        client = TestClient(make_app(app_settings, db_engine))
        csrf = login(client, session, "agent")
        answer = _send(client, csrf)
        assert answer.status_code == 201
        session.expire_all()
        forward = session.scalars(
            select(FeedbackForward).where(FeedbackForward.feedback_id == answer.json()["id"])
        ).one_or_none()
        assert (forward is not None) is configured
        if forward is not None:
            assert (forward.status, forward.attempts) == ("pending", 0)


def _rasa_call(action: str, sender: str, slots: dict[str, Any]) -> dict[str, Any]:
    tracker = {
        "sender_id": sender,
        "slots": {"language": "nl", **slots},
        "latest_message": {
            "text": "feedback",
            "intent": {},
            "entities": [],
            "metadata": {"channel": "sms"},
        },
        "events": [{"event": "user", "text": "feedback"}],
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
    }
    return {"next_action": action, "sender_id": sender, "tracker": tracker, "domain": {}}


def test_customer_feedback_from_the_chat_lands_in_the_same_inbox(
    client: TestClient, session: Session
) -> None:
    text = "De monteur kwam niet opdagen"
    answer = client.post(
        "/webhook",
        json=_rasa_call("action_record_feedback", "sms:+31612345678", {"feedback_text": text}),
    )
    assert answer.status_code == 200, answer.text
    login(client, session, "cx")
    inbox = client.get("/api/v1/cx/observations")
    assert inbox.status_code == 200
    (observation,) = inbox.json()["observations"]
    assert observation["text"] == text
    assert observation["source"] == "customer"
    assert observation["state"] == "new"
    assert observation["conversation_id"] == "sms:+31612345678"
    page = client.get("/cx")
    assert text in page.text


def test_record_feedback_rejects_an_unknown_category(session: Session) -> None:
    with pytest.raises(ValueError, match="category"):
        record_feedback(
            session,
            text="x",
            channel="web",
            source="agent",
            language="nl",
            now=NOW,
            category="weather",
        )
