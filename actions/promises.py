"""The promise told to the customer: when will their outage be fixed?

``action_check_outage`` tells it right after an outage is found (:func:`tell_promise`), and
``action_tell_promise`` answers a repair-time question about the outage found earlier in the
conversation. Every promise told is recorded as given (:meth:`PromiseService.record_given`), so it
is scored when the outage is resolved and renewed (with an apology) for subscribers before it
breaks. The ``promise`` slot carries it to the conversation API, in the shape of
``GET /api/v1/outages/{reference}/promise``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import select

from actions.context import ActionContext, tracker_channel, tracker_language
from bot import messages
from bot.promises.service import OutageResolved, PromiseView
from bot.settings import Language
from bot.storage.models import Conversation, Outage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromiseMessage:
    """The response that tells a promise, its values, and the ``promise`` slot's value."""

    response: str
    values: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] | None = None

    def utter(self, dispatcher: CollectingDispatcher) -> None:
        """Say it."""
        dispatcher.utter_message(response=self.response, **self.values)


def promise_message(
    view: PromiseView | None, now: datetime, language: Language, timezone: str
) -> PromiseMessage:
    """How ``view`` is told at ``now``: a clock time, else when the next update comes.

    ``utter_promise_deadline_explained`` adds how often similar outages were fixed in that time
    (the engine's evidence; not for a supervisor's override, which the evidence does not back);
    ``utter_promise_unknown`` when there is no promise at all.
    """
    if view is None:
        return PromiseMessage("utter_promise_unknown")
    payload = view.to_dict()
    if view.deadline is not None:
        when = messages.moment_phrase(view.deadline, now, language, timezone, "before")
        similar = view.explanation.get("similar")
        fixed_within = view.explanation.get("fixed_within")
        if (
            view.status != "overridden"
            and isinstance(similar, int)
            and isinstance(fixed_within, int)
            and 0 < fixed_within <= similar
        ):
            values = {
                "when": when,
                "similar": messages.count(similar, language),
                "fixed_within": messages.count(fixed_within, language),
            }
            return PromiseMessage("utter_promise_deadline_explained", values, payload)
        return PromiseMessage("utter_promise_deadline", {"when": when}, payload)
    if view.next_update_at is not None:
        when = messages.moment_phrase(view.next_update_at, now, language, timezone, "at")
        return PromiseMessage("utter_promise_next_update", {"when": when}, payload)
    return PromiseMessage("utter_promise_unknown", payload=payload)


def _give_promise(
    context: ActionContext, outage_id: int, tracker: Tracker, now: datetime
) -> PromiseView | None:
    """The current promise for the outage, recorded as given to this conversation.

    The recipient is the conversation (sender id) on the message's channel: the same address a
    subscription of this conversation gets, so a renewed promise reaches it.
    """
    promises = context.promises
    if promises is None:
        return None
    with context.sessions() as session, session.begin():
        view = promises.current(session, outage_id, now)
        if view is None:
            return None
        # Conversations of the Belofte service are stored; a direct Rasa conversation is not.
        known = session.get(Conversation, tracker.sender_id) is not None
        promises.record_given(
            session,
            view,
            channel=tracker_channel(tracker),
            recipient=tracker.sender_id,
            language=tracker_language(tracker),
            conversation_id=tracker.sender_id if known else None,
            now=now,
        )
        return view


async def tell_promise(
    context: ActionContext, dispatcher: CollectingDispatcher, tracker: Tracker, outage_id: int
) -> SlotSet:
    """Tell the promise for the open outage ``outage_id``; the ``promise`` slot event.

    If the engine fails, the customer still gets an answer (no time known yet) and the failure
    is logged: the outage itself was found and told.
    """
    now = context.clock()
    language = tracker_language(tracker)
    try:
        # The engine may need a (re)fit of a few seconds: keep the event loop free meanwhile.
        view = await asyncio.to_thread(_give_promise, context, outage_id, tracker, now)
    except OutageResolved:
        view = None
    except Exception:
        logger.exception("no promise for outage %s", outage_id)
        view = None
    message = promise_message(view, now, language, context.settings.timezone)
    message.utter(dispatcher)
    return SlotSet("promise", message.payload)


def _outage_id(context: ActionContext, reference: str) -> tuple[int, bool] | None:
    """The id of the outage ``reference`` and whether it is resolved; None if unknown."""
    with context.sessions() as session:
        row = session.execute(
            select(Outage.id, Outage.resolved_at).where(Outage.reference == reference)
        ).first()
    return None if row is None else (int(row[0]), row[1] is not None)


class ActionTellPromise(Action):
    """Answers "when is it fixed?" for the outage found earlier in the conversation.

    Sets ``outage_found`` again: true while the outage is open (the rules then offer updates),
    false when it was resolved in the meantime (it says so) or is unknown.
    """

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_tell_promise"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        outage = tracker.get_slot("outage")
        reference = outage.get("reference") if isinstance(outage, dict) else None
        found = None if reference is None else _outage_id(self._context, str(reference))
        if found is None or found[1]:
            dispatcher.utter_message(
                response="utter_outage_resolved" if found else "utter_promise_unknown"
            )
            return [
                SlotSet("outage", None),
                SlotSet("outage_found", False),
                SlotSet("promise", None),
            ]
        promise = await tell_promise(self._context, dispatcher, tracker, found[0])
        return [promise, SlotSet("outage_found", True)]
