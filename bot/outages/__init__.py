"""Outages: postcode and service parsing, and lookups of active and past outages."""

from bot.outages.postcodes import Postcode, normalise_service, parse_postcode
from bot.outages.service import (
    OutageView,
    ResolvedOutage,
    find_active_outages,
    get_outage,
    outage_history,
)

__all__ = [
    "OutageView",
    "Postcode",
    "ResolvedOutage",
    "find_active_outages",
    "get_outage",
    "normalise_service",
    "outage_history",
    "parse_postcode",
]
