"""``action_subscribe_updates`` and ``action_unsubscribe``."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import select

from actions.context import ActionContext, tracker_channel, tracker_language
from bot.storage.models import Outage
from bot.subscriptions.service import subscribe, unsubscribe


class ActionSubscribeUpdates(Action):
    """Stores the customer's wish to be told when the outage found earlier is fixed."""

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_subscribe_updates"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        outage = tracker.get_slot("outage")
        if not isinstance(outage, dict) or "reference" not in outage:
            dispatcher.utter_message(response="utter_subscribe_needs_outage")
            return []
        with self._context.sessions() as session, session.begin():
            outage_id = session.scalar(
                select(Outage.id).where(Outage.reference == outage["reference"])
            )
            subscribe(
                session,
                channel=tracker_channel(tracker),
                address=tracker.sender_id,
                language=tracker_language(tracker),
                now=self._context.clock(),
                outage_id=outage_id,
                conversation_id=tracker.sender_id,
                postcode=tracker.get_slot("postcode"),
                service=tracker.get_slot("service"),
            )
        dispatcher.utter_message(response="utter_subscribed")
        return []


class ActionUnsubscribe(Action):
    """Cancels the customer's subscriptions on this channel."""

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_unsubscribe"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        with self._context.sessions() as session, session.begin():
            unsubscribe(
                session,
                channel=tracker_channel(tracker),
                address=tracker.sender_id,
                now=self._context.clock(),
            )
        dispatcher.utter_message(response="utter_unsubscribed")
        return []
