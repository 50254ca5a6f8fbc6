"""Next-best answers for a conversation turn, from the knowledge retriever.

Agents get up to three suggestions on every turn, confident or not (each marked, so the console
can show how sure it is); customers get them only on questions, and only confident ones: a wrong
answer to a customer is worse than the offer of a human.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from bot.settings import Language

#: Channels on which the user is an agent of the provider, not a customer.
AGENT_CHANNELS = frozenset({"console", "agent"})
#: Intents for which customers get knowledge-base suggestions.
QUESTION_INTENTS = frozenset({"ask_question"})

Audience = Literal["customer", "agent"]


class SuggestionLike(Protocol):
    """What the service reads of one suggestion (see :class:`knowledge.Suggestion`)."""

    @property
    def suggestion_id(self) -> str: ...
    @property
    def family_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def answer(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def confidence(self) -> float: ...
    @property
    def passage(self) -> str: ...
    @property
    def url(self) -> str | None: ...


class SuggestionSetLike(Protocol):
    """What the service reads of a retriever's answer (see :class:`knowledge.SuggestionSet`)."""

    @property
    def abstained(self) -> bool: ...
    @property
    def suggestions(self) -> Sequence[SuggestionLike]: ...
    @property
    def candidates(self) -> Sequence[SuggestionLike]: ...


class KnowledgeSuggester(Protocol):
    """The retriever as the service uses it (:class:`knowledge.Retriever`)."""

    def suggest(
        self, text: str, *, language: Language, audience: Audience, k: int = 3
    ) -> SuggestionSetLike:
        """Up to ``k`` answers, one per article family, or an abstention."""
        ...


def audience_for(channel: str) -> Audience:
    """``agent`` on agent channels (console), else ``customer``."""
    return "agent" if channel in AGENT_CHANNELS else "customer"


def as_dict(suggestion: SuggestionLike, *, confident: bool) -> dict[str, Any]:
    """A suggestion as the API's ``suggestions`` items carry it."""
    return {
        "id": suggestion.suggestion_id,
        "article_id": suggestion.family_id,
        "title": suggestion.title,
        "answer": suggestion.answer,
        "language": suggestion.language,
        "score": round(float(suggestion.score), 4),
        "confidence": round(float(suggestion.confidence), 4),
        "confident": confident,
        "passage": suggestion.passage,
        "url": suggestion.url,
    }


def suggestions_for_turn(
    knowledge: KnowledgeSuggester,
    text: str,
    language: Language,
    channel: str,
    intent: str | None,
    k: int = 3,
) -> list[dict[str, Any]]:
    """The suggestions to return for one turn (empty for customers' non-questions)."""
    audience = audience_for(channel)
    if audience == "customer" and intent not in QUESTION_INTENTS:
        return []
    result = knowledge.suggest(text, language=language, audience=audience, k=k)
    if audience == "agent":
        return [as_dict(s, confident=not result.abstained) for s in result.candidates[:k]]
    return [as_dict(s, confident=True) for s in result.suggestions[:k]]
