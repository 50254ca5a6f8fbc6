"""Validation of the outage form: postcode and service, normalised for the lookup."""

from __future__ import annotations

from typing import Any

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.outages.postcodes import normalise_service, parse_postcode


class ValidateOutageForm(FormValidationAction):
    """``validate_outage_form``: accepts Dutch and Belgian postcodes and service synonyms."""

    def name(self) -> str:
        return "validate_outage_form"

    def validate_postcode(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> dict[str, Any]:
        """Keep a postcode in canonical form ("3511 AB", "2000"); ask again for anything else."""
        postcode = parse_postcode(str(slot_value or ""))
        if postcode is None:
            dispatcher.utter_message(response="utter_invalid_postcode")
            return {"postcode": None}
        return {"postcode": str(postcode)}

    def validate_service(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> dict[str, Any]:
        """Map synonyms ("wifi", "stroom") to the canonical service; ask again if unknown."""
        service = normalise_service(str(slot_value or ""))
        if service is None:
            dispatcher.utter_message(response="utter_invalid_service")
            return {"service": None}
        return {"service": service}
