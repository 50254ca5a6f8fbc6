"""The outage feed, the promise for an outage, and the supervisors' promise calls.

- ``POST /api/v1/outages``, ``PATCH /api/v1/outages/{reference}``: the network operations
  system reports and updates outages (``X-API-Key``). Setting ``resolved_at`` resolves the outage:
  every promise given is scored and subscribers get a "fixed" message in the outbox. ``state``
  records what the operations system knows now (its state, who holds it); the promise model
  reads the outage as it stands.
- ``GET /api/v1/outages/{reference}/promise``: the promise everyone is told; a logged-in agent,
  supervisor or admin (the console reads it), or the ``X-API-Key``.
- ``POST .../promise/approve``, ``POST .../promise/override``, ``GET /api/v1/promise-targets``,
  ``PUT /api/v1/promise-targets/{service}``, ``POST /api/v1/promise-targets/{service}/preview``:
  a supervisor or admin session (with the CSRF token on POST/PUT), or the ``X-API-Key`` of machine
  clients. The audit log records the user's username, or ``api`` for a key.

The handlers are plain functions, run in FastAPI's thread pool: they use the blocking database
session, and a promise may first refit the engine, which takes seconds on a large history.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from bot.accounts import CurrentUser, require_api_key_or_role
from bot.api.deps import app_promises, app_sessions
from bot.api.outage_schemas import (
    ApproveIn,
    OutageIn,
    OutageOut,
    OutagePatch,
    OverrideIn,
    PromiseOut,
    PromiseTimes,
    TargetIn,
    TargetOut,
    TargetPreviewIn,
    TargetPreviewItem,
    TargetPreviewOut,
)
from bot.api.schemas import ErrorOut
from bot.promises.history_store import outage_states
from bot.promises.service import (
    InvalidPromise,
    OutageResolved,
    PromiseView,
    TargetView,
)
from bot.storage.models import SERVICES, Outage, OutageArea, OutageState
from promise.incident import Update

router = APIRouter(prefix="/api/v1", tags=["outages"])

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The operations API key (BELOFTE_API_KEY, or the file $BELOFTE_HOME/api-key).",
)

ServiceName = Annotated[str, Path(min_length=1, max_length=16, description="e.g. internet.")]
Reference = Annotated[
    str, Path(min_length=1, max_length=32, description="The outage's reference, e.g. STO-25-00123.")
]

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
_FORBIDDEN: dict[int | str, dict[str, Any]] = {403: {"model": ErrorOut}}
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut}}
_INVALID: dict[int | str, dict[str, Any]] = {422: {"model": ErrorOut}}


def require_api_key(
    request: Request, api_key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """401 unless the ``X-API-Key`` header holds the operations API key."""
    if not api_key:
        raise HTTPException(status_code=401, detail="missing X-API-Key header")
    expected: str = request.app.state.settings.operations_api_key()
    # Constant-time comparison: the time taken must not reveal how much of the key matched.
    if not secrets.compare_digest(api_key.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(status_code=401, detail="invalid API key")


ApiKey = Depends(require_api_key)
#: Supervisors' calls: a supervisor or admin session (CSRF on writes) or the API key (None).
SupervisorOrKey = Annotated[CurrentUser | None, Depends(require_api_key_or_role("supervisor"))]
#: Reading a promise: the agents' console too.
ReaderOrKey = Annotated[CurrentUser | None, Depends(require_api_key_or_role("agent", "supervisor"))]
#: The audit log's ``actor`` of an X-API-Key call (machine clients have no user).
API_ACTOR = "api"


def actor_of(user: CurrentUser | None) -> str:
    """Who acted, for the audit log: the logged-in user's username, or ``api`` for the key."""
    return API_ACTOR if user is None else user.username


def _now() -> datetime:
    return datetime.now(UTC)


def _load(session: Session, reference: str, *, lock: bool = False) -> Outage:
    query = select(Outage).where(Outage.reference == reference).options(selectinload(Outage.areas))
    if lock:
        query = query.with_for_update(of=Outage)
    outage = session.scalars(query).one_or_none()
    if outage is None:
        raise HTTPException(status_code=404, detail=f"unknown outage {reference!r}")
    return outage


def _outage_out(outage: Outage, states: Sequence[Update] = ()) -> OutageOut:
    state: dict[str, str] = {}
    for _, values in states:
        state.update(values)
    return OutageOut.model_validate(
        {
            "reference": outage.reference,
            "service": outage.service,
            "cause": outage.cause,
            "region_name": outage.region_name,
            "country": outage.country,
            "started_at": outage.started_at,
            "resolved_at": outage.resolved_at,
            "customers_affected": outage.customers_affected,
            "postcodes": sorted({area.postcode_prefix for area in outage.areas}),
            "description": outage.description,
            "attributes": dict(outage.attributes or {}),
            "state": state,
        }
    )


def _promise_out(view: PromiseView) -> PromiseOut:
    return PromiseOut.model_validate(view.to_dict())


def _target_out(view: TargetView) -> TargetOut:
    return TargetOut(
        service=view.service,
        target=view.target,
        updated_by=view.updated_by,
        updated_at=view.updated_at,
    )


def _set_areas(outage: Outage, country: str | None, prefixes: list[str]) -> None:
    """Make the outage's areas exactly ``prefixes`` in ``country``, keeping unchanged rows.

    Kept rows are updated in place rather than deleted and re-inserted: the unit of work inserts
    before it deletes, which would trip the unique (outage, country, prefix) constraint.
    """
    if not prefixes:
        outage.areas.clear()
        return
    if country is None:
        raise HTTPException(status_code=422, detail="country is required when postcodes are given")
    wanted = set(prefixes)
    for area in list(outage.areas):
        if area.postcode_prefix in wanted:
            area.country = country
            wanted.discard(area.postcode_prefix)
        else:
            outage.areas.remove(area)
    for prefix in sorted(wanted):
        outage.areas.append(OutageArea(country=country, postcode_prefix=prefix))


@router.post(
    "/outages",
    status_code=201,
    response_model=OutageOut,
    dependencies=[ApiKey],
    responses={**_UNAUTHORIZED, **_CONFLICT, **_INVALID},
)
def create_outage(body: OutageIn, request: Request) -> OutageOut:
    """Report a new outage (operations feed). 409 when the reference is already known."""
    conflict = HTTPException(status_code=409, detail=f"outage {body.reference!r} already exists")
    try:
        with app_sessions(request)() as session, session.begin():
            exists = session.scalar(select(Outage.id).where(Outage.reference == body.reference))
            if exists is not None:
                raise conflict
            outage = Outage(
                reference=body.reference,
                service=body.service,
                cause=body.cause,
                region_name=body.region_name,
                country=body.country,
                started_at=body.started_at,
                resolved_at=body.resolved_at,
                customers_affected=body.customers_affected,
                description=body.description,
                attributes=dict(body.attributes),
                source="operations",
            )
            _set_areas(outage, body.country, body.postcodes)
            session.add(outage)
            session.flush()
            result = _outage_out(outage)
    except IntegrityError as exc:
        # Another request created the same reference between our check and our commit.
        raise conflict from exc
    return result


@router.patch(
    "/outages/{reference}",
    response_model=OutageOut,
    dependencies=[ApiKey],
    responses={**_UNAUTHORIZED, **_NOT_FOUND, **_INVALID},
)
def update_outage(reference: Reference, body: OutagePatch, request: Request) -> OutageOut:
    """Change the fields sent; ``resolved_at`` resolves the outage (scores promises, tells
    subscribers). Sending ``resolved_at`` again corrects it and re-scores."""
    now = _now()
    sent = body.model_fields_set
    with app_sessions(request)() as session, session.begin():
        outage = _load(session, reference, lock=True)
        for name in (
            "service",
            "cause",
            "region_name",
            "country",
            "started_at",
            "customers_affected",
            "description",
        ):
            if name in sent:
                setattr(outage, name, getattr(body, name))
        if body.attributes is not None:
            outage.attributes = dict(body.attributes)
        if body.state is not None:
            session.add(OutageState(outage_id=outage.id, recorded_at=now, attributes=body.state))
        if body.postcodes is not None:
            _set_areas(outage, outage.country, body.postcodes)
        elif "country" in sent:
            _set_areas(outage, outage.country, [area.postcode_prefix for area in outage.areas])
        resolved_at = body.resolved_at or outage.resolved_at
        if resolved_at is not None and resolved_at < outage.started_at:
            raise HTTPException(status_code=422, detail="resolved_at is before started_at")
        session.flush()
        if body.resolved_at is not None:
            try:
                app_promises(request).resolve(session, outage.id, body.resolved_at, now)
            except InvalidPromise as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc
        result = _outage_out(outage, outage_states(session, [outage.id]).get(outage.id, ()))
    return result


@router.get(
    "/outages/{reference}/promise",
    response_model=PromiseOut,
    responses={**_UNAUTHORIZED, **_FORBIDDEN, **_NOT_FOUND, **_CONFLICT},
)
def get_promise(reference: Reference, request: Request, _user: ReaderOrKey) -> PromiseOut:
    """The promise for the outage as everyone is told it, with its explanation.

    409 when the outage is resolved: there is nothing left to promise.
    """
    now = _now()
    with app_sessions(request)() as session, session.begin():
        outage = _load(session, reference)
        try:
            view = app_promises(request).current(session, outage.id, now)
        except OutageResolved as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        assert view is not None  # the outage exists
        return _promise_out(view)


@router.post(
    "/outages/{reference}/promise/approve",
    response_model=PromiseOut,
    responses={**_UNAUTHORIZED, **_FORBIDDEN, **_NOT_FOUND, **_CONFLICT, **_INVALID},
)
def approve_promise(
    reference: Reference, body: ApproveIn, request: Request, user: SupervisorOrKey
) -> PromiseOut:
    """Approve the suggested promise: from now on everyone is told it (supervisors)."""
    now = _now()
    with app_sessions(request)() as session, session.begin():
        outage = _load(session, reference)
        try:
            view = app_promises(request).approve(session, outage.id, actor_of(user), now)
        except OutageResolved as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        except InvalidPromise as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return _promise_out(view)


@router.post(
    "/outages/{reference}/promise/override",
    response_model=PromiseOut,
    responses={**_UNAUTHORIZED, **_FORBIDDEN, **_NOT_FOUND, **_CONFLICT, **_INVALID},
)
def override_promise(
    reference: Reference, body: OverrideIn, request: Request, user: SupervisorOrKey
) -> PromiseOut:
    """Replace the promise by a deadline of the supervisor's, with a reason (audited)."""
    now = _now()
    with app_sessions(request)() as session, session.begin():
        outage = _load(session, reference)
        try:
            view = app_promises(request).override(
                session, outage.id, body.deadline, body.reason, actor_of(user), now
            )
        except OutageResolved as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        except InvalidPromise as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return _promise_out(view)


@router.get(
    "/promise-targets",
    response_model=list[TargetOut],
    responses={**_UNAUTHORIZED, **_FORBIDDEN},
)
def list_targets(request: Request, _user: SupervisorOrKey) -> list[TargetOut]:
    """The target of every service (the default where supervisors set none)."""
    with app_sessions(request)() as session:
        return [_target_out(view) for view in app_promises(request).targets(session)]


@router.put(
    "/promise-targets/{service}",
    response_model=TargetOut,
    responses={**_UNAUTHORIZED, **_FORBIDDEN, **_INVALID},
)
def put_target(
    service: ServiceName, body: TargetIn, request: Request, user: SupervisorOrKey
) -> TargetOut:
    """Set the probability promises for ``service`` are kept (0 < target < 1)."""
    now = _now()
    with app_sessions(request)() as session, session.begin():
        _known_service(session, service)
        try:
            view = app_promises(request).set_target(
                session, service, body.target, actor_of(user), now
            )
        except InvalidPromise as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return _target_out(view)


def _known_service(session: Session, service: str) -> None:
    """422 unless ``service`` is a canonical service or one some outage has."""
    known = service in SERVICES or session.scalar(
        select(Outage.id).where(Outage.service == service).limit(1)
    )
    if not known:
        raise HTTPException(status_code=422, detail=f"unknown service {service!r}")


def _times(deadline: datetime | None, next_update_at: datetime | None) -> PromiseTimes:
    return PromiseTimes(
        deadline=None if deadline is None else deadline.astimezone(UTC),
        next_update_at=None if next_update_at is None else next_update_at.astimezone(UTC),
    )


@router.post(
    "/promise-targets/{service}/preview",
    response_model=TargetPreviewOut,
    responses={**_UNAUTHORIZED, **_FORBIDDEN, **_INVALID},
)
def preview_target(
    service: ServiceName, body: TargetPreviewIn, request: Request, _user: SupervisorOrKey
) -> TargetPreviewOut:
    """What the promise of each open outage of ``service`` would become with ``target``.

    Stores nothing (the transaction is rolled back): the supervisors' page calls it while the
    target is being typed. ``current`` is what everyone is told now (computed the same way,
    without storing it), ``new`` what they would be told after saving the target.
    """
    now = _now()
    promises = app_promises(request)
    with app_sessions(request)() as session:
        _known_service(session, service)
        current_target = promises.target_for(session, service)
        try:
            before = promises.preview_target(session, service, current_target, now)
            after = promises.preview_target(session, service, body.target, now)
        except InvalidPromise as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        items = []
        for (outage, standing, old), (_, _, new) in zip(before, after, strict=True):
            told_now = (
                _times(standing.deadline, standing.next_update_at)
                if standing is not None
                else _times(old.deadline, old.next_update_at)
            )
            suggested = _times(new.deadline, new.next_update_at)
            items.append(
                TargetPreviewItem(
                    outage=outage.reference,
                    current=told_now,
                    suggested=suggested,
                    # A standing approval or override is told until its time is up, whatever
                    # the target: saving the target changes the suggestion only.
                    new=told_now if standing is not None else suggested,
                    standing=None if standing is None else _standing(standing.status),
                    similar=new.explanation.similar,
                    fixed_within=new.explanation.fixed_within,
                )
            )
        # Nothing was written; rolling back makes sure nothing ever is.
        session.rollback()
    return TargetPreviewOut(
        service=service, current_target=current_target, target=body.target, outages=items
    )


def _standing(status: str) -> Literal["approved", "overridden"]:
    return "overridden" if status == "overridden" else "approved"
