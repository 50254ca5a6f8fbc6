"""What the supervisors' page shows, computed from the database: no HTTP, no text.

- :func:`active_outages`: the open outages, a page at a time, with the promise everyone is
  told (via :meth:`PromiseService.current`, so the page shows exactly what the console and the
  channels say), its evidence in numbers, and the outage's audit log.
- :func:`calibration`: how often the promises given in the last weeks were kept, overall, per
  service and per ISO week, each with a Wilson 95 % interval, against the target; and promised
  against actual time for every scored promise.
- :func:`broken_promises`: the broken promise decisions of the period with the status of the
  follow-up messages (apology with a new time, next update, "fixed") in the outbox.

Aggregates only: promises given are counted per outage, service and week, never per agent (the
rows do not even say which agent was in the conversation).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from scipy.stats import binomtest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.promises.service import OutageResolved, PromiseService, PromiseView
from bot.storage.models import (
    Outage,
    OutboxMessage,
    Promise,
    PromiseAudit,
    PromiseGiven,
    Subscription,
)

#: Scored outcomes that count in a kept rate (``no_deadline`` promised no clock time).
_SCORED = ("kept", "broken")


# -- active outages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One approval or override: who, when, old and new deadline, why."""

    at: datetime
    action: str
    actor: str
    old_deadline: datetime | None
    new_deadline: datetime | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """The numbers of the evidence line: ``similar`` past outages, ``percent`` of them fixed
    within ``within_minutes`` (the suggested promise's length). None when there is none."""

    similar: int
    fixed_within: int
    percent: int
    within_minutes: int
    segment: str


@dataclass(frozen=True, slots=True)
class OutageRow:
    """An open outage and its promise as the page shows it."""

    reference: str
    service: str
    cause: str
    region_name: str
    started_at: datetime
    customers_affected: int
    promise: PromiseView | None
    evidence: Evidence | None
    audit: tuple[AuditEntry, ...]


def evidence_of(view: PromiseView, estimate: Mapping[str, object]) -> Evidence | None:
    """The evidence line's numbers for a promise; None without a clock time or evidence.

    ``estimate`` is the stored engine estimate the decision rests on
    (:meth:`promise.estimate.Estimate.to_dict`): ``fixed_within`` counts the similar outages
    fixed within *its* promised time (from when it was made to its deadline), which is the
    duration the line names, also when a supervisor approved it later or overrode it.
    """
    explanation = view.explanation
    similar = int(explanation.get("similar") or 0)
    fixed = int(explanation.get("fixed_within") or 0)
    within = _estimate_minutes(estimate)
    if similar <= 0 or within is None:
        return None
    return Evidence(
        similar=similar,
        fixed_within=fixed,
        percent=round(100 * fixed / similar),
        within_minutes=within,
        segment=str(explanation.get("segment") or ""),
    )


def _estimate_minutes(estimate: Mapping[str, object]) -> int | None:
    made_at, deadline = estimate.get("made_at"), estimate.get("deadline")
    if not isinstance(made_at, str) or not isinstance(deadline, str):
        return None  # no clock time was suggested (too little evidence)
    minutes = (datetime.fromisoformat(deadline) - datetime.fromisoformat(made_at)).total_seconds()
    return max(round(minutes / 60.0), 0)


def count_active_outages(session: Session) -> int:
    """How many outages are open."""
    return (
        session.scalar(select(func.count()).select_from(Outage).where(Outage.resolved_at.is_(None)))
        or 0
    )


def active_outages(
    session: Session,
    promises: PromiseService,
    now: datetime,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[OutageRow]:
    """The open outages, oldest first, with their current promise and audit log.

    One page: ``limit`` outages after the first ``offset`` (all of them without a limit).
    Each row asks the promise engine, so during a storm of open outages the page stays quick
    only if it holds a few.
    Like ``GET /api/v1/outages/{ref}/promise`` this may store a new engine suggestion (the
    caller commits): supervisors review exactly what customers are told.
    """
    outages = session.scalars(
        select(Outage)
        .where(Outage.resolved_at.is_(None))
        .order_by(Outage.started_at, Outage.id)
        .limit(limit)
        .offset(offset)
    ).all()
    audits: dict[int, list[AuditEntry]] = defaultdict(list)
    if outages:
        for row in session.scalars(
            select(PromiseAudit)
            .where(PromiseAudit.outage_id.in_([o.id for o in outages]))
            .order_by(PromiseAudit.at.desc(), PromiseAudit.id.desc())
        ):
            audits[row.outage_id].append(
                AuditEntry(
                    at=row.at,
                    action=row.action,
                    actor=row.actor,
                    old_deadline=row.old_deadline,
                    new_deadline=row.new_deadline,
                    reason=row.reason,
                )
            )
    result: list[OutageRow] = []
    for outage in outages:
        try:
            view = promises.current(session, outage.id, now)
        except OutageResolved:  # resolved between the query and now
            continue
        result.append(
            OutageRow(
                reference=outage.reference,
                service=outage.service,
                cause=outage.cause,
                region_name=outage.region_name,
                started_at=outage.started_at,
                customers_affected=outage.customers_affected,
                promise=view,
                evidence=None if view is None else evidence_of(view, _estimate(session, view)),
                audit=tuple(audits.get(outage.id, ())),
            )
        )
    return result


def _estimate(session: Session, view: PromiseView) -> Mapping[str, object]:
    decision = session.get(Promise, view.promise_id)
    return {} if decision is None else dict(decision.evidence or {})


# -- calibration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeptRate:
    """``kept`` of ``n`` scored promises, with the Wilson 95 % interval of the kept rate, and
    the mean target those promises were made for."""

    key: str
    kept: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    target: float | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "key": self.key,
            "kept": self.kept,
            "n": self.n,
            "rate": self.rate,
            "low": self.low,
            "high": self.high,
            "target": self.target,
        }


@dataclass(frozen=True, slots=True)
class ScoredPromise:
    """Promised against actual, in minutes from when the promise was given."""

    service: str
    week: str
    promised_minutes: float
    actual_minutes: float
    kept: bool


@dataclass(frozen=True, slots=True)
class Calibration:
    """The kept rates of the promises given in [since, until)."""

    weeks: int
    since: datetime
    until: datetime
    overall: KeptRate
    by_service: tuple[KeptRate, ...]
    by_week: tuple[KeptRate, ...]
    #: Per (service, week): key ``"<service> <week>"``.
    by_service_week: tuple[KeptRate, ...]
    #: The supervisors' target per service now.
    targets: Mapping[str, float]
    points: tuple[ScoredPromise, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        """The JSON of ``GET /api/v1/supervisor/calibration``."""
        return {
            "weeks": self.weeks,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "overall": self.overall.to_dict(),
            "by_service": [rate.to_dict() for rate in self.by_service],
            "by_week": [rate.to_dict() for rate in self.by_week],
            "by_service_week": [rate.to_dict() for rate in self.by_service_week],
            "targets": dict(self.targets),
            "promised_vs_actual": [
                {
                    "service": p.service,
                    "week": p.week,
                    "promised_minutes": round(p.promised_minutes, 1),
                    "actual_minutes": round(p.actual_minutes, 1),
                    "kept": p.kept,
                }
                for p in self.points
            ],
        }


def wilson(kept: int, n: int) -> tuple[float, float] | None:
    """The Wilson score 95 % interval of ``kept / n`` (scipy), None when ``n`` is 0."""
    if n == 0:
        return None
    interval = binomtest(kept, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def kept_rate(key: str, outcomes: Sequence[bool], targets: Sequence[float]) -> KeptRate:
    """The kept rate of ``outcomes`` with its interval and the mean of ``targets``."""
    n = len(outcomes)
    kept = sum(outcomes)
    interval = wilson(kept, n)
    return KeptRate(
        key=key,
        kept=kept,
        n=n,
        rate=None if n == 0 else round(kept / n, 4),
        low=None if interval is None else round(interval[0], 4),
        high=None if interval is None else round(interval[1], 4),
        target=round(sum(targets) / len(targets), 4) if targets else None,
    )


def iso_week(moment: datetime, zone: ZoneInfo) -> str:
    """``2025-W45``: the ISO week of ``moment`` on the local calendar."""
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


def calibration(
    session: Session,
    promises: PromiseService,
    *,
    now: datetime,
    weeks: int,
    zone: ZoneInfo,
) -> Calibration:
    """Kept rates of the scored promises given in the last ``weeks`` weeks (see the module).

    Every promise given counts once (each customer told is a promise kept or broken);
    promises without a clock time and those not scored yet are left out.
    """
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    since = now - timedelta(weeks=weeks)
    rows = session.execute(
        select(
            Outage.service,
            PromiseGiven.given_at,
            PromiseGiven.deadline,
            PromiseGiven.target_quantile,
            PromiseGiven.outcome,
            Outage.resolved_at,
        )
        .join(Outage, PromiseGiven.outage_id == Outage.id)
        .where(
            PromiseGiven.outcome.in_(_SCORED),
            PromiseGiven.given_at >= since,
            PromiseGiven.given_at < now,
            PromiseGiven.deadline.is_not(None),
            Outage.resolved_at.is_not(None),
        )
        .order_by(PromiseGiven.given_at, PromiseGiven.id)
    ).all()
    groups: dict[str, dict[str, tuple[list[bool], list[float]]]] = {
        "all": defaultdict(lambda: ([], [])),
        "service": defaultdict(lambda: ([], [])),
        "week": defaultdict(lambda: ([], [])),
        "service_week": defaultdict(lambda: ([], [])),
    }
    points: list[ScoredPromise] = []
    for service, given_at, deadline, target, outcome, resolved_at in rows:
        if deadline is None or resolved_at is None:  # excluded by the query; for the types
            continue
        kept = outcome == "kept"
        week = iso_week(given_at, zone)
        for kind, key in (
            ("all", "all"),
            ("service", service),
            ("week", week),
            ("service_week", f"{service} {week}"),
        ):
            outcomes, targets = groups[kind][key]
            outcomes.append(kept)
            targets.append(target)
        points.append(
            ScoredPromise(
                service=service,
                week=week,
                promised_minutes=(deadline - given_at).total_seconds() / 60.0,
                actual_minutes=max((resolved_at - given_at).total_seconds() / 60.0, 0.0),
                kept=kept,
            )
        )

    def rates(kind: str) -> tuple[KeptRate, ...]:
        return tuple(kept_rate(key, *groups[kind][key]) for key in sorted(groups[kind]))

    overall = rates("all")
    return Calibration(
        weeks=weeks,
        since=since,
        until=now,
        overall=overall[0] if overall else kept_rate("all", [], []),
        by_service=rates("service"),
        by_week=_all_weeks(rates("week"), since, now, zone),
        by_service_week=rates("service_week"),
        targets={view.service: view.target for view in promises.targets(session)},
        points=tuple(points),
    )


def _all_weeks(
    found: tuple[KeptRate, ...], since: datetime, until: datetime, zone: ZoneInfo
) -> tuple[KeptRate, ...]:
    """Every week of the period in order, empty ones included (a gap is information too)."""
    by_key = {rate.key: rate for rate in found}
    keys: list[str] = []
    moment = since
    while moment < until + timedelta(days=7):
        key = iso_week(min(moment, until), zone)
        if key not in keys:
            keys.append(key)
        moment += timedelta(days=7)
    return tuple(by_key.get(key) or kept_rate(key, [], []) for key in keys)


# -- broken promises --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The follow-up messages of one kind (``template``) by outbox status."""

    template: str
    statuses: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class BrokenPromise:
    """One broken promise decision: told to ``told`` customers, and what they heard after."""

    outage: str
    service: str
    deadline: datetime
    resolved_at: datetime
    first_given_at: datetime
    told: int
    follow_ups: tuple[FollowUp, ...]

    @property
    def late_minutes(self) -> int:
        """How long after the deadline the outage was fixed."""
        return max(round((self.resolved_at - self.deadline).total_seconds() / 60.0), 0)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "outage": self.outage,
            "service": self.service,
            "deadline": self.deadline.isoformat(),
            "resolved_at": self.resolved_at.isoformat(),
            "first_given_at": self.first_given_at.isoformat(),
            "told": self.told,
            "late_minutes": self.late_minutes,
            "follow_ups": {f.template: dict(f.statuses) for f in self.follow_ups},
        }


def broken_promises(
    session: Session, *, now: datetime, weeks: int, limit: int = 100, offset: int = 0
) -> list[BrokenPromise]:
    """The broken promise decisions given in the last ``weeks`` weeks, latest first.

    One page: ``limit`` decisions after the first ``offset``. Only that page's rows are read,
    so a storm of broken promises (each told to thousands of customers) does not slow the page
    down. Follow-ups are the outbox messages about the same outage to the customers who were
    told the promise (matched on channel and address, directly or through their subscription,
    since a message may go to the customer's preferred channel instead).
    """
    since = now - timedelta(weeks=weeks)
    in_period = (
        PromiseGiven.outcome == "broken",
        PromiseGiven.given_at >= since,
        PromiseGiven.given_at < now,
        # Scored, so resolved; only a reopened record lacks a resolution.
        Outage.resolved_at.is_not(None),
    )
    last_told = func.max(PromiseGiven.given_at)
    page = (
        session.execute(
            select(PromiseGiven.promise_id)
            .join(Outage, PromiseGiven.outage_id == Outage.id)
            .where(*in_period)
            .group_by(PromiseGiven.promise_id)
            .order_by(last_told.desc(), PromiseGiven.promise_id.desc())
            .limit(limit)
            .offset(offset)
        )
        .scalars()
        .all()
    )
    if not page:
        return []
    rows = session.execute(
        select(PromiseGiven, Outage.reference, Outage.service, Outage.resolved_at)
        .join(Outage, PromiseGiven.outage_id == Outage.id)
        .where(*in_period, PromiseGiven.promise_id.in_(page))
        # Latest first within a decision, as before paging: its first row speaks for it.
        .order_by(PromiseGiven.given_at.desc(), PromiseGiven.id.desc())
    ).all()
    decisions: dict[int, list[PromiseGiven]] = {promise_id: [] for promise_id in page}
    facts: dict[int, tuple[str, str, datetime]] = {}
    for given, reference, service, resolved_at in rows:
        assert resolved_at is not None  # in_period keeps resolved outages only
        decisions[given.promise_id].append(given)
        facts[given.promise_id] = (reference, service, resolved_at)
    outage_ids = {given.outage_id for givens in decisions.values() for given in givens}
    messages = session.execute(
        select(OutboxMessage, Subscription.channel, Subscription.address)
        .outerjoin(Subscription, OutboxMessage.subscription_id == Subscription.id)
        .where(
            OutboxMessage.outage_id.in_(outage_ids),
            # Only what followed a promise on this page can be its follow-up.
            OutboxMessage.created_at >= min(g.given_at for gs in decisions.values() for g in gs),
        )
        .order_by(OutboxMessage.id)
    ).all()
    by_outage: dict[int, list[tuple[OutboxMessage, set[tuple[str, str]]]]] = defaultdict(list)
    for message, sub_channel, sub_address in messages:
        keys = {(message.channel, message.address)}
        if sub_channel is not None and sub_address is not None:
            keys.add((sub_channel, sub_address))
        by_outage[message.outage_id].append((message, keys))
    result: list[BrokenPromise] = []
    for promise_id, givens in decisions.items():
        reference, service, resolved_at = facts[promise_id]
        told = {(given.channel, given.recipient) for given in givens}
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for message, keys in by_outage.get(givens[0].outage_id, []):
            if keys & told and message.created_at >= min(g.given_at for g in givens):
                template = str((message.payload or {}).get("template") or message.kind)
                counts[template][message.status] += 1
        deadline = givens[0].deadline
        assert deadline is not None  # a broken promise had a clock time
        result.append(
            BrokenPromise(
                outage=reference,
                service=service,
                deadline=deadline,
                resolved_at=resolved_at,
                first_given_at=min(g.given_at for g in givens),
                told=len(told),
                follow_ups=tuple(
                    FollowUp(template, dict(sorted(statuses.items())))
                    for template, statuses in sorted(counts.items())
                ),
            )
        )
    return result
