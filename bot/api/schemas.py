"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from bot.api.outage_schemas import PromiseOut


class MessageIn(BaseModel):
    """A message from a customer or an agent."""

    text: str = Field(description="What the user typed or said (1 to 2,000 characters).")
    channel: str = Field(
        default="api",
        min_length=1,
        max_length=32,
        pattern=r"^[a-z_]+$",
        description="Where it came from: api, console, telegram, sms, whatsapp, voice.",
    )


class Button(BaseModel):
    """A quick reply the user can tap."""

    title: str
    payload: str


class ReplyOut(BaseModel):
    """One message of the assistant."""

    text: str
    buttons: list[Button] = Field(default_factory=list)


class IntentOut(BaseModel):
    """The intent Rasa recognised."""

    name: str | None
    confidence: float


class MessageOut(BaseModel):
    """The assistant's answer to one message."""

    conversation_id: str
    replies: list[ReplyOut]
    language: Literal["nl", "en"]
    intent: IntentOut
    entities: list[dict[str, Any]]
    outage: dict[str, Any] | None = Field(
        description="The outage found for the customer's postcode and service in this turn."
    )
    promise: PromiseOut | None = Field(
        default=None,
        description="The repair time told in this turn (when an outage was found, or asked for "
        "again), as `GET /api/v1/outages/{reference}/promise` returns it: `deadline`, else "
        "`next_update_at`, with `target` and `explanation`.",
    )
    suggestions: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Next-best answers from the knowledge base: `id`, `article_id`, `title`, "
        "`answer`, `language`, `score`, `confidence`, `confident`, `passage`, `url`. Agents "
        "(channel `console`) get the retriever's best candidates on every turn, with "
        "`confident: false` when it abstained (the console then shows no card).",
    )


class ErrorOut(BaseModel):
    """Why a request failed, in words for the user."""

    detail: str
    language: Literal["nl", "en"] | None = None


class HealthOut(BaseModel):
    """Health of the service and what it depends on."""

    status: Literal["ok", "degraded"]
    database: dict[str, Any]
    rasa: dict[str, Any]


class ConsolePromiseOut(BaseModel):
    """The agent console's promise card for the outage in play in a conversation."""

    outage: str = Field(description="The outage's reference.")
    service: str
    service_name: str = Field(description="The service in the agent's language.")
    region: str
    deadline: datetime | None
    next_update_at: datetime | None
    clock: str | None = Field(
        description="The deadline (else the next update) as HH:MM in the service's time zone."
    )
    target: float = Field(description="The probability the promise is kept.")
    status: Literal["suggested", "approved", "overridden"]
    approved_by: str | None = Field(description="The supervisor who approved or overrode it.")
    reason: str | None = Field(description="The supervisor's reason for an override.")
    evidence: str = Field(
        description='One line, e.g. "31 similar outages, 80 % fixed within 2 h 10 min", in the '
        "agent's language."
    )
    customer_text: str = Field(description="What to tell the customer, in their language.")
    customer_language: Literal["nl", "en"]
    made_at: datetime
    explanation: dict[str, Any]
