"""End to end: Rasa and the Belofte service on loopback, six-turn conversations (nl, en).

One Rasa process serves the whole test session (it needs about a minute to start). The model is
the one `make test` trains into ``$BELOFTE_TEST_HOME/models`` (trained here if missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.rasa_project import RasaProject, rasa_environment
from bot.runner import prepare_database
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.models import Message, Subscription

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, params: dict[str, str], timeout: float, processes: list[Any]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            if httpx.get(url, params=params, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A migrated, seeded database, the Belofte service and Rasa, all on loopback."""
    home = tmp_path_factory.mktemp("belofte-home")
    settings = Settings(
        home=home,
        port=_free_port(),
        rasa_port=_free_port(),
        rasa_token=uuid.uuid4().hex,
        database_url=f"sqlite:///{home / 'belofte.db'}",
    )
    # Share the model trained for the test run instead of training per test home.
    model_home = Path(os.environ.get("BELOFTE_TEST_HOME", PROJECT_ROOT / "var" / "test"))
    model_project = RasaProject(settings.model_copy(update={"home": model_home}))
    model_project.train()
    settings.models_dir.mkdir(parents=True)
    shutil.copy(model_project.model_path, settings.models_dir / model_project.model_path.name)

    prepare_database(settings)
    env = {
        **os.environ,
        "BELOFTE_HOME": str(home),
        "BELOFTE_PORT": str(settings.port),
        "BELOFTE_RASA_PORT": str(settings.rasa_port),
        "BELOFTE_RASA_TOKEN": settings.rasa_api_token(),
        "BELOFTE_DATABASE_URL": settings.sqlalchemy_url,
    }
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    service_log = (logs / "belofte.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bot.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(settings.port)],
        cwd=PROJECT_ROOT, env=env, stdout=service_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    project = RasaProject(settings)
    rasa_log = (logs / "rasa-stdout.log").open("wb")
    rasa = subprocess.Popen(
        project.server_command(project.write_endpoints()),
        cwd=PROJECT_ROOT, env=rasa_environment(), stdout=rasa_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{settings.port}"
    try:
        _wait_for(f"{base}/health", {}, 240, [service, rasa])
        yield {"base": base, "settings": settings}
    except (RuntimeError, TimeoutError):
        for log in (logs / "belofte.log", logs / "rasa.log", logs / "rasa-stdout.log"):
            if log.exists():
                sys.stderr.write(f"---- {log}\n{log.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        for process in (rasa, service):
            process.terminate()
        for process in (rasa, service):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        service_log.close()
        rasa_log.close()


def _say(stack: dict[str, Any], conversation: str, text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{stack['base']}/api/v1/conversations/{conversation}/messages",
        json={"text": text, "channel": "api"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["replies"], f"no reply to {text!r}: {body}"
    return body


def _all_text(body: dict[str, Any]) -> str:
    return " ".join(r["text"] for r in body["replies"])


def test_health_reports_the_loaded_model(stack: dict[str, Any]) -> None:
    body = httpx.get(f"{stack['base']}/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["rasa"]["model_file"]


def test_six_turn_dutch_conversation_with_form_interruption_and_outage(
    stack: dict[str, Any],
) -> None:
    conversation = f"it-nl-{uuid.uuid4().hex[:8]}"

    greet = _say(stack, conversation, "hoi")
    assert greet["intent"]["name"] == "greet"
    assert greet["language"] == "nl"

    ask = _say(stack, conversation, "is er een storing?")
    assert ask["intent"]["name"] == "outage_status"
    assert "postcode" in _all_text(ask).lower()

    interruption = _say(stack, conversation, "wat kost een monteur eigenlijk?")
    assert interruption["intent"]["name"] == "ask_question"
    # The question is answered (or a human offered) and the form asks for the postcode again.
    assert "postcode" in _all_text(interruption).lower()

    postcode = _say(stack, conversation, "3511 AB")
    assert postcode["outage"] is None
    assert any(e["entity"] == "postcode" for e in postcode["entities"])

    found = _say(stack, conversation, "internet")
    outage = found["outage"]
    assert outage is not None, found
    assert outage["service"] == "internet" and "3511" in outage["postcodes"]
    assert "Utrecht" in _all_text(found)
    assert f"{outage['customers_affected']:,}".replace(",", ".") in _all_text(found)
    assert found["language"] == "nl"

    subscribe = _say(stack, conversation, "ja graag, laat me weten als het opgelost is")
    assert subscribe["language"] == "nl"
    engine = make_engine(stack["settings"].sqlalchemy_url)
    with make_sessionmaker(engine)() as session:
        subscription = session.scalars(
            select(Subscription).where(Subscription.address == conversation)
        ).one()
        assert subscription.language == "nl"
        stored = session.scalars(
            select(Message.text).where(
                Message.conversation_id == conversation, Message.direction == "in"
            )
        ).all()
        assert len(stored) == 6
    engine.dispose()


def test_six_turn_english_conversation_with_form_interruption_and_outage(
    stack: dict[str, Any],
) -> None:
    conversation = f"it-en-{uuid.uuid4().hex[:8]}"

    greet = _say(stack, conversation, "hello there")
    assert greet["language"] == "en"
    assert greet["intent"]["name"] == "greet"

    ask = _say(stack, conversation, "is there an outage in my area?")
    assert ask["intent"]["name"] == "outage_status"
    assert "postcode" in _all_text(ask).lower()

    postcode = _say(stack, conversation, "1012 ab")
    assert postcode["language"] == "en"

    interruption = _say(stack, conversation, "how much does an engineer visit cost?")
    assert interruption["intent"]["name"] == "ask_question"
    assert interruption["language"] == "en"

    found = _say(stack, conversation, "tv")
    outage = found["outage"]
    assert outage is not None, found
    assert outage["service"] == "tv" and outage["region"].startswith("Amsterdam")
    assert "TV" in _all_text(found)

    bye = _say(stack, conversation, "ok thanks, bye")
    assert bye["language"] == "en"
    assert bye["intent"]["name"] in {"goodbye", "deny"}
