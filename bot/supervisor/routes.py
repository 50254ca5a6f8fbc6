"""``/supervisor``: promise review, targets with their effect, calibration, the message queue.

The page (supervisors and admins) is rendered on the server; its buttons call the JSON API:
approve, override and targets in :mod:`bot.api.outages`, dead letters in
:mod:`bot.delivery.api`, and here:

- ``GET /api/v1/supervisor/calibration?weeks=8``: kept rates per service and ISO week with
  Wilson 95 % intervals, and promised against actual time (JSON);
- ``GET /api/v1/supervisor/calibration.svg?weeks=8&lang=nl``: the same as charts;
- ``GET /api/v1/supervisor/broken-promises?weeks=8&limit=100&offset=0``: broken promises and
  their follow-ups, a page at a time.

Those take a supervisor or admin session or the ``X-API-Key``. Handlers are plain functions
(FastAPI's thread pool): they use the blocking database session, and the first promise may fit
the engine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.accounts import CurrentUser, page_user
from bot.api.deps import app_promises, app_sessions, app_settings
from bot.api.outages import SupervisorOrKey
from bot.delivery.store import count_dead, dead_letters, queue_health
from bot.storage.models import Outage
from bot.supervisor.charts import calibration_svg
from bot.supervisor.report import (
    active_outages,
    broken_promises,
    calibration,
    count_active_outages,
)
from bot.web import render_page, translate

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
TEMPLATES_DIR = _HERE / "templates"

router = APIRouter()

#: Broken promise decisions per page of ``/supervisor`` (older ones are a link away).
BROKEN_PAGE = 50
#: Open outages per page of ``/supervisor``: each asks the promise engine for its promise.
OUTAGE_PAGE = 25

#: The chart labels (keys ``supervisor.chart.*`` of ``ui/<lang>.yml``).
_CHART_LABELS = (
    "kept_rate",
    "target",
    "per_week",
    "per_service",
    "week",
    "kept",
    "broken",
    "promised_vs_actual",
    "promised_hours",
    "actual_hours",
    "no_data",
)


def _weeks_query(request: Request, weeks: int | None) -> int:
    settings = app_settings(request)
    return settings.supervisor_calibration_weeks if weeks is None else weeks


Weeks = Annotated[
    int | None,
    Query(ge=1, le=52, description="The period: this many weeks up to now (default: settings)."),
]


# -- the page ---------------------------------------------------------------------------------


@router.get("/supervisor", response_class=HTMLResponse, include_in_schema=False)
def supervisor_page(
    request: Request,
    user: Annotated[CurrentUser, Depends(page_user("supervisor"))],
    weeks: Weeks = None,
    broken_offset: Annotated[int, Query(ge=0)] = 0,
    outages_offset: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    """The supervisors' page (supervisors and admins; others get the 403 page)."""
    settings = app_settings(request)
    period = _weeks_query(request, weeks)
    zone = ZoneInfo(settings.timezone)
    now = datetime.now(UTC)
    promises = app_promises(request)
    with app_sessions(request)() as session, session.begin():
        # Reading a promise may store the engine's new suggestion, as the promise API does.
        outages = active_outages(session, promises, now, limit=OUTAGE_PAGE, offset=outages_offset)
        open_outages = count_active_outages(session)
        targets = promises.targets(session)
        figures = calibration(session, promises, now=now, weeks=period, zone=zone)
        # One more than a page: whether there is an older page.
        broken = broken_promises(
            session, now=now, weeks=period, limit=BROKEN_PAGE + 1, offset=broken_offset
        )
        health = queue_health(session, now=now)
        dead_rows = dead_letters(session, limit=50)
        dead_total = count_dead(session)
        references = _references(session, {row.outage_id for row in dead_rows})
        dead = [
            {
                "id": row.id,
                "template": str((row.payload or {}).get("template") or row.kind),
                "outage": references.get(row.outage_id),
                "channel": row.channel,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "last_attempt_at": row.last_attempt_at,
            }
            for row in dead_rows
        ]

    def clock(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%H:%M")

    def day(moment: datetime | None) -> str:
        return "" if moment is None else moment.astimezone(zone).strftime("%d-%m")

    def local_input(moment: datetime | None) -> str:
        # The value of an <input type=datetime-local>: wall-clock time in the service's zone.
        return "" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.0f}"

    context: dict[str, Any] = {
        "outages": outages,
        "open_outages": open_outages,
        "outages_first": outages_offset + 1,
        "outages_previous": _previous_page(outages_offset, OUTAGE_PAGE),
        "outages_next": _next_page(
            outages_offset, OUTAGE_PAGE, open_outages > outages_offset + OUTAGE_PAGE
        ),
        "targets": targets,
        "calibration": figures,
        "weeks": period,
        "max_weeks": 52,
        "broken": broken[:BROKEN_PAGE],
        "broken_newer": _previous_page(broken_offset, BROKEN_PAGE),
        "broken_older": _next_page(broken_offset, BROKEN_PAGE, len(broken) > BROKEN_PAGE),
        "health": health,
        "dead": dead,
        "dead_total": dead_total,
        "timezone": settings.timezone,
        "now": now,
        "today": day(now),
        "clock": clock,
        "day": day,
        "local_input": local_input,
        "pct": pct,
    }
    return render_page(request, "supervisor.html", user, context)


def _previous_page(offset: int, size: int) -> int | None:
    """The offset of the page before the one at ``offset``; None on the first page."""
    return max(offset - size, 0) if offset else None


def _next_page(offset: int, size: int, more: bool) -> int | None:
    """The offset of the page after the one at ``offset``; None unless there is ``more``."""
    return offset + size if more else None


def _references(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Outage.id, Outage.reference).where(Outage.id.in_(ids)))
    return {outage_id: reference for outage_id, reference in rows}


# -- the JSON API ---------------------------------------------------------------------------------


class KeptRateOut(BaseModel):
    """``kept`` of ``n`` scored promises; Wilson 95 % interval [low, high]; mean target."""

    key: str
    kept: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    target: float | None


class ScoredPromiseOut(BaseModel):
    """One scored promise: promised and actual time from when it was given, in minutes."""

    service: str
    week: str
    promised_minutes: float
    actual_minutes: float
    kept: bool


class CalibrationOut(BaseModel):
    """Kept rates of the promises given in [since, until), by service and ISO week."""

    weeks: int
    since: datetime
    until: datetime
    overall: KeptRateOut
    by_service: list[KeptRateOut]
    by_week: list[KeptRateOut]
    by_service_week: list[KeptRateOut]
    targets: dict[str, float]
    promised_vs_actual: list[ScoredPromiseOut]


class BrokenPromiseOut(BaseModel):
    """A broken promise decision and its follow-up messages by template and outbox status."""

    outage: str
    service: str
    deadline: datetime
    resolved_at: datetime
    first_given_at: datetime
    told: int
    late_minutes: int
    follow_ups: dict[str, dict[str, int]]


def _calibration(request: Request, weeks: int | None) -> Any:
    settings = app_settings(request)
    now = datetime.now(UTC)
    with app_sessions(request)() as session:
        return calibration(
            session,
            app_promises(request),
            now=now,
            weeks=_weeks_query(request, weeks),
            zone=ZoneInfo(settings.timezone),
        )


@router.get("/api/v1/supervisor/calibration", response_model=CalibrationOut, tags=["supervisor"])
def get_calibration(request: Request, _user: SupervisorOrKey, weeks: Weeks = None) -> Any:
    """How often the promises of the last weeks were kept, with Wilson 95 % intervals."""
    return _calibration(request, weeks).to_dict()


@router.get(
    "/api/v1/supervisor/calibration.svg",
    response_class=Response,
    tags=["supervisor"],
    responses={200: {"content": {"image/svg+xml": {}}}},
)
def get_calibration_svg(
    request: Request,
    user: SupervisorOrKey,
    weeks: Weeks = None,
    lang: Annotated[Literal["nl", "en"] | None, Query()] = None,
) -> Response:
    """The calibration charts as SVG, labelled in ``lang`` (default: the user's language)."""
    language = lang or (user.language if user is not None else "nl")
    labels = {key: translate(language, f"supervisor.chart.{key}") for key in _CHART_LABELS}
    svg = calibration_svg(_calibration(request, weeks), labels)
    return Response(content=svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get(
    "/api/v1/supervisor/broken-promises",
    response_model=list[BrokenPromiseOut],
    tags=["supervisor"],
)
def get_broken_promises(
    request: Request,
    _user: SupervisorOrKey,
    weeks: Weeks = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Decisions per page.")] = 100,
    offset: Annotated[int, Query(ge=0, description="Decisions to skip (newest first).")] = 0,
) -> Any:
    """The broken promises of the last weeks, latest first, with their follow-up messages.

    A page of ``limit`` promise decisions; a shorter page is the last.
    """
    now = datetime.now(UTC)
    with app_sessions(request)() as session:
        rows = broken_promises(
            session, now=now, weeks=_weeks_query(request, weeks), limit=limit, offset=offset
        )
    return [row.to_dict() for row in rows]
