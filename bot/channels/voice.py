"""The outage line: Twilio voice calls answered with TwiML, by speech or keypad, Dutch or English.

A call goes through a few questions, each a ``<Gather input="speech dtmf">`` whose action is a
sub-route of ``/webhooks/twilio/voice``:

1. ``POST /webhooks/twilio/voice`` (the number's "a call comes in" webhook): a Dutch greeting with
   "for English, press 9 or say English" (``/voice/language``; silence goes on in Dutch).
2. The postcode: offered from earlier contacts of the caller's number (``/voice/known-postcode``:
   press 1 or say yes), else asked (``/voice/postcode``): four digits keyed, or said as digits
   ("drie vijf één één", "three five one one", "vijfendertig elf"), with or without the letters.
3. The outages at that postcode and, for each, the promise, told exactly as the chat tells it
   (:func:`actions.promises.promise_message` and the dialogue's own ``utter_promise_*``
   responses; a supervisor's approved or overridden promise wins), recorded as given on channel
   ``voice``. Then ``/voice/menu``: press 1 or say yes for a text message when it is fixed (the
   SMS subscription the SMS channel itself would make, so the outbox honours it), 2 for another
   postcode, 0 or "medewerker" / "agent" for an agent.
4. A transfer to the agents (``<Enqueue>`` the configured queue, else ``<Dial>`` the configured
   number) on request or after ``voice_max_attempts`` failed attempts in a row (silence, not
   understood, or speech below ``voice_min_confidence``). A :class:`~bot.storage.models.Handoff`
   with the call's context (caller, language, postcode, outages, promise said) is recorded first,
   so the console shows who is coming and what they heard; ``/voice/after-transfer`` ends the call
   politely when no agent answered.

``POST /webhooks/twilio/voice/status`` stores the call status callbacks.

Every request is checked like the SMS webhooks (:meth:`TwilioChannel.rejection`: the real
``RequestValidator`` against the public URL, and this account's ``AccountSid``); anything else
gets 403, logged without the body. The state of a call lives in ``voice_calls`` by ``CallSid``
(each webhook may reach another worker). Every ``<Gather>`` action and its silence fallback carry
the turn they answer (``?turn=N``): a webhook Twilio delivers twice is answered with the TwiML of
the first delivery and changes nothing. The work is a few indexed queries and no Rasa round trip;
it runs in a worker thread so the event loop stays free (see ``bench/voice_latency.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import phonenumbers
import yaml
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.datastructures import ImmutableMultiDict
from text_to_num import alpha2digit  # type: ignore[import-untyped]
from twilio.twiml.voice_response import VoiceResponse  # type: ignore[import-untyped]

from actions.promises import promise_message
from bot import messages
from bot.channels import store
from bot.channels.customers import conversation_id, link_customer, phone_number
from bot.channels.twilio import TwilioChannel, public_url, read_form
from bot.outages.postcodes import Postcode, parse_postcode
from bot.outages.service import OutageView, find_active_outages
from bot.promises.service import OutageResolved, PromiseService
from bot.settings import PROJECT_ROOT, Language, Settings
from bot.storage.db import SessionFactory
from bot.storage.models import (
    ChannelIdentity,
    Conversation,
    Handoff,
    Message,
    Outage,
    Subscription,
    VoiceCall,
    VoiceCallEvent,
)
from bot.storage.types import utcnow
from bot.subscriptions.service import subscribe

logger = logging.getLogger(__name__)

#: Where the webhooks live; the gather actions are ``VOICE_PATH + "/" + route``.
VOICE_PATH: Final = "/webhooks/twilio/voice"
#: The gather routes, by the step of the call they answer.
ROUTES: Final[dict[str, str]] = {
    "language": "language",
    "known_postcode": "known-postcode",
    "postcode": "postcode",
    "menu": "menu",
    "transferred": "after-transfer",
}
#: Call statuses after which nothing more happens on a call.
_FINAL_STATUSES: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
#: How far along a call is, by status: a late callback never moves a call back.
_STATUS_RANK: Final[dict[str, int]] = {
    "queued": 0,
    "initiated": 0,
    "ringing": 1,
    "in-progress": 2,
    **dict.fromkeys(_FINAL_STATUSES, 3),
}
#: Fields of a status callback kept with the event.
_STATUS_DETAILS: Final = (
    "CallStatus",
    "CallDuration",
    "Direction",
    "From",
    "To",
    "Timestamp",
    "CallbackSource",
    "SipResponseCode",
    "ErrorCode",
)
#: A transfer that reached someone: after it, the call simply ends.
_TRANSFER_DONE: Final = frozenset({"completed", "answered", "bridged", "bridging-in-process"})
#: Locales of the call languages (English comes from the settings).
_DUTCH_LOCALE: Final = "nl-NL"
_KEY_ENGLISH: Final = "9"
_KEY_AGENT: Final = "0"
_KEY_YES: Final = "1"
_KEY_OTHER: Final = "2"

_MESSAGES_DIR: Final = Path(__file__).resolve().parent.parent / "messages"
_WORD_SPLIT = re.compile(r"[^\w']+")
_TOKEN = re.compile(r"\d+|[^\W\d_]+")


# -- texts -------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _catalogue(language: Language) -> dict[str, Any]:
    data = yaml.safe_load((_MESSAGES_DIR / f"{language}.yml").read_text(encoding="utf-8"))
    block: dict[str, Any] = data.get("voice") or {}
    return block


def voice_text(key: str, language: Language, **values: Any) -> str:
    """The voice text ``key`` (the ``voice:`` block of ``bot/messages``) filled with ``values``."""
    return str(_catalogue(language)[key]).format(**values)


def voice_words(key: str, language: Language) -> tuple[str, ...]:
    """A word list of the ``voice:`` block: what callers may say, or hints for the recogniser."""
    return tuple(str(word) for word in _catalogue(language)[key])


@lru_cache(maxsize=1)
def _dialogue_responses() -> dict[str, Any]:
    data = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    responses: dict[str, Any] = data["responses"]
    return responses


def dialogue_text(response: str, language: Language, **values: Any) -> str:
    """The text of the dialogue's response ``response`` (``domain.yml``) in ``language``.

    The voice line says the promise with the very responses the chat utters, picking the
    variation whose ``language`` slot condition matches (the unconditioned one is Dutch).
    """
    variations: list[dict[str, Any]] = _dialogue_responses()[response]
    fallback: str | None = None
    for variation in variations:
        conditions = variation.get("condition") or []
        if not conditions:
            fallback = fallback or str(variation["text"])
            continue
        if all(
            c.get("type") == "slot" and c.get("name") == "language" and c.get("value") == language
            for c in conditions
        ):
            return str(variation["text"]).format(**values)
    if fallback is None:
        raise KeyError(f"response {response!r} has no text for {language!r}")
    return fallback.format(**values)


# -- understanding the caller -----------------------------------------------------------------


def _normalised(speech: str) -> str:
    """Lower-case words separated by single spaces, padded with spaces for whole-word search."""
    words = [w for w in _WORD_SPLIT.split(speech.lower()) if w]
    return f" {' '.join(words)} "


def says_any(speech: str, phrases: Iterable[str]) -> bool:
    """True when ``speech`` contains one of ``phrases`` as whole words ("ja graag" has "ja")."""
    text = _normalised(speech)
    return any(_normalised(phrase) in text for phrase in phrases if phrase.strip())


def _postcode_in_tokens(tokens: list[str]) -> Postcode | None:
    """The first four-digit group (digits said apart joined) and the letters right after it."""
    index = 0
    while index < len(tokens):
        if not tokens[index].isdigit():
            index += 1
            continue
        end = index
        while end < len(tokens) and tokens[end].isdigit():
            end += 1
        run = tokens[index:end]
        joined = "".join(run)
        digits = joined if len(joined) == 4 else next((t for t in run if len(t) == 4), None)
        if digits is not None and digits[0] != "0":
            rest = tokens[end : end + 2]
            letters: str | None = None
            if rest and len(rest[0]) == 2 and rest[0].isalpha():
                letters = rest[0]
            elif len(rest) == 2 and all(len(t) == 1 and t.isalpha() for t in rest):
                letters = rest[0] + rest[1]
            if letters is not None and letters.isascii():
                # parse_postcode knows which pairs are never used, and that "3511 en" is a
                # number followed by a word (recognisers write spelled letters in capitals).
                found = parse_postcode(f"{digits} {letters}")
                if found is not None:
                    return found
            return Postcode(digits=digits)
        index = end
    return None


def parse_spoken_postcode(speech: str, language: Language) -> Postcode | None:
    """The postcode in what a caller said, or None.

    Handles what speech recognition returns for a postcode: ``"3511 AB"``, ``"35 11"``,
    ``"3 5 1 1 a b"``, and digits as words in the call's language (``"drie vijf één één"``,
    ``"vijfendertig elf"``, ``"three five one one"``, ``"thirty-five eleven"``); the other
    language is tried when the call's finds no digits. Four digits make a postcode (Dutch
    without letters, or Belgian); two letters right after them make it Dutch.
    """
    for lang in (language, "en" if language == "nl" else "nl"):
        converted = alpha2digit(speech, lang)
        tokens = _TOKEN.findall(converted)
        if any(t.isdigit() for t in tokens):
            return _postcode_in_tokens(tokens)
    return None


def _spelled(postcode: Postcode) -> str:
    """A postcode as it is spoken: digit by digit, then the letters ("3 5 1 1 A B")."""
    return " ".join(str(postcode).replace(" ", ""))


def _textable(number: str | None) -> bool:
    """True when ``number`` is a valid number that can receive text messages (a mobile)."""
    if not number:
        return False
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


@dataclass(frozen=True)
class CallerInput:
    """What the caller answered one ``<Gather>`` with.

    ``digits`` keyed, ``speech`` recognised (empty below the confidence threshold, with
    ``unclear`` set), nothing at all for silence.
    """

    digits: str = ""
    speech: str = ""
    unclear: bool = False

    @property
    def silent(self) -> bool:
        """Nothing keyed and nothing said."""
        return not self.digits and not self.speech and not self.unclear

    @property
    def transcript(self) -> str | None:
        """What is kept of the input in the conversation (None for silence)."""
        return self.digits or self.speech or None

    @classmethod
    def from_form(cls, form: Mapping[str, str], min_confidence: float) -> CallerInput:
        """The input of a gather action's form (``Digits``, ``SpeechResult``, ``Confidence``)."""
        digits = (form.get("Digits") or "").strip().strip("#")
        speech = (form.get("SpeechResult") or "").strip()
        if speech and digits:
            speech = ""  # keys are unambiguous: they win
        if speech:
            try:
                confidence = float(form.get("Confidence") or "1")
            except ValueError:
                confidence = 0.0
            if confidence < min_confidence:
                return cls(unclear=True)
        return cls(digits=digits, speech=speech)


# -- TwiML ----------------------------------------------------------------------------------


@dataclass
class _Answer:
    """One TwiML answer being built, in the call's language, and everything it says."""

    settings: Settings
    language: Language
    base_url: str
    response: VoiceResponse = field(default_factory=VoiceResponse)
    said: list[str] = field(default_factory=list)

    def _voice(self, language: Language) -> tuple[str, str]:
        if language == "en":
            return self.settings.voice_english_locale, self.settings.voice_say_voice_en
        return _DUTCH_LOCALE, self.settings.voice_say_voice_nl

    @property
    def locale(self) -> str:
        """The BCP-47 locale of the call's language."""
        return self._voice(self.language)[0]

    def say(self, text: str, *, into: Any = None, language: Language | None = None) -> None:
        """Say ``text`` (in ``language``, default the call's) on the call or inside ``into``."""
        locale, voice = self._voice(language or self.language)
        (into if into is not None else self.response).say(text, voice=voice, language=locale)
        self.said.append(text)

    def text(self, key: str, **values: Any) -> str:
        """The voice text ``key`` in the call's language."""
        return voice_text(key, self.language, **values)

    def url(self, step: str, turn: int) -> str:
        """The absolute URL of the gather route of ``step``, for the answer to turn ``turn``."""
        return f"{self.base_url}{VOICE_PATH}/{ROUTES[step]}?turn={turn}"

    def ask(
        self,
        step: str,
        turn: int,
        prompts: list[str],
        *,
        hints: str,
        num_digits: int,
        timeout: int,
        prompt_language: Language | None = None,
        extra: list[tuple[str, Language]] | None = None,
    ) -> None:
        """A ``<Gather>`` for ``step`` saying ``prompts``; silence falls through to a redirect.

        Twilio goes on with the next verb when a ``<Gather>`` hears nothing: the ``<Redirect>``
        to the same action then posts without ``Digits`` or ``SpeechResult``, which is how the
        step learns about silence.
        """
        action = self.url(step, turn)
        gather = self.response.gather(
            input="speech dtmf",
            action=action,
            method="POST",
            language=self.locale,
            hints=hints,
            speech_timeout="auto",
            timeout=timeout,
            num_digits=num_digits,
        )
        for prompt in prompts:
            self.say(prompt, into=gather, language=prompt_language)
        for prompt, language in extra or []:
            self.say(prompt, into=gather, language=language)
        self.response.redirect(action, method="POST")

    def render(self) -> str:
        """The TwiML document."""
        return str(self.response)


# -- the line ---------------------------------------------------------------------------------


class VoiceLine:
    """The Twilio voice webhooks of one service (cheap to build: it holds no connections)."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        promises: PromiseService | None,
        twilio: TwilioChannel,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._promises = promises
        self._twilio = twilio
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """True when Twilio is configured (account SID and auth token)."""
        return self._twilio.enabled

    # -- webhooks --------------------------------------------------------------------------

    async def handle_call(self, request: Request, step: str | None) -> Response:
        """A voice webhook: the incoming call (``step`` None) or the gather action of ``step``."""
        form = await self._verified_form(request)
        if isinstance(form, Response):
            return form
        if not form.get("CallSid"):
            return JSONResponse(status_code=400, content={"detail": "CallSid needed."})
        turn = _int(request.query_params.get("turn"))
        base = public_url(request, self._settings).split("/webhooks/", 1)[0]
        twiml = await asyncio.to_thread(self._answer, step, dict(form), turn, base)
        return Response(content=twiml, media_type="application/xml")

    async def handle_status(self, request: Request) -> Response:
        """A call status callback: stored once per (call, status); the call's status advances."""
        form = await self._verified_form(request)
        if isinstance(form, Response):
            return form
        call_sid = form.get("CallSid")
        status = form.get("CallStatus")
        if not call_sid or not status:
            return JSONResponse(
                status_code=400, content={"detail": "CallSid and CallStatus needed."}
            )
        await asyncio.to_thread(self._store_status, dict(form), call_sid, status)
        return Response(status_code=204)

    async def _verified_form(self, request: Request) -> ImmutableMultiDict[str, str] | Response:
        if not self.enabled:
            return JSONResponse(
                status_code=404,
                content={
                    "detail": "Twilio is not configured: set BELOFTE_TWILIO_ACCOUNT_SID and "
                    "BELOFTE_TWILIO_AUTH_TOKEN."
                },
            )
        form = await read_form(request)
        reason = self._twilio.rejection(request, form)
        if reason is not None:
            client = request.client.host if request.client else "?"
            # Never log the body: it holds the caller's number and what they said.
            logger.warning(
                "Rejected Twilio voice webhook %s from %s: %s", request.url.path, client, reason
            )
            return JSONResponse(status_code=403, content={"detail": "Forbidden."})
        return form

    # -- one webhook, in a worker thread -----------------------------------------------------

    def _answer(self, step: str | None, form: dict[str, str], turn: int | None, base: str) -> str:
        now = self._clock()
        with self._sessions() as session, session.begin():
            call = self._call(session, form, now)
            replay = call.last_twiml
            # A webhook delivered again (or a stale one) gets the answer it got the first time.
            stale = step is None or turn != call.turn or step != call.step
            if call.turn > 0 and replay is not None and stale:
                logger.info("Voice webhook %s of turn %s answered again", step or "call", turn)
                return replay
            answer = _Answer(self._settings, _language(call.language), base)
            heard = CallerInput.from_form(form, self._settings.voice_min_confidence)
            if step is None or call.turn == 0:
                # A gather action for a call this service never greeted starts it over.
                self._greet(session, call, answer, now)
                heard = CallerInput()
            elif step == "language":
                self._on_language(session, call, answer, heard, now)
            elif step == "known_postcode":
                self._on_known_postcode(session, call, answer, heard, now)
            elif step == "postcode":
                self._on_postcode(session, call, answer, heard, now)
            elif step == "menu":
                self._on_menu(session, call, answer, heard, now)
            else:
                self._after_transfer(call, answer, form)
            # The answer's gather actions carry this new turn (``call.turn + 1`` above).
            call.turn += 1
            twiml = answer.render()
            call.last_twiml = twiml
            call.updated_at = now
            self._record_turn(session, call, heard, answer.said, now)
            return twiml

    def _call(self, session: Session, form: dict[str, str], now: datetime) -> VoiceCall:
        """The call's row, created on its first webhook, locked for this webhook."""
        call_sid = form["CallSid"][:64]
        store.insert_ignoring_conflict(
            session,
            VoiceCall,
            {
                "call_sid": call_sid,
                "language": self._settings.default_language,
                "step": "language",
                "turn": 0,
                "failures": 0,
                "outage_ids": [],
                "subscription_ids": [],
                "started_at": now,
                "updated_at": now,
            },
            ("call_sid",),
        )
        call = session.scalars(
            select(VoiceCall).where(VoiceCall.call_sid == call_sid).with_for_update()
        ).one()
        if call.turn == 0:
            call.caller = _caller(form.get("From"))
            call.called = phone_number(form.get("To") or "")[:32] or None
        status = form.get("CallStatus")
        if status:
            call.status = _advance(call.status, status)
        return call

    # -- the steps ---------------------------------------------------------------------------

    def _greet(self, session: Session, call: VoiceCall, answer: _Answer, now: datetime) -> None:
        """First webhook of a call: who is calling, and the language question."""
        self._identify(session, call, now)
        call.step = "language"
        call.failures = 0
        answer.language = "nl"
        answer.ask(
            "language",
            call.turn + 1,
            [voice_text("welcome", "nl")],
            extra=[(voice_text("choose_english", "en"), "en")],
            hints=", ".join(voice_words("hints_language", "nl")),
            num_digits=1,
            timeout=self._settings.voice_language_timeout_seconds,
        )

    def _identify(self, session: Session, call: VoiceCall, now: datetime) -> None:
        """Link the caller's number to its customer and conversation; find a postcode on file."""
        number = call.caller
        if number:
            customer = link_customer(
                session, "voice", number, language=self._settings.default_language
            )
            call.customer_id = customer.id
            conversation = conversation_id("voice", number)
        else:
            conversation = conversation_id("voice", call.call_sid)
        store.insert_ignoring_conflict(
            session,
            Conversation,
            {
                "id": conversation,
                "channel": "voice",
                "customer_id": call.customer_id,
                "language": call.language,
                "created_at": now,
                "updated_at": now,
            },
            ("id",),
        )
        call.conversation_id = conversation
        if number:
            on_file = self._postcode_on_file(session, call)
            call.postcode_on_file = str(on_file) if on_file is not None else None

    def _postcode_on_file(self, session: Session, call: VoiceCall) -> Postcode | None:
        """The postcode of the caller's latest earlier call or subscription, if any.

        Customers have no address on file; what they told Belofte before is the best there is:
        earlier calls from this number, and subscriptions on any channel of the same customer.
        """
        assert call.caller is not None
        candidates: list[tuple[datetime, str]] = []
        earlier = session.execute(
            select(VoiceCall.started_at, VoiceCall.postcode)
            .where(
                VoiceCall.caller == call.caller,
                VoiceCall.id != call.id,
                VoiceCall.postcode.is_not(None),
            )
            .order_by(VoiceCall.started_at.desc())
            .limit(1)
        ).first()
        if earlier is not None and earlier[1]:
            candidates.append((earlier[0], earlier[1]))
        addresses = {call.caller}
        if call.customer_id is not None:
            for channel, external in session.execute(
                select(ChannelIdentity.channel, ChannelIdentity.external_id).where(
                    ChannelIdentity.customer_id == call.customer_id
                )
            ):
                addresses.update({external, conversation_id(channel, external)})
        subscribed = session.execute(
            select(Subscription.created_at, Subscription.postcode)
            .where(Subscription.address.in_(addresses), Subscription.postcode.is_not(None))
            .order_by(Subscription.created_at.desc())
            .limit(1)
        ).first()
        if subscribed is not None and subscribed[1]:
            candidates.append((subscribed[0], subscribed[1]))
        for _, value in sorted(candidates, reverse=True):
            found = parse_postcode(value)
            if found is not None:
                return found
        return None

    def _on_language(
        self, session: Session, call: VoiceCall, answer: _Answer, heard: CallerInput, now: datetime
    ) -> None:
        """English on 9 or "English"; anything else (silence too) goes on in Dutch."""
        english = heard.digits == _KEY_ENGLISH or (
            bool(heard.speech) and says_any(heard.speech, voice_words("words_english", "nl"))
        )
        call.language = "en" if english else "nl"
        answer.language = _language(call.language)
        if call.conversation_id is not None:
            row = session.get(Conversation, call.conversation_id)
            if row is not None:
                row.language = call.language
        if self._wants_agent(heard, "nl") or (english and self._wants_agent(heard, "en")):
            self._transfer(session, call, answer, "requested", now)
            return
        if heard.speech and not english:
            # An impatient caller may say the postcode straight away.
            postcode = parse_spoken_postcode(heard.speech, "nl")
            if postcode is not None:
                self._tell(session, call, answer, postcode, now)
                return
        self._ask_postcode(call, answer)

    def _ask_postcode(
        self, call: VoiceCall, answer: _Answer, lead: list[str] | None = None
    ) -> None:
        """The postcode question: the one on file offered, or the digits asked."""
        language = answer.language
        prompts = list(lead or [])
        on_file = parse_postcode(call.postcode_on_file or "")
        if on_file is not None and call.step != "postcode":
            call.step = "known_postcode"
            prompts.append(answer.text("known_postcode", postcode=_spelled(on_file)))
            prompts.append(answer.text("agent_hint"))
            answer.ask(
                "known_postcode",
                call.turn + 1,
                prompts,
                hints=", ".join(
                    voice_words("hints_answer", language) + voice_words("hints_postcode", language)
                ),
                num_digits=1,
                timeout=self._settings.voice_gather_timeout_seconds,
            )
            return
        call.step = "postcode"
        prompts.append(answer.text("ask_postcode"))
        prompts.append(answer.text("agent_hint"))
        answer.ask(
            "postcode",
            call.turn + 1,
            prompts,
            hints=", ".join(voice_words("hints_postcode", language)),
            num_digits=4,
            timeout=self._settings.voice_gather_timeout_seconds,
        )

    def _on_known_postcode(
        self, session: Session, call: VoiceCall, answer: _Answer, heard: CallerInput, now: datetime
    ) -> None:
        language = answer.language
        if self._wants_agent(heard, language):
            self._transfer(session, call, answer, "requested", now)
            return
        on_file = parse_postcode(call.postcode_on_file or "")
        spoken = parse_spoken_postcode(heard.speech, language) if heard.speech else None
        if spoken is not None:
            self._tell(session, call, answer, spoken, now)
        elif on_file is not None and (
            heard.digits == _KEY_YES
            or (heard.speech and says_any(heard.speech, voice_words("words_yes", language)))
        ):
            self._tell(session, call, answer, on_file, now)
        elif heard.digits == _KEY_OTHER or (
            heard.speech and says_any(heard.speech, voice_words("words_no", language))
        ):
            call.step = "postcode"
            call.failures = 0
            self._ask_postcode(call, answer)
        else:
            self._failed(session, call, answer, heard, now, self._repeat_known)

    def _repeat_known(self, call: VoiceCall, answer: _Answer, lead: list[str]) -> None:
        call.step = "known_postcode"
        self._ask_postcode(call, answer, lead)

    def _on_postcode(
        self, session: Session, call: VoiceCall, answer: _Answer, heard: CallerInput, now: datetime
    ) -> None:
        language = answer.language
        if self._wants_agent(heard, language):
            self._transfer(session, call, answer, "requested", now)
            return
        postcode: Postcode | None = None
        if heard.digits:
            postcode = parse_postcode(heard.digits) if len(heard.digits) == 4 else None
        elif heard.speech:
            postcode = parse_spoken_postcode(heard.speech, language)
        if postcode is None:
            self._failed(session, call, answer, heard, now, self._repeat_postcode)
            return
        self._tell(session, call, answer, postcode, now)

    def _repeat_postcode(self, call: VoiceCall, answer: _Answer, lead: list[str]) -> None:
        call.step = "postcode"
        self._ask_postcode(call, answer, lead)

    def _tell(
        self, session: Session, call: VoiceCall, answer: _Answer, postcode: Postcode, now: datetime
    ) -> None:
        """The outages at ``postcode`` and their promises, then the menu."""
        language = answer.language
        call.postcode = str(postcode)
        call.failures = 0
        outages = find_active_outages(session, postcode, None, now=now)
        outages = outages[: self._settings.voice_max_outages]
        call.outage_ids = [o.id for o in outages]
        promises: list[str] = []
        if not outages:
            answer.say(answer.text("no_outage", postcode=_spelled(postcode)))
        elif len(outages) > 1:
            answer.say(
                answer.text(
                    "outages_at",
                    postcode=_spelled(postcode),
                    count=messages.count(len(outages), language),
                )
            )
        for outage in outages:
            answer.say(
                answer.text(
                    "outage_found",
                    service_name=messages.service_name(outage.service, language),
                    region=outage.region_name,
                    since=messages.clock_time(outage.started_at, self._settings.timezone),
                    affected=messages.count(outage.customers_affected, language),
                )
            )
            promise = self._promise(session, call, outage, language, now)
            answer.say(promise)
            promises.append(promise)
        call.promise_said = " ".join(promises) or None
        self._ask_menu(call, answer, [])

    def _promise(
        self,
        session: Session,
        call: VoiceCall,
        outage: OutageView,
        language: Language,
        now: datetime,
    ) -> str:
        """The promise for ``outage`` as the chat says it, recorded as given on ``voice``."""
        view = None
        if self._promises is not None:
            try:
                # A savepoint: a failing engine must not undo the call's own changes.
                with session.begin_nested():
                    view = self._promises.current(session, outage.id, now)
                    if view is not None and call.conversation_id is not None:
                        self._promises.record_given(
                            session,
                            view,
                            channel="voice",
                            recipient=call.conversation_id,
                            language=language,
                            conversation_id=call.conversation_id,
                            now=now,
                        )
            except OutageResolved:
                view = None
            except Exception:
                logger.exception("No promise for outage %s on the voice line", outage.reference)
                view = None
        told = promise_message(view, now, language, self._settings.timezone)
        return dialogue_text(told.response, language, **told.values)

    def _ask_menu(self, call: VoiceCall, answer: _Answer, lead: list[str]) -> None:
        call.step = "menu"
        prompts = list(lead)
        if call.outage_ids and _textable(call.caller):
            prompts.append(answer.text("offer_sms"))
        if not call.outage_ids:
            prompts.append(answer.text("offer_other_postcode"))
        prompts.append(answer.text("agent_hint"))
        answer.ask(
            "menu",
            call.turn + 1,
            prompts,
            hints=", ".join(voice_words("hints_answer", answer.language)),
            num_digits=1,
            timeout=self._settings.voice_gather_timeout_seconds,
        )

    def _on_menu(
        self, session: Session, call: VoiceCall, answer: _Answer, heard: CallerInput, now: datetime
    ) -> None:
        language = answer.language
        if self._wants_agent(heard, language):
            self._transfer(session, call, answer, "requested", now)
            return
        wants_sms = heard.digits == _KEY_YES or (
            bool(heard.speech) and says_any(heard.speech, voice_words("words_yes", language))
        )
        if wants_sms and call.outage_ids and _textable(call.caller):
            self._subscribe(session, call, answer, now)
            return
        if heard.digits == _KEY_OTHER:
            call.failures = 0
            call.step = "postcode"
            self._ask_postcode(call, answer)
            return
        if heard.speech and says_any(heard.speech, voice_words("words_no", language)):
            self._goodbye(call, answer)
            return
        if heard.silent and call.failures + 1 >= self._settings.voice_max_attempts:
            # They heard what they called for: silence now ends the call, no agent needed.
            self._goodbye(call, answer)
            return
        self._failed(session, call, answer, heard, now, self._ask_menu)

    def _subscribe(self, session: Session, call: VoiceCall, answer: _Answer, now: datetime) -> None:
        """A text message when it is fixed: the SMS channel's own subscription, per outage."""
        number = call.caller
        assert number is not None  # textable
        call.step = "done"
        if store.is_opted_out(session, channel="sms", address=number):
            answer.say(answer.text("sms_opted_out"))
            answer.response.hangup()
            return
        address = conversation_id("sms", number)
        sms_conversation = address if session.get(Conversation, address) is not None else None
        postcode = parse_postcode(call.postcode or "")
        ids: list[int] = []
        for outage_id in call.outage_ids:
            outage_service = self._outage_service(session, outage_id)
            values: dict[str, Any] = {
                "channel": "sms",
                "address": address,
                "language": call.language,
                "now": now,
                "outage_id": outage_id,
                "conversation_id": sms_conversation,
                "postcode": str(postcode) if postcode is not None else None,
                "service": outage_service,
            }
            try:
                with session.begin_nested():
                    subscription = subscribe(session, **values)
            except IntegrityError:
                # Another worker subscribed this number to the outage a moment ago: use that one.
                subscription = subscribe(session, **values)
            ids.append(subscription.id)
        call.subscription_ids = ids
        answer.say(answer.text("subscribed"))
        answer.response.hangup()

    @staticmethod
    def _outage_service(session: Session, outage_id: int) -> str | None:
        outage = session.get(Outage, outage_id)
        return outage.service if outage is not None else None

    def _goodbye(self, call: VoiceCall, answer: _Answer) -> None:
        call.step = "done"
        answer.say(answer.text("goodbye"))
        answer.response.hangup()

    def _failed(
        self,
        session: Session,
        call: VoiceCall,
        answer: _Answer,
        heard: CallerInput,
        now: datetime,
        again: Callable[[VoiceCall, _Answer, list[str]], None],
    ) -> None:
        """Silence or not understood: ask again, or hand over after too many attempts."""
        call.failures += 1
        if call.failures >= self._settings.voice_max_attempts:
            self._transfer(session, call, answer, "not_understood", now)
            return
        lead = answer.text("silence" if heard.silent else "not_understood")
        again(call, answer, [lead])

    def _wants_agent(self, heard: CallerInput, language: Language) -> bool:
        return heard.digits == _KEY_AGENT or (
            bool(heard.speech) and says_any(heard.speech, voice_words("words_agent", language))
        )

    # -- handing over ------------------------------------------------------------------------

    def _transfer(
        self, session: Session, call: VoiceCall, answer: _Answer, reason: str, now: datetime
    ) -> None:
        """Record the handoff with the call's context, then put the caller through."""
        handoff = Handoff(
            conversation_id=call.conversation_id,
            reason=self._handoff_reason(session, call, reason),
            created_at=now,
        )
        session.add(handoff)
        session.flush()
        call.handoff_id = handoff.id
        call.transfer_reason = reason
        call.step = "transferred"
        queue = self._settings.voice_agent_queue
        number = self._settings.voice_agent_number
        if not queue and not number:
            answer.say(answer.text("no_agent"))
            answer.response.hangup()
            return
        answer.say(answer.text("transfer"))
        after = answer.url("transferred", call.turn + 1)
        if queue:
            answer.response.enqueue(queue, action=after, method="POST")
        else:
            answer.response.dial(number, action=after, method="POST")

    def _handoff_reason(self, session: Session, call: VoiceCall, reason: str) -> str:
        """The call's context for the agent, in the agents' language."""
        agents = self._settings.default_language
        unknown = voice_text("handoff_unknown", agents)
        outages: list[str] = []
        if call.outage_ids:
            for outage in session.scalars(select(Outage).where(Outage.id.in_(call.outage_ids))):
                outages.append(
                    f"{outage.reference} ({messages.service_name(outage.service, agents)}, "
                    f"{outage.region_name})"
                )
        why = (
            voice_text("handoff_requested", agents)
            if reason == "requested"
            else voice_text("handoff_not_understood", agents, attempts=call.failures)
        )
        return voice_text(
            "handoff_reason",
            agents,
            caller=call.caller or voice_text("handoff_withheld", agents),
            call_language=call.language,
            postcode=call.postcode or unknown,
            outages="; ".join(outages) or unknown,
            promise=call.promise_said or unknown,
            reason=why,
        )

    def _after_transfer(self, call: VoiceCall, answer: _Answer, form: Mapping[str, str]) -> None:
        """After ``<Dial>`` or ``<Enqueue>``: end the call, politely if nobody answered."""
        outcome = form.get("DialCallStatus") or form.get("QueueResult") or ""
        call.step = "done"
        if outcome not in _TRANSFER_DONE:
            answer.say(answer.text("no_agent"))
        answer.response.hangup()

    # -- records ---------------------------------------------------------------------------

    def _record_turn(
        self,
        session: Session,
        call: VoiceCall,
        heard: CallerInput,
        said: list[str],
        now: datetime,
    ) -> None:
        """The caller's words and Belofte's in the conversation, for the console's history."""
        if call.conversation_id is None:
            return
        if heard.transcript is not None:
            session.add(
                Message(
                    conversation_id=call.conversation_id,
                    direction="in",
                    text=heard.transcript,
                    channel="voice",
                    payload={
                        "call_sid": call.call_sid,
                        "input": "dtmf" if heard.digits else "speech",
                    },
                    created_at=now,
                )
            )
        if said:
            session.add(
                Message(
                    conversation_id=call.conversation_id,
                    direction="out",
                    text=" ".join(said),
                    channel="voice",
                    payload={"call_sid": call.call_sid, "step": call.step},
                    created_at=now,
                )
            )

    def _store_status(self, form: dict[str, str], call_sid: str, status: str) -> None:
        now = self._clock()
        with self._sessions() as session, session.begin():
            store.insert_ignoring_conflict(
                session,
                VoiceCallEvent,
                {
                    "call_sid": call_sid[:64],
                    "status": status[:32],
                    "sequence_number": _int(form.get("SequenceNumber")),
                    "details": {k: form[k] for k in _STATUS_DETAILS if k in form},
                    "received_at": now,
                },
                ("call_sid", "status"),
            )
            call = session.scalars(
                select(VoiceCall).where(VoiceCall.call_sid == call_sid).with_for_update()
            ).first()
            if call is None:
                return
            call.status = _advance(call.status, status)
            duration = _int(form.get("CallDuration"))
            if duration is not None:
                call.duration_seconds = duration
            if status in _FINAL_STATUSES and call.ended_at is None:
                call.ended_at = now
            call.updated_at = now


def _advance(current: str | None, new: str) -> str:
    """The call's status after a report of ``new``: never back to an earlier one."""
    if current is None or _STATUS_RANK.get(new, 0) >= _STATUS_RANK.get(current, 0):
        return new[:32]
    return current


def _caller(value: str | None) -> str | None:
    """The caller's E.164 number, or None when it is withheld or not a real number.

    Twilio sends withheld numbers as ``anonymous`` or as made-up numbers such as ``+266696687``,
    which are not valid numbers.
    """
    number = phone_number(value or "")
    if not number.startswith("+"):
        return None
    try:
        valid = phonenumbers.is_valid_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None
    return number[:32] if valid else None


def _language(value: str | None) -> Language:
    return "en" if value == "en" else "nl"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
