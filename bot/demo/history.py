"""The demo provider's outage history as promise-engine incidents.

``belofte promise backtest`` needs a history without a database or a CSV export; this converts
the outages :func:`bot.demo.seed.generate_demo_outages` produces, so the backtest sees exactly
the history that ``make run`` stores.
"""

from __future__ import annotations

from datetime import datetime

from bot.demo.seed import DemoOutage, generate_demo_outages
from bot.promises.service import incident_of
from promise.incident import Incident


def demo_incidents(now: datetime, seed: int = 7) -> list[Incident]:
    """Lumen's demo outages up to ``now`` (timezone-aware) as incidents, oldest first.

    Deterministic for a given ``now`` and ``seed``, like the demo data itself. The active
    outages come back open (``resolved_at`` None); ``country`` and ``reference`` are kept as
    attributes so segments and reports can use them.
    """
    return [_incident(outage) for outage in generate_demo_outages(now, seed)]


def _incident(outage: DemoOutage) -> Incident:
    return incident_of(outage, {"country": outage.country, "reference": outage.reference})
