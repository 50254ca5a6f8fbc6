"""Outage lookups: what is down at a postcode now, and how long past outages lasted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from bot.outages.postcodes import Postcode
from bot.storage.models import Outage, OutageArea


@dataclass(frozen=True, slots=True)
class OutageView:
    """An active outage as the conversation layer needs it (detached from the session)."""

    id: int
    reference: str
    service: str
    cause: str
    region_name: str
    country: str | None
    started_at: datetime
    customers_affected: int
    postcodes: tuple[str, ...]
    description: str | None = None

    def elapsed(self, now: datetime | None = None) -> timedelta:
        """How long the outage has been going on at ``now`` (default: the current time)."""
        return (now or datetime.now(UTC)) - self.started_at


@dataclass(frozen=True, slots=True)
class ResolvedOutage:
    """A finished outage with its duration: the raw material for calibrated promises."""

    id: int
    reference: str
    service: str
    cause: str
    region_name: str
    country: str | None
    started_at: datetime
    resolved_at: datetime
    customers_affected: int

    @property
    def duration(self) -> timedelta:
        """Time from start to resolution."""
        return self.resolved_at - self.started_at

    @property
    def duration_minutes(self) -> float:
        """The duration in minutes."""
        return self.duration.total_seconds() / 60.0


def _view(outage: Outage) -> OutageView:
    return OutageView(
        id=outage.id,
        reference=outage.reference,
        service=outage.service,
        cause=outage.cause,
        region_name=outage.region_name,
        country=outage.country,
        started_at=outage.started_at,
        customers_affected=outage.customers_affected,
        postcodes=tuple(sorted({area.postcode_prefix for area in outage.areas})),
        description=outage.description,
    )


def find_active_outages(
    session: Session,
    postcode: Postcode,
    service: str | None,
    now: datetime | None = None,
) -> list[OutageView]:
    """Outages active at ``now`` touching ``postcode``'s 4-digit area, newest first.

    With Dutch letters only Dutch areas match; a bare four-digit code matches Dutch and Belgian
    areas (3511 is Utrecht in NL and Hasselt in BE). ``service`` (canonical name) narrows the
    result; None returns every service. ``now`` defaults to the current time; an outage counts as
    active at ``now`` when it started by then and was not resolved by then, so past moments can
    be queried too.
    """
    if now is None:
        now = datetime.now(UTC)
    countries: Sequence[str] = ("NL",) if postcode.country == "NL" else ("NL", "BE")
    in_area = (
        select(OutageArea.outage_id)
        .where(OutageArea.postcode_prefix == postcode.digits)
        .where(OutageArea.country.in_(countries))
    )
    query = (
        select(Outage)
        .where(Outage.id.in_(in_area))
        .where(Outage.started_at <= now)
        .where(or_(Outage.resolved_at.is_(None), Outage.resolved_at > now))
        .options(selectinload(Outage.areas))
        .order_by(Outage.started_at.desc(), Outage.id.desc())
    )
    if service is not None:
        query = query.where(Outage.service == service)
    return [_view(outage) for outage in session.scalars(query)]


def get_outage(session: Session, reference: str) -> OutageView | None:
    """The outage with this reference (active or not), or None."""
    outage = session.scalars(
        select(Outage).where(Outage.reference == reference).options(selectinload(Outage.areas))
    ).one_or_none()
    return None if outage is None else _view(outage)


def outage_history(
    session: Session,
    service: str | None = None,
    since: datetime | None = None,
    *,
    cause: str | None = None,
) -> list[ResolvedOutage]:
    """Resolved outages, oldest first, optionally for one service/cause and from ``since`` on.

    Active outages are left out: their duration is not known yet (the promise engine treats them
    as censored observations separately).
    """
    query = select(
        Outage.id,
        Outage.reference,
        Outage.service,
        Outage.cause,
        Outage.region_name,
        Outage.country,
        Outage.started_at,
        Outage.resolved_at,
        Outage.customers_affected,
    ).where(Outage.resolved_at.is_not(None))
    if service is not None:
        query = query.where(Outage.service == service)
    if cause is not None:
        query = query.where(Outage.cause == cause)
    if since is not None:
        query = query.where(Outage.started_at >= since)
    query = query.order_by(Outage.started_at, Outage.id)
    result: list[ResolvedOutage] = []
    for row in session.execute(query):
        resolved_at = row.resolved_at
        assert resolved_at is not None  # filtered in SQL
        result.append(
            ResolvedOutage(
                id=row.id,
                reference=row.reference,
                service=row.service,
                cause=row.cause,
                region_name=row.region_name,
                country=row.country,
                started_at=row.started_at,
                resolved_at=resolved_at,
                customers_affected=row.customers_affected,
            )
        )
    return result
