"""Shared pieces of the agent console tests: the app on a simulated Rasa, an engine, logins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session
from web_login import login

from bot.settings import Language, Settings
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

KEY = "console-test-operations-key"
API_KEY = {"X-API-Key": KEY}


def console_settings(settings: Settings) -> Settings:
    """The tests' settings with a known operations API key and cheap password hashing."""
    return settings.model_copy(
        update={
            "api_key": SecretStr(KEY),
            "password_hash_time_cost": 1,
            "password_hash_memory_kib": 1024,
        }
    )


class TwoHoursTenEngine:
    """Promises 2 h 10 min from now: 30 similar outages, 24 of them (80 %) fixed in that time."""

    def fit(self, history: Sequence[Incident], now: datetime) -> TwoHoursTenEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        deadline = now + timedelta(hours=2, minutes=10)
        return Estimate(
            made_at=now,
            target=target,
            deadline=deadline,
            next_update_at=None,
            remaining_minutes=130.0,
            explanation=Explanation("service=internet", 30, 24, 30.0, "console-test/1"),
        )


@dataclass(frozen=True)
class FakeSuggestion:
    """One answer of :class:`FakeKnowledge` (the fields the service reads)."""

    suggestion_id: str
    family_id: str
    title: str
    answer: str
    language: str = "nl"
    score: float = 0.8
    confidence: float = 0.9
    passage: str = "Passage."
    url: str | None = None


@dataclass
class FakeSuggestionSet:
    abstained: bool
    suggestions: list[FakeSuggestion]
    candidates: list[FakeSuggestion]


@dataclass
class FakeKnowledge:
    """A retriever with canned answers; ``abstain`` makes it unsure of all of them."""

    answers: list[FakeSuggestion] = field(
        default_factory=lambda: [
            FakeSuggestion("s-modem", "restart-modem", "Modem herstarten", "Herstart de modem."),
            FakeSuggestion("s-refund", "refund", "Vergoeding", "Bij 12 uur storing: vergoeding."),
        ]
    )
    abstain: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def suggest(
        self, text: str, *, language: Language, audience: str, k: int = 3
    ) -> FakeSuggestionSet:
        self.calls.append({"text": text, "language": language, "audience": audience})
        answers = self.answers[:k]
        return FakeSuggestionSet(
            abstained=self.abstain,
            suggestions=[] if self.abstain else answers,
            candidates=answers,
        )


def second_client(app: FastAPI) -> TestClient:
    """Another browser on the same running app (its own cookies; the lifespan already ran)."""
    return TestClient(app)


def log_in(
    client: TestClient, session: Session, role: str, *, language: str = "nl"
) -> dict[str, str]:
    """Log ``client`` in as ``<role>-<language>``; the CSRF header for its writes."""
    token = login(client, session, role, username=f"{role}-{language}", language=language)
    return {"X-CSRF-Token": token}
