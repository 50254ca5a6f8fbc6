"""One customer or agent turn: store it, choose the language, let Rasa answer, store the answer.

Every channel (HTTP API, console, and later Telegram, SMS, WhatsApp and voice) goes through
:class:`ConversationService`, so they all get the same grounded answer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from bot import messages
from bot.language import LanguageIdentifier, choose_language
from bot.rasa_client import DialogueEngine, RasaUnavailable
from bot.settings import Language, Settings
from bot.storage.models import Conversation, Message, SuggestionEvent
from bot.suggestions.knowledge import KnowledgeSuggester, audience_for, suggestions_for_turn


class InvalidMessage(ValueError):
    """The message cannot be handled (empty or too long); ``reason`` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AssistantUnavailable(RuntimeError):
    """The dialogue layer failed; the user's message is stored, ``reason`` is for the user."""

    def __init__(self, reason: str, language: Language) -> None:
        super().__init__(reason)
        self.reason = reason
        self.language = language


@dataclass(frozen=True)
class Reply:
    """One message from the assistant."""

    text: str
    buttons: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class TurnResult:
    """The assistant's answer to one message, with what it understood."""

    conversation_id: str
    replies: list[Reply]
    language: Language
    intent: dict[str, Any]
    entities: list[dict[str, Any]]
    outage: dict[str, Any] | None
    promise: dict[str, Any] | None = None
    suggestions: list[dict[str, Any]] = field(default_factory=list)


class ConversationService:
    """Handles turns of any channel against the dialogue engine and the database."""

    def __init__(
        self,
        settings: Settings,
        session_factory: Callable[[], Session],
        engine: DialogueEngine,
        identifier: LanguageIdentifier,
        knowledge: KnowledgeSuggester | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = session_factory
        self._engine = engine
        self._identifier = identifier
        self._knowledge = knowledge
        # Turns of one conversation are handled one at a time, so that the tracker read after a
        # turn (intent, slots set) belongs to that turn and not to a message sent meanwhile.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def validate(self, text: str, language: Language) -> str:
        """The stripped text, or :class:`InvalidMessage` saying what is wrong."""
        stripped = text.strip()
        if not stripped:
            raise InvalidMessage(messages.text("message_empty", language))
        if len(stripped) > self._settings.max_message_chars:
            raise InvalidMessage(
                messages.text("message_too_long", language, limit=self._settings.max_message_chars)
            )
        return stripped

    async def handle(self, conversation_id: str, text: str, channel: str) -> TurnResult:
        """Answer ``text`` in conversation ``conversation_id`` (created when unknown)."""
        async with self._locks[conversation_id]:
            return await self._handle(conversation_id, text, channel)

    async def _handle(self, conversation_id: str, text: str, channel: str) -> TurnResult:
        previous = self._conversation_language(conversation_id)
        if text.startswith("/") and previous is not None:
            # A button payload ("/inform{...}") is no language evidence: keep the conversation's.
            language = previous
        else:
            language = choose_language(
                self._identifier, text, previous, self._settings.default_language
            )
        text = self.validate(text, language)
        message_id = self._store_incoming(conversation_id, text, channel, language)
        # An agent's suggestions do not depend on the intent, so the retriever runs while Rasa
        # thinks: the console's reply then waits for the slower of the two, not for their sum.
        early: asyncio.Task[list[dict[str, Any]]] | None = None
        if self._knowledge is not None and audience_for(channel) == "agent":
            early = asyncio.create_task(
                asyncio.to_thread(
                    suggestions_for_turn, self._knowledge, text, language, channel, None
                )
            )
        try:
            turn = await self._engine.handle(
                conversation_id, text, language, {"channel": channel, "language": language}
            )
        except BaseException as exc:
            if early is not None:
                # Let the retrieval finish (threads cannot be cancelled) and drop its result.
                await asyncio.gather(early, return_exceptions=True)
            if not isinstance(exc, RasaUnavailable):
                raise
            self._mark(message_id, {"status": "unanswered", "error": str(exc)[:500]})
            raise AssistantUnavailable(
                messages.text("assistant_unavailable", language), language
            ) from exc

        replies = [
            Reply(text=str(r.get("text", "")), buttons=_buttons(r))
            for r in turn.replies
            if r.get("text")
        ]
        intent_name: str | None = turn.intent.get("name")
        intent: dict[str, Any] = {
            "name": intent_name,
            "confidence": float(turn.intent.get("confidence") or 0.0),
        }
        entities = [
            {k: e.get(k) for k in ("entity", "value", "start", "end", "confidence_entity")}
            for e in turn.entities
        ]
        outage = turn.slots_set_this_turn.get("outage")
        # The promise told in this turn (action_check_outage / action_tell_promise set the slot
        # to the shape of GET /api/v1/outages/{reference}/promise).
        promise = turn.slots_set_this_turn.get("promise")
        suggestions: list[dict[str, Any]] = []
        if early is not None:
            suggestions = await early
        elif self._knowledge is not None:
            suggestions = await asyncio.to_thread(
                suggestions_for_turn, self._knowledge, text, language, channel, intent_name
            )
        self._store_answer(message_id, conversation_id, channel, intent, replies, suggestions)
        return TurnResult(
            conversation_id=conversation_id,
            replies=replies,
            language=language,
            intent=intent,
            entities=entities,
            outage=outage if isinstance(outage, dict) else None,
            promise=promise if isinstance(promise, dict) else None,
            suggestions=suggestions,
        )

    # -- storage ---------------------------------------------------------------------------

    def _conversation_language(self, conversation_id: str) -> Language | None:
        with self._sessions() as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                return None
            return "en" if conversation.language == "en" else "nl"

    def _store_incoming(
        self, conversation_id: str, text: str, channel: str, language: Language
    ) -> int:
        """Commit the user's message before anything can fail, and return its id."""
        with self._sessions() as session, session.begin():
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                conversation = Conversation(id=conversation_id, channel=channel, language=language)
                session.add(conversation)
            else:
                conversation.language = language
                conversation.updated_at = datetime.now(UTC)
            message = Message(
                conversation_id=conversation_id,
                direction="in",
                text=text,
                channel=channel,
                payload={"status": "received"},
            )
            session.add(message)
            session.flush()
            return message.id

    def _mark(self, message_id: int, payload: dict[str, Any]) -> None:
        with self._sessions() as session, session.begin():
            message = session.get(Message, message_id)
            if message is not None:
                message.payload = payload

    def _store_answer(
        self,
        message_id: int,
        conversation_id: str,
        channel: str,
        intent: dict[str, Any],
        replies: list[Reply],
        suggestions: list[dict[str, Any]],
    ) -> None:
        now = datetime.now(UTC)
        with self._sessions() as session, session.begin():
            incoming = session.get(Message, message_id)
            if incoming is not None:
                incoming.intent = intent["name"]
                incoming.intent_confidence = intent["confidence"]
                incoming.payload = {"status": "answered"}
            for reply in replies:
                session.add(
                    Message(
                        conversation_id=conversation_id,
                        direction="out",
                        text=reply.text,
                        channel=channel,
                        payload={"buttons": reply.buttons} if reply.buttons else None,
                    )
                )
            for suggestion in suggestions:
                session.add(
                    SuggestionEvent(
                        suggestion_id=suggestion["id"],
                        conversation_id=conversation_id,
                        article_id=suggestion["article_id"],
                        event="shown",
                        channel=channel,
                        created_at=now,
                    )
                )


def _buttons(reply: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
        for b in reply.get("buttons") or []
    ]
