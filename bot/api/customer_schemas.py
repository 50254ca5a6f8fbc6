"""Response and request bodies of the customer API (one customer across channels)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IdentityOut(BaseModel):
    """How the customer is known on one channel (``phone``: the number all phone channels
    share)."""

    channel: str
    external_id: str = Field(description="A chat id, or a phone number in E.164.")


class HistoryMessageOut(BaseModel):
    """One message of the customer's history."""

    id: int
    conversation_id: str
    channel: str = Field(description="Where it was said: telegram, sms, whatsapp, voice, api...")
    direction: Literal["in", "out"] = Field(description="in: from the customer; out: to them.")
    text: str
    created_at: datetime
    intent: str | None = None


class CustomerHistoryOut(BaseModel):
    """A customer's messages on every channel they are known on, oldest first."""

    customer_id: int | None = Field(
        description="Null for a conversation no customer is tied to (its own messages only)."
    )
    display_name: str | None = None
    language: Literal["nl", "en"] | None = None
    preferred_channel: str | None = Field(
        default=None, description="Where notifications go; null: where each subscription was made."
    )
    identities: list[IdentityOut]
    conversations: list[str]
    messages: list[HistoryMessageOut]
    truncated: bool = Field(description="True when older messages were left out (see `limit`).")


class PreferredChannelIn(BaseModel):
    """Where the customer wants notifications; null sends them where they subscribed."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "whatsapp", "telegram"] | None
