"""The voice outage line: scripted calls posted as Twilio posts them, signed with twilio's own
RequestValidator, and the TwiML of every step parsed and checked (on SQLite and PostgreSQL).

The promise engine is a fixed one (four hours from the outage's start, with evidence), so the
promise told is known; the words expected are the dialogue's own (domain.yml) and the voice
texts (bot/messages), written out here so a change in either shows.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from channel_fakes import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, FakeTwilioApi, channel_settings
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from bot import messages
from bot.app import create_app
from bot.channels import store
from bot.channels.customers import link_customer
from bot.channels.gateway import ChannelGateway
from bot.channels.voice import parse_spoken_postcode
from bot.outages.postcodes import Postcode
from bot.promises.service import PromiseService
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import SessionFactory, make_sessionmaker
from bot.storage.models import (
    Conversation,
    Handoff,
    Message,
    Outage,
    PromiseGiven,
    Subscription,
    VoiceCall,
    VoiceCallEvent,
)
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

from fake_rasa import FakeRasaServer
from outage_fixtures import add_utrecht_fiber_cut

pytestmark = pytest.mark.usefixtures("session")

CALLER = "+31612345678"
LINE = "+31850000000"
VOICE = "/webhooks/twilio/voice"
STARTED = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
DEADLINE = STARTED + timedelta(hours=4)
TIMEZONE = "Europe/Amsterdam"


class FixedEngine:
    """Always promises :data:`DEADLINE`: 35 of 42 similar outages were fixed in that time."""

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


@dataclass
class Line:
    """The app under test and what the tests need of it."""

    client: TestClient
    sessions: SessionFactory
    promises: PromiseService
    calls: int = 0

    def call(self, caller: str = CALLER) -> Call:
        self.calls += 1
        return Call(self.client, f"CA{self.calls:032d}", caller)

    def count(self, model: type[Any]) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _line(settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer) -> Iterator[Line]:
    sessions = make_sessionmaker(db_engine)
    promises = PromiseService(settings, engine_factory=lambda _config: FixedEngine())
    app = create_app(
        settings,
        dialogue=RasaClient(settings, transport=httpx.MockTransport(fake_rasa.handler)),
        sessions=sessions,
        promises=promises,
        channels=ChannelGateway(settings, sessions, twilio_http_client=FakeTwilioApi),
    )
    with TestClient(app) as client:
        yield Line(client, sessions, promises)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return channel_settings(tmp_path, voice_agent_queue="storingen")


@pytest.fixture
def line(
    settings: Settings, db_engine: Engine, session: Session, fake_rasa: FakeRasaServer
) -> Iterator[Line]:
    add_utrecht_fiber_cut(session, STARTED)
    yield from _line(settings, db_engine, fake_rasa)


def signature(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


@dataclass
class Call:
    """One scripted call: posts what Twilio would post, to the URLs the TwiML named."""

    client: TestClient
    sid: str
    caller: str
    last: ET.Element | None = None
    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def params(self, **extra: str) -> dict[str, str]:
        return {
            "CallSid": self.sid,
            "AccountSid": ACCOUNT_SID,
            "From": self.caller,
            "To": LINE,
            "Called": LINE,
            "Caller": self.caller,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }

    def post(self, url: str, params: dict[str, str]) -> httpx.Response:
        """POST to the public ``url`` as Twilio does, signed for it."""
        self.sent.append((url, params))
        assert url.startswith(PUBLIC_BASE)
        return self.client.post(
            url[len(PUBLIC_BASE) :],
            data=params,
            headers={"X-Twilio-Signature": signature(url, params)},
        )

    def receive(self, response: httpx.Response) -> ET.Element:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/xml")
        self.last = ET.fromstring(response.text)
        assert self.last.tag == "Response"
        return self.last

    def start(self) -> ET.Element:
        return self.receive(self.post(PUBLIC_BASE + VOICE, self.params(CallStatus="ringing")))

    @property
    def gather(self) -> ET.Element:
        assert self.last is not None
        gather = self.last.find("Gather")
        assert gather is not None, ET.tostring(self.last)
        return gather

    def press(self, digits: str) -> ET.Element:
        params = self.params(Digits=digits, FinishedOnKey="")
        return self.receive(self.post(str(self.gather.get("action")), params))

    def say(self, speech: str, confidence: float = 0.91) -> ET.Element:
        params = self.params(SpeechResult=speech, Confidence=f"{confidence:.6f}")
        return self.receive(self.post(str(self.gather.get("action")), params))

    def silence(self) -> ET.Element:
        """The ``<Gather>`` timed out: Twilio follows the ``<Redirect>`` after it."""
        assert self.last is not None
        redirect = self.last.find("Redirect")
        assert redirect is not None and redirect.get("method") == "POST"
        return self.receive(self.post(str(redirect.text), self.params()))

    def again(self) -> ET.Element:
        """Twilio delivers the last webhook a second time."""
        url, params = self.sent[-1]
        return self.receive(self.post(url, params))


def says(element: ET.Element) -> list[tuple[str, str | None]]:
    """Every ``<Say>`` in document order: (text, language)."""
    return [(say.text or "", say.get("language")) for say in element.iter("Say")]


def spoken(element: ET.Element) -> str:
    return " ".join(text for text, _ in says(element))


def assert_gather(
    gather: ET.Element, route: str, *, language: str, num_digits: str, timeout: str
) -> None:
    assert gather.get("input") == "speech dtmf"
    assert gather.get("language") == language
    assert gather.get("speechTimeout") == "auto"
    assert gather.get("timeout") == timeout
    assert gather.get("numDigits") == num_digits
    assert gather.get("method") == "POST"
    action = str(gather.get("action"))
    assert action.startswith(f"{PUBLIC_BASE}{VOICE}/{route}?turn=")
    assert gather.get("hints")
    # Every prompt of the question is in the call's language.
    assert {lang for _, lang in says(gather)} <= {language, "en-GB", "en-US"}


def when(deadline: datetime, language: str) -> str:
    lang = messages.as_language(language)
    return messages.moment_phrase(deadline, datetime.now(UTC), lang, TIMEZONE, "before")


def the_call(line: Line, sid: str) -> VoiceCall:
    with line.sessions() as session:
        return session.scalars(select(VoiceCall).where(VoiceCall.call_sid == sid)).one()


# -- whole calls ----------------------------------------------------------------------------------


def test_a_call_in_dutch_by_speech(line: Line) -> None:
    call = line.call()

    greeting = call.start()
    assert_gather(call.gather, "language", language="nl-NL", num_digits="1", timeout="3")
    assert says(greeting)[0] == ("Welkom bij de storingslijn.", "nl-NL")
    assert ("For English, press 9 or say English.", "en-GB") in says(greeting)
    assert "English" in str(call.gather.get("hints"))
    # Silence after the question is posted back to the same action by the redirect.
    redirect = greeting.find("Redirect")
    assert redirect is not None and redirect.text == call.gather.get("action")

    asked = call.silence()  # no English: on in Dutch
    assert_gather(call.gather, "postcode", language="nl-NL", num_digits="4", timeout="6")
    assert "vier cijfers van je postcode" in spoken(asked)
    assert "druk 0 of zeg medewerker" in spoken(asked)

    told = call.say("drie vijf één één")

    lines = [text for text, _ in says(told)]
    assert all(lang == "nl-NL" for _, lang in says(told))
    assert lines[0] == (
        "Er is een storing in internet in Utrecht, sinds "
        f"{messages.clock_time(STARTED, TIMEZONE)}. Ongeveer 1.840 klanten hebben er last van."
    )
    assert lines[1] == (
        f"We verwachten dat het {when(DEADLINE, 'nl')} is opgelost. Van 42 vergelijkbare "
        "storingen waren er 35 binnen die tijd opgelost."
    )
    assert_gather(call.gather, "menu", language="nl-NL", num_digits="1", timeout="6")
    assert "Wil je een sms op dit nummer zodra het is opgelost? Druk 1 of zeg ja." in spoken(
        call.gather
    )
    with line.sessions() as session:
        given = session.scalars(select(PromiseGiven)).one()
        assert (given.channel, given.recipient, given.language) == (
            "voice",
            f"voice:{CALLER}",
            "nl",
        )
        assert given.deadline == DEADLINE
        conversation = session.get(Conversation, f"voice:{CALLER}")
        assert conversation is not None and conversation.customer_id is not None
        assert conversation.channel == "voice"
        heard = session.scalars(
            select(Message.text).where(Message.direction == "in").order_by(Message.id)
        ).all()
        assert heard == ["drie vijf één één"]
    state = the_call(line, call.sid)
    assert (state.step, state.language, state.postcode, state.caller) == (
        "menu",
        "nl",
        "3511",
        CALLER,
    )

    done = call.say("ja graag")
    assert "Top, je krijgt een sms op dit nummer" in spoken(done)
    assert done.find("Hangup") is not None and done.find("Gather") is None
    with line.sessions() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert (subscription.channel, subscription.address) == ("sms", f"sms:{CALLER}")
        assert (subscription.language, subscription.postcode, subscription.service) == (
            "nl",
            "3511",
            "internet",
        )
        assert subscription.is_active and subscription.outage_id is not None


def test_a_call_in_english_by_keypad_ends_with_the_agent_queue(line: Line) -> None:
    call = line.call()
    call.start()

    asked = call.press("9")
    assert_gather(call.gather, "postcode", language="en-GB", num_digits="4", timeout="6")
    assert "What are the four digits of your postcode?" in spoken(asked)
    assert {lang for _, lang in says(asked)} == {"en-GB"}

    told = call.press("3511")
    assert spoken(told).startswith("There's an outage affecting internet in Utrecht, since ")
    assert "About 1,840 customers are affected." in spoken(told)
    assert f"We expect it to be fixed {when(DEADLINE, 'en')}." in spoken(told)
    assert_gather(call.gather, "menu", language="en-GB", num_digits="1", timeout="6")
    assert "Press 1 or say yes" in spoken(call.gather)

    transfer = call.press("0")
    assert "I'm putting you through to an agent." in spoken(transfer)
    enqueue = transfer.find("Enqueue")
    assert enqueue is not None and enqueue.text == "storingen"
    assert str(enqueue.get("action")).startswith(f"{PUBLIC_BASE}{VOICE}/after-transfer?turn=")
    with line.sessions() as session:
        handoff = session.scalars(select(Handoff)).one()
        assert handoff.conversation_id == f"voice:{CALLER}"
        reason = handoff.reason or ""
        # The agent console gets the context, in the agents' language.
        for part in (CALLER, "(en)", "Postcode: 3511", "STO-26-00042", "vroeg om een medewerker"):
            assert part in reason
        assert "We expect it to be fixed" in reason
    state = the_call(line, call.sid)
    assert (state.step, state.transfer_reason, state.handoff_id) == (
        "transferred",
        "requested",
        handoff.id,
    )

    # The agent took the call: when it ends, the caller is simply hung up on.
    after = call.receive(
        call.post(str(enqueue.get("action")), call.params(QueueResult="bridged", QueueTime="12"))
    )
    assert says(after) == [] and after.find("Hangup") is not None


def test_english_in_the_us_locale(
    tmp_path: Path, db_engine: Engine, session: Session, fake_rasa: FakeRasaServer
) -> None:
    settings = channel_settings(
        tmp_path, voice_english_locale="en-US", voice_say_voice_en="Polly.Joanna-Neural"
    )
    for line in _line(settings, db_engine, fake_rasa):
        call = line.call()
        call.start()
        assert ("For English, press 9 or say English.", "en-US") in says(call.gather)
        call.say("English please")
        assert_gather(call.gather, "postcode", language="en-US", num_digits="4", timeout="6")
        voices = {say.get("voice") for say in call.gather.iter("Say")}
        assert voices == {"Polly.Joanna-Neural"}


def test_the_postcode_on_file_is_offered(line: Line) -> None:
    with line.sessions() as session, session.begin():
        session.add(
            Subscription(
                channel="sms",
                address=f"sms:{CALLER}",
                language="nl",
                postcode="3511 AB",
                service="internet",
                created_at=datetime.now(UTC) - timedelta(days=3),
                cancelled_at=datetime.now(UTC) - timedelta(days=2),
            )
        )
    # The number belongs to a customer: it texted us before.
    with line.sessions() as session, session.begin():
        link_customer(session, "sms", CALLER)
    call = line.call()
    call.start()

    offer = call.silence()
    assert_gather(call.gather, "known-postcode", language="nl-NL", num_digits="1", timeout="6")
    assert "Gaat het om postcode 3 5 1 1 A B? Druk 1 of zeg ja." in spoken(offer)

    told = call.press("1")
    assert spoken(told).startswith("Er is een storing in internet in Utrecht")
    assert the_call(line, call.sid).postcode == "3511 AB"

    # A later call from the number is offered what it said in this one.
    later = line.call()
    later.start()
    later.silence()
    assert "Gaat het om postcode 3 5 1 1 A B?" in spoken(later.gather)
    other = later.press("2")
    assert_gather(later.gather, "postcode", language="nl-NL", num_digits="4", timeout="6")
    assert "vier cijfers" in spoken(other)


def test_silence_twice_transfers_with_a_handoff(
    tmp_path: Path, db_engine: Engine, session: Session, fake_rasa: FakeRasaServer
) -> None:
    settings = channel_settings(tmp_path, voice_agent_number="+31300000000")
    for line in _line(settings, db_engine, fake_rasa):
        call = line.call()
        call.start()
        call.silence()  # the language question: Dutch

        again = call.silence()
        assert spoken(again).startswith("Sorry, ik hoorde niets.")
        assert_gather(call.gather, "postcode", language="nl-NL", num_digits="4", timeout="6")
        assert line.count(Handoff) == 0

        transfer = call.silence()
        assert "Ik verbind je door met een medewerker." in spoken(transfer)
        dial = transfer.find("Dial")
        assert dial is not None and (dial.text or "").strip() == "+31300000000"
        assert transfer.find("Gather") is None
        with line.sessions() as db:
            handoff = db.scalars(select(Handoff)).one()
            assert "2 keer niet verstaan" in (handoff.reason or "")
            assert "Postcode: onbekend" in (handoff.reason or "")
        state = the_call(line, call.sid)
        assert (state.step, state.transfer_reason) == ("transferred", "not_understood")

        # Nobody picked up: the caller is told so, and the call ends.
        after = call.receive(
            call.post(str(dial.get("action")), call.params(DialCallStatus="no-answer"))
        )
        assert "geen medewerker bereikbaar" in spoken(after)
        assert after.find("Hangup") is not None


def test_low_confidence_speech_is_not_understood(line: Line) -> None:
    call = line.call()
    call.start()
    call.silence()

    unsure = call.say("drie vijf één één", confidence=0.12)

    assert spoken(unsure).startswith("Sorry, dat heb ik niet goed verstaan.")
    assert_gather(call.gather, "postcode", language="nl-NL", num_digits="4", timeout="6")
    assert the_call(line, call.sid).postcode is None
    # Gibberish is not understood either; the second failure hands the call over.
    transfer = call.say("ik weet het niet")
    assert transfer.find("Enqueue") is not None
    assert line.count(Handoff) == 1


def test_press_1_twice_or_a_redelivered_webhook_subscribes_once(line: Line) -> None:
    call = line.call()
    call.start()
    call.press("9")
    call.press("3511")
    first = call.press("1")
    assert "you'll get a text message on this number" in spoken(first)

    again = call.again()  # Twilio delivers the same webhook once more

    assert ET.tostring(again) == ET.tostring(first)
    assert line.count(Subscription) == 1
    assert the_call(line, call.sid).turn == 4

    # Calling back and pressing 1 again keeps the one subscription.
    second = line.call()
    second.start()
    second.press("9")
    second.press("1")  # the postcode on file, from the first call
    second.press("1")
    with line.sessions() as session:
        (subscription,) = session.scalars(select(Subscription)).all()
        assert subscription.language == "en" and subscription.is_active
        assert line.count(PromiseGiven) == 1  # the same promise, told to the same recipient


def test_a_redelivered_question_does_not_count_twice(line: Line) -> None:
    call = line.call()
    call.start()
    call.silence()
    sorry = call.say("ik weet het niet")
    assert sorry.find("Gather") is not None
    # The same "not understood" delivered again does not make it the second failure.
    assert ET.tostring(call.again()) == ET.tostring(sorry)
    assert line.count(Handoff) == 0
    assert the_call(line, call.sid).failures == 1


def test_no_outage_says_so_and_offers_an_agent(line: Line) -> None:
    call = line.call()
    call.start()
    call.silence()

    told = call.say("9 9 9 9")

    assert spoken(told).startswith("Ik zie op dit moment geen storing bij postcode 9 9 9 9.")
    assert_gather(call.gather, "menu", language="nl-NL", num_digits="1", timeout="6")
    assert "sms" not in spoken(call.gather)
    assert "Voor een andere postcode: druk 2." in spoken(call.gather)
    assert "druk 0 of zeg medewerker" in spoken(call.gather)
    assert line.count(PromiseGiven) == 0

    transfer = call.say("een medewerker graag")
    assert transfer.find("Enqueue") is not None
    assert line.count(Subscription) == 0
    with line.sessions() as session:
        reason = session.scalars(select(Handoff.reason)).one() or ""
        assert "Postcode: 9999" in reason and "Storing: onbekend" in reason


def test_a_supervisors_promise_is_what_the_caller_hears(line: Line) -> None:
    override = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=7)
    with line.sessions() as session, session.begin():
        outage_id = session.scalars(select(Outage.id)).one()
        line.promises.override(
            session, outage_id, override, "crew on site", "sup@example.nl", datetime.now(UTC)
        )
    call = line.call()
    call.start()
    call.silence()

    told = call.press("3511")

    # The override's time, without the engine's evidence (it does not back an override).
    assert f"We verwachten dat het {when(override, 'nl')} is opgelost." in spoken(told)
    assert "vergelijkbare" not in spoken(told)
    with line.sessions() as session:
        given = session.scalars(select(PromiseGiven)).one()
        assert given.deadline == override and given.channel == "voice"


def test_a_postcode_said_at_the_greeting_is_taken_at_once(line: Line) -> None:
    call = line.call()
    call.start()
    told = call.say("storing bij drie vijf één één")
    assert spoken(told).startswith("Er is een storing in internet in Utrecht")
    assert_gather(call.gather, "menu", language="nl-NL", num_digits="1", timeout="6")


def test_silence_after_the_outage_was_told_ends_the_call(line: Line) -> None:
    call = line.call()
    call.start()
    call.press("9")
    call.press("3511")
    again = call.silence()
    assert spoken(again).startswith("Sorry, I didn't hear anything.")
    assert_gather(call.gather, "menu", language="en-GB", num_digits="1", timeout="6")

    bye = call.silence()

    # They heard what they called for: no agent is bothered, the call ends.
    assert spoken(bye) == "Thanks for calling. Goodbye." and bye.find("Hangup") is not None
    assert line.count(Handoff) == 0 and line.count(Subscription) == 0


def test_an_opted_out_number_is_not_subscribed(line: Line) -> None:
    with line.sessions() as session, session.begin():
        store.opt_out(session, channel="sms", address=CALLER, keyword="STOP", now=datetime.now(UTC))
    call = line.call()
    call.start()
    call.silence()
    call.press("3511")

    refused = call.press("1")

    assert "Stuur START per sms" in spoken(refused) and refused.find("Hangup") is not None
    assert line.count(Subscription) == 0


def test_a_withheld_number_gets_no_text_message_offer(line: Line) -> None:
    call = line.call(caller="anonymous")
    call.start()
    call.silence()
    call.press("3511")
    assert "sms" not in spoken(call.gather)
    call.press("1")  # not offered: not understood
    assert "niet goed verstaan" in spoken(call.last)  # type: ignore[arg-type]
    assert line.count(Subscription) == 0
    assert the_call(line, call.sid).caller is None


# -- signatures and status -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [VOICE, f"{VOICE}/language", f"{VOICE}/postcode?turn=2", f"{VOICE}/status"]
)
@pytest.mark.parametrize("forgery", ["missing", "wrong token", "wrong url", "tampered"])
def test_forged_voice_webhooks_are_refused_and_logged_without_the_body(
    line: Line, caplog: pytest.LogCaptureFixture, path: str, forgery: str
) -> None:
    params = Call(line.client, "CA" + "f" * 32, CALLER).params(SpeechResult="Geheimstraat 12")
    url = PUBLIC_BASE + path
    headers = {"X-Twilio-Signature": signature(url, params)}
    if forgery == "missing":
        headers = {}
    elif forgery == "wrong token":
        headers = {"X-Twilio-Signature": signature(url, params, token="not-our-token")}
    elif forgery == "wrong url":
        headers = {"X-Twilio-Signature": signature("https://elders.example.com" + path, params)}
    elif forgery == "tampered":
        params = {**params, "SpeechResult": "iets anders"}

    with caplog.at_level(logging.WARNING, logger="bot.channels.voice"):
        response = line.client.post(path, data=params, headers=headers)

    assert response.status_code == 403
    assert line.count(VoiceCall) == 0 and line.count(VoiceCallEvent) == 0
    assert "Rejected Twilio voice webhook" in caplog.text
    assert "Geheimstraat" not in caplog.text and CALLER not in caplog.text


def test_a_foreign_account_is_refused(line: Line) -> None:
    call = line.call()
    params = call.params(AccountSid="AC" + "e" * 32)
    url = PUBLIC_BASE + VOICE
    response = line.client.post(
        VOICE, data=params, headers={"X-Twilio-Signature": signature(url, params)}
    )
    assert response.status_code == 403


def test_call_status_callbacks_are_stored(line: Line) -> None:
    call = line.call()
    call.start()
    status_url = f"{PUBLIC_BASE}{VOICE}/status"
    for status, extra in [
        ("ringing", {"SequenceNumber": "0"}),
        ("in-progress", {"SequenceNumber": "1"}),
        ("completed", {"SequenceNumber": "2", "CallDuration": "42"}),
        ("completed", {"SequenceNumber": "2", "CallDuration": "42"}),  # delivered twice
        ("ringing", {"SequenceNumber": "0"}),  # late
    ]:
        response = call.post(status_url, call.params(CallStatus=status, **extra))
        assert response.status_code == 204

    with line.sessions() as session:
        events = session.scalars(select(VoiceCallEvent).order_by(VoiceCallEvent.id)).all()
        assert [e.status for e in events] == ["ringing", "in-progress", "completed"]
        assert events[-1].details["CallDuration"] == "42" and events[-1].sequence_number == 2
    state = the_call(line, call.sid)
    assert (state.status, state.duration_seconds) == ("completed", 42)
    assert state.ended_at is not None

    # A callback of a call this service never answered is kept too.
    stray = Call(line.client, "CA" + "9" * 32, CALLER)
    assert stray.post(status_url, stray.params(CallStatus="no-answer")).status_code == 204
    assert line.count(VoiceCallEvent) == 4
    # Without a status it is a bad request.
    assert stray.post(status_url, stray.params(CallStatus="")).status_code == 400


def test_voice_is_off_without_twilio_credentials(
    tmp_path: Path, db_engine: Engine, session: Session, fake_rasa: FakeRasaServer
) -> None:
    settings = channel_settings(tmp_path, twilio_account_sid=None, twilio_auth_token=None)
    for line in _line(settings, db_engine, fake_rasa):
        for path in (VOICE, f"{VOICE}/postcode", f"{VOICE}/status"):
            response = line.client.post(path, data={"CallSid": "CA1"})
            assert response.status_code == 404
            assert "BELOFTE_TWILIO_AUTH_TOKEN" in response.json()["detail"]


# -- spoken postcodes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("speech", "language", "expected"),
    [
        ("drie vijf één één", "nl", Postcode("3511")),
        ("drie vijf een een", "nl", Postcode("3511")),
        ("vijfendertig elf", "nl", Postcode("3511")),
        ("mijn postcode is twee nul nul nul", "nl", Postcode("2000")),
        ("3511 AB", "nl", Postcode("3511", "AB", "NL")),
        ("35 11 a b", "nl", Postcode("3511", "AB", "NL")),
        ("drie vijf één één a b", "nl", Postcode("3511", "AB", "NL")),
        ("3511ab", "nl", Postcode("3511", "AB", "NL")),
        ("three five one one", "en", Postcode("3511")),
        ("thirty-five eleven", "en", Postcode("3511")),
        ("it's 1012 AB", "en", Postcode("1012", "AB", "NL")),
        # English digits in a Dutch call still count.
        ("three five one one", "nl", Postcode("3511")),
        # Forbidden letters are dropped, the digits kept.
        ("3511 SS", "nl", Postcode("3511")),
        ("3511 en verder niks", "nl", Postcode("3511")),
    ],
)
def test_spoken_postcodes(speech: str, language: str, expected: Postcode) -> None:
    assert parse_spoken_postcode(speech, messages.as_language(language)) == expected


@pytest.mark.parametrize(
    "speech", ["hallo", "drie vijf", "0123", "een twee drie vier vijf", "storing", ""]
)
def test_not_a_postcode(speech: str) -> None:
    assert parse_spoken_postcode(speech, "nl") is None
