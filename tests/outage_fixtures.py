"""Outages the tests of several packages share."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.storage.models import Outage, OutageArea


def add_utrecht_fiber_cut(session: Session, started_at: datetime) -> Outage:
    """The internet outage at postcode 3511 (``STO-26-00042``) the dialogue tests ask about."""
    outage = Outage(
        reference="STO-26-00042",
        service="internet",
        cause="fiber_cut",
        region_name="Utrecht",
        country="NL",
        started_at=started_at,
        customers_affected=1840,
        areas=[OutageArea(country="NL", postcode_prefix="3511")],
    )
    session.add(outage)
    session.commit()
    return outage
