"""``action_set_language``: the conversation's language, from the message's metadata.

The Belofte service chooses the language of every message (``bot.language``) and sends it as
message metadata. This action is the ``language`` slot's custom mapping, so Rasa's
``action_extract_slots`` runs it right after each user message, before any response is chosen:
the reply to that very message is in its language, the first message of a conversation too.
"""

from __future__ import annotations

from typing import Any, get_args

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.settings import Language

#: The values of the ``language`` slot (domain.yml).
LANGUAGES: tuple[str, ...] = get_args(Language)


class ActionSetLanguage(Action):
    """Sets ``language`` to the metadata's language when it differs; otherwise changes nothing."""

    def name(self) -> str:
        return "action_set_language"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        metadata: dict[str, Any] = (tracker.latest_message or {}).get("metadata") or {}
        language = metadata.get("language")
        # Messages that did not come through the service (rasa shell, tests of the model) carry
        # no language: the slot keeps its value.
        if language not in LANGUAGES or tracker.get_slot("language") == language:
            return []
        return [SlotSet("language", language)]
