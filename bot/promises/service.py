"""Promises for open outages: what everyone is told, who was told what, and how it turned out.

The promise engine (:mod:`promise`) knows nothing of the database; this module feeds it the
outage history, stores its suggestions as promise decisions, applies supervisors' approvals and
overrides, records every promise given, scores them when an outage is resolved, and records the
messages that follow in the outbox (an apology with a new time, "it is fixed").

Rules:

- **One live decision per outage.** Every new decision (a changed engine suggestion, an approval,
  an override) turns the older ones ``superseded``. An approved or overridden decision stands
  until its time (deadline, or next-update time) has passed, or until :meth:`renew_due` replaces
  it shortly before that; otherwise the engine's suggestion is what everyone is told.
- **Suggestions are stored when they change**, so supervisors review what customers see and every
  promise given points at a stored decision.
- **Scoring.** A given promise is ``kept`` when the outage was resolved by its deadline,
  ``broken`` otherwise, and ``no_deadline`` when only the time of the next update was given: such
  promises are left out of kept rates (they promised no clock time).
- **Messages are data.** Outbox rows carry a template key and its parameters; the channels render
  them. A unique ``dedupe_key`` means a message is never queued twice.

Every function takes the session and ``now`` from the caller and never commits (except the
history import in :mod:`bot.promises.history_store`): the caller owns the transaction.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, cast

from sqlalchemy import CursorResult, func, insert, inspect, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from bot.customers.identities import same_customer_keys_many
from bot.customers.notifications import outbox_recipient, outbox_recipients
from bot.promises.config import engine_config
from bot.promises.history_store import load_incidents, outage_states
from bot.settings import Settings
from bot.storage.db import SessionFactory
from bot.storage.models import (
    LANGUAGES,
    SERVICES,
    Outage,
    OutboxMessage,
    Promise,
    PromiseAudit,
    PromiseGiven,
    PromiseTarget,
    Subscription,
)
from promise.engine import EngineConfig, PromiseEngine
from promise.estimate import Estimate
from promise.incident import Incident, Update

logger = logging.getLogger(__name__)

#: ``made_by`` of the decisions the engine makes.
ENGINE_ACTOR: Final = "engine"
#: Statuses of a supervisor's decision.
_SUPERVISED: Final = ("approved", "overridden")


class PromiseError(Exception):
    """A promise operation that cannot be done; the message says why."""


class UnknownOutage(PromiseError, LookupError):
    """No outage with this id."""


class OutageResolved(PromiseError):
    """The outage is resolved: there is nothing left to promise."""

    def __init__(self, reference: str, resolved_at: datetime) -> None:
        super().__init__(f"outage {reference} was resolved at {resolved_at.isoformat()}")
        self.reference = reference
        self.resolved_at = resolved_at


class InvalidPromise(PromiseError, ValueError):
    """Bad input: a deadline in the past, a missing reason, a target outside (0, 1), ..."""


class EngineLike(Protocol):
    """What the service needs of a promise engine (:class:`promise.engine.PromiseEngine`)."""

    def fit(self, history: Sequence[Incident], now: datetime) -> EngineLike:
        """Learn from ``history`` as known at ``now``; returns the fitted engine."""
        ...

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        """The estimate for the open ``outage`` at ``now``, kept with probability ``target``."""
        ...


@dataclass(frozen=True, slots=True)
class PromiseView:
    """The promise for an outage as everyone is told it (detached from the session).

    ``deadline`` is None when there is too little evidence for a clock time; then
    ``next_update_at`` says when customers hear more. ``approved_by`` is the supervisor of an
    approved or overridden promise, None for the engine's suggestion. ``explanation`` is the
    engine's :meth:`promise.estimate.Explanation.to_dict` for the suggestion the decision rests
    on (an override keeps the explanation of what it overrode).
    """

    promise_id: int
    outage_id: int
    outage_reference: str
    service: str
    deadline: datetime | None
    next_update_at: datetime | None
    target: float
    status: str
    made_at: datetime
    approved_by: str | None
    reason: str | None
    explanation: Mapping[str, Any] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /api/v1/outages/{reference}/promise`` (times in ISO 8601)."""
        return {
            "outage": self.outage_reference,
            "service": self.service,
            "deadline": _iso(self.deadline),
            "next_update_at": _iso(self.next_update_at),
            "target": self.target,
            "status": self.status,
            "explanation": dict(self.explanation),
            "approved_by": self.approved_by,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ResolveSummary:
    """What resolving an outage did: promises scored by outcome and messages queued."""

    kept: int
    broken: int
    no_deadline: int
    queued: int


@dataclass(frozen=True, slots=True)
class TargetView:
    """The target of one service; ``updated_by`` is None for the settings' default."""

    service: str
    target: float
    updated_by: str | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class HistoryFingerprint:
    """A cheap summary of the outage history: when it changes, the engine is refitted."""

    count: int
    resolved: int
    max_started_at: datetime | None
    max_resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Fit:
    fingerprint: HistoryFingerprint
    fitted_at: datetime
    #: When the fingerprint was last found unchanged.
    checked_at: datetime
    engine: EngineLike


def history_fingerprint(session: Session) -> HistoryFingerprint:
    """Count, resolved count and latest start and resolution of all outages (one query).

    New outages and resolutions change it; an edit that changes none of these (a corrected
    cause) does not, and waits for the next refit by age.
    """
    row = session.execute(
        select(
            func.count(Outage.id),
            func.count(Outage.resolved_at),
            func.max(Outage.started_at),
            func.max(Outage.resolved_at),
        )
    ).one()
    return HistoryFingerprint(int(row[0]), int(row[1]), row[2], row[3])


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _utc(moment: datetime | None) -> datetime | None:
    # The engine answers in local time; stored rows come back in UTC. One zone everywhere keeps
    # a fresh view and a reloaded one identical, down to their ISO strings.
    return None if moment is None else moment.astimezone(UTC)


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidPromise(f"{name} must include a time zone")


def _actor(actor: str) -> str:
    actor = actor.strip()
    if not actor:
        raise InvalidPromise("actor is required")
    if len(actor) > 200:
        raise InvalidPromise("actor is longer than 200 characters")
    return actor


class OutageFacts(Protocol):
    """What the engine needs to know of an outage: a stored one, or a generated demo one."""

    @property
    def reference(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def service(self) -> str: ...
    @property
    def cause(self) -> str: ...
    @property
    def region_name(self) -> str: ...
    @property
    def customers_affected(self) -> int: ...
    @property
    def description(self) -> str | None: ...


def incident_of(
    outage: OutageFacts,
    attributes: Mapping[str, object] | None = None,
    updates: tuple[Update, ...] = (),
) -> Incident:
    """The engine's view of ``outage``, with ``attributes`` (stringified) as extra facts and
    ``updates`` as its recorded states."""
    return Incident(
        id=outage.reference,
        started_at=outage.started_at,
        resolved_at=outage.resolved_at,
        service=outage.service,
        cause=outage.cause,
        region=outage.region_name,
        customers_affected=outage.customers_affected,
        description=outage.description,
        attributes={str(k): str(v) for k, v in (attributes or {}).items()},
        updates=updates,
    )


def _end(decision: Promise) -> datetime | None:
    """When the decision's time is up: its deadline, or else its next-update time."""
    return decision.deadline if decision.deadline is not None else decision.next_update_at


def _view(decision: Promise, outage: Outage) -> PromiseView:
    explanation = decision.evidence.get("explanation") if decision.evidence else None
    return PromiseView(
        promise_id=decision.id,
        outage_id=outage.id,
        outage_reference=outage.reference,
        service=outage.service,
        deadline=decision.deadline,
        next_update_at=decision.next_update_at,
        target=decision.target_quantile,
        status=decision.status,
        made_at=decision.made_at,
        approved_by=decision.made_by if decision.status in _SUPERVISED else None,
        reason=decision.reason,
        explanation=dict(explanation) if isinstance(explanation, dict) else {},
    )


def score(deadline: datetime | None, resolved_at: datetime) -> str:
    """``kept`` (resolved by the deadline), ``broken``, or ``no_deadline`` (no clock time)."""
    if deadline is None:
        return "no_deadline"
    return "kept" if resolved_at <= deadline else "broken"


def _given_evidence(view: PromiseView) -> dict[str, Any]:
    """What a promise given records of why (the stored ``evidence`` column)."""
    explanation = view.explanation
    return {
        "n": explanation.get("similar"),
        "segment": explanation.get("segment"),
        "fixed_within": explanation.get("fixed_within"),
        "method_version": explanation.get("method_version"),
        "status": view.status,
    }


def _subscriptions_of_customers(
    session: Session,
    keys: Sequence[tuple[str, str]],
    subscriptions: Mapping[tuple[str, str], Subscription],
) -> dict[tuple[str, str], Subscription]:
    """For each person told on one of ``keys``, the subscription they made on another of their
    channels, if any (the first by channel and address)."""
    found: dict[tuple[str, str], Subscription] = {}
    for key, others in same_customer_keys_many(session, keys).items():
        match = next((other for other in sorted(others) if other in subscriptions), None)
        if match is not None:
            found[key] = subscriptions[match]
    return found


#: Outbox rows per ``INSERT`` statement on SQLite when many are queued at once (13 values a
#: row: well under SQLite's 32,766 bound parameters).
OUTBOX_INSERT_BATCH: Final = 1000
#: Outbox rows per ``INSERT`` on PostgreSQL, where the rows go as 13 arrays (no parameter limit;
#: batches bound the size of one statement's arrays and RETURNING list).
OUTBOX_PG_INSERT_BATCH: Final = 10_000


def _outbox_row(
    *,
    kind: str,
    outage_id: int,
    recipient: tuple[str, str],
    language: str,
    payload: Mapping[str, Any],
    dedupe_key: str,
    now: datetime,
    subscription_id: int | None,
    promise_given_id: int | None,
) -> dict[str, Any]:
    _aware(now, "now")  # the bulk insert bypasses UTCDateTime, which refuses naive times
    return {
        "kind": kind,
        "outage_id": outage_id,
        "subscription_id": subscription_id,
        "promise_given_id": promise_given_id,
        "channel": recipient[0],
        "address": recipient[1],
        "language": language,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


#: PostgreSQL array types of the outbox columns :func:`_outbox_row` fills (see
#: :func:`_insert_outbox_postgresql`); the payload goes as JSON text.
_OUTBOX_PG_ARRAYS: Final = {
    "kind": "VARCHAR",
    "outage_id": "INTEGER",
    "subscription_id": "INTEGER",
    "promise_given_id": "INTEGER",
    "channel": "VARCHAR",
    "address": "VARCHAR",
    "language": "VARCHAR",
    "payload": "TEXT",
    "dedupe_key": "VARCHAR",
    "status": "VARCHAR",
    "attempts": "INTEGER",
    "next_attempt_at": "TIMESTAMPTZ",
    "created_at": "TIMESTAMPTZ",
}


def _insert_outbox_postgresql(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """PostgreSQL: ``INSERT ... SELECT ... FROM unnest(arrays)``, a column array per statement.

    A multi-row VALUES of thousands of rows has tens of thousands of placeholders, which the
    driver parses and SQLAlchemy compiles on every page (seconds for 10,000 rows); a handful of
    arrays costs neither. Columns with one value in the whole batch (the kind, the outage, the
    payload of a resolve, the times) are sent once instead of as arrays. The rows are the same as
    :func:`_outbox_row` gives, the payload as the JSON text SQLAlchemy would have written.
    """
    inserted: list[int] = []
    for start in range(0, len(rows), OUTBOX_PG_INSERT_BATCH):
        batch = rows[start : start + OUTBOX_PG_INSERT_BATCH]
        texts: dict[int, str] = {}  # rows of one resolve share their payload: dump it once
        params: dict[str, Any] = {}
        selected: list[str] = []
        unnested: list[str] = []
        names: list[str] = []
        for column, sql_type in _OUTBOX_PG_ARRAYS.items():
            values = [row[column] for row in batch]
            if column == "payload":
                values = [
                    texts.get(id(v)) or texts.setdefault(id(v), json.dumps(v)) for v in values
                ]
            value = f"CAST(:{column} AS {sql_type})"
            if all(v == values[0] for v in values):
                params[column] = values[0]
            else:
                params[column] = values
                unnested.append(f"CAST(:{column} AS {sql_type}[])")
                names.append(column)
                value = f"batch.{column}"
            selected.append(f"CAST({value} AS JSON)" if column == "payload" else value)
        if not unnested:  # one row (or identical ones: the dedupe key keeps one)
            unnested, names = ["CAST(ARRAY[1] AS INTEGER[])"], ["one"]
        statement = text(
            f"INSERT INTO {OutboxMessage.__tablename__} ({', '.join(_OUTBOX_PG_ARRAYS)}) "
            f"SELECT {', '.join(selected)} "
            f"FROM unnest({', '.join(unnested)}) AS batch({', '.join(names)}) "
            "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
        )
        inserted.extend(session.execute(statement, params).scalars())
    return inserted


def _insert_outbox(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert outbox rows whose ``dedupe_key`` is new; the ids of the rows inserted.

    On SQLite and PostgreSQL this is ``INSERT ... ON CONFLICT DO NOTHING`` with many rows per
    statement, so two workers queueing the same message at once store it once and neither fails.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return _insert_outbox_postgresql(session, rows)
    inserted: list[int] = []
    if dialect == "sqlite":
        statement = (
            sqlite.insert(OutboxMessage)
            .on_conflict_do_nothing(index_elements=[OutboxMessage.dedupe_key])
            .returning(OutboxMessage.id)
        )
        for start in range(0, len(rows), OUTBOX_INSERT_BATCH):
            # A list of parameters: SQLAlchemy compiles the statement once and sends the rows
            # as multi-row VALUES pages ("insertmanyvalues"), RETURNING the ids of those stored.
            batch = [dict(row) for row in rows[start : start + OUTBOX_INSERT_BATCH]]
            inserted.extend(session.execute(statement, batch).scalars())
        return inserted
    # Other databases: check first; the unique constraint still guards against a race.
    for values in rows:
        key = values["dedupe_key"]
        if session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)):
            continue
        message = OutboxMessage(**values)
        session.add(message)
        session.flush()
        inserted.append(message.id)
    return inserted


def queue_message(
    session: Session,
    *,
    kind: str,
    outage_id: int,
    channel: str,
    address: str,
    language: str,
    template: str,
    params: Mapping[str, Any],
    dedupe_key: str,
    now: datetime,
    subscription_id: int | None = None,
    promise_given_id: int | None = None,
) -> int | None:
    """Record a message in the outbox; its id, or None when ``dedupe_key`` was already queued.

    On SQLite and PostgreSQL this is ``INSERT ... ON CONFLICT DO NOTHING``, so two workers queueing
    the same message at once store it once and neither fails. ``channel`` and ``address`` are
    the subscriber's; the message goes to the customer's preferred channel when they chose one
    (:func:`bot.customers.notifications.outbox_recipient`), and is not queued (None) when the
    same message is already queued there for another of their subscriptions.
    """
    payload = {"template": template, "params": dict(params)}
    recipient = outbox_recipient(
        session, channel=channel, address=address, outage_id=outage_id, kind=kind, payload=payload
    )
    if recipient is None:
        return None
    row = _outbox_row(
        kind=kind,
        outage_id=outage_id,
        recipient=recipient,
        language=language,
        payload=payload,
        dedupe_key=dedupe_key,
        now=now,
        subscription_id=subscription_id,
        promise_given_id=promise_given_id,
    )
    inserted = _insert_outbox(session, [row])
    return inserted[0] if inserted else None


def _score_given(
    session: Session, outage_id: int, resolved_at: datetime, now: datetime
) -> dict[str, int]:
    """Score every promise given for the outage (see :func:`score`) in three UPDATEs.

    The conditions are :func:`score` in SQL. Promises given already loaded in the session are
    expired instead of synchronised row by row ("fetch" would return every id of the outage).
    """
    deadline = PromiseGiven.deadline
    counts: dict[str, int] = {}
    for outcome, condition in (
        ("no_deadline", deadline.is_(None)),
        ("kept", deadline >= resolved_at),
        ("broken", deadline < resolved_at),
    ):
        result = session.execute(
            update(PromiseGiven)
            .where(PromiseGiven.outage_id == outage_id, condition)
            .values(outcome=outcome, scored_at=now)
            .execution_options(synchronize_session=False)
        )
        counts[outcome] = cast("CursorResult[Any]", result).rowcount
    for loaded in list(session.identity_map.values()):
        # An object whose outage_id is not loaded reloads its outcome anyway when read.
        if isinstance(loaded, PromiseGiven) and inspect(loaded).dict.get("outage_id") == outage_id:
            session.expire(loaded, ["outcome", "scored_at"])
    return counts


class PromiseService:
    """Promises for open outages, backed by the database and a cached, fitted engine.

    The engine is fitted on the whole outage history on first use and refitted when the history
    fingerprint (:func:`history_fingerprint`) has changed, which is checked at most once per
    ``min_refit_interval`` (neither the check nor a few seconds of fitting may land on every
    request of an outage storm; a new outage needs no refit to be promised, since the engine
    takes it as an argument), and once the fit is older than ``max_fit_age`` (recency weights
    and censoring move with the clock). Safe to share between threads.

    With ``refit_sessions``, a changed history is refitted in a background thread on a session
    of its own while the current fit keeps answering: the boosted estimator takes seconds to
    fit a large history, and a refit in the request would hold every promise up behind the
    lock. Only the first fit, and one that is too old, are made in the request. A refit that
    fails is tried again after ``refit_backoff``, doubling after every failure in a row up to
    ``max_refit_backoff``: a history the engine cannot fit (a bad import, too little memory)
    must not cost seconds of fitting, and an error in the log, every minute.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine_factory: Callable[[EngineConfig], EngineLike] = PromiseEngine,
        min_refit_interval: timedelta = timedelta(seconds=60),
        max_fit_age: timedelta = timedelta(hours=24),
        refit_sessions: SessionFactory | None = None,
        refit_backoff: timedelta = timedelta(minutes=1),
        max_refit_backoff: timedelta = timedelta(hours=1),
    ) -> None:
        self._settings = settings
        self._engine_factory = engine_factory
        self._min_refit_interval = min_refit_interval
        self._max_fit_age = max_fit_age
        self._refit_sessions = refit_sessions
        self._refit_backoff = refit_backoff
        self._max_refit_backoff = max_refit_backoff
        self._lock = threading.Lock()
        self._fit: _Fit | None = None
        self._refit: threading.Thread | None = None
        #: Background refits failed in a row, and when the next may start.
        self._refit_failures = 0
        self._next_refit_at: datetime | None = None
        #: How many times the engine was fitted (monitoring and tests).
        self.fits = 0

    # -- the engine --------------------------------------------------------------------------

    def engine_config(self) -> EngineConfig:
        """The engine's configuration from the settings."""
        return engine_config(self._settings)

    def engine(self, session: Session, now: datetime) -> EngineLike:
        """The fitted engine, refitted first if the history changed (see the class)."""
        with self._lock:
            fit = self._fit
            if fit is not None and self._fresh(fit, now):
                # The fingerprint costs a scan of the outages (milliseconds on a large history,
                # more than the promise itself), so it is checked at most once per interval.
                if now - fit.checked_at < self._min_refit_interval:
                    return fit.engine
                fingerprint = history_fingerprint(session)
                if fingerprint == fit.fingerprint:
                    self._fit = replace(fit, checked_at=now)
                    return fit.engine
                if self._refit_sessions is not None:
                    self._fit = replace(fit, checked_at=now)
                    if self._next_refit_at is None or now >= self._next_refit_at:
                        self._start_refit(self._refit_sessions, fingerprint, now)
                    return fit.engine
            else:
                fingerprint = history_fingerprint(session)
            engine = self._fitted(session, now)
            self._fit = _Fit(fingerprint=fingerprint, fitted_at=now, checked_at=now, engine=engine)
            self.fits += 1
            logger.info("promise engine fitted on %d outages", fingerprint.count)
            return engine

    def wait_for_refit(self, timeout: float | None = None) -> bool:
        """Wait until no background refit runs; False if one still does after ``timeout``."""
        refit = self._refit
        if refit is not None:
            refit.join(timeout)
        return refit is None or not refit.is_alive()

    def _fitted(self, session: Session, now: datetime) -> EngineLike:
        config = self.engine_config()
        # Recorded states are read by the boosted model only.
        history = load_incidents(session, states=config.estimator == "boosted")
        return self._engine_factory(config).fit(history, now)

    def _start_refit(
        self, sessions: SessionFactory, fingerprint: HistoryFingerprint, now: datetime
    ) -> None:
        """Refit in a thread unless one is already running (the caller holds the lock)."""
        if self._refit is not None and self._refit.is_alive():
            return
        self._refit = threading.Thread(
            target=self._run_refit, args=(sessions, fingerprint, now), name="promise-refit"
        )
        # Nothing is written by a refit: one cut off at shutdown loses nothing.
        self._refit.daemon = True
        self._refit.start()

    def _run_refit(
        self, sessions: SessionFactory, fingerprint: HistoryFingerprint, now: datetime
    ) -> None:
        try:
            with sessions() as session:
                engine = self._fitted(session, now)
        except Exception:
            with self._lock:
                self._refit_failures += 1
                delay = min(
                    self._refit_backoff * 2 ** (self._refit_failures - 1), self._max_refit_backoff
                )
                self._next_refit_at = now + delay
            logger.exception(
                "promise engine refit failed (%d in a row); the previous fit keeps answering, "
                "next try after %s",
                self._refit_failures,
                delay,
            )
            return
        with self._lock:
            self._refit_failures = 0
            self._next_refit_at = None
            current = self._fit
            # A fit made in a request meanwhile (the old one had expired) is as new or newer.
            if current is not None and current.fitted_at > now:
                return
            self._fit = _Fit(fingerprint=fingerprint, fitted_at=now, checked_at=now, engine=engine)
            self.fits += 1
        logger.info("promise engine refitted on %d outages in the background", fingerprint.count)

    def _fresh(self, fit: _Fit, now: datetime) -> bool:
        age = now - fit.fitted_at
        # A fit "from the future" knows outages that had not started yet at ``now``; a few
        # minutes of skew between concurrent requests are tolerated.
        return timedelta(minutes=-5) <= age <= self._max_fit_age

    # -- targets -----------------------------------------------------------------------------

    def target_for(self, session: Session, service: str) -> float:
        """The supervisors' target for ``service``, or the settings' default."""
        row = session.get(PromiseTarget, service)
        return self._settings.promise_default_target if row is None else row.target_quantile

    def set_target(
        self, session: Session, service: str, target: float, actor: str, now: datetime
    ) -> TargetView:
        """Set the probability promises for ``service`` are kept (strictly between 0 and 1)."""
        if not 0.0 < target < 1.0:
            raise InvalidPromise(f"target must be between 0 and 1, got {target}")
        if not service or len(service) > 16:
            raise InvalidPromise(f"invalid service {service!r}")
        actor = _actor(actor)
        row = session.get(PromiseTarget, service)
        if row is None:
            row = PromiseTarget(service=service)
            session.add(row)
        row.target_quantile = target
        row.updated_by = actor
        row.updated_at = now
        session.flush()
        return TargetView(service, target, actor, now)

    def targets(self, session: Session) -> list[TargetView]:
        """Every canonical service's target (default where unset), then any other stored."""
        stored = {row.service: row for row in session.scalars(select(PromiseTarget))}
        services = list(SERVICES) + sorted(set(stored) - set(SERVICES))
        default = self._settings.promise_default_target
        result: list[TargetView] = []
        for service in services:
            row = stored.get(service)
            result.append(
                TargetView(service, default, None, None)
                if row is None
                else TargetView(service, row.target_quantile, row.updated_by, row.updated_at)
            )
        return result

    # -- the current promise -----------------------------------------------------------------

    def _outage(self, session: Session, outage_id: int, *, lock: bool = False) -> Outage:
        outage = session.get(Outage, outage_id, with_for_update=lock or None)
        if outage is None:
            raise UnknownOutage(f"no outage with id {outage_id}")
        return outage

    def _open_outage(self, session: Session, outage_id: int, *, lock: bool = False) -> Outage:
        outage = self._outage(session, outage_id, lock=lock)
        if outage.resolved_at is not None:
            raise OutageResolved(outage.reference, outage.resolved_at)
        return outage

    @staticmethod
    def _live(session: Session, outage_id: int) -> Promise | None:
        """The newest decision that is not superseded (normally the only one)."""
        return session.scalars(
            select(Promise)
            .where(Promise.outage_id == outage_id, Promise.status != "superseded")
            .order_by(Promise.made_at.desc(), Promise.id.desc())
            .limit(1)
        ).first()

    def _is_due(self, decision: Promise, now: datetime) -> bool:
        """True once ``promise_renew_at_fraction`` of the decision's time has passed."""
        end = _end(decision)
        if end is None:
            return False
        fraction = self._settings.promise_renew_at_fraction
        return now >= decision.made_at + (end - decision.made_at) * fraction

    def _reusable(self, live: Promise, estimate: Estimate, now: datetime) -> bool:
        """Whether the stored suggestion still says what the engine says now."""
        if live.status != "suggested" or live.target_quantile != estimate.target:
            return False
        if estimate.deadline is not None:
            return live.deadline == estimate.deadline  # aware: compares instants
        # "Next update at 15:00" is kept (so everyone hears the same time) until it is nearly
        # due; then a new update time is announced (and renew_due tells those who asked).
        return live.deadline is None and not self._is_due(live, now)

    def _supersede(self, session: Session, outage_id: int) -> None:
        for decision in session.scalars(
            select(Promise).where(Promise.outage_id == outage_id, Promise.status != "superseded")
        ):
            decision.status = "superseded"

    def current(self, session: Session, outage_id: int, now: datetime) -> PromiseView | None:
        """The promise everyone is told about the outage now; None if there is no such outage.

        A supervisor's approved or overridden decision, while its time has not passed; else the
        engine's suggestion, stored as a ``suggested`` decision when it differs from the last one.
        Raises :class:`OutageResolved` for a resolved outage.
        """
        outage = session.get(Outage, outage_id)
        if outage is None:
            return None
        if outage.resolved_at is not None:
            raise OutageResolved(outage.reference, outage.resolved_at)
        live = self._live(session, outage_id)
        if live is not None and live.status in _SUPERVISED:
            end = _end(live)
            if end is not None and end > now:
                return _view(live, outage)
        target = self.target_for(session, outage.service)
        states = outage_states(session, [outage_id]).get(outage_id, ())
        incident = incident_of(outage, outage.attributes, states)
        estimate = self.engine(session, now).promise(incident, now, target)
        if live is not None and self._reusable(live, estimate, now):
            return _view(live, outage)
        # Two requests racing here may both store the same suggestion; the newest one wins and
        # the duplicate is harmless, which beats locking the outage on every read.
        self._supersede(session, outage_id)
        decision = Promise(
            outage_id=outage_id,
            deadline=_utc(estimate.deadline),
            next_update_at=_utc(estimate.next_update_at),
            target_quantile=estimate.target,
            status="suggested",
            evidence=estimate.to_dict(),
            made_at=now,
            made_by=ENGINE_ACTOR,
        )
        session.add(decision)
        session.flush()
        return _view(decision, outage)

    # -- supervisors -------------------------------------------------------------------------

    def approve(self, session: Session, outage_id: int, actor: str, now: datetime) -> PromiseView:
        """Approve the current suggestion: from now on it is what everyone is told.

        An already approved or overridden promise is returned unchanged.
        """
        actor = _actor(actor)
        outage = self._open_outage(session, outage_id, lock=True)
        view = self.current(session, outage_id, now)
        assert view is not None  # the outage exists
        if view.status != "suggested":
            return view
        suggestion = session.get(Promise, view.promise_id)
        assert suggestion is not None
        decision = self._decide(
            session,
            suggestion,
            action="approve",
            status="approved",
            deadline=suggestion.deadline,
            next_update_at=suggestion.next_update_at,
            actor=actor,
            reason=None,
            now=now,
        )
        return _view(decision, outage)

    def override(
        self,
        session: Session,
        outage_id: int,
        deadline: datetime,
        reason: str,
        actor: str,
        now: datetime,
    ) -> PromiseView:
        """Replace the promise by a supervisor's ``deadline``; ``reason`` is required.

        The override stands until the outage is resolved or its deadline passes (or renew_due
        replaces it shortly before). The audit log keeps who, when, why, and the old and new
        deadline.
        """
        actor = _actor(actor)
        reason = reason.strip()
        if not reason:
            raise InvalidPromise("a reason is required to override a promise")
        _aware(deadline, "deadline")
        if deadline <= now:
            raise InvalidPromise(f"deadline {deadline.isoformat()} is not in the future")
        outage = self._open_outage(session, outage_id, lock=True)
        view = self.current(session, outage_id, now)
        assert view is not None
        previous = session.get(Promise, view.promise_id)
        assert previous is not None
        decision = self._decide(
            session,
            previous,
            action="override",
            status="overridden",
            deadline=_utc(deadline),
            next_update_at=None,
            actor=actor,
            reason=reason,
            now=now,
        )
        return _view(decision, outage)

    def _decide(
        self,
        session: Session,
        previous: Promise,
        *,
        action: str,
        status: str,
        deadline: datetime | None,
        next_update_at: datetime | None,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> Promise:
        """A supervisor's decision replacing ``previous``, with its audit row (who, why, when)."""
        self._supersede(session, previous.outage_id)
        decision = Promise(
            outage_id=previous.outage_id,
            deadline=deadline,
            next_update_at=next_update_at,
            target_quantile=previous.target_quantile,
            status=status,
            evidence=dict(previous.evidence),
            made_at=now,
            made_by=actor,
            reason=reason,
        )
        session.add(decision)
        session.flush()
        session.add(
            PromiseAudit(
                promise_id=decision.id,
                outage_id=previous.outage_id,
                action=action,
                actor=actor,
                reason=reason,
                old_deadline=previous.deadline,
                new_deadline=deadline,
                at=now,
            )
        )
        session.flush()
        return decision

    # -- promises given ----------------------------------------------------------------------

    def record_given(
        self,
        session: Session,
        view: PromiseView,
        *,
        channel: str,
        recipient: str,
        language: str,
        conversation_id: str | None,
        now: datetime,
    ) -> PromiseGiven:
        """Record that ``recipient`` on ``channel`` was told ``view``.

        Idempotent: telling the same recipient the same promise again returns the first record.
        """
        if language not in LANGUAGES:
            raise InvalidPromise(f"language must be one of {', '.join(LANGUAGES)}")
        existing = session.scalars(
            select(PromiseGiven).where(
                PromiseGiven.promise_id == view.promise_id,
                PromiseGiven.channel == channel,
                PromiseGiven.recipient == recipient,
            )
        ).first()
        if existing is not None:
            return existing
        given = PromiseGiven(
            promise_id=view.promise_id,
            outage_id=view.outage_id,
            given_at=now,
            channel=channel,
            recipient=recipient,
            conversation_id=conversation_id,
            language=language,
            deadline=view.deadline,
            next_update_at=view.next_update_at,
            target_quantile=view.target,
            evidence=_given_evidence(view),
        )
        session.add(given)
        session.flush()
        return given

    # -- resolution --------------------------------------------------------------------------

    def resolve(
        self, session: Session, outage_id: int, resolved_at: datetime, now: datetime
    ) -> ResolveSummary:
        """Resolve the outage, score every promise given, and queue "fixed" for subscribers.

        Resolving again (a corrected time) re-scores; the "fixed" messages are not queued twice.
        Cancelled subscriptions get nothing.
        """
        _aware(resolved_at, "resolved_at")
        outage = self._outage(session, outage_id, lock=True)
        if resolved_at < outage.started_at:
            raise InvalidPromise(
                f"resolved_at {resolved_at.isoformat()} is before the outage started "
                f"({outage.started_at.isoformat()})"
            )
        outage.resolved_at = resolved_at
        counts = _score_given(session, outage_id, resolved_at, now)
        subscriptions = session.execute(
            select(
                Subscription.id, Subscription.channel, Subscription.address, Subscription.language
            )
            .where(Subscription.outage_id == outage_id, Subscription.is_active)
            .order_by(Subscription.id)
        ).all()
        payload = {
            "template": "outage_fixed",
            "params": {
                "outage": outage.reference,
                "service": outage.service,
                "region": outage.region_name,
                "started_at": _iso(outage.started_at),
                "resolved_at": _iso(resolved_at),
            },
        }
        # Set-based: where each subscriber's message goes is looked up for all of them at once
        # and the rows go in by the thousand; the dedupe keys (one per subscription) still make
        # a second or concurrent resolve queue nothing twice.
        recipients = outbox_recipients(
            session,
            [(channel, address) for _, channel, address, _ in subscriptions],
            outage_id=outage_id,
            kind="outage_fixed",
            payload=payload,
        )
        rows = [
            _outbox_row(
                kind="outage_fixed",
                outage_id=outage_id,
                recipient=recipient,
                language=language,
                payload=payload,
                dedupe_key=f"fixed:{outage_id}:{subscription_id}",
                now=now,
                subscription_id=subscription_id,
                promise_given_id=None,
            )
            for (subscription_id, _, _, language), recipient in zip(
                subscriptions, recipients, strict=True
            )
            if recipient is not None
        ]
        queued = len(_insert_outbox(session, rows))
        session.flush()
        return ResolveSummary(
            kept=counts["kept"],
            broken=counts["broken"],
            no_deadline=counts["no_deadline"],
            queued=queued,
        )

    # -- renewal -----------------------------------------------------------------------------

    def renew_due(self, session: Session, now: datetime) -> int:
        """Replace promises about to break and queue an apology with the new time.

        A decision is due once ``promise_renew_at_fraction`` of its time (made to deadline, or
        to the next-update time) has passed and someone was told it and not yet renewed. For each
        outage with a due decision: a supervisor's decision is superseded, the current promise
        is recomputed, and when it says something new, every promise given of the due decisions
        is marked renewed, and each recipient with an active subscription to the outage (same
        channel and address) who has not been told the new promise yet gets one
        ``promise_renewed`` message (the new promise is recorded as given to them). When the new
        promise says the same, nothing happens and the decision is checked again next time.
        Returns the number of messages queued; running it twice queues nothing new.
        """
        pending = (
            select(PromiseGiven.promise_id)
            .join(Outage, PromiseGiven.outage_id == Outage.id)
            .where(
                Outage.resolved_at.is_(None),
                PromiseGiven.renewed_at.is_(None),
                PromiseGiven.outcome.is_(None),
            )
        )
        decisions = session.scalars(
            select(Promise).where(Promise.id.in_(pending)).order_by(Promise.outage_id, Promise.id)
        ).all()
        due: dict[int, list[Promise]] = {}
        for decision in decisions:
            if self._is_due(decision, now):
                due.setdefault(decision.outage_id, []).append(decision)
        queued = 0
        for outage_id, outage_decisions in due.items():
            queued += self._renew_outage(session, outage_id, outage_decisions, now)
        return queued

    def _renew_outage(
        self, session: Session, outage_id: int, due: list[Promise], now: datetime
    ) -> int:
        outage = self._outage(session, outage_id, lock=True)
        if outage.resolved_at is not None:
            return 0
        for decision in due:
            if decision.status in _SUPERVISED:
                decision.status = "superseded"
        session.flush()
        view = self.current(session, outage_id, now)
        assert view is not None
        new_times = (view.deadline, view.next_update_at)
        renewable = [d.id for d in due if (d.deadline, d.next_update_at) != new_times]
        if not renewable:
            return 0
        # Set-based, like resolve: a big outage's renewal must be queued well before the old
        # deadline passes, so recipients are looked up, recorded and queued by the thousand.
        open_given = (
            PromiseGiven.promise_id.in_(renewable),
            PromiseGiven.renewed_at.is_(None),
            PromiseGiven.outcome.is_(None),
        )
        latest: dict[tuple[str, str], Any] = {}  # (channel, recipient) -> its row
        for given in session.execute(
            select(
                PromiseGiven.channel,
                PromiseGiven.recipient,
                PromiseGiven.conversation_id,
                PromiseGiven.deadline,
                PromiseGiven.next_update_at,
            )
            .where(*open_given)
            .order_by(PromiseGiven.given_at, PromiseGiven.id)
        ):
            # Ordered: the last promise told to a recipient is the one the apology names.
            latest[(given.channel, given.recipient)] = given
        session.execute(
            update(PromiseGiven)
            .where(*open_given)
            .values(renewed_at=now)
            .execution_options(synchronize_session=False)
        )
        for loaded in list(session.identity_map.values()):
            # As in _score_given: loaded rows reload renewed_at when read next.
            if (
                isinstance(loaded, PromiseGiven)
                and inspect(loaded).dict.get("promise_id") in renewable
            ):
                session.expire(loaded, ["renewed_at"])
        told_new = {
            (row.channel, row.recipient)
            for row in session.execute(
                select(PromiseGiven.channel, PromiseGiven.recipient).where(
                    PromiseGiven.promise_id == view.promise_id
                )
            )
        }
        subscriptions = {
            (s.channel, s.address): s
            for s in session.scalars(
                select(Subscription).where(
                    Subscription.outage_id == outage_id, Subscription.is_active
                )
            )
        }
        # Told on one channel, subscribed on another: a caller who chose SMS updates.
        elsewhere = _subscriptions_of_customers(
            session, [key for key in latest if key not in subscriptions], subscriptions
        )
        # (subscription, the promise given that it replaces), one per subscription.
        renewals: list[tuple[Subscription, Any]] = []
        for key, old in latest.items():
            subscription = subscriptions.get(key) or elsewhere.get(key)
            if subscription is None:
                continue
            target = (subscription.channel, subscription.address)
            if key in told_new or target in told_new:
                continue
            if subscription.language not in LANGUAGES:
                raise InvalidPromise(f"language must be one of {', '.join(LANGUAGES)}")
            told_new.add(target)  # one message per subscription, however often it was told
            renewals.append((subscription, old))
        if not renewals:
            session.flush()
            return 0
        given_ids = self._record_given_many(session, view, renewals, now)
        # The payload names the old promise, so recipients are routed per distinct old promise
        # (a handful): a message with the same content already queued for a customer's chosen
        # channel is not queued twice.
        groups: dict[tuple[datetime | None, datetime | None], list[int]] = {}
        for index, (_, old) in enumerate(renewals):
            groups.setdefault((old.deadline, old.next_update_at), []).append(index)
        rows: list[dict[str, Any]] = []
        for (old_deadline, old_next_update_at), indexes in groups.items():
            payload = {
                # Breaking a clock time needs an apology; a new update time does not.
                "template": "promise_renewed"
                if old_deadline is not None
                else "promise_next_update",
                "params": {
                    "outage": outage.reference,
                    "service": outage.service,
                    "old_deadline": _iso(old_deadline),
                    "old_next_update_at": _iso(old_next_update_at),
                    "new_deadline": _iso(view.deadline),
                    "new_next_update_at": _iso(view.next_update_at),
                },
            }
            members = [renewals[i][0] for i in indexes]
            recipients = outbox_recipients(
                session,
                [(s.channel, s.address) for s in members],
                outage_id=outage_id,
                kind="promise_renewed",
                payload=payload,
            )
            rows.extend(
                _outbox_row(
                    kind="promise_renewed",
                    outage_id=outage_id,
                    recipient=recipient,
                    language=subscription.language,
                    payload=payload,
                    dedupe_key=(
                        f"renewed:{outage_id}:{view.promise_id}:"
                        f"{subscription.channel}:{subscription.address}"
                    ),
                    now=now,
                    subscription_id=subscription.id,
                    promise_given_id=given_ids[index],
                )
                for index, subscription, recipient in zip(indexes, members, recipients, strict=True)
                if recipient is not None
            )
        queued = len(_insert_outbox(session, rows))
        session.flush()
        return queued

    def _record_given_many(
        self,
        session: Session,
        view: PromiseView,
        renewals: Sequence[tuple[Subscription, Any]],
        now: datetime,
    ) -> list[int]:
        """:meth:`record_given` for each subscriber of ``renewals`` (none told ``view`` yet),
        in one multi-row INSERT; the new rows' ids, in order."""
        evidence = _given_evidence(view)
        rows = [
            {
                "promise_id": view.promise_id,
                "outage_id": view.outage_id,
                "given_at": now,
                "channel": subscription.channel,
                "recipient": subscription.address,
                "conversation_id": old.conversation_id,
                "language": subscription.language,
                "deadline": view.deadline,
                "next_update_at": view.next_update_at,
                "target_quantile": view.target,
                "evidence": evidence,
            }
            for subscription, old in renewals
        ]
        session.execute(insert(PromiseGiven), rows)
        # Read back by recipient: RETURNING in parameter order would make SQLite insert the
        # rows one by one. A recipient is told one promise once, so the pair is unique here.
        ids = {
            (channel, recipient): given_id
            for given_id, channel, recipient in session.execute(
                select(PromiseGiven.id, PromiseGiven.channel, PromiseGiven.recipient).where(
                    PromiseGiven.promise_id == view.promise_id
                )
            )
        }
        return [ids[(row["channel"], row["recipient"])] for row in rows]

    # -- supervisors: target preview (issue 6, bot/supervisor) -------------------------------

    def preview_target(
        self, session: Session, service: str, target: float, now: datetime
    ) -> list[tuple[Outage, Promise | None, Estimate]]:
        """What each open outage of ``service`` would be promised at ``target``; stores nothing.

        Per open outage (oldest first): the supervisor's decision that still stands (approved or
        overridden, its time not passed; a new target does not change it) or None, and the
        engine's estimate at ``target`` at ``now``. Unlike :meth:`current`, nothing is written,
        so a supervisor can try targets freely; after :meth:`set_target` with the same target,
        :meth:`current` at the same ``now`` gives exactly these estimates.
        """
        if not 0.0 < target < 1.0:
            raise InvalidPromise(f"target must be between 0 and 1, got {target}")
        outages = session.scalars(
            select(Outage)
            .where(Outage.service == service, Outage.resolved_at.is_(None))
            .order_by(Outage.started_at, Outage.id)
        ).all()
        if not outages:
            return []
        engine = self.engine(session, now)
        states = outage_states(session, [outage.id for outage in outages])
        result: list[tuple[Outage, Promise | None, Estimate]] = []
        for outage in outages:
            live = self._live(session, outage.id)
            standing = None
            if live is not None and live.status in _SUPERVISED:
                end = _end(live)
                standing = live if end is not None and end > now else None
            incident = incident_of(outage, outage.attributes, states.get(outage.id, ()))
            estimate = engine.promise(incident, now, target)
            result.append((outage, standing, estimate))
        return result
