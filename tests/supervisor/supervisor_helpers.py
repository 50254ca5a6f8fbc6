"""Shared pieces of the supervisor tests: an engine with known promises, outages, logins."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from bot.accounts.service import create_user
from bot.settings import Settings
from bot.storage.models import Outage
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

KEY = "test-operations-key"
AUTH = {"X-API-Key": KEY}
PASSWORD = "correct horse battery staple"


class TargetEngine:
    """Promises ``started_at + target * 4 h``: the target visibly moves the deadline.

    31 similar outages, of which ``round(31 * target)`` were fixed within the promised time.
    """

    def fit(self, history: Sequence[Incident], now: datetime) -> TargetEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        deadline = outage.started_at + timedelta(hours=4 * target) + timedelta(hours=1)
        return Estimate(
            made_at=now,
            target=target,
            deadline=deadline,
            next_update_at=None,
            remaining_minutes=(deadline - now).total_seconds() / 60,
            explanation=Explanation(
                segment=f"service={outage.service}",
                similar=31,
                fixed_within=round(31 * target),
                open_minutes=(now - outage.started_at).total_seconds() / 60,
                method_version="test/1",
            ),
        )


def add_outage(
    session: Session,
    reference: str,
    *,
    service: str = "internet",
    started_at: datetime,
    resolved_at: datetime | None = None,
) -> Outage:
    """An outage in Utrecht, committed."""
    outage = Outage(
        reference=reference,
        service=service,
        cause="fiber_cut",
        region_name="Utrecht",
        country="NL",
        started_at=started_at,
        resolved_at=resolved_at,
        customers_affected=100,
    )
    session.add(outage)
    session.commit()
    return outage


def login(
    client: TestClient, session: Session, settings: Settings, role: str, language: str = "nl"
) -> str:
    """Create a user of ``role`` and log ``client`` in through the real form; the CSRF token."""
    username = f"{role}-user"
    create_user(
        session,
        username=username,
        password=PASSWORD,
        role=role,
        display_name=f"{role.title()} Tester",
        language=language,
        settings=settings,
    )
    form = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert match, form.text
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": match.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.text
    token: str = me.json()["csrf_token"]
    return token
