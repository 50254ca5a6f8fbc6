"""``action_answer_question``: a customer's question for the knowledge base."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import ActionContext


class ActionAnswerQuestion(Action):
    """Answers from the knowledge base when it is confident, otherwise offers a human.

    Until the knowledge retriever is wired in, there is never a confident answer, so the customer
    is offered a human rather than a guess.
    """

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_answer_question"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        dispatcher.utter_message(response="utter_no_confident_answer")
        return []
