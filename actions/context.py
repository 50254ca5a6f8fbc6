"""What custom actions need from the Belofte service, handed to them when they are built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rasa_sdk import Tracker
from sqlalchemy.orm import Session

from bot.promises.service import PromiseService
from bot.settings import Language, Settings
from bot.suggestions.knowledge import KnowledgeSuggester


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ActionContext:
    """Dependencies of the custom actions (no globals: the service builds one and passes it)."""

    settings: Settings
    sessions: Callable[[], Session]
    clock: Callable[[], datetime] = field(default=_utc_now)
    #: The knowledge retriever; None when no index has been built.
    knowledge: KnowledgeSuggester | None = None
    #: The promise service (repair times); None tells customers no time is known yet.
    promises: PromiseService | None = None


def tracker_language(tracker: Tracker) -> Language:
    """The conversation's language slot (Dutch unless set to English)."""
    return "en" if tracker.get_slot("language") == "en" else "nl"


def tracker_channel(tracker: Tracker) -> str:
    """The Belofte channel of the latest message (sent as metadata by the service)."""
    metadata: dict[str, Any] = (tracker.latest_message or {}).get("metadata") or {}
    return str(metadata.get("channel") or "api")
