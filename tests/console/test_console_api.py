"""The agent console's JSON API: roles and CSRF, the reply, the promise card, handoffs, feedback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from console_helpers import (
    API_KEY,
    FakeKnowledge,
    TwoHoursTenEngine,
    console_settings,
    log_in,
    second_client,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.promises.service import PromiseService
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import (
    ChannelIdentity,
    Conversation,
    Customer,
    Handoff,
    Message,
    SuggestionEvent,
)

from fake_rasa import FakeRasaServer
from outage_fixtures import add_utrecht_fiber_cut

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@dataclass
class Console:
    app: FastAPI
    client: TestClient
    settings: Settings
    promises: PromiseService
    knowledge: FakeKnowledge
    rasa: FakeRasaServer
    engine: Engine


@pytest.fixture
def console(
    api_settings: Settings, db_engine: Engine, session: Session, fake_rasa: FakeRasaServer
) -> Iterator[Console]:
    settings = console_settings(api_settings)
    promises = PromiseService(settings, engine_factory=lambda _config: TwoHoursTenEngine())
    knowledge = FakeKnowledge()
    dialogue = RasaClient(settings, transport=httpx.MockTransport(fake_rasa.handler))
    app = create_app(
        settings,
        dialogue=dialogue,
        sessions=make_sessionmaker(db_engine),
        promises=promises,
        knowledge=knowledge,
    )
    with TestClient(app) as client:
        yield Console(app, client, settings, promises, knowledge, fake_rasa, db_engine)


def _say(console: Console, conversation: str, text: str, headers: dict[str, str]) -> httpx.Response:
    return console.client.post(
        f"/api/v1/conversations/{conversation}/messages",
        json={"text": text, "channel": "console"},
        headers=headers,
    )


# -- roles and CSRF ----------------------------------------------------------------------------


def test_the_message_api_needs_an_agent_login_with_csrf_or_the_api_key(
    console: Console, session: Session
) -> None:
    assert _say(console, "c-auth", "hoi", {}).status_code == 401
    assert _say(console, "c-auth", "hoi", {"X-API-Key": "wrong"}).status_code == 401
    assert _say(console, "c-auth", "hoi", API_KEY).status_code == 200

    cx = second_client(console.app)
    cx_csrf = log_in(cx, session, "cx")
    refused = cx.post(
        "/api/v1/conversations/c-auth/messages", json={"text": "hoi"}, headers=cx_csrf
    )
    assert refused.status_code == 403

    csrf = log_in(console.client, session, "agent")
    assert _say(console, "c-auth", "hoi", {}).status_code == 403  # no CSRF token
    assert _say(console, "c-auth", "hoi", {"X-CSRF-Token": "forged"}).status_code == 403
    assert _say(console, "c-auth", "hoi", csrf).status_code == 200

    supervisor = second_client(console.app)
    assert (
        supervisor.post(
            "/api/v1/conversations/c-auth/messages",
            json={"text": "hoi"},
            headers=log_in(supervisor, session, "supervisor"),
        ).status_code
        == 200
    )
    with make_sessionmaker(console.engine)() as db:
        texts = db.scalars(
            select(Message.text).where(
                Message.conversation_id == "c-auth", Message.direction == "in"
            )
        ).all()
    # Refused calls stored nothing; the three accepted ones did.
    assert len(texts) == 3


def test_reads_need_a_role_but_no_csrf(console: Console, session: Session) -> None:
    for url in ("/api/v1/handoffs", "/api/v1/conversations/none/history"):
        assert console.client.get(url).status_code == 401
    cx = second_client(console.app)
    log_in(cx, session, "cx")
    assert cx.get("/api/v1/handoffs").status_code == 403
    log_in(console.client, session, "agent")
    assert console.client.get("/api/v1/handoffs").status_code == 200


# -- the reply ---------------------------------------------------------------------------------


def test_the_reply_carries_what_the_console_shows(console: Console, session: Session) -> None:
    csrf = log_in(console.client, session, "agent")
    outage = {"reference": "STO-26-00042", "service": "internet", "customers_affected": 1840}
    console.rasa.turn_events = [{"event": "slot", "name": "outage", "value": outage}]
    console.rasa.reply = [{"recipient_id": "x", "text": "Er is een storing in internet."}]

    body = _say(console, "c-reply", "klant zegt: storing in 3511 AB", csrf).json()

    assert body["replies"] == [{"text": "Er is een storing in internet.", "buttons": []}]
    assert body["outage"] == outage
    assert [s["article_id"] for s in body["suggestions"]] == ["restart-modem", "refund"]
    first = body["suggestions"][0]
    assert first["confident"] is True
    assert {"id", "title", "answer", "score", "passage", "url"} <= set(first)
    # The console is an agent channel: the retriever was asked for agents.
    assert console.knowledge.calls[-1]["audience"] == "agent"


def test_an_abstaining_retriever_marks_every_candidate_unsure(
    console: Console, session: Session
) -> None:
    csrf = log_in(console.client, session, "agent")
    console.knowledge.abstain = True
    body = _say(console, "c-abstain", "iets heel vaags", csrf).json()
    assert body["suggestions"], "agents still get the candidates"
    assert all(s["confident"] is False for s in body["suggestions"])


# -- the promise card --------------------------------------------------------------------------


def _conversation_with_promise(
    console: Console, session: Session, conversation_id: str, language: str
) -> None:
    """A conversation that was told the promise for the Utrecht outage (as the action does)."""
    outage = add_utrecht_fiber_cut(session, datetime.now(UTC) - timedelta(minutes=30))
    session.add(Conversation(id=conversation_id, channel="telegram", language=language))
    session.commit()
    now = datetime.now(UTC)
    view = console.promises.current(session, outage.id, now)
    assert view is not None
    console.promises.record_given(
        session,
        view,
        channel="telegram",
        recipient=conversation_id,
        language=language,
        conversation_id=conversation_id,
        now=now,
    )
    session.commit()


def test_the_promise_card_in_dutch(console: Console, session: Session) -> None:
    _conversation_with_promise(console, session, "c-nl", "nl")
    log_in(console.client, session, "agent", language="nl")

    card = console.client.get("/api/v1/conversations/c-nl/promise").json()

    deadline = datetime.fromisoformat(card["deadline"])
    clock = deadline.astimezone(AMSTERDAM).strftime("%H:%M")
    assert card["outage"] == "STO-26-00042"
    assert card["clock"] == clock
    assert card["status"] == "suggested" and card["approved_by"] is None
    assert card["evidence"] == "30 vergelijkbare storingen, 80 % opgelost binnen 2 u 10 min"
    assert card["customer_language"] == "nl"
    # "vóór 14:30", or "morgen vóór 00:24" late in the evening.
    text = card["customer_text"]
    assert text.startswith("We verwachten dat de storing in internet ")
    assert text.endswith(f"vóór {clock} is opgelost.")


def test_the_promise_card_in_english_for_an_english_agent_and_customer(
    console: Console, session: Session
) -> None:
    _conversation_with_promise(console, session, "c-en", "en")
    log_in(console.client, session, "agent", language="en")

    card = console.client.get("/api/v1/conversations/c-en/promise").json()

    local = datetime.fromisoformat(card["deadline"]).astimezone(AMSTERDAM)
    spoken = f"{local.hour % 12 or 12}:{local.minute:02d} {'am' if local.hour < 12 else 'pm'}"
    assert card["evidence"] == "30 similar outages, 80 % fixed within 2 h 10 min"
    text = card["customer_text"]
    assert text.startswith("We expect the internet outage to be fixed ")
    if (local.hour, local.minute) != (0, 0):  # midnight is said differently
        assert text.endswith(f"before {spoken}.")


def test_the_evidence_follows_the_agent_and_the_text_the_customer(
    console: Console, session: Session
) -> None:
    _conversation_with_promise(console, session, "c-mixed", "en")
    log_in(console.client, session, "agent", language="nl")
    card = console.client.get("/api/v1/conversations/c-mixed/promise").json()
    assert card["evidence"].startswith("30 vergelijkbare storingen")
    assert card["customer_text"].startswith("We expect the internet outage")


def test_a_supervisors_override_shows_on_the_next_read(console: Console, session: Session) -> None:
    _conversation_with_promise(console, session, "c-override", "nl")
    log_in(console.client, session, "agent")
    before = console.client.get("/api/v1/conversations/c-override/promise").json()

    supervisor = second_client(console.app)
    csrf = log_in(supervisor, session, "supervisor")
    new_deadline = (datetime.now(UTC) + timedelta(hours=5)).replace(second=0, microsecond=0)
    overridden = supervisor.post(
        "/api/v1/outages/STO-26-00042/promise/override",
        json={"deadline": new_deadline.isoformat(), "reason": "monteur later ter plaatse"},
        headers=csrf,
    )
    assert overridden.status_code == 200, overridden.text

    after = console.client.get("/api/v1/conversations/c-override/promise").json()
    assert after["clock"] != before["clock"]
    assert after["clock"] == new_deadline.astimezone(AMSTERDAM).strftime("%H:%M")
    assert after["status"] == "overridden"
    assert after["approved_by"] == "Test supervisor"  # the display name, not the login
    assert after["reason"] == "monteur later ter plaatse"
    assert "supervisor" in after["evidence"]


def test_no_outage_in_play_gives_null_and_an_unknown_conversation_404(
    console: Console, session: Session
) -> None:
    session.add(Conversation(id="c-quiet", channel="console", language="nl"))
    session.commit()
    log_in(console.client, session, "agent")
    quiet = console.client.get("/api/v1/conversations/c-quiet/promise")
    assert quiet.status_code == 200 and quiet.json() is None
    assert console.client.get("/api/v1/conversations/c-nobody/promise").status_code == 404


def test_the_outage_the_console_saw_in_a_reply_is_the_one_in_play(
    console: Console, session: Session
) -> None:
    add_utrecht_fiber_cut(session, datetime.now(UTC) - timedelta(minutes=10))
    session.add(Conversation(id="c-seen", channel="console", language="nl"))
    session.commit()
    log_in(console.client, session, "agent")
    card = console.client.get("/api/v1/conversations/c-seen/promise?outage=STO-26-00042").json()
    assert card["outage"] == "STO-26-00042"
    bad = console.client.get("/api/v1/conversations/c-seen/promise?outage=no spaces")
    assert bad.status_code == 422


# -- handoffs ----------------------------------------------------------------------------------


def _handoff(session: Session) -> int:
    customer = Customer(display_name="Jan de Vries", language="nl")
    session.add(customer)
    session.flush()
    session.add(ChannelIdentity(customer_id=customer.id, channel="sms", external_id="+31612345678"))
    session.add_all(
        [
            Conversation(id="sms:+31612345678", channel="sms", customer_id=customer.id),
            Conversation(id="voice:CA1", channel="voice", customer_id=customer.id),
        ]
    )
    session.flush()
    session.add_all(
        [
            Message(
                conversation_id="sms:+31612345678", direction="in", text="storing?", channel="sms"
            ),
            Message(
                conversation_id="voice:CA1", direction="in", text="medewerker", channel="voice"
            ),
        ]
    )
    handoff = Handoff(
        conversation_id="voice:CA1",
        reason="vroeg om een medewerker",
        created_at=datetime.now(UTC) - timedelta(minutes=7),
    )
    session.add(handoff)
    session.commit()
    return handoff.id


def test_the_handoff_list_and_picking_one_up(console: Console, session: Session) -> None:
    handoff_id = _handoff(session)
    csrf = log_in(console.client, session, "agent")

    listed = console.client.get("/api/v1/handoffs").json()
    assert [h["id"] for h in listed] == [handoff_id]
    item = listed[0]
    assert item["channel"] == "voice"
    assert item["customer"] == "Jan de Vries"
    assert item["reason"] == "vroeg om een medewerker"
    assert 7 * 60 <= item["waiting_seconds"] < 9 * 60

    assert console.client.post(f"/api/v1/handoffs/{handoff_id}/pickup").status_code == 403
    taken = console.client.post(f"/api/v1/handoffs/{handoff_id}/pickup", headers=csrf)
    assert taken.status_code == 200, taken.text
    body = taken.json()
    assert body["handoff"]["conversation_id"] == "voice:CA1"
    # The history spans the customer's channels.
    assert [(m["channel"], m["text"]) for m in body["history"]["messages"]] == [
        ("sms", "storing?"),
        ("voice", "medewerker"),
    ]
    assert console.client.get("/api/v1/handoffs").json() == []

    colleague = second_client(console.app)
    again = colleague.post(
        f"/api/v1/handoffs/{handoff_id}/pickup", headers=log_in(colleague, session, "supervisor")
    )
    assert again.status_code == 409
    assert console.client.post("/api/v1/handoffs/999999/pickup", headers=csrf).status_code == 404


def test_a_picked_up_conversation_continues(console: Console, session: Session) -> None:
    handoff_id = _handoff(session)
    csrf = log_in(console.client, session, "agent")
    console.client.post(f"/api/v1/handoffs/{handoff_id}/pickup", headers=csrf)
    assert _say(console, "voice:CA1", "klant vraagt wanneer het werkt", csrf).status_code == 200
    history = console.client.get("/api/v1/conversations/voice:CA1/history").json()
    assert history["messages"][-2]["text"] == "klant vraagt wanneer het werkt"
    assert history["messages"][-1]["direction"] == "out"


# -- suggestion feedback -----------------------------------------------------------------------


def test_suggestion_feedback_is_stored_with_the_agent_as_author(
    console: Console, session: Session
) -> None:
    csrf = log_in(console.client, session, "agent")
    _say(console, "c-fb", "modem doet het niet", csrf)
    payload = {"event": "used", "conversation_id": "c-fb", "article_id": "restart-modem"}

    assert (
        console.client.post("/api/v1/suggestions/s-modem/feedback", json=payload).status_code == 403
    )
    stored = console.client.post(
        "/api/v1/suggestions/s-modem/feedback",
        json={**payload, "author": "someone-else"},
        headers=csrf,
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["author"] == "agent-nl"
    by_key = console.client.post(
        "/api/v1/suggestions/s-modem/feedback",
        json={**payload, "event": "thumbs_up", "author": "crm-42"},
        headers=API_KEY,
    )
    assert by_key.status_code == 201

    anonymous = second_client(console.app)
    assert anonymous.post("/api/v1/suggestions/s-modem/feedback", json=payload).status_code == 401
    with make_sessionmaker(console.engine)() as db:
        events = db.scalars(
            select(SuggestionEvent)
            .where(SuggestionEvent.event != "shown")
            .order_by(SuggestionEvent.id)
        ).all()
        assert [(e.event, e.author) for e in events] == [
            ("used", "agent-nl"),
            ("thumbs_up", "crm-42"),
        ]
