"""Texts of the outbox messages and the times told to customers (bot.messages), nl and en.

The outbox rows are written by the promise service itself (renewals, resolution), so the
templates are tested with the payloads it really writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import messages
from bot.promises.service import PromiseService
from bot.settings import Settings
from bot.storage.models import Outage, OutboxMessage
from bot.subscriptions.service import subscribe
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

TZ = "Europe/Amsterdam"
# Thursday 20 November 2025, 10:00 in Amsterdam (CET, UTC+1).
T0 = datetime(2025, 11, 20, 9, 0, tzinfo=UTC)


# -- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "nl", "en"),
    [
        (datetime(2025, 11, 20, 13, 30, tzinfo=UTC), "vóór 14:30", "before 2:30 pm"),
        (datetime(2025, 11, 20, 11, 0, tzinfo=UTC), "vóór 12:00", "before 12:00 pm"),
        (datetime(2025, 11, 21, 8, 0, tzinfo=UTC), "morgen vóór 09:00", "tomorrow before 9:00 am"),
        (
            datetime(2025, 11, 22, 8, 0, tzinfo=UTC),
            "op zaterdag 22 november vóór 09:00",
            "on Saturday 22 November before 9:00 am",
        ),
        # Midnight ends the day before it: 00:00 on Friday is "before midnight" on Thursday.
        (datetime(2025, 11, 20, 23, 0, tzinfo=UTC), "vóór middernacht", "before midnight"),
        (
            datetime(2025, 11, 21, 23, 0, tzinfo=UTC),
            "morgen vóór middernacht",
            "tomorrow before midnight",
        ),
        (
            datetime(2025, 11, 20, 23, 30, tzinfo=UTC),
            "morgen vóór 00:30",
            "tomorrow before 12:30 am",
        ),
    ],
)
def test_a_deadline_is_told_with_its_day(moment: datetime, nl: str, en: str) -> None:
    assert messages.moment_phrase(moment, T0, "nl", TZ, "before") == nl
    assert messages.moment_phrase(moment, T0, "en", TZ, "before") == en


def test_moments_use_the_local_day_and_summer_time() -> None:
    # 22:30 UTC on 1 July is already 00:30 on 2 July in Amsterdam (CEST, UTC+2).
    now = datetime(2026, 7, 1, 20, 0, tzinfo=UTC)
    moment = datetime(2026, 7, 1, 22, 30, tzinfo=UTC)
    assert messages.moment_phrase(moment, now, "nl", TZ, "at") == "morgen om 00:30"
    assert messages.moment_phrase(moment, now, "en", TZ, "at") == "tomorrow at 12:30 am"
    earlier = datetime(2026, 6, 30, 10, 15, tzinfo=UTC)
    assert messages.moment_phrase(earlier, now, "nl", TZ, "at") == "gisteren om 12:15"
    assert messages.moment_phrase(earlier, now, "en", TZ, "at") == "yesterday at 12:15 pm"


def test_both_languages_have_the_same_texts() -> None:
    folder = Path(messages.__file__).parent
    nl = yaml.safe_load((folder / "nl.yml").read_text(encoding="utf-8"))
    en = yaml.safe_load((folder / "en.yml").read_text(encoding="utf-8"))
    assert set(nl) == set(en)


# -- outbox rows as the promise service writes them ---------------------------------------------


class ScriptedEngine:
    """Promises ``deadlines[reference]`` (None: only a next update, an hour from now)."""

    def __init__(self) -> None:
        self.deadlines: dict[str, datetime | None] = {}

    def fit(self, history: Sequence[Incident], now: datetime) -> ScriptedEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        deadline = self.deadlines.get(outage.id)
        return Estimate(
            made_at=now,
            target=target,
            deadline=deadline,
            next_update_at=None if deadline else now + timedelta(hours=1),
            remaining_minutes=None if deadline is None else (deadline - now).seconds / 60,
            explanation=Explanation("service=tv", 42, 35, 30.0, "scripted/1"),
        )


def _outage(session: Session, reference: str, service: str, region: str) -> Outage:
    outage = Outage(
        reference=reference,
        service=service,
        cause="power",
        region_name=region,
        country="NL",
        started_at=T0 - timedelta(minutes=30),
        customers_affected=100,
    )
    session.add(outage)
    session.flush()
    return outage


def _told_and_subscribed(
    service: PromiseService, session: Session, outage: Outage, address: str, now: datetime
) -> None:
    view = service.current(session, outage.id, now)
    assert view is not None
    service.record_given(
        session,
        view,
        channel="sms",
        recipient=address,
        language="nl",
        conversation_id=None,
        now=now,
    )
    subscribe(session, channel="sms", address=address, language="nl", now=now, outage_id=outage.id)


@pytest.fixture
def outbox(session: Session, tmp_path: Path) -> dict[str, OutboxMessage]:
    """One row of each template: a broken clock time, a next update, and "fixed"."""
    engine = ScriptedEngine()
    service = PromiseService(
        Settings(home=tmp_path, promise_renew_at_fraction=0.9),
        engine_factory=lambda _config: engine,
        min_refit_interval=timedelta(0),
    )
    internet = _outage(session, "STO-25-00001", "internet", "Utrecht")
    tv = _outage(session, "STO-25-00002", "tv", "Amsterdam")
    landline = _outage(session, "STO-25-00003", "landline", "Gouda")
    engine.deadlines = {internet.reference: T0 + timedelta(hours=2), tv.reference: None}
    engine.deadlines[landline.reference] = None
    for outage, address in ((internet, "+31600000001"), (tv, "+31600000002")):
        _told_and_subscribed(service, session, outage, address, T0)
    _told_and_subscribed(service, session, landline, "+31600000003", T0)

    # Internet: 12:00 will not be met (the engine now says 14:00). TV: still no clock time, the
    # next update moves on. Landline: a clock time after the "we'll know more" (tomorrow 09:00).
    engine.deadlines[internet.reference] = T0 + timedelta(hours=4)
    engine.deadlines[landline.reference] = datetime(2025, 11, 21, 8, 0, tzinfo=UTC)
    assert service.renew_due(session, T0 + timedelta(minutes=110)) == 3
    service.resolve(session, internet.id, T0 + timedelta(hours=3), T0 + timedelta(hours=3))
    session.flush()
    rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    by_key = {f"{row.payload['template']}:{row.payload['params']['outage']}": row for row in rows}
    assert set(by_key) == {
        "promise_renewed:STO-25-00001",
        "promise_next_update:STO-25-00002",
        "promise_next_update:STO-25-00003",
        "outage_fixed:STO-25-00001",
    }
    return by_key


def _render(row: OutboxMessage, language: str, now: datetime) -> str:
    return messages.render_outbox(row.kind, row.payload, language, timezone=TZ, now=now)


@pytest.mark.parametrize(
    ("key", "nl", "en"),
    [
        (
            "promise_renewed:STO-25-00001",
            "Sorry, de storing in internet is helaas niet vóór 12:00 opgelost, zoals we eerder "
            "verwachtten. We verwachten nu dat het vóór 14:00 is opgelost.",
            "Sorry, the outage affecting internet won't be fixed before 12:00 pm as we expected "
            "earlier. We now expect it to be fixed before 2:00 pm.",
        ),
        (
            "promise_next_update:STO-25-00002",
            "Nieuws over de storing in tv. We weten nog niet wanneer het is opgelost; om 12:50 "
            "weten we meer.",
            "An update on the outage affecting TV. We don't know yet when it will be fixed; "
            "we'll know more at 12:50 pm.",
        ),
        (
            "promise_next_update:STO-25-00003",
            "Nieuws over de storing in vaste telefoon. We verwachten nu dat het morgen vóór "
            "09:00 is opgelost.",
            "An update on the outage affecting landline. We now expect it to be fixed tomorrow "
            "before 9:00 am.",
        ),
        (
            "outage_fixed:STO-25-00001",
            "Goed nieuws: de storing in internet in Utrecht is om 13:00 opgelost. Werkt het bij "
            "jou nog niet? Start je modem of apparaat dan even opnieuw op.",
            "Good news: the outage affecting internet in Utrecht was fixed at 1:00 pm. Still not "
            "working? Try restarting your modem or device.",
        ),
    ],
)
def test_every_outbox_message_renders_in_dutch_and_english(
    outbox: dict[str, OutboxMessage], key: str, nl: str, en: str
) -> None:
    row = outbox[key]
    sent = T0 + timedelta(hours=3)  # the same day
    assert _render(row, "nl", sent) == nl
    assert _render(row, "en", sent) == en


def test_a_message_sent_the_next_day_names_the_day(outbox: dict[str, OutboxMessage]) -> None:
    row = outbox["outage_fixed:STO-25-00001"]
    next_day = T0 + timedelta(days=1)
    assert " is gisteren om 13:00 opgelost." in _render(row, "nl", next_day)
    assert " was fixed yesterday at 1:00 pm." in _render(row, "en", next_day)


def test_unknown_templates_and_languages_are_refused() -> None:
    payload = {"template": "birthday", "params": {"service": "tv"}}
    with pytest.raises(ValueError, match="birthday"):
        messages.render_outbox("promise_renewed", payload, "nl", timezone=TZ, now=T0)
    fixed = {"template": "outage_fixed", "params": {"resolved_at": T0.isoformat()}}
    with pytest.raises(ValueError, match="language"):
        messages.render_outbox("outage_fixed", fixed, "de", timezone=TZ, now=T0)
    # A payload without its template falls back to the kind.
    text = messages.render_outbox(
        "outage_fixed", {"params": fixed["params"]}, "en", timezone=TZ, now=T0
    )
    assert text.startswith("Good news: the outage affecting your service in your area was fixed")


def test_fixed_messages_queued_in_bulk_render_in_each_subscribers_language(
    session: Session, tmp_path: Path
) -> None:
    service = PromiseService(
        Settings(home=tmp_path),
        engine_factory=lambda _config: ScriptedEngine(),
        min_refit_interval=timedelta(0),
    )
    outage = _outage(session, "STO-25-00009", "internet", "Utrecht")
    languages = {f"+3160000{i:04d}": "nl" if i % 3 else "en" for i in range(30)}
    for address, language in languages.items():
        subscribe(
            session, channel="sms", address=address, language=language, now=T0,
            outage_id=outage.id,
        )  # fmt: skip
    fixed_at = T0 + timedelta(hours=3)
    assert service.resolve(session, outage.id, fixed_at, fixed_at).queued == 30
    rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert {row.address: row.language for row in rows} == languages
    opening = {"nl": "Goed nieuws: de storing in internet", "en": "Good news: the outage"}
    for row in rows:
        assert _render(row, row.language, fixed_at).startswith(opening[row.language])
