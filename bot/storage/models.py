"""The database schema of Belofte as SQLAlchemy 2 typed ORM models.

Every timestamp is a :class:`~bot.storage.types.UTCDateTime`: timezone-aware UTC on both SQLite
and PostgreSQL. Enumerations are plain strings (with CHECK constraints where the set is closed
for good, like message direction) so that adding a channel or a cause never needs a migration.
The schema itself is created by the Alembic migrations in ``bot/migrations``; a test checks that
the migrated schema matches these models.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from bot.storage.types import UTCDateTime, utcnow

#: Deterministic constraint names, identical on SQLite and PostgreSQL, so later migrations can
#: drop or alter constraints by name.
NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Channels a customer can reach us on (not enforced by the database: new channels need no
#: migration).
CHANNELS: Final = ("telegram", "sms", "whatsapp", "voice", "web", "console", "api")
#: Canonical services; :func:`bot.outages.postcodes.normalise_service` maps synonyms onto these.
SERVICES: Final = ("internet", "tv", "landline", "mobile", "electricity", "gas")
#: Outage causes used by the demo data and the promise engine (open-ended).
CAUSES: Final = (
    "fiber_cut",
    "cable_damage",
    "power_failure",
    "equipment_failure",
    "software",
    "maintenance",
    "weather",
    "overload",
    "gas_leak",
)
#: Lifecycle of a promise decision ("fixed before 14:30"): the engine suggests, a supervisor may
#: approve or override, and a newer decision supersedes an older one.
PROMISE_STATUSES: Final = ("suggested", "approved", "overridden", "superseded")
#: How a promise told to someone turned out once the outage was resolved. ``no_deadline``: only the
#: time of the next update was given, so there was no clock time to keep or break.
PROMISE_OUTCOMES: Final = ("kept", "broken", "no_deadline")
#: What a supervisor did to a promise (see :class:`PromiseAudit`).
PROMISE_AUDIT_ACTIONS: Final = ("approve", "override")
#: Kinds of messages recorded in the outbox (open-ended: channels may add kinds).
OUTBOX_KINDS: Final = ("promise_renewed", "outage_fixed")
#: Delivery state of an outbox message: ``failed`` is retried, ``dead`` is given up on.
OUTBOX_STATUSES: Final = ("pending", "sent", "failed", "dead")
LANGUAGES: Final = ("nl", "en")
COUNTRIES: Final = ("NL", "BE")

_LANGUAGE_CHECK = "language IN ('nl', 'en')"
_COUNTRY_CHECK = "country IN ('NL', 'BE')"
_TARGET_CHECK = "target_quantile > 0 AND target_quantile < 1"


def _in_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base; its ``metadata`` is what Alembic compares the migrations against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Customer(Base):
    """A person we talk to, possibly known on several channels."""

    __tablename__ = "customers"
    __table_args__ = (CheckConstraint(_LANGUAGE_CHECK, name="language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2), default="nl")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Where the customer wants notifications (``sms``, ``whatsapp``, ``telegram``); null: on
    #: the channel each subscription was made on (migration 0007, bot/customers).
    preferred_channel: Mapped[str | None] = mapped_column(String(16))

    identities: Mapped[list[ChannelIdentity]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", passive_deletes=True
    )


class ChannelIdentity(Base):
    """How a customer is addressed on one channel: a Telegram chat id, a phone number, ..."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identities")


class Conversation(Base):
    """One conversation, keyed by the channel's own conversation id (Rasa's sender id)."""

    __tablename__ = "conversations"
    __table_args__ = (CheckConstraint(_LANGUAGE_CHECK, name="language"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    language: Mapped[str] = mapped_column(String(2), default="nl")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
    )


class Message(Base):
    """One message in or out.

    Incoming messages are stored before Rasa is called, so nothing a customer sends is lost even
    when the NLU is down; ``intent``/``intent_confidence`` are filled in afterwards.
    """

    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))
    text: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    intent: Mapped[str | None] = mapped_column(String(100))
    intent_confidence: Mapped[float | None] = mapped_column(Float)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class Outage(Base):
    """A disruption of one service in one region; active while ``resolved_at`` is null.

    Outages come from the operations feed (``POST /api/v1/outages``), history imports and the
    demo seed; ``reference`` is their external id in all three. ``country`` is null for imported
    history that does not say; ``attributes`` keeps the extra columns of an import (for example
    a ServiceNow ``priority``) for the promise engine's segments.
    """

    __tablename__ = "outages"
    __table_args__ = (
        CheckConstraint(_COUNTRY_CHECK, name="country"),
        CheckConstraint("customers_affected >= 0", name="customers_affected"),
        Index("ix_outages_service_started", "service", "started_at"),
        Index("ix_outages_resolved_at", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Human-readable ticket number, e.g. ``STO-24-00123``.
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    service: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(String(32))
    region_name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))
    started_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    customers_affected: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, str]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    #: Where the row came from: ``operations`` (the live feed) or an import's source label;
    #: null for demo data and rows older than migration 0003.
    source: Mapped[str | None] = mapped_column(String(64))

    areas: Mapped[list[OutageArea]] = relationship(
        back_populates="outage",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="OutageArea.postcode_prefix",
    )
    promises: Mapped[list[Promise]] = relationship(
        back_populates="outage", cascade="all, delete-orphan", passive_deletes=True
    )

    @hybrid_property
    def is_active(self) -> bool:
        """True while the outage is not resolved (usable in queries too)."""
        return self.resolved_at is None

    @is_active.inplace.expression
    @classmethod
    def _is_active_expression(cls) -> ColumnElement[bool]:
        return cls.resolved_at.is_(None)

    @property
    def duration(self) -> timedelta | None:
        """How long the outage lasted, or None while it is active."""
        if self.resolved_at is None:
            return None
        return self.resolved_at - self.started_at


class OutageArea(Base):
    """One 4-digit postcode area touched by an outage."""

    __tablename__ = "outage_areas"
    __table_args__ = (
        UniqueConstraint("outage_id", "country", "postcode_prefix"),
        CheckConstraint(_COUNTRY_CHECK, name="country"),
        Index("ix_outage_areas_country_prefix", "country", "postcode_prefix"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outage_id: Mapped[int] = mapped_column(ForeignKey("outages.id", ondelete="CASCADE"))
    country: Mapped[str] = mapped_column(String(2))
    #: The four digits of the postcode: Dutch letters are too fine-grained for outage areas.
    postcode_prefix: Mapped[str] = mapped_column(String(4))

    outage: Mapped[Outage] = relationship(back_populates="areas")


class OutageState(Base):
    """What the operations system recorded about an outage while it was worked on.

    Its state, who holds it, reassignments: the attributes named here override the outage's
    opening ``attributes`` from ``recorded_at`` on. The promise engine's remaining-time model
    reads them as they stood when a promise was made; segments read only the opening facts.
    """

    __tablename__ = "outage_states"
    __table_args__ = (Index("ix_outage_states_outage_recorded", "outage_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outage_id: Mapped[int] = mapped_column(ForeignKey("outages.id", ondelete="CASCADE"))
    recorded_at: Mapped[datetime]
    attributes: Mapped[dict[str, str]] = mapped_column(JSON)


class Subscription(Base):
    """A "tell me when it is fixed" request.

    At most one *active* (not cancelled) subscription exists per (channel, address, outage): two
    partial unique indexes enforce it on both SQLite and PostgreSQL, one for subscriptions to a
    known outage and one for those without an outage (NULLs never collide in a unique index).
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(_LANGUAGE_CHECK, name="language"),
        Index(
            "uq_subscriptions_active_outage",
            "channel",
            "address",
            "outage_id",
            unique=True,
            sqlite_where=text("cancelled_at IS NULL AND outage_id IS NOT NULL"),
            postgresql_where=text("cancelled_at IS NULL AND outage_id IS NOT NULL"),
        ),
        Index(
            "uq_subscriptions_active_no_outage",
            "channel",
            "address",
            unique=True,
            sqlite_where=text("cancelled_at IS NULL AND outage_id IS NULL"),
            postgresql_where=text("cancelled_at IS NULL AND outage_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outage_id: Mapped[int | None] = mapped_column(
        ForeignKey("outages.id", ondelete="SET NULL"), index=True
    )
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    #: Where to send the update: a chat id or a phone number.
    address: Mapped[str] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(2), default="nl")
    postcode: Mapped[str | None] = mapped_column(String(7))
    service: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]

    outage: Mapped[Outage | None] = relationship()

    @hybrid_property
    def is_active(self) -> bool:
        """True until the subscription is cancelled (usable in queries too)."""
        return self.cancelled_at is None

    @is_active.inplace.expression
    @classmethod
    def _is_active_expression(cls) -> ColumnElement[bool]:
        return cls.cancelled_at.is_(None)


class Feedback(Base):
    """Free-text feedback from a customer or from an agent about the assistant."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("source IN ('agent', 'customer')", name="source"),
        CheckConstraint(_LANGUAGE_CHECK, name="language"),
        # -- CX feedback (issue 6; migration 0009) --
        CheckConstraint(
            "category IS NULL OR category IN "
            "('process', 'product', 'knowledge_base', 'promise', 'tooling', 'other')",
            name="category",
        ),
        CheckConstraint("state IN ('new', 'triaged', 'actioned', 'dismissed')", name="state"),
        # Anonymous means anonymous, whatever a caller gets wrong: no user, no name.
        CheckConstraint("NOT anonymous OR (user_id IS NULL AND author IS NULL)", name="anonymous"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))
    author: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(2), default="nl")
    theme: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # -- CX feedback (issue 6, bot/cx; migration 0009) --
    #: One of :data:`FEEDBACK_CATEGORIES`; null for customers' feedback from the chat.
    category: Mapped[str | None] = mapped_column(String(16), index=True)
    #: One of :data:`FEEDBACK_STATES`; every change is a :class:`FeedbackStateChange`.
    state: Mapped[str] = mapped_column(String(16), default="new", server_default="new", index=True)
    #: The staff member who wrote it (null for customers and for anonymous observations).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    #: (Migration 0009 gives existing rows false; ``text`` is a column name in this class body.)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    outage_id: Mapped[int | None] = mapped_column(
        ForeignKey("outages.id", ondelete="SET NULL"), index=True
    )


class Promise(Base):
    """A promise *decision* for an outage: what everyone is told about when it will be fixed.

    The engine's suggestions are stored (status ``suggested``) whenever they change, so
    supervisors can review what customers see; a supervisor's approval or override is a new row
    (``approved``/``overridden``) and every older row becomes ``superseded``. ``deadline`` is null
    when there was too little evidence for a clock time: then ``next_update_at`` says when
    customers hear more. ``evidence`` is the engine's :meth:`promise.estimate.Estimate.to_dict`.
    """

    __tablename__ = "promises"
    __table_args__ = (
        CheckConstraint(_TARGET_CHECK, name="target_quantile"),
        CheckConstraint(_in_check("status", PROMISE_STATUSES), name="status"),
        CheckConstraint("deadline IS NOT NULL OR next_update_at IS NOT NULL", name="when"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outage_id: Mapped[int] = mapped_column(ForeignKey("outages.id", ondelete="CASCADE"), index=True)
    deadline: Mapped[datetime | None]
    next_update_at: Mapped[datetime | None]
    #: The probability the promise engine aims for that the outage is fixed by ``deadline``.
    target_quantile: Mapped[float] = mapped_column(Float)
    #: One of :data:`PROMISE_STATUSES`.
    status: Mapped[str] = mapped_column(String(16), default="suggested")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    made_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: ``engine`` for suggestions, the supervisor for approvals and overrides.
    made_by: Mapped[str | None] = mapped_column(String(200))
    #: Why a supervisor overrode (required then) or approved (optional).
    reason: Mapped[str | None] = mapped_column(Text)

    outage: Mapped[Outage] = relationship(back_populates="promises")


class PromiseGiven(Base):
    """A promise told to someone: who, where, when, and how it turned out.

    At most one row per (decision, channel, recipient), so telling the same person the same
    promise twice is recorded once. ``outcome`` is filled when the outage is resolved (see
    :data:`PROMISE_OUTCOMES`); ``renewed_at`` when a newer promise replaced this one before it
    broke (and, for subscribers, an apology with the new time was queued in the outbox).
    """

    __tablename__ = "promises_given"
    __table_args__ = (
        UniqueConstraint("promise_id", "channel", "recipient"),
        CheckConstraint(_LANGUAGE_CHECK, name="language"),
        CheckConstraint(_TARGET_CHECK, name="target_quantile"),
        CheckConstraint(_in_check("outcome", PROMISE_OUTCOMES), name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promise_id: Mapped[int] = mapped_column(
        ForeignKey("promises.id", ondelete="CASCADE"), index=True
    )
    outage_id: Mapped[int] = mapped_column(ForeignKey("outages.id", ondelete="CASCADE"), index=True)
    given_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))
    #: The address on ``channel``: a phone number, a chat id, a conversation id.
    recipient: Mapped[str] = mapped_column(String(128))
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    language: Mapped[str] = mapped_column(String(2), default="nl")
    deadline: Mapped[datetime | None]
    next_update_at: Mapped[datetime | None]
    target_quantile: Mapped[float] = mapped_column(Float)
    #: What the promise rested on: ``n`` similar outages, ``segment``, ``method_version``.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str | None] = mapped_column(String(16))
    scored_at: Mapped[datetime | None]
    renewed_at: Mapped[datetime | None]

    promise: Mapped[Promise] = relationship()


class PromiseAudit(Base):
    """A supervisor's approval or override of a promise: who, when, why, old and new deadline."""

    __tablename__ = "promise_audit"
    __table_args__ = (
        CheckConstraint(_in_check("action", PROMISE_AUDIT_ACTIONS), name="action"),
        Index("ix_promise_audit_outage_at", "outage_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The decision the action created.
    promise_id: Mapped[int] = mapped_column(
        ForeignKey("promises.id", ondelete="CASCADE"), index=True
    )
    outage_id: Mapped[int] = mapped_column(ForeignKey("outages.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    old_deadline: Mapped[datetime | None]
    new_deadline: Mapped[datetime | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PromiseTarget(Base):
    """The probability a promise is kept, chosen by supervisors for one service."""

    __tablename__ = "promise_targets"
    __table_args__ = (CheckConstraint(_TARGET_CHECK, name="target_quantile"),)

    service: Mapped[str] = mapped_column(String(16), primary_key=True)
    target_quantile: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """A message to send to a customer, recorded in the same transaction as its reason.

    ``payload`` holds a template key and its parameters (``{"template": ..., "params": {...}}``),
    never text: the channels render it in ``language``. ``dedupe_key`` is unique, so the same
    message (``fixed:<outage>:<subscription>``, ...) can never be queued twice, even by two
    workers at once. Delivery (``status``, ``attempts``, ``next_attempt_at``) belongs to the
    channel workers.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_LANGUAGE_CHECK, name="language"),
        CheckConstraint(_in_check("status", OUTBOX_STATUSES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_outbox_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: One of :data:`OUTBOX_KINDS`.
    kind: Mapped[str] = mapped_column(String(32))
    outage_id: Mapped[int] = mapped_column(ForeignKey("outages.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL"), index=True
    )
    promise_given_id: Mapped[int | None] = mapped_column(
        ForeignKey("promises_given.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(2), default="nl")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # -- delivery (issue 5, bot/delivery; migration 0006) --
    #: When the dispatcher handed the message to a worker queue; null while not queued. A row
    #: queued long ago and still pending is queued again (its job was lost with Redis).
    queued_at: Mapped[datetime | None]
    #: When a worker last tried to send it.
    last_attempt_at: Mapped[datetime | None]


class Handoff(Base):
    """A customer's request to talk to a human."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class SuggestionEvent(Base):
    """What happened to a next-best answer: shown, used, thumbs up or thumbs down.

    ``suggestion_id`` is the retriever's stable id (same article family, language and answer
    text give the same id across index rebuilds), so feedback survives re-indexing.
    """

    __tablename__ = "suggestion_events"
    __table_args__ = (
        CheckConstraint("event IN ('shown', 'used', 'thumbs_up', 'thumbs_down')", name="event"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suggestion_id: Mapped[str] = mapped_column(String(64), index=True)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    article_id: Mapped[str | None] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# -- channels (issue 5: Telegram, Twilio SMS and WhatsApp; bot/channels) -----------------------

#: What became of an inbound channel event taken in by a webhook.
CHANNEL_INBOUND_STATUSES: Final = ("received", "done", "failed")


class ChannelInbound(Base):
    """An inbound webhook event (Telegram update, Twilio message) that was taken in.

    The unique (channel, external_id) is what makes "processed once" true: a webhook inserts the
    row before doing anything else, and a retry by the platform, even arriving at the same moment
    on another worker, fails that insert and is acknowledged without being handled again.
    ``external_id`` is the platform's id (``<bot id>:<update_id>``, a ``MessageSid``);
    ``address`` the sender (a chat id, a phone number): the WhatsApp 24-hour window is measured
    from the last row of an address.
    """

    __tablename__ = "channel_inbound"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        CheckConstraint(_in_check("status", CHANNEL_INBOUND_STATUSES), name="status"),
        Index("ix_channel_inbound_channel_address_received", "channel", "address", "received_at"),
        # The sweep for events stuck in "received" reads only those: a small partial index.
        Index(
            "ix_channel_inbound_stuck",
            "received_at",
            sqlite_where=text("status = 'received'"),
            postgresql_where=text("status = 'received'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(128))
    #: One of :data:`CHANNEL_INBOUND_STATUSES`.
    status: Mapped[str] = mapped_column(String(16), default="received")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    #: The update or form as received, kept until the event is finished so that a sweep can
    #: process it again after a crash (migration 0007).
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: When a sweep claimed the event for its one more try (null: never swept).
    swept_at: Mapped[datetime | None]


class ChannelOptOut(Base):
    """Whether an address said STOP on a channel; one row per (channel, address).

    ``opted_out_at`` is set by STOP and cleared by START (``opted_in_at``): every send path
    checks it right before sending, so an opted-out number is never messaged again until it opts
    back in.
    """

    __tablename__ = "channel_opt_outs"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    opted_out_at: Mapped[datetime | None]
    opted_in_at: Mapped[datetime | None]
    #: The word the customer sent last (STOP, STOPPEN, START, ...).
    keyword: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @hybrid_property
    def is_opted_out(self) -> bool:
        """True while the address may not be messaged (usable in queries too)."""
        return self.opted_out_at is not None

    @is_opted_out.inplace.expression
    @classmethod
    def _is_opted_out_expression(cls) -> ColumnElement[bool]:
        return cls.opted_out_at.is_not(None)


class ChannelOutbound(Base):
    """A message sent (or refused) on a channel, with its delivery state.

    ``status`` starts as ours (``queued``; ``refused`` when an opt-out or the WhatsApp window
    forbids sending; ``failed`` when the REST call failed) and then follows Twilio's delivery
    status callbacks (``accepted``, ``sent``, ``delivered``, ``undelivered``, ``read``, ...);
    the history is in :class:`ChannelDeliveryEvent`. ``idempotency_key`` (unique, optional)
    lets a sender that retries (the outbox workers) record a message to one recipient once.
    ``queued`` without a ``twilio_sid`` is a claim whose REST call has not come back (it may be
    running, or its process died); ``unknown``: the call failed in a way that leaves open whether
    the platform took the message (a timeout). See :mod:`bot.channels.outbound`.
    """

    __tablename__ = "channel_outbound"
    __table_args__ = (
        Index("ix_channel_outbound_channel_address_created", "channel", "address", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    #: The recipient as the channel addresses it (+31..., whatsapp:+31..., a chat id).
    address: Mapped[str] = mapped_column(String(128))
    sender: Mapped[str | None] = mapped_column(String(128))
    #: ``reply``, ``confirmation``, ``notification``, ... (open-ended).
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[str | None] = mapped_column(Text)
    #: The approved WhatsApp template sent instead of ``body`` outside the 24-hour window.
    content_sid: Mapped[str | None] = mapped_column(String(64))
    content_variables: Mapped[dict[str, str] | None] = mapped_column(JSON)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    outbox_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox.id", ondelete="SET NULL"), index=True
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="queued")
    twilio_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # -- leased claims (bot/delivery; migration 0006) --
    #: When the current attempt claimed the row, right before its REST call: a retry treats a
    #: claim younger than the lease as still running, an older one as "outcome unknown".
    claimed_at: Mapped[datetime | None]
    #: How many times the row was claimed (1 for a message sent once); also the claim's version.
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

    events: Mapped[list[ChannelDeliveryEvent]] = relationship(
        back_populates="outbound",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ChannelDeliveryEvent.id",
    )


class ChannelDeliveryEvent(Base):
    """One delivery status callback from Twilio, stored once per (message, status).

    ``outbound_id`` is null for a callback about a message this database does not know (sent
    by another system on the same account). ``details`` keeps the callback's fields without any
    message text.
    """

    __tablename__ = "channel_delivery_events"
    __table_args__ = (UniqueConstraint("message_sid", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_outbound.id", ondelete="CASCADE"), index=True
    )
    message_sid: Mapped[str] = mapped_column(String(64))
    #: Twilio's words, e.g. ``partially_delivered``: open-ended, hence the generous length.
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    outbound: Mapped[ChannelOutbound | None] = relationship(back_populates="events")


class ChannelCallbackPayload(Base):
    """A Telegram button payload too long for the 64 bytes of callback data, by its short key.

    Kept in the database (not in memory) so buttons of older messages still work after a
    restart; the key is derived from the payload, so the same payload always gets the same key.
    """

    __tablename__ = "channel_callback_payloads"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- voice line (issue 5: the Twilio outage line; bot/channels/voice.py, migration 0005) -------

#: Where a call is: the question its next webhook answers, or its end.
VOICE_STEPS: Final = ("language", "known_postcode", "postcode", "menu", "done", "transferred")


class VoiceCall(Base):
    """One call to the outage line, by Twilio's ``CallSid``: the state its webhooks share.

    Each webhook of a call may land on another worker, so the state lives here. ``turn`` counts
    the webhooks answered; every ``<Gather>`` action carries the turn it answers, so a webhook
    Twilio delivers twice is answered again with ``last_twiml`` instead of being handled twice.
    What the caller was told (postcode, outage, promise) is kept for the agent a call is handed
    to (``handoff_id``) and for the record.
    """

    __tablename__ = "voice_calls"
    __table_args__ = (
        CheckConstraint(_LANGUAGE_CHECK, name="language"),
        CheckConstraint(_in_check("step", VOICE_STEPS), name="step"),
        Index("ix_voice_calls_caller_started", "caller", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    #: The caller's number (E.164), None when withheld.
    caller: Mapped[str | None] = mapped_column(String(32))
    #: The number of the line that was called.
    called: Mapped[str | None] = mapped_column(String(32))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    language: Mapped[str] = mapped_column(String(2), default="nl")
    #: One of :data:`VOICE_STEPS`.
    step: Mapped[str] = mapped_column(String(16), default="language")
    turn: Mapped[int] = mapped_column(Integer, default=0)
    #: Failed attempts in a row at the current step (silence, not understood).
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: The postcode offered from earlier contacts, and the one the call is about.
    postcode_on_file: Mapped[str | None] = mapped_column(String(7))
    postcode: Mapped[str | None] = mapped_column(String(7))
    #: The outages told (their ids), the promise said (the text spoken) and its record.
    outage_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    promise_said: Mapped[str | None] = mapped_column(Text)
    subscription_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    handoff_id: Mapped[int | None] = mapped_column(
        ForeignKey("handoffs.id", ondelete="SET NULL"), index=True
    )
    #: Why the call was handed to an agent: ``requested``, ``not_understood``.
    transfer_reason: Mapped[str | None] = mapped_column(String(32))
    last_twiml: Mapped[str | None] = mapped_column(Text)
    #: Twilio's call status (``ringing``, ``in-progress``, ``completed``, ...), latest first.
    status: Mapped[str | None] = mapped_column(String(32))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    ended_at: Mapped[datetime | None]


class VoiceCallEvent(Base):
    """A call status callback from Twilio, stored once per (call, status).

    Keyed by ``call_sid`` rather than a foreign key: a callback may come for a call whose
    webhook never reached this service (answered elsewhere, or failed before).
    """

    __tablename__ = "voice_call_events"
    __table_args__ = (UniqueConstraint("call_sid", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    #: Twilio's ``SequenceNumber`` of the callback (their order is not guaranteed).
    sequence_number: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- one customer across channels (issue 5: link codes; bot/customers, migration 0007) ---------


class CustomerLinkCode(Base):
    """A one-time code that ties another channel identity to a customer.

    The customer asks for it on one channel (KOPPEL by SMS, ``/koppel`` on Telegram) and sends
    it on the other. Only its keyed hash is stored; it expires, and using it sets ``used_at``
    (a conditional update, so it works once even when sent twice at the same moment).
    """

    __tablename__ = "customer_link_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    #: HMAC-SHA256 of the code (hex), keyed with the deployment's link-code key.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The channel the code was asked for on.
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class CustomerLinkAttempt(Base):
    """A wrong link code sent from one address: too many within a window lock it out."""

    __tablename__ = "customer_link_attempts"
    __table_args__ = (
        Index("ix_customer_link_attempts_channel_address_at", "channel", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# -- accounts (issue 6: users, web sessions, login attempts; bot/accounts, migration 0008) ------

#: Roles of the people who use the web pages; admin may do everything.
USER_ROLES: Final = ("agent", "supervisor", "cx", "admin")


class User(Base):
    """A person who logs in to the console, supervisor or CX pages.

    ``username`` is stored lower-cased (logins are case-insensitive). The password is only ever
    stored as an argon2 hash. Disabling a user (``is_active`` false) keeps the row, so audit
    logs and observations that name them stay readable.
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in_check("role", USER_ROLES), name="role"),
        CheckConstraint(_LANGUAGE_CHECK, name="language"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    #: Interface language, switched with the nl/en links on every page.
    language: Mapped[str] = mapped_column(String(2), default="nl")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class WebSession(Base):
    """A logged-in browser. The cookie holds a random token; only its SHA-256 is stored here,
    so a copy of the database cannot be used to take over a session.

    ``id`` is a separate random public id (what :class:`bot.accounts.CurrentUser` calls the
    session id); it is never a credential.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The per-session CSRF token (sent back in forms and the X-CSRF-Token header).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The absolute end of the session, whatever the activity.
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginAttempt(Base):
    """A failed login, counted per username and per client address for the rate limit.

    Kept in the database (not Redis, not memory) so the limit holds across processes.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# -- CX feedback (issue 6: inbox states, comments, theme vectors, webhook forwards; bot/cx,
# migration 0009). The observations themselves are the ``feedback`` table above. --

#: What an observation is about (the "Feedback to CX" dialog's choice).
FEEDBACK_CATEGORIES: Final = ("process", "product", "knowledge_base", "promise", "tooling", "other")
#: Where an observation is in the CX inbox.
FEEDBACK_STATES: Final = ("new", "triaged", "actioned", "dismissed")
#: Forwarding to the webhook: ``sending`` is claimed by one process (until its lease ends);
#: ``failed`` is kept after the last attempt until someone retries it.
FEEDBACK_FORWARD_STATUSES: Final = ("pending", "sending", "sent", "failed")


class FeedbackStateChange(Base):
    """One move of an observation between inbox states: who, when, from, to."""

    __tablename__ = "feedback_state_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(
        ForeignKey("feedback.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: The name at the time, so the history stays readable if the user is removed.
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedbackComment(Base):
    """A comment of the CX team on an observation."""

    __tablename__ = "feedback_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(
        ForeignKey("feedback.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedbackEmbedding(Base):
    """An observation's vector for the themes, cached per encoder version so a page view only
    encodes what is new (float32 bytes, L2-normalised)."""

    __tablename__ = "feedback_embeddings"

    feedback_id: Mapped[int] = mapped_column(
        ForeignKey("feedback.id", ondelete="CASCADE"), primary_key=True
    )
    encoder: Mapped[str] = mapped_column(String(200), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedbackForward(Base):
    """Forwarding one observation to the CX webhook, written in the observation's transaction.

    A process claims a due row with a conditional UPDATE (``status`` pending and due, or
    ``sending`` with an expired lease) that sets a fresh ``claim_token``; only the holder of the
    token may record the result. So two service processes never post the same row at once, and
    a crash leaves a ``sending`` row that another process takes over after the lease.
    """

    __tablename__ = "feedback_forwards"
    __table_args__ = (
        CheckConstraint(_in_check("status", FEEDBACK_FORWARD_STATUSES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_feedback_forwards_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(
        ForeignKey("feedback.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
