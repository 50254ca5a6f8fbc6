"""Fixtures of the channel tests: a loopback Telegram Bot API, a Twilio stand-in, Prism.

``fake_bot_api`` a Telegram Bot API served on loopback for one test (see ``FakeBotApi``).
``fake_twilio``  an in-process stand-in for Twilio's REST API (see ``FakeTwilioApi``).
``prism``        (session) Stoplight Prism serving Twilio's OpenAPI description on a free
                 loopback port; installed by ``make prism`` into tools/prism. Skipped only where
                 node is missing outside CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from channel_fakes import FakeBotApi, FakeTwilioApi, LoopbackServer, free_port

from bot.settings import PROJECT_ROOT

PRISM_DIR = PROJECT_ROOT / "tools" / "prism"
TWILIO_SPEC = PROJECT_ROOT.parent / "shared" / "specs" / "twilio" / "twilio_api_v2010.json"


@pytest.fixture
def fake_bot_api() -> Iterator[FakeBotApi]:
    """The fake Bot API, served on loopback for the duration of a test."""
    api = FakeBotApi()
    with LoopbackServer(api.app) as server:
        api.base_url = f"http://127.0.0.1:{server.port}/bot"
        yield api


@pytest.fixture
def fake_twilio() -> FakeTwilioApi:
    """The in-process Twilio REST stand-in."""
    return FakeTwilioApi()


# -- Prism ---------------------------------------------------------------------------------------


def _prism_entry() -> Path:
    """Prism's command-line script inside tools/prism (installed by ``make prism``)."""
    link = PRISM_DIR / "node_modules" / ".bin" / "prism"
    return link.resolve()


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of Stoplight Prism mocking Twilio's REST API (dynamic answers) on loopback."""
    node = shutil.which("node")
    in_ci = bool(os.environ.get("CI"))
    if node is None:
        if in_ci:
            pytest.fail("node is required in CI for the Twilio tests against Prism", pytrace=False)
        pytest.skip("node is not installed here: the Twilio tests against Prism are skipped")
    entry = _prism_entry()
    if not entry.exists():
        pytest.fail(
            f"Prism is not installed in {PRISM_DIR}: run `make prism` (npm ci there).",
            pytrace=False,
        )
    if not TWILIO_SPEC.exists():
        pytest.fail(f"Twilio's OpenAPI description is missing: {TWILIO_SPEC}", pytrace=False)
    port = free_port()
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    with log_path.open("wb") as log:
        # -d: answers generated from the schemas, so every created message has its own SID.
        process = subprocess.Popen(
            [node, str(entry), "mock", "-d", "-h", "127.0.0.1", "-p", str(port), str(TWILIO_SPEC)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PRISM_DIR,
        )
    try:
        deadline = time.monotonic() + 120
        while b"Prism is listening" not in log_path.read_bytes():
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"Prism exited with {process.returncode}:\n{tail}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail("Prism did not start within 120 s", pytrace=False)
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
