"""``action_answer_question``: a customer's question for the knowledge base."""

from __future__ import annotations

import asyncio

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import ActionContext, tracker_language


class ActionAnswerQuestion(Action):
    """Answers with the best confident knowledge-base answer, otherwise offers a human.

    The answer is in the asker's language when the article exists in it. Customer channels only
    ever see customer-facing articles.
    """

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_answer_question"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        question = str((tracker.latest_message or {}).get("text") or "").strip()
        knowledge = self._context.knowledge
        if not question or knowledge is None:
            dispatcher.utter_message(response="utter_no_confident_answer")
            return []
        # Encoding and search are CPU work: keep the event loop free for other turns.
        result = await asyncio.to_thread(
            knowledge.suggest,
            question,
            language=tracker_language(tracker),
            audience="customer",
            k=1,
        )
        if result.abstained or not result.suggestions:
            dispatcher.utter_message(response="utter_no_confident_answer")
            return []
        best = result.suggestions[0]
        dispatcher.utter_message(
            response="utter_knowledge_answer", answer=best.answer, title=best.title
        )
        return []
