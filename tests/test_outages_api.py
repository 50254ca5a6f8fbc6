"""The outage feed, the promise endpoint and the supervisors' calls over HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.promises.history_store import load_incidents
from bot.promises.service import PromiseService
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.storage.models import (
    SERVICES,
    Outage,
    OutageArea,
    OutageState,
    OutboxMessage,
    PromiseGiven,
)
from bot.subscriptions.service import subscribe
from promise.estimate import Estimate, Explanation
from promise.incident import Incident

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

KEY = "test-operations-key"
AUTH = {"X-API-Key": KEY}


class TwoHourEngine:
    """Promises three hours after the start (two hours from now for the outages made here)."""

    def fit(self, history: Sequence[Incident], now: datetime) -> TwoHourEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        deadline = outage.started_at + timedelta(hours=3)
        return Estimate(
            made_at=now,
            target=target,
            deadline=deadline,
            next_update_at=None,
            remaining_minutes=120.0,
            explanation=Explanation(
                segment="service=internet",
                similar=64,
                fixed_within=52,
                open_minutes=(now - outage.started_at).total_seconds() / 60,
                method_version="test/1",
            ),
        )


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"api_key": SecretStr(KEY)})


def _client(
    settings: Settings, db_engine: Engine, promises: PromiseService | None
) -> Iterator[TestClient]:
    rasa = FakeRasaServer()
    dialogue = RasaClient(settings, transport=httpx.MockTransport(rasa.handler))
    app = create_app(
        settings, dialogue=dialogue, sessions=make_sessionmaker(db_engine), promises=promises
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def client(settings: Settings, db_engine: Engine) -> Iterator[TestClient]:
    promises = PromiseService(settings, engine_factory=lambda _config: TwoHourEngine())
    yield from _client(settings, db_engine, promises)


def _started(hours_ago: float = 1.0) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(microsecond=0)


def _new_outage(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": "STO-25-00042",
        "service": "internet",
        "cause": "fiber_cut",
        "region_name": "Utrecht",
        "country": "NL",
        "started_at": _started().isoformat(),
        "customers_affected": 1840,
        "postcodes": ["3512", "3511"],
        "description": "Glasvezelkabel geraakt bij graafwerk.",
    }
    body.update(overrides)
    return body


def _create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/outages", json=_new_outage(**overrides), headers=AUTH)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the API key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/outages", _new_outage()),
        ("PATCH", "/api/v1/outages/STO-25-00042", {"customers_affected": 1}),
    ],
)
def test_protected_calls_need_the_api_key(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    missing = client.request(method, path, json=body)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing X-API-Key header"}
    wrong = client.request(method, path, json=body, headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid API key"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/outages/STO-25-00042/promise", None),
        ("POST", "/api/v1/outages/STO-25-00042/promise/approve", {}),
        (
            "POST",
            "/api/v1/outages/STO-25-00042/promise/override",
            {"deadline": "2030-01-01T12:00:00+01:00", "reason": "r"},
        ),
        ("GET", "/api/v1/promise-targets", None),
        ("PUT", "/api/v1/promise-targets/internet", {"target": 0.9}),
    ],
)
def test_promise_calls_need_a_login_or_the_api_key(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    # Sessions (supervisors; agents may read a promise) are tested in tests/supervisor.
    missing = client.request(method, path, json=body)
    assert missing.status_code == 401
    wrong = client.request(method, path, json=body, headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"]


def test_the_key_defaults_to_a_generated_one(api_settings: Settings, db_engine: Engine) -> None:
    for client in _client(api_settings, db_engine, None):
        generated = api_settings.operations_api_key()
        assert len(generated) >= 32
        response = client.get("/api/v1/promise-targets", headers={"X-API-Key": generated})
        assert response.status_code == 200
        assert client.get("/api/v1/promise-targets", headers=AUTH).status_code == 401


# -- the feed -----------------------------------------------------------------------------------


def test_create_outage(client: TestClient, db_engine: Engine) -> None:
    body = _create(client, attributes={"priority": "1"})
    assert body["reference"] == "STO-25-00042"
    assert body["postcodes"] == ["3511", "3512"]
    assert body["resolved_at"] is None and body["attributes"] == {"priority": "1"}
    with make_sessionmaker(db_engine)() as session:
        outage = session.scalars(select(Outage)).one()
        assert (outage.source, outage.customers_affected) == ("operations", 1840)
        assert {(a.country, a.postcode_prefix) for a in outage.areas} == {
            ("NL", "3511"),
            ("NL", "3512"),
        }

    duplicate = client.post("/api/v1/outages", json=_new_outage(service="tv"), headers=AUTH)
    assert duplicate.status_code == 409
    assert "STO-25-00042" in duplicate.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"service": "telepathy"}, "unknown service"),
        (
            {"resolved_at": (_started() - timedelta(minutes=1)).isoformat()},
            "resolved_at is before started_at",
        ),
        ({"started_at": "2025-11-20T09:00:00"}, "started_at"),
        ({"postcodes": ["0123"]}, "postcodes"),
        ({"country": None}, "country is required"),
        ({"customers_affected": -1}, "customers_affected"),
        ({"colour": "red"}, "colour"),
        ({"reference": ""}, "reference"),
    ],
)
def test_create_outage_refuses_bad_input(
    client: TestClient, db_engine: Engine, overrides: dict[str, Any], reason: str
) -> None:
    response = client.post("/api/v1/outages", json=_new_outage(**overrides), headers=AUTH)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    with make_sessionmaker(db_engine)() as session:
        assert session.scalars(select(Outage)).all() == []


def test_patch_updates_only_what_is_sent(client: TestClient, db_engine: Engine) -> None:
    _create(client)
    response = client.patch(
        "/api/v1/outages/STO-25-00042",
        json={"customers_affected": 2100, "postcodes": ["3512", "3513"], "country": "NL"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customers_affected"], body["postcodes"]) == (2100, ["3512", "3513"])
    assert (body["cause"], body["description"]) == (
        "fiber_cut",
        "Glasvezelkabel geraakt bij graafwerk.",
    )
    with make_sessionmaker(db_engine)() as session:
        prefixes = session.scalars(select(OutageArea.postcode_prefix)).all()
        assert sorted(prefixes) == ["3512", "3513"]

    unknown = client.patch("/api/v1/outages/STO-99", json={"cause": "weather"}, headers=AUTH)
    assert unknown.status_code == 404
    assert "STO-99" in unknown.json()["detail"]

    early = (_started() - timedelta(hours=1)).isoformat()
    before_start = client.patch(
        "/api/v1/outages/STO-25-00042", json={"resolved_at": early}, headers=AUTH
    )
    assert before_start.status_code == 422
    assert "before started_at" in before_start.json()["detail"]
    nulled = client.patch("/api/v1/outages/STO-25-00042", json={"cause": None}, headers=AUTH)
    assert nulled.status_code == 422 and "cause" in nulled.json()["detail"]
    bad_service = client.patch(
        "/api/v1/outages/STO-25-00042", json={"service": "fax"}, headers=AUTH
    )
    assert bad_service.status_code == 422


class StateReadingEngine(TwoHourEngine):
    """Remembers the outage's facts as they stood when each promise was asked for."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def fit(self, history: Sequence[Incident], now: datetime) -> StateReadingEngine:
        return self

    def promise(self, outage: Incident, now: datetime, target: float) -> Estimate:
        self.seen.append(dict(outage.attributes_at(now)))
        return super().promise(outage, now, target)


@pytest.fixture
def state_engine() -> StateReadingEngine:
    return StateReadingEngine()


@pytest.fixture
def state_client(
    settings: Settings, db_engine: Engine, state_engine: StateReadingEngine
) -> Iterator[TestClient]:
    promises = PromiseService(settings, engine_factory=lambda _config: state_engine)
    yield from _client(settings, db_engine, promises)


def test_patch_records_states_the_promise_reads(
    state_client: TestClient, state_engine: StateReadingEngine, db_engine: Engine
) -> None:
    client, engine = state_client, state_engine
    _create(client, attributes={"priority": "2"})
    url = "/api/v1/outages/STO-25-00042"

    first = client.patch(url, json={"state": {"state": "assigned", "group": "Field"}}, headers=AUTH)
    second = client.patch(url, json={"state": {"state": "waiting_for_part"}}, headers=AUTH)
    client.get(f"{url}/promise", headers=AUTH)

    assert first.status_code == second.status_code == 200, second.text
    assert first.json()["state"] == {"state": "assigned", "group": "Field"}
    assert second.json()["state"] == {"state": "waiting_for_part", "group": "Field"}
    assert second.json()["attributes"] == {"priority": "2"}  # the opening facts stay
    assert engine.seen[-1] == {"priority": "2", "state": "waiting_for_part", "group": "Field"}
    with make_sessionmaker(db_engine)() as session:
        stored = session.scalars(select(OutageState).order_by(OutageState.id)).all()
        assert [row.attributes for row in stored] == [
            {"state": "assigned", "group": "Field"},
            {"state": "waiting_for_part"},
        ]
        assert stored[0].recorded_at <= stored[1].recorded_at
        (incident,) = load_incidents(session)
        assert [values for _, values in incident.updates] == [
            {"state": "assigned", "group": "Field"},
            {"state": "waiting_for_part"},
        ]
    for bad in ({}, None, {"state": 3}):
        refused = client.patch(url, json={"state": bad}, headers=AUTH)
        assert refused.status_code == 422, bad


def test_resolving_scores_promises_and_tells_subscribers(
    client: TestClient, db_engine: Engine
) -> None:
    _create(client)
    promise = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()
    sessions = make_sessionmaker(db_engine)
    with sessions() as session, session.begin():
        outage = session.scalars(select(Outage)).one()
        service: PromiseService = client.app.state.promises  # type: ignore[attr-defined]
        view = service.current(session, outage.id, datetime.now(UTC))
        assert view is not None and view.deadline is not None
        assert view.deadline == datetime.fromisoformat(promise["deadline"])
        service.record_given(
            session, view, channel="sms", recipient="+31611111111", language="nl",
            conversation_id=None, now=datetime.now(UTC),
        )  # fmt: skip
        subscribe(
            session,
            channel="sms",
            address="+31611111111",
            language="nl",
            now=datetime.now(UTC),
            outage_id=outage.id,
        )

    resolved_at = datetime.now(UTC).replace(microsecond=0)
    response = client.patch(
        "/api/v1/outages/STO-25-00042", json={"resolved_at": resolved_at.isoformat()}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["resolved_at"]) == resolved_at
    with sessions() as session:
        assert session.scalars(select(PromiseGiven.outcome)).all() == ["kept"]
        message = session.scalars(select(OutboxMessage)).one()
        assert (message.kind, message.address) == ("outage_fixed", "+31611111111")

    gone = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH)
    assert gone.status_code == 409
    assert "resolved" in gone.json()["detail"]


# -- the promise --------------------------------------------------------------------------------


def test_get_promise_shape(client: TestClient) -> None:
    _create(client)
    response = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
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
    assert (body["outage"], body["service"], body["status"]) == (
        "STO-25-00042",
        "internet",
        "suggested",
    )
    assert body["target"] == 0.8 and body["next_update_at"] is None
    deadline = datetime.fromisoformat(body["deadline"])
    assert timedelta(hours=1, minutes=58) < deadline - datetime.now(UTC) <= timedelta(hours=2)
    assert body["explanation"]["similar"] == 64
    assert body["explanation"]["fixed_within"] == 52
    assert body["explanation"]["open_minutes"] == pytest.approx(60, abs=1)
    assert body["approved_by"] is None and body["reason"] is None

    assert client.get("/api/v1/outages/STO-404/promise", headers=AUTH).status_code == 404


def test_override_via_the_api_is_what_get_returns(client: TestClient) -> None:
    _create(client)
    suggested = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()
    deadline = (datetime.now(UTC) + timedelta(hours=6)).replace(second=0, microsecond=0)
    path = "/api/v1/outages/STO-25-00042/promise/override"

    blank = client.post(
        path,
        json={"deadline": deadline.isoformat(), "reason": "  "},
        headers=AUTH,
    )
    assert blank.status_code == 422 and "reason" in blank.json()["detail"]
    past = client.post(
        path,
        json={"deadline": "2020-01-01T12:00:00+01:00", "reason": "x"},
        headers=AUTH,
    )
    assert past.status_code == 422 and "future" in past.json()["detail"]

    response = client.post(
        path,
        json={
            "deadline": deadline.isoformat(),
            "reason": "kabel ligt onder water",
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    current = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()
    assert current == response.json()
    assert datetime.fromisoformat(current["deadline"]) == deadline
    # Who acted comes from the credentials: "api" for the key (no user).
    assert (current["status"], current["approved_by"], current["reason"]) == (
        "overridden",
        "api",
        "kabel ligt onder water",
    )
    assert current["explanation"] == suggested["explanation"]


def test_approve_via_the_api(client: TestClient) -> None:
    _create(client)
    suggested = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()
    response = client.post("/api/v1/outages/STO-25-00042/promise/approve", json={}, headers=AUTH)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["approved_by"]) == ("approved", "api")
    assert response.json()["deadline"] == suggested["deadline"]
    now_told = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()
    assert now_told["status"] == "approved"
    unknown = client.post("/api/v1/outages/STO-404/promise/approve", json={}, headers=AUTH)
    assert unknown.status_code == 404


def test_targets_per_service(client: TestClient) -> None:
    listed = client.get("/api/v1/promise-targets", headers=AUTH)
    assert listed.status_code == 200
    assert [t["service"] for t in listed.json()] == list(SERVICES)
    assert {t["target"] for t in listed.json()} == {0.8}

    put = client.put("/api/v1/promise-targets/internet", json={"target": 0.9}, headers=AUTH)
    assert put.status_code == 200
    assert (put.json()["target"], put.json()["updated_by"]) == (0.9, "api")
    targets = {t["service"]: t for t in client.get("/api/v1/promise-targets", headers=AUTH).json()}
    assert targets["internet"]["target"] == 0.9 and targets["tv"]["target"] == 0.8

    _create(client)
    assert client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()["target"] == 0.9

    too_high = client.put("/api/v1/promise-targets/internet", json={"target": 1.0}, headers=AUTH)
    assert too_high.status_code == 422
    unknown = client.put("/api/v1/promise-targets/fax", json={"target": 0.7}, headers=AUTH)
    assert unknown.status_code == 422 and "fax" in unknown.json()["detail"]


def test_the_real_engine_behind_the_api(
    settings: Settings, db_engine: Engine, session: Session
) -> None:
    # Nothing in the history yet: the engine cannot promise a clock time, only the next update.
    for client in _client(settings, db_engine, None):
        _create(client)
        body = client.get("/api/v1/outages/STO-25-00042/promise", headers=AUTH).json()
        assert body["deadline"] is None
        next_update = datetime.fromisoformat(body["next_update_at"])
        assert next_update >= datetime.now(UTC) + timedelta(minutes=59)
        assert body["explanation"]["similar"] == 0
        assert body["explanation"]["method_version"].startswith("segment-km")


def test_openapi_documents_the_endpoints_and_the_key(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/api/v1/outages",
        "/api/v1/outages/{reference}",
        "/api/v1/outages/{reference}/promise",
        "/api/v1/outages/{reference}/promise/approve",
        "/api/v1/outages/{reference}/promise/override",
        "/api/v1/promise-targets",
        "/api/v1/promise-targets/{service}",
    ):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "security" in schema["paths"]["/api/v1/outages"]["post"]
    # Reading a promise: the key or a logged-in agent or supervisor (the console).
    assert "security" in schema["paths"]["/api/v1/outages/{reference}/promise"]["get"]
    assert "PromiseOut" in schema["components"]["schemas"]
