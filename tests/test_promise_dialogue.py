"""The customer hears the promise: action_check_outage and action_tell_promise on a seeded database.

The promise service runs with a scripted engine whose deadline the test sets, so what is told
(clock time, day, next update), what is recorded as given and what the ``promise`` slot carries
can be checked exactly, in Dutch and English. The texts are rendered from domain.yml the way Rasa
fills them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk.executor import ActionExecutor
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from actions import ActionContext, build_actions
from bot import messages
from bot.demo.seed import seed_demo
from bot.promises.service import PromiseService
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import Conversation, Outage, OutboxMessage, PromiseGiven
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

pytestmark = pytest.mark.usefixtures("session")

# Monday 23 November 2026, 11:00 in Amsterdam (CET, UTC+1).
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class ScriptedEngine:
    """Promises ``deadline`` (None: too little evidence, only a next update in an hour)."""

    def __init__(self) -> None:
        self.deadline: datetime | None = NOW + timedelta(hours=3, minutes=30)
        self.fail = False

    def fit(self, history: Sequence[Incident], now: datetime) -> ScriptedEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        if self.fail:
            raise RuntimeError("the engine broke")
        return Estimate(
            made_at=now,
            target=target,
            deadline=self.deadline,
            next_update_at=None if self.deadline else now + timedelta(hours=1),
            remaining_minutes=None
            if self.deadline is None
            else (self.deadline - now).total_seconds() / 60,
            explanation=Explanation(
                segment="service=internet",
                similar=42 if self.deadline else 7,
                fixed_within=35 if self.deadline else 0,
                open_minutes=(now - outage.started_at).total_seconds() / 60,
                method_version="scripted/1",
            ),
        )


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, promise_default_target=0.8)


@pytest.fixture
def promises(settings: Settings, engine: ScriptedEngine) -> PromiseService:
    return PromiseService(
        settings, engine_factory=lambda _config: engine, min_refit_interval=timedelta(0)
    )


@pytest.fixture
def executor(
    db_engine: Engine, session: Session, settings: Settings, promises: PromiseService
) -> ActionExecutor:
    seed_demo(session, now=NOW)
    session.add(Conversation(id="conv-1", channel="api", language="nl"))
    session.commit()
    context = ActionContext(
        settings=settings,
        sessions=make_sessionmaker(db_engine),
        clock=lambda: NOW,
        promises=promises,
    )
    executor = ActionExecutor()
    for action in build_actions(context):
        executor.register_action(action)
    return executor


def _call(
    executor: ActionExecutor,
    action: str,
    slots: dict[str, Any],
    *,
    sender: str = "conv-1",
    channel: str = "api",
) -> dict[str, Any]:
    """Run ``action`` with an action-server request shaped like Rasa 3.6's."""
    tracker = {
        "sender_id": sender,
        "slots": {"language": "nl", **slots},
        "latest_message": {
            "text": "...",
            "intent": {},
            "entities": [],
            "metadata": {"channel": channel},
        },
        "events": [{"event": "user", "text": "..."}],
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
    }
    call = {"next_action": action, "sender_id": sender, "tracker": tracker, "domain": {}}
    result = asyncio.run(executor.run(call))
    assert result is not None
    return result.model_dump()


def _check(executor: ActionExecutor, language: str = "nl", **kwargs: Any) -> dict[str, Any]:
    slots = {"postcode": "3511 AB", "service": "internet", "language": language}
    return _call(executor, "action_check_outage", slots, **kwargs)


def _slots(result: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in result["events"] if e["event"] == "slot"}


@cache
def _responses() -> dict[str, Any]:
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    responses: dict[str, Any] = domain["responses"]
    return responses


def _text(message: dict[str, Any], language: str) -> str:
    """The response as Rasa words it: the variation for ``language``, filled in."""
    variations = _responses()[message["response"]]
    chosen = next(
        v for v in variations if not v.get("condition") or v["condition"][0]["value"] == language
    )
    values = {k: v for k, v in message.items() if k not in ("response", "text")}
    return str(chosen["text"]).format(**values)


def _promise_text(result: dict[str, Any], language: str) -> str:
    found, promise = result["responses"]
    assert found["response"] == "utter_outage_found"
    return _text(promise, language)


def _given(db_engine: Engine) -> list[PromiseGiven]:
    with make_sessionmaker(db_engine)() as db:
        return list(db.scalars(select(PromiseGiven).order_by(PromiseGiven.id)))


# -- action_check_outage tells the promise ----------------------------------------------------


def test_a_clock_time_today_in_dutch_and_english(executor: ActionExecutor) -> None:
    # 13:30 UTC is 14:30 in Amsterdam.
    nl = _check(executor, "nl")
    assert _promise_text(nl, "nl") == (
        "We verwachten dat het vóór 14:30 is opgelost. "
        "Van 42 vergelijkbare storingen waren er 35 binnen die tijd opgelost."
    )
    en = _check(executor, "en", sender="conv-2")
    assert _promise_text(en, "en") == (
        "We expect it to be fixed before 2:30 pm. "
        "Of 42 similar outages, 35 were fixed within that time."
    )


def test_tomorrow_and_later_days_are_named(
    executor: ActionExecutor, engine: ScriptedEngine
) -> None:
    engine.deadline = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # 09:00 tomorrow
    assert _promise_text(_check(executor, "nl"), "nl").startswith(
        "We verwachten dat het morgen vóór 09:00 is opgelost."
    )
    assert _promise_text(_check(executor, "en"), "en").startswith(
        "We expect it to be fixed tomorrow before 9:00 am."
    )
    engine.deadline = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # Thursday
    assert _promise_text(_check(executor, "nl"), "nl").startswith(
        "We verwachten dat het op donderdag 26 november vóór 09:00 is opgelost."
    )
    assert _promise_text(_check(executor, "en"), "en").startswith(
        "We expect it to be fixed on Thursday 26 November before 9:00 am."
    )


def test_without_a_clock_time_the_next_update_is_told(
    executor: ActionExecutor, engine: ScriptedEngine, db_engine: Engine
) -> None:
    engine.deadline = None
    nl = _check(executor, "nl")
    assert _promise_text(nl, "nl") == (
        "Wanneer het is opgelost, kan ik nog niet zeggen: daarvoor waren er te weinig "
        "vergelijkbare storingen. We weten om 12:00 meer."
    )
    promise = _slots(nl)["promise"]
    assert promise["deadline"] is None
    assert promise["next_update_at"] == (NOW + timedelta(hours=1)).isoformat()
    en = _check(executor, "en", sender="conv-2")
    assert _promise_text(en, "en").endswith("We'll know more at 12:00 pm.")
    # A "next update" is a promise too: recorded, and renewed for subscribers when it is due.
    given = _given(db_engine)
    assert [(g.recipient, g.deadline, g.language) for g in given] == [
        ("conv-1", None, "nl"),
        ("conv-2", None, "en"),
    ]


def test_the_promise_is_recorded_as_given_and_put_in_the_slot(
    executor: ActionExecutor, db_engine: Engine
) -> None:
    result = _check(executor, "nl", channel="telegram")
    slots = _slots(result)
    assert slots["outage_found"] is True
    promise = slots["promise"]
    assert set(promise) == {
        "outage",
        "service",
        "deadline",
        "next_update_at",
        "target",
        "status",
        "explanation",
        "approved_by",
        "reason",
    }
    assert promise["outage"] == slots["outage"]["reference"]
    assert promise["deadline"] == datetime(2026, 11, 23, 13, 30, tzinfo=UTC).isoformat()
    assert promise["target"] == 0.8 and promise["status"] == "suggested"
    assert promise["explanation"]["similar"] == 42

    [given] = _given(db_engine)
    assert (given.recipient, given.channel, given.conversation_id) == (
        "conv-1",
        "telegram",
        "conv-1",
    )
    assert given.language == "nl"
    assert given.given_at == NOW
    assert given.deadline == datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
    assert given.target_quantile == 0.8
    assert given.evidence["n"] == 42 and given.evidence["status"] == "suggested"

    # Telling the same person the same promise again is recorded once.
    _check(executor, "nl", channel="telegram")
    assert len(_given(db_engine)) == 1


def test_a_conversation_unknown_to_the_service_is_still_recorded(
    executor: ActionExecutor, db_engine: Engine
) -> None:
    _check(executor, "nl", sender="rasa-shell-1")
    [given] = _given(db_engine)
    assert given.recipient == "rasa-shell-1" and given.conversation_id is None


def test_an_override_is_told_without_the_engines_evidence(
    executor: ActionExecutor, promises: PromiseService, db_engine: Engine
) -> None:
    reference = _slots(_check(executor, "nl"))["outage"]["reference"]
    with make_sessionmaker(db_engine)() as db, db.begin():
        outage_id = db.scalar(select(Outage.id).where(Outage.reference == reference))
        assert outage_id is not None
        promises.override(
            db,
            outage_id,
            datetime(2026, 11, 23, 17, 0, tzinfo=UTC),
            "monteur is onderweg",
            "supervisor",
            NOW,
        )
    result = _check(executor, "en", sender="conv-2")
    assert _promise_text(result, "en") == "We expect it to be fixed before 6:00 pm."
    promise = _slots(result)["promise"]
    assert promise["status"] == "overridden" and promise["approved_by"] == "supervisor"


def test_an_engine_failure_still_answers(
    executor: ActionExecutor, engine: ScriptedEngine, db_engine: Engine
) -> None:
    engine.fail = True
    result = _check(executor, "nl")
    assert _promise_text(result, "nl") == "Wanneer het is opgelost, weet ik nog niet."
    assert _slots(result)["promise"] is None
    assert _slots(result)["outage_found"] is True
    assert _given(db_engine) == []


# -- action_tell_promise: the repair time asked again -------------------------------------------


def test_asked_again_the_promise_is_told_without_the_outage_again(
    executor: ActionExecutor,
) -> None:
    outage = _slots(_check(executor, "nl"))["outage"]
    result = _call(
        executor,
        "action_tell_promise",
        {"outage": outage, "outage_found": True, "language": "en"},
    )
    [message] = result["responses"]
    assert _text(message, "en").startswith("We expect it to be fixed before 2:30 pm.")
    slots = _slots(result)
    assert slots["outage_found"] is True
    assert slots["promise"]["outage"] == outage["reference"]


def test_asked_again_after_the_outage_was_resolved(
    executor: ActionExecutor, db_engine: Engine
) -> None:
    outage = _slots(_check(executor, "nl"))["outage"]
    with make_sessionmaker(db_engine)() as db, db.begin():
        row = db.scalars(select(Outage).where(Outage.reference == outage["reference"])).one()
        row.resolved_at = NOW
    result = _call(executor, "action_tell_promise", {"outage": outage, "outage_found": True})
    [message] = result["responses"]
    assert message["response"] == "utter_outage_resolved"
    assert _text(message, "nl").startswith("Goed nieuws: die storing is inmiddels opgelost.")
    assert _slots(result) == {"outage": None, "outage_found": False, "promise": None}


def test_a_renewed_promise_reaches_the_conversation_that_subscribed(
    executor: ActionExecutor,
    engine: ScriptedEngine,
    promises: PromiseService,
    settings: Settings,
    db_engine: Engine,
) -> None:
    found = _check(executor, "nl")
    subscribed = _call(executor, "action_subscribe_updates", {"outage": _slots(found)["outage"]})
    assert subscribed["responses"][0]["response"] == "utter_subscribed"
    # Later the engine moves the deadline: the conversation that was told 14:30 hears sorry.
    engine.deadline = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    later = NOW + timedelta(hours=3, minutes=20)
    with make_sessionmaker(db_engine)() as db, db.begin():
        assert promises.renew_due(db, later) == 1
        message = db.scalars(select(OutboxMessage)).one()
        assert (message.channel, message.address) == ("api", "conv-1")
        text = messages.render_outbox(
            message.kind,
            message.payload,
            message.language,
            timezone=settings.timezone,
            now=later,
        )
    assert text == (
        "Sorry, de storing in internet is helaas niet vóór 14:30 opgelost, zoals we eerder "
        "verwachtten. We verwachten nu dat het vóór 17:00 is opgelost."
    )
