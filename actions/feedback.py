"""``action_record_feedback``: the customer's observation goes to the CX team."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import ActionContext, tracker_channel, tracker_language
from bot.feedback.service import record_feedback
from bot.storage.models import Conversation


class ActionRecordFeedback(Action):
    """Stores ``feedback_text`` (committed before thanking) and clears the slot."""

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_record_feedback"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        text = str(tracker.get_slot("feedback_text") or "").strip()
        if text:
            with self._context.sessions() as session, session.begin():
                # Keep the feedback even when Rasa is driven without the service (no stored
                # conversation to link it to).
                known = session.get(Conversation, tracker.sender_id) is not None
                record_feedback(
                    session,
                    text=text,
                    channel=tracker_channel(tracker),
                    source="customer",
                    language=tracker_language(tracker),
                    now=self._context.clock(),
                    conversation_id=tracker.sender_id if known else None,
                    # Into the CX inbox like agents' observations, and to the CX webhook if set.
                    forward=self._context.settings.cx_webhook_url is not None,
                )
        dispatcher.utter_message(response="utter_feedback_thanks")
        return [SlotSet("feedback_text", None)]
