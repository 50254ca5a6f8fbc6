"""``action_handoff``: the customer asked for a human."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import ActionContext
from bot.storage.models import Conversation, Handoff


class ActionHandoff(Action):
    """Records the request so the queue of agents sees it, then tells the customer."""

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_handoff"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        reason = (tracker.latest_message or {}).get("text")
        with self._context.sessions() as session, session.begin():
            # Handoffs hang off a stored conversation; Rasa-only test runs may lack one.
            if session.get(Conversation, tracker.sender_id) is not None:
                session.add(
                    Handoff(
                        conversation_id=tracker.sender_id,
                        reason=str(reason)[:500] if reason else None,
                        created_at=self._context.clock(),
                    )
                )
        dispatcher.utter_message(response="utter_handoff")
        return []
