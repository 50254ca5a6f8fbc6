"""The supervisors' API: who may call it, the audit actor, the target preview, overrides in use."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from supervisor_helpers import AUTH, KEY, TargetEngine, add_outage, login

from bot.app import create_app
from bot.promises.service import PromiseService
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import (
    Outage,
    OutageArea,
    OutboxMessage,
    Promise,
    PromiseAudit,
    PromiseGiven,
    PromiseTarget,
)

from fake_rasa import FakeRasaServer

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
STARTED = NOW - timedelta(hours=1)
REF = "STO-26-00100"

#: Every supervisor call: (method, path, body). The retry of an unknown message answers 404
#: once the caller is let through.
SUPERVISOR_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", f"/api/v1/outages/{REF}/promise/approve", {}),
    (
        "POST",
        f"/api/v1/outages/{REF}/promise/override",
        {"deadline": (NOW + timedelta(hours=6)).isoformat(), "reason": "crew on site"},
    ),
    ("GET", "/api/v1/promise-targets", None),
    ("PUT", "/api/v1/promise-targets/internet", {"target": 0.9}),
    ("POST", "/api/v1/promise-targets/internet/preview", {"target": 0.9}),
    ("GET", "/api/v1/outbox/health", None),
    ("GET", "/api/v1/outbox/dead-letters", None),
    ("POST", "/api/v1/outbox/999999/retry", None),
    ("GET", "/api/v1/supervisor/calibration", None),
    ("GET", "/api/v1/supervisor/calibration.svg", None),
    ("GET", "/api/v1/supervisor/broken-promises", None),
]


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"api_key": SecretStr(KEY)})


@pytest.fixture
def fake_rasa_server() -> FakeRasaServer:
    return FakeRasaServer()


@pytest.fixture
def client(
    settings: Settings, db_engine: Engine, session: Session, fake_rasa_server: FakeRasaServer
) -> Iterator[TestClient]:
    outage = add_outage(session, REF, started_at=STARTED)
    outage.areas.append(OutageArea(country="NL", postcode_prefix="3511"))
    session.commit()
    promises = PromiseService(settings, engine_factory=lambda _config: TargetEngine())
    dialogue = RasaClient(settings, transport=httpx.MockTransport(fake_rasa_server.handler))
    app = create_app(
        settings,
        dialogue=dialogue,
        sessions=make_sessionmaker(db_engine),
        promises=promises,
        knowledge=None,
    )
    with TestClient(app) as test_client:
        yield test_client


def _call(
    client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers or {})


def _allowed(response: httpx.Response, path: str) -> bool:
    if path.endswith("/retry"):
        return response.status_code == 404
    return response.status_code in (200, 201)


@pytest.mark.parametrize(("method", "path", "body"), SUPERVISOR_CALLS)
def test_supervisor_calls_take_a_supervisor_session_or_the_key(
    client: TestClient,
    session: Session,
    settings: Settings,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    anonymous = _call(client, method, path, body)
    assert anonymous.status_code == 401, anonymous.text
    wrong_key = _call(client, method, path, body, {"X-API-Key": "nope"})
    assert wrong_key.status_code == 401

    agent_csrf = login(client, session, settings, "agent")
    as_agent = _call(client, method, path, body, {"X-CSRF-Token": agent_csrf})
    assert as_agent.status_code == 403, as_agent.text
    client.cookies.clear()

    csrf = login(client, session, settings, "supervisor")
    if method != "GET":
        no_csrf = _call(client, method, path, body)
        assert no_csrf.status_code == 403, no_csrf.text
        bad_csrf = _call(client, method, path, body, {"X-CSRF-Token": "forged"})
        assert bad_csrf.status_code == 403
    as_supervisor = _call(client, method, path, body, {"X-CSRF-Token": csrf})
    assert _allowed(as_supervisor, path), as_supervisor.text
    client.cookies.clear()

    with_key = _call(client, method, path, body, AUTH)
    assert _allowed(with_key, path), with_key.text


def test_admin_may_do_what_supervisors_do(
    client: TestClient, session: Session, settings: Settings
) -> None:
    csrf = login(client, session, settings, "admin")
    response = client.post(
        f"/api/v1/outages/{REF}/promise/approve", json={}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200, response.text
    assert response.json()["approved_by"] == "admin-user"


def test_the_audit_actor_is_the_username_or_api(
    client: TestClient, session: Session, settings: Settings, db_engine: Engine
) -> None:
    csrf = login(client, session, settings, "supervisor")
    # A body naming someone else changes nothing: the session says who acted.
    approved = client.post(
        f"/api/v1/outages/{REF}/promise/approve",
        json={"actor": "somebody-else"},
        headers={"X-CSRF-Token": csrf},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == "supervisor-user"
    client.cookies.clear()

    deadline = NOW + timedelta(hours=7)
    overridden = client.post(
        f"/api/v1/outages/{REF}/promise/override",
        json={"deadline": deadline.isoformat(), "reason": "  storm, crews delayed "},
        headers=AUTH,
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["approved_by"] == "api"

    target = client.put("/api/v1/promise-targets/tv", json={"target": 0.75}, headers=AUTH)
    assert target.json()["updated_by"] == "api"

    with make_sessionmaker(db_engine)() as db:
        audit = db.execute(
            select(PromiseAudit.action, PromiseAudit.actor, PromiseAudit.reason).order_by(
                PromiseAudit.id
            )
        ).all()
    assert [tuple(row) for row in audit] == [
        ("approve", "supervisor-user", None),
        ("override", "api", "storm, crews delayed"),
    ]


def test_reading_a_promise_needs_an_agent_supervisor_or_the_key(
    client: TestClient, session: Session, settings: Settings
) -> None:
    path = f"/api/v1/outages/{REF}/promise"
    assert client.get(path).status_code == 401
    login(client, session, settings, "cx")
    assert client.get(path).status_code == 403
    client.cookies.clear()
    login(client, session, settings, "agent")
    assert client.get(path).status_code == 200
    client.cookies.clear()
    assert client.get(path, headers=AUTH).status_code == 200


def test_the_outage_feed_stays_key_only(
    client: TestClient, session: Session, settings: Settings
) -> None:
    csrf = login(client, session, settings, "supervisor")
    body = {
        "reference": "STO-26-00999",
        "service": "tv",
        "cause": "software",
        "region_name": "Gent",
        "started_at": NOW.isoformat(),
    }
    refused = client.post("/api/v1/outages", json=body, headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 401
    patched = client.patch(
        f"/api/v1/outages/{REF}", json={"cause": "weather"}, headers={"X-CSRF-Token": csrf}
    )
    assert patched.status_code == 401
    assert client.post("/api/v1/outages", json=body, headers=AUTH).status_code == 201


def _counts(db_engine: Engine) -> tuple[int, ...]:
    with make_sessionmaker(db_engine)() as db:
        return tuple(
            int(db.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Promise, PromiseAudit, PromiseTarget, PromiseGiven, OutboxMessage)
        )


def test_the_preview_stores_nothing_and_is_what_saving_gives(
    client: TestClient, session: Session, db_engine: Engine
) -> None:
    add_outage(session, "STO-26-00101", started_at=NOW - timedelta(minutes=30))
    add_outage(session, "STO-26-00102", service="tv", started_at=NOW - timedelta(minutes=10))
    overridden_deadline = NOW + timedelta(hours=9)
    assert (
        client.post(
            "/api/v1/outages/STO-26-00101/promise/override",
            json={"deadline": overridden_deadline.isoformat(), "reason": "known repair time"},
            headers=AUTH,
        ).status_code
        == 200
    )
    before = client.get(f"/api/v1/outages/{REF}/promise", headers=AUTH).json()
    counts = _counts(db_engine)

    preview = client.post(
        "/api/v1/promise-targets/internet/preview", json={"target": 0.9}, headers=AUTH
    )
    assert preview.status_code == 200, preview.text
    assert _counts(db_engine) == counts
    body = preview.json()
    assert (body["service"], body["current_target"], body["target"]) == ("internet", 0.8, 0.9)
    items = {item["outage"]: item for item in body["outages"]}
    assert set(items) == {REF, "STO-26-00101"}  # open internet outages only, not the tv one
    suggested = items[REF]
    assert suggested["standing"] is None
    assert datetime.fromisoformat(suggested["current"]["deadline"]) == datetime.fromisoformat(
        before["deadline"]
    )
    # TargetEngine: started + 1 h + 4 h * target.
    assert datetime.fromisoformat(suggested["new"]["deadline"]) == STARTED + timedelta(hours=4.6)
    assert (suggested["similar"], suggested["fixed_within"]) == (31, 28)
    standing = items["STO-26-00101"]
    assert standing["standing"] == "overridden"
    assert standing["new"] == standing["current"]
    assert datetime.fromisoformat(standing["new"]["deadline"]) == overridden_deadline
    assert standing["suggested"] != standing["current"]

    saved = client.put("/api/v1/promise-targets/internet", json={"target": 0.9}, headers=AUTH)
    assert saved.status_code == 200
    for reference, item in items.items():
        now_told = client.get(f"/api/v1/outages/{reference}/promise", headers=AUTH).json()
        assert datetime.fromisoformat(now_told["deadline"]) == datetime.fromisoformat(
            item["new"]["deadline"]
        )


@pytest.mark.parametrize(
    ("body", "status"),
    [({"target": 1.0}, 422), ({"target": 0}, 422), ({"target": "x"}, 422), ({}, 422)],
)
def test_the_preview_refuses_bad_targets(
    client: TestClient, body: dict[str, Any], status: int
) -> None:
    response = client.post("/api/v1/promise-targets/internet/preview", json=body, headers=AUTH)
    assert response.status_code == status
    assert "target" in response.json()["detail"]
    unknown = client.post("/api/v1/promise-targets/fax/preview", json={"target": 0.9}, headers=AUTH)
    assert unknown.status_code == 422 and "fax" in unknown.json()["detail"]


def test_an_override_is_what_the_console_and_the_channels_tell(
    client: TestClient, session: Session, settings: Settings, db_engine: Engine
) -> None:
    csrf = login(client, session, settings, "supervisor")
    deadline = (NOW + timedelta(hours=8)).replace(minute=0)
    response = client.post(
        f"/api/v1/outages/{REF}/promise/override",
        json={"deadline": deadline.isoformat(), "reason": "parts arrive tonight"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()

    # The agent console reads the promise API.
    login(client, session, settings, "agent")
    told = client.get(f"/api/v1/outages/{REF}/promise").json()
    assert (told["status"], told["approved_by"]) == ("overridden", "supervisor-user")
    assert datetime.fromisoformat(told["deadline"]) == deadline
    client.cookies.clear()

    # Every channel's answer comes from the Rasa action, which the service runs.
    tracker = {
        "sender_id": "c-override",
        "slots": {"language": "en", "postcode": "3511 AB", "service": "internet"},
        "latest_message": {"text": "...", "intent": {}, "entities": [], "metadata": {}},
        "events": [],
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
    }
    call = {
        "next_action": "action_check_outage",
        "sender_id": "c-override",
        "tracker": tracker,
        "domain": {},
    }
    action = client.post("/webhook", json=call)
    assert action.status_code == 200, action.text
    slots = {e["name"]: e["value"] for e in action.json()["events"] if e["event"] == "slot"}
    promise_slots = {k: v for k, v in slots.items() if "promise" in k or "deadline" in k}
    assert promise_slots, slots
    with make_sessionmaker(db_engine)() as db:
        given = db.scalars(select(PromiseGiven)).all()
        outage = db.scalars(select(Outage).where(Outage.reference == REF)).one()
    assert [g.outage_id for g in given] == [outage.id]
    assert given[0].deadline == deadline
    assert given[0].evidence["status"] == "overridden"


def test_broken_promises_come_a_page_at_a_time(client: TestClient) -> None:
    url = "/api/v1/supervisor/broken-promises"
    assert client.get(f"{url}?limit=1&offset=3", headers=AUTH).json() == []
    for bad in ("limit=0", "limit=501", "offset=-1"):
        assert client.get(f"{url}?{bad}", headers=AUTH).status_code == 422
