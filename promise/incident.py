"""One outage of the history the promise engine learns from."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

#: A later state of an outage: when it was recorded and the attributes it set.
Update = tuple[datetime, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Incident:
    """An outage: when it started, when (if yet) it was resolved, and what kind it was.

    Times are timezone-aware. ``resolved_at`` is None while the outage is open; such incidents
    are right-censored observations for the survival estimate. ``attributes`` keeps every extra
    column of the source (for example a ServiceNow ``priority``) so segments can use them.
    """

    id: str
    started_at: datetime
    resolved_at: datetime | None
    service: str
    cause: str
    region: str
    customers_affected: int | None = None
    description: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    #: For an unresolved incident whose record stopped being followed (say, closed without a
    #: resolution): the moment after which nothing is known. None: followed until now.
    censored_at: datetime | None = None
    #: What the operations system recorded as the outage was worked on (its state, who holds
    #: it, reassignments), in time order. Each update overrides the attributes it names from
    #: then on. Segments read only the opening ``attributes``; the remaining-time model reads
    #: :meth:`attributes_at` the moment a promise is made.
    updates: tuple[Update, ...] = ()

    def feature(self, name: str) -> str:
        """The value of a segment feature: a field (service, cause, region) or an attribute."""
        if name in ("service", "cause", "region"):
            return str(getattr(self, name))
        return self.attributes.get(name, "")

    def attributes_at(self, moment: datetime) -> Mapping[str, str]:
        """The attributes known at ``moment``: the opening ones, then every update up to it."""
        known = bisect_right(self.updates, moment, key=lambda update: update[0])
        if known == 0:
            return self.attributes
        merged = dict(self.attributes)
        for _, values in self.updates[:known]:
            merged.update(values)
        return merged

    def duration_minutes(self) -> float | None:
        """Minutes from start to resolution; None while open."""
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.started_at).total_seconds() / 60.0

    def observed_end(self, now: datetime) -> tuple[datetime, bool]:
        """(end of observation at ``now``, whether it ended in a resolution)."""
        if self.resolved_at is not None and self.resolved_at <= now:
            return self.resolved_at, True
        if self.resolved_at is None and self.censored_at is not None and self.censored_at < now:
            return max(self.censored_at, self.started_at), False
        return now, False
