"""The ``/console`` page: who may open it, what it carries for its script, its texts."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import yaml
from console_helpers import console_settings, log_in
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.app import create_app
from bot.rasa_client import RasaClient
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import make_sessionmaker

from fake_rasa import FakeRasaServer

pytestmark = pytest.mark.usefixtures("session")

#: The data-testid attributes the browser test (tests/integration) relies on.
CONTRACT = (
    "console-input",
    "console-send",
    "suggestions",
    "suggestion-card",
    "suggestion-copy",
    "suggestion-used",
    "suggestion-up",
    "suggestion-down",
    "promise-card",
    "promise-time",
    "promise-target",
    "promise-evidence",
    "promise-status",
    "promise-customer-text",
)


@pytest.fixture
def client(
    api_settings: Settings, db_engine: Engine, fake_rasa: FakeRasaServer
) -> Iterator[TestClient]:
    settings = console_settings(api_settings)
    dialogue = RasaClient(settings, transport=httpx.MockTransport(fake_rasa.handler))
    app = create_app(
        settings, dialogue=dialogue, sessions=make_sessionmaker(db_engine), knowledge=None
    )
    with TestClient(app) as test_client:
        yield test_client


def test_visitors_are_sent_to_the_login(client: TestClient) -> None:
    page = client.get("/console?conversation=telegram:42", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")
    assert "console" in page.headers["location"]


def test_the_cx_team_may_not_open_the_console(client: TestClient, session: Session) -> None:
    log_in(client, session, "cx")
    page = client.get("/console")
    assert page.status_code == 403
    assert 'data-testid="forbidden"' in page.text


@pytest.mark.parametrize("role", ["agent", "supervisor", "admin"])
def test_agents_supervisors_and_admins_get_the_console(
    client: TestClient, session: Session, role: str
) -> None:
    log_in(client, session, role)
    page = client.get("/console")
    assert page.status_code == 200
    for testid in CONTRACT:
        assert f'data-testid="{testid}"' in page.text, testid
    assert '<meta name="csrf-token"' in page.text
    for script in ("/static/console/console_state.js", "/static/console/console.js"):
        assert script in page.text
        assert client.get(script).status_code == 200
    assert client.get("/static/console/console.css").status_code == 200


def test_a_link_opens_that_conversation(client: TestClient, session: Session) -> None:
    log_in(client, session, "agent")
    page = client.get("/console?conversation=telegram:4242").text
    assert 'data-conversation="telegram:4242"' in page
    assert 'data-testid="bad-conversation"' not in page
    mangled = client.get("/console?conversation=<script>").text
    assert 'data-conversation=""' in mangled
    assert 'data-testid="bad-conversation"' in mangled
    assert '<script>"' not in mangled


def test_the_page_speaks_the_agents_language(client: TestClient, session: Session) -> None:
    log_in(client, session, "agent", language="en")
    page = client.get("/console").text
    assert "What does the customer say?" in page
    assert "Next-best answers" in page
    dutch = TestClient(client.app)
    log_in(dutch, session, "agent", language="nl")
    assert "Wat zegt de klant?" in dutch.get("/console").text


def test_the_poll_interval_comes_from_the_settings(client: TestClient, session: Session) -> None:
    log_in(client, session, "agent")
    page = client.get("/console").text
    assert 'data-promise-poll-ms="15000"' in page


def _keys(language: str) -> set[str]:
    path = PROJECT_ROOT / "bot" / "console" / "ui" / f"{language}.yml"
    return set(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_dutch_and_english_texts_have_the_same_keys() -> None:
    assert _keys("nl") == _keys("en")


def test_every_text_the_script_asks_for_exists() -> None:
    script = (PROJECT_ROOT / "bot" / "console" / "static" / "console.js").read_text()
    asked = set(re.findall(r'"(console\.[a-z_.]+)"', script))
    # Keys built at run time: their prefixes, completed from the known values.
    dynamic = {key for key in asked if key.endswith(".")}
    assert dynamic <= {"console.channel.", "console.language.", "console.promise.status."}
    assert asked - dynamic <= _keys("nl")
    for status in ("suggested", "approved", "overridden"):
        assert f"console.promise.status.{status}" in _keys("nl")
