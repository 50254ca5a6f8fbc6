"""The demo's promise history: made by the engine, scored against the real resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.demo.seed import PROMISE_HISTORY_WEEKS, seed_demo
from bot.promises.service import PromiseService, score
from bot.settings import Settings
from bot.storage.models import Outage, OutboxMessage, Promise, PromiseGiven, Subscription
from bot.supervisor.report import broken_promises, calibration

NOW = datetime(2025, 11, 4, 11, 0, tzinfo=UTC)


def test_the_demo_has_a_promise_history_the_supervisors_can_read(
    session: Session, api_settings: Settings
) -> None:
    report = seed_demo(session, now=NOW, promise_history=True, settings=api_settings)
    session.commit()
    history = report.promises
    assert history is not None
    assert history.given > 500 and history.kept > 0 and history.broken > 0

    rows = session.execute(
        select(PromiseGiven, Outage.resolved_at, Outage.started_at).join(
            Outage, PromiseGiven.outage_id == Outage.id
        )
    ).all()
    assert len(rows) == history.given
    since = NOW - timedelta(weeks=PROMISE_HISTORY_WEEKS)
    for given, resolved_at, started_at in rows:
        # Only resolved outages of the period; every outcome follows from deadline and fix.
        assert resolved_at is not None and since <= started_at < given.given_at < resolved_at
        assert given.outcome == score(given.deadline, resolved_at)
        assert given.scored_at == resolved_at
        if given.renewed_at is not None:
            assert given.given_at < given.renewed_at < resolved_at
    # The engine's own decisions, each with the estimate it made at the moment it was given.
    decisions = session.scalars(select(Promise)).all()
    assert len(decisions) == history.decisions
    assert {(d.status, d.made_by) for d in decisions} == {("superseded", "engine")}
    for decision in decisions[:50]:
        assert datetime.fromisoformat(decision.evidence["made_at"]) == decision.made_at
    # Active outages keep no promise history: their promises are made live.
    active = set(session.scalars(select(Outage.id).where(Outage.resolved_at.is_(None))))
    assert not active & {d.outage_id for d in decisions}

    # Subscribers got apologies with new times and "fixed" messages; a few are dead letters.
    messages = session.scalars(select(OutboxMessage)).all()
    assert {m.status for m in messages} == {"sent", "dead"}
    assert {m.payload["template"] for m in messages} >= {"promise_renewed", "outage_fixed"}
    assert sum(m.status == "dead" for m in messages) == history.dead_messages > 0
    subscriptions = session.scalars(select(Subscription)).all()
    fixed = [m for m in messages if m.kind == "outage_fixed"]
    assert len(fixed) == len(subscriptions) == history.subscriptions

    service = PromiseService(api_settings)
    figures = calibration(session, service, now=NOW, weeks=8, zone=ZoneInfo(api_settings.timezone))
    assert figures.overall.n > 300
    assert figures.overall.rate is not None and 0.5 < figures.overall.rate < 1.0
    assert sum(1 for week in figures.by_week if week.n > 0) >= 8
    broken = broken_promises(session, now=NOW, weeks=8, limit=10_000)
    assert broken and any(row.follow_ups for row in broken)
    # Page by page, the same decisions in the same order, each with the same follow-ups.
    assert len(broken) > 40
    pages = [
        broken_promises(session, now=NOW, weeks=8, limit=20, offset=offset)
        for offset in range(0, len(broken) + 20, 20)
    ]
    assert [len(page) for page in pages[-2:]] == [len(broken) % 20 or 20, 0]
    assert [row for page in pages for row in page] == broken
