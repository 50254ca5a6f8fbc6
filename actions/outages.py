"""``action_check_outage``: is there a known outage for the customer's postcode and service?"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import ActionContext, tracker_language
from actions.promises import tell_promise
from bot import messages
from bot.outages.postcodes import parse_postcode
from bot.outages.service import OutageView, find_active_outages


def outage_payload(outage: OutageView) -> dict[str, Any]:
    """The outage as the ``outage`` slot and the API's ``outage`` field carry it."""
    return {
        "reference": outage.reference,
        "service": outage.service,
        "cause": outage.cause,
        "region": outage.region_name,
        "country": outage.country,
        "postcodes": list(outage.postcodes),
        "started_at": outage.started_at.isoformat(),
        "customers_affected": outage.customers_affected,
        "status": "active",
    }


class ActionCheckOutage(Action):
    """Looks up active outages for the ``postcode`` and ``service`` slots and tells the customer.

    It says since when and how many customers are affected and, for an outage found, when it is
    expected to be fixed (the promise engine's promise, see :func:`actions.promises.tell_promise`;
    or when the next update comes). Sets ``outage``, ``outage_found`` and ``promise``.
    """

    def __init__(self, context: ActionContext) -> None:
        self._context = context

    def name(self) -> str:
        return "action_check_outage"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        language = tracker_language(tracker)
        service = tracker.get_slot("service")
        postcode = parse_postcode(str(tracker.get_slot("postcode") or ""))
        service_name = messages.service_name(service, language)
        if postcode is None:
            dispatcher.utter_message(response="utter_invalid_postcode")
            return _not_found()

        with self._context.sessions() as session:
            found = find_active_outages(session, postcode, service, now=self._context.clock())
        if not found:
            dispatcher.utter_message(
                response="utter_no_outage", service_name=service_name, area=str(postcode)
            )
            return _not_found()

        outage = found[0]
        dispatcher.utter_message(
            response="utter_outage_found",
            service_name=service_name,
            area=f"{outage.region_name} ({postcode})",
            since=messages.clock_time(outage.started_at, self._context.settings.timezone),
            affected=messages.count(outage.customers_affected, language),
        )
        promise = await tell_promise(self._context, dispatcher, tracker, outage.id)
        return [SlotSet("outage", outage_payload(outage)), SlotSet("outage_found", True), promise]


def _not_found() -> list[EventType]:
    return [SlotSet("outage", None), SlotSet("outage_found", False), SlotSet("promise", None)]
