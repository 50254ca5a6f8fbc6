"""The agent console's promise card: the promise for the outage in play in a conversation.

The card carries what the agent needs mid-call, rendered on the server from the
``bot/messages`` templates so the wording is the same everywhere: the clock time, the target,
the evidence in one line ("31 similar outages, 80 % fixed within 2 h 10 min", in the agent's
language), who approved or overrode it, and the "tell the customer" text in the conversation's
language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import messages
from bot.promises.service import OutageResolved, PromiseService, PromiseView
from bot.settings import Language
from bot.storage.models import Conversation, Outage, Promise, PromiseGiven, User


class UnknownConversation(LookupError):
    """The conversation does not exist."""


@dataclass(frozen=True)
class PromiseCard:
    """What the console shows for the promise of one outage."""

    outage: str
    service: str
    #: The service as the agent calls it ("vaste telefoon"), in the agent's language.
    service_name: str
    region: str
    deadline: datetime | None
    next_update_at: datetime | None
    #: The deadline (else the next update) as HH:MM in the service's time zone.
    clock: str | None
    target: float
    status: str
    approved_by: str | None
    reason: str | None
    evidence: str
    customer_text: str
    customer_language: Language
    made_at: datetime
    explanation: dict[str, Any]


def _conversations_of_customer(session: Session, conversation: Conversation) -> list[str]:
    """This conversation and, when a customer holds it, the customer's other conversations.

    A customer who was told a promise on WhatsApp and then handed over from the phone line has
    the same outage in play: the card follows the customer, not the channel.
    """
    if conversation.customer_id is None:
        return [conversation.id]
    ids = session.scalars(
        select(Conversation.id).where(Conversation.customer_id == conversation.customer_id)
    ).all()
    return sorted({conversation.id, *ids})


def outage_in_play(
    session: Session, conversation_id: str, reference: str | None = None
) -> Outage | None:
    """The open outage the conversation is about, or None.

    ``reference`` (the outage the console last saw in a reply) wins when it names an open
    outage; otherwise the outage of the latest promise told to this customer that is still open.
    Raises :class:`UnknownConversation`.
    """
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise UnknownConversation(conversation_id)
    if reference:
        outage = session.scalars(select(Outage).where(Outage.reference == reference)).first()
        if outage is not None and outage.resolved_at is None:
            return outage
    conversations: Sequence[str] = _conversations_of_customer(session, conversation)
    return session.scalars(
        select(Outage)
        .join(PromiseGiven, PromiseGiven.outage_id == Outage.id)
        .where(PromiseGiven.conversation_id.in_(conversations), Outage.resolved_at.is_(None))
        .order_by(PromiseGiven.given_at.desc(), PromiseGiven.id.desc())
        .limit(1)
    ).first()


def duration_text(minutes: int, language: Language) -> str:
    """A length of time as agents say it: "2 h 10 min" / "2 u 10 min", "45 min", "3 h"."""
    hours, rest = divmod(max(minutes, 0), 60)
    if hours and rest:
        return messages.text("console_duration_hours_minutes", language, hours=hours, minutes=rest)
    if hours:
        return messages.text("console_duration_hours", language, hours=hours)
    return messages.text("console_duration_minutes", language, minutes=rest)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def evidence_line(
    view: PromiseView, language: Language, estimated_at: datetime | None = None
) -> str:
    """The evidence behind the promise in one line, in the agent's ``language``.

    ``estimated_at`` is when the engine made the estimate the promise rests on (an approval
    keeps the suggestion's time but is made later); default: the promise's ``made_at``.
    """
    similar = _int(view.explanation.get("similar")) or 0
    fixed_within = _int(view.explanation.get("fixed_within")) or 0
    if view.status == "overridden":
        # The engine's numbers back the time it suggested, not the supervisor's time.
        return messages.text(
            "console_evidence_overridden", language, similar=messages.count(similar, language)
        )
    if view.deadline is None or similar <= 0:
        return messages.text(
            "console_evidence_thin", language, similar=messages.count(similar, language)
        )
    # The promised time counted from when the promise was made: what "fixed within" refers to.
    minutes = round((view.deadline - (estimated_at or view.made_at)).total_seconds() / 60)
    return messages.text(
        "console_evidence",
        language,
        similar=messages.count(similar, language),
        percent=round(100 * fixed_within / similar),
        duration=duration_text(minutes, language),
    )


def _estimated_at(evidence: dict[str, Any] | None) -> datetime | None:
    """``made_at`` of the engine's estimate stored with a decision (None when absent)."""
    value = (evidence or {}).get("made_at")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def customer_text(view: PromiseView, language: Language, now: datetime, timezone: str) -> str:
    """What the agent tells the customer, in the conversation's ``language``."""
    service = messages.service_name(view.service, language)
    if view.deadline is not None:
        when = messages.moment_phrase(view.deadline, now, language, timezone, "before")
        return messages.text("console_tell_deadline", language, service_name=service, when=when)
    if view.next_update_at is not None:
        when = messages.moment_phrase(view.next_update_at, now, language, timezone, "at")
        return messages.text("console_tell_next_update", language, service_name=service, when=when)
    return messages.text("console_tell_unknown", language, service_name=service)


def promise_card(
    session: Session,
    promises: PromiseService,
    conversation_id: str,
    *,
    reference: str | None,
    agent_language: Language | None,
    now: datetime,
    timezone: str,
) -> PromiseCard | None:
    """The card for the outage in play, or None when there is none (or it was just resolved).

    The evidence line is in ``agent_language`` (None: the conversation's language).

    Uses :meth:`PromiseService.current`, so the card shows exactly what the channels tell: the
    approved or overridden promise once a supervisor acted. The caller commits (``current``
    may record a new decision when the previous one is due).
    """
    outage = outage_in_play(session, conversation_id, reference)
    if outage is None:
        return None
    try:
        view = promises.current(session, outage.id, now)
    except OutageResolved:
        return None
    if view is None:
        return None
    conversation = session.get(Conversation, conversation_id)
    decision = session.get(Promise, view.promise_id)
    estimated_at = _estimated_at(decision.evidence if decision is not None else None)
    language = messages.as_language(conversation.language if conversation else "nl")
    shown = view.deadline or view.next_update_at
    return PromiseCard(
        outage=outage.reference,
        service=view.service,
        service_name=messages.service_name(view.service, agent_language or language),
        region=outage.region_name,
        deadline=view.deadline,
        next_update_at=view.next_update_at,
        clock=None if shown is None else messages.clock_time(shown, timezone),
        target=view.target,
        status=view.status,
        approved_by=_display_name(session, view.approved_by),
        reason=view.reason,
        evidence=evidence_line(view, agent_language or language, estimated_at),
        customer_text=customer_text(view, language, now, timezone),
        customer_language=language,
        made_at=view.made_at,
        explanation=dict(view.explanation),
    )


def _display_name(session: Session, username: str | None) -> str | None:
    """The supervisor as agents know them ("Sem de Boer"); decisions record the username."""
    if username is None:
        return None
    name = session.scalars(select(User.display_name).where(User.username == username)).first()
    return name or username
