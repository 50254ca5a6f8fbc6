"""``/cx`` and the feedback API: observations in, the CX inbox, themes, CSV, forwarding.

- ``POST /api/v1/feedback`` (any logged-in role, CSRF): the "Feedback to CX" dialog. The row
  (and its forward, when a webhook is configured) is committed before the 201; the forwarder
  is woken after, and posts from the database.
- ``GET /cx`` (cx, admin): the inbox page; ``GET /api/v1/cx/observations`` the same as JSON;
  ``PATCH /api/v1/cx/observations/{id}`` moves it between states (recorded: who, when, from,
  to); ``POST /api/v1/cx/observations/{id}/comments``; ``GET /api/v1/cx/observations.csv``.
- ``GET /api/v1/cx/themes``: observations grouped by meaning (:mod:`bot.cx.themes`).
- ``GET /api/v1/cx/forwards`` and ``POST /api/v1/cx/forwards/retry``: the webhook forwards.

Handlers that touch the database are plain functions (FastAPI's thread pool): the sessions
are blocking.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from bot.accounts import CurrentUser, page_user, require_role
from bot.api.deps import app_sessions, app_settings
from bot.cx.forwarding import WebhookForwarder, forward_counts, retry_failed
from bot.cx.themes import ThemeService
from bot.feedback.service import (
    Observation,
    add_comment,
    change_state,
    count_by_state,
    list_observations,
    record_feedback,
)
from bot.storage.models import FEEDBACK_CATEGORIES, FEEDBACK_STATES, Conversation, Outage
from bot.web import render_page, translate
from knowledge.encoders import EncoderUnavailableError

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
TEMPLATES_DIR = _HERE / "templates"

Category = Literal["process", "product", "knowledge_base", "promise", "tooling", "other"]
State = Literal["new", "triaged", "actioned", "dismissed"]
#: Characters that make a spreadsheet read a cell as a formula (CSV injection), also after
#: leading tab or carriage return which some spreadsheets skip.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Most observations on the page at once (the CSV export has them all).
PAGE_LIMIT = 200

router = APIRouter()
CxUser = Annotated[CurrentUser, Depends(require_role("cx"))]
AnyUser = Annotated[CurrentUser, Depends(require_role())]


def _now() -> datetime:
    return datetime.now(UTC)


# -- feedback in -------------------------------------------------------------------------------


class FeedbackIn(BaseModel):
    """One observation from the "Feedback to CX" dialog."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000, description="What was noticed.")
    category: Category
    conversation_id: str | None = Field(default=None, max_length=128)
    outage_reference: str | None = Field(default=None, max_length=32)
    anonymous: bool = Field(
        default=False, description="Keep no user, name, session or address with it."
    )


class FeedbackOut(BaseModel):
    """The stored observation."""

    id: int
    state: State
    category: Category
    anonymous: bool
    created_at: datetime


def _unprocessable(user: CurrentUser, key: str, **params: object) -> HTTPException:
    return HTTPException(422, detail=translate(user.language, key, **params))


@router.post("/api/v1/feedback", status_code=201, tags=["cx"])
def send_feedback(body: FeedbackIn, request: Request, user: AnyUser) -> FeedbackOut:
    """Store an observation for the CX team (committed before this answers 201)."""
    settings = app_settings(request)
    text = body.text.strip()
    if not text:
        raise _unprocessable(user, "cx.error.text_empty")
    if len(text) > settings.cx_feedback_max_chars:
        raise _unprocessable(user, "cx.error.text_too_long", max=settings.cx_feedback_max_chars)
    with app_sessions(request)() as session, session.begin():
        conversation_id = body.conversation_id or None
        if conversation_id is not None and session.get(Conversation, conversation_id) is None:
            raise _unprocessable(user, "cx.error.unknown_conversation", id=conversation_id)
        outage_id = None
        if body.outage_reference:
            outage_id = session.scalar(
                select(Outage.id).where(Outage.reference == body.outage_reference)
            )
            if outage_id is None:
                raise _unprocessable(
                    user, "cx.error.unknown_outage", reference=body.outage_reference
                )
        feedback = record_feedback(
            session,
            text=text,
            channel="web",
            source="agent",
            language=user.language,
            now=_now(),
            conversation_id=conversation_id,
            # Anonymous: nothing of the user goes in (and the session id and the client
            # address are never stored with an observation at all).
            author=None if body.anonymous else user.display_name,
            user_id=None if body.anonymous else user.id,
            category=body.category,
            outage_id=outage_id,
            anonymous=body.anonymous,
            forward=settings.cx_webhook_url is not None,
        )
        out = FeedbackOut(
            id=feedback.id,
            state="new",
            category=body.category,
            anonymous=body.anonymous,
            created_at=feedback.created_at,
        )
    forwarder: WebhookForwarder | None = getattr(request.app.state, "cx_forwarder", None)
    if forwarder is not None:
        forwarder.wake()
    return out


# -- the inbox -----------------------------------------------------------------------------------


def _observation_json(observation: Observation) -> dict[str, Any]:
    f = observation.feedback
    return {
        "id": f.id,
        "created_at": f.created_at.isoformat(),
        "text": f.text,
        "category": f.category,
        "state": f.state,
        "source": f.source,
        "channel": f.channel,
        "language": f.language,
        "anonymous": f.anonymous,
        "author": None if f.anonymous else f.author,
        "conversation_id": f.conversation_id,
        "outage_reference": observation.outage_reference,
        "forward_status": observation.forward_status,
        "comments": [
            {"author": c.author, "text": c.text, "created_at": c.created_at.isoformat()}
            for c in observation.comments
        ],
        "changes": [
            {
                "from": c.from_state,
                "to": c.to_state,
                "by": c.changed_by,
                "at": c.changed_at.isoformat(),
            }
            for c in observation.changes
        ],
    }


def _load(
    request: Request,
    states: list[State] | None,
    categories: list[Category] | None,
    limit: int | None,
    offset: int = 0,
) -> list[Observation]:
    with app_sessions(request)() as session:
        observations = list_observations(
            session,
            states=states or (),
            categories=categories or (),
            limit=limit,
            offset=offset,
        )
        session.expunge_all()
        return observations


@router.get("/cx", response_class=HTMLResponse, include_in_schema=False)
def cx_page(
    request: Request,
    user: Annotated[CurrentUser, Depends(page_user("cx"))],
    state: Annotated[State | Literal[""], Query()] = "",
    category: Annotated[Category | Literal[""], Query()] = "",
) -> HTMLResponse:
    """The CX inbox: observations, their states and comments, themes, forwarding."""
    settings = app_settings(request)
    observations = _load(
        request, [state] if state else None, [category] if category else None, PAGE_LIMIT
    )
    filters = {key: value for key, value in (("state", state), ("category", category)) if value}
    with app_sessions(request)() as session:
        counts = count_by_state(session)
        forwards = forward_counts(session)
    zone = ZoneInfo(settings.timezone)
    return render_page(
        request,
        "cx.html",
        user,
        {
            "observations": observations,
            "counts": counts,
            "forwards": forwards,
            "webhook_configured": settings.cx_webhook_url is not None,
            "states": FEEDBACK_STATES,
            "categories": FEEDBACK_CATEGORIES,
            "state_filter": state,
            "category_filter": category,
            "local": lambda moment: moment.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "can_open_outages": user.has_role("supervisor"),
            "page_limit": PAGE_LIMIT,
            "export_url": "/api/v1/cx/observations.csv"
            + (f"?{urlencode(filters)}" if filters else ""),
        },
    )


@router.get("/api/v1/cx/observations", tags=["cx"])
def observations(
    request: Request,
    user: CxUser,
    state: Annotated[list[State] | None, Query()] = None,
    category: Annotated[list[Category] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Observations, newest first (filters: one or more ``state`` and ``category``)."""
    rows = _load(request, state, category, limit, offset)
    return {"observations": [_observation_json(o) for o in rows]}


class StateIn(BaseModel):
    """The state to move an observation to."""

    model_config = ConfigDict(extra="forbid")
    state: State


@router.patch("/api/v1/cx/observations/{feedback_id}", tags=["cx"])
def set_state(feedback_id: int, body: StateIn, request: Request, user: CxUser) -> dict[str, Any]:
    """Move an observation to another state; the change is recorded (who, when, from, to)."""
    try:
        with app_sessions(request)() as session, session.begin():
            change_state(
                session,
                feedback_id,
                to_state=body.state,
                user_id=user.id,
                changed_by=user.display_name,
                now=_now(),
            )
    except LookupError:
        raise HTTPException(
            404, detail=translate(user.language, "cx.error.unknown_observation", id=feedback_id)
        ) from None
    return _observation_by_id(request, feedback_id)


def _observation_by_id(request: Request, feedback_id: int) -> dict[str, Any]:
    with app_sessions(request)() as session:
        found = list_observations(session, ids=[feedback_id], limit=None)
        if not found:
            raise HTTPException(404)
        return _observation_json(found[0])


class CommentIn(BaseModel):
    """A CX comment."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=100_000)


@router.post("/api/v1/cx/observations/{feedback_id}/comments", status_code=201, tags=["cx"])
def comment(feedback_id: int, body: CommentIn, request: Request, user: CxUser) -> dict[str, Any]:
    """Add a comment to an observation."""
    settings = app_settings(request)
    text = body.text.strip()
    if not text:
        raise _unprocessable(user, "cx.error.comment_empty")
    if len(text) > settings.cx_comment_max_chars:
        raise _unprocessable(user, "cx.error.comment_too_long", max=settings.cx_comment_max_chars)
    try:
        with app_sessions(request)() as session, session.begin():
            row = add_comment(
                session,
                feedback_id,
                text=text,
                user_id=user.id,
                author=user.display_name,
                now=_now(),
            )
            result = {
                "id": row.id,
                "author": row.author,
                "text": row.text,
                "created_at": row.created_at.isoformat(),
            }
    except LookupError:
        raise HTTPException(
            404, detail=translate(user.language, "cx.error.unknown_observation", id=feedback_id)
        ) from None
    return result


# -- CSV -----------------------------------------------------------------------------------------


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = (
    "id",
    "created_at",
    "state",
    "category",
    "source",
    "channel",
    "language",
    "anonymous",
    "author",
    "text",
    "conversation_id",
    "outage_reference",
    "forward_status",
    "comments",
    "state_changes",
)


def observations_csv(observations: list[Observation]) -> str:
    """The observations as CSV (csv module quoting, formula-safe cells)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for o in observations:
        f = o.feedback
        row = [
            f.id,
            f.created_at.isoformat(),
            f.state,
            f.category or "",
            f.source,
            f.channel,
            f.language,
            "yes" if f.anonymous else "no",
            "" if f.anonymous else (f.author or ""),
            f.text,
            f.conversation_id or "",
            o.outage_reference or "",
            o.forward_status or "",
            "\n".join(f"{c.author} ({c.created_at.isoformat()}): {c.text}" for c in o.comments),
            "\n".join(
                f"{c.changed_at.isoformat()} {c.changed_by}: {c.from_state} -> {c.to_state}"
                for c in o.changes
            ),
        ]
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue()


@router.get("/api/v1/cx/observations.csv", tags=["cx"])
def export_csv(
    request: Request,
    user: CxUser,
    state: Annotated[list[State] | None, Query()] = None,
    category: Annotated[list[Category] | None, Query()] = None,
) -> Response:
    """Every observation (filtered like the page) as a CSV file, UTF-8 with a BOM (Excel)."""
    body = "\ufeff" + observations_csv(_load(request, state, category, None))
    filename = f"belofte-observations-{_now():%Y%m%d}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# -- themes and forwards ---------------------------------------------------------------------


@router.get("/api/v1/cx/themes", tags=["cx"])
def themes(request: Request, user: CxUser) -> dict[str, Any]:
    """Observations grouped by meaning: label, count, sources, weekly trend, growing."""
    service: ThemeService = request.app.state.cx_themes
    try:
        with app_sessions(request)() as session, session.begin():
            report = service.report(session, now=_now())
    except EncoderUnavailableError as exc:
        raise HTTPException(
            503, detail=translate(user.language, "cx.error.encoder", reason=str(exc))
        ) from None
    return report.to_dict()


@router.get("/api/v1/cx/forwards", tags=["cx"])
def forwards(request: Request, user: CxUser) -> dict[str, Any]:
    """Webhook forwards per status, and whether a webhook is configured."""
    with app_sessions(request)() as session:
        counts = forward_counts(session)
    return {"configured": app_settings(request).cx_webhook_url is not None, **counts}


@router.post("/api/v1/cx/forwards/retry", tags=["cx"])
def retry_forwards(request: Request, user: CxUser) -> dict[str, int]:
    """Schedule the failed forwards again (fresh attempts, due now)."""
    with app_sessions(request)() as session, session.begin():
        count = retry_failed(session, now=_now())
    forwarder: WebhookForwarder | None = getattr(request.app.state, "cx_forwarder", None)
    if forwarder is not None and count:
        forwarder.wake()
    return {"retried": count}
