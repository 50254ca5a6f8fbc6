"""``belofte run``: prepare everything, start Rasa and the Belofte service, stop both on Ctrl-C.

Each step announces itself, so a first run that installs and trains for minutes never looks hung.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

from bot.rasa_project import RasaProject, rasa_environment
from bot.settings import PROJECT_ROOT, Settings


def say(message: str) -> None:
    """One progress line, flushed at once."""
    print(f"==> {message}", flush=True)


def prepare_database(settings: Settings, *, seed_demo_data: bool = True) -> None:
    """Migrate the database and, on first start, load the demo provider."""
    from bot.demo.seed import is_seeded, seed_demo
    from bot.storage.db import get_sessionmaker, session_scope
    from bot.storage.migrate import upgrade_database

    say(f"Migrating the database ({settings.sqlalchemy_url.split('@')[-1]})")
    upgrade_database(settings.sqlalchemy_url)
    ensure_first_admin(settings)
    if not seed_demo_data:
        return
    with session_scope(get_sessionmaker(settings)) as session:
        if is_seeded(session):
            return
        say(
            "Loading the demo data (two years of outage history, a few active outages, the "
            "promises of the last weeks)"
        )
        report = seed_demo(session, now=datetime.now(UTC), promise_history=True, settings=settings)
    say(f"Demo data loaded: {report.outages} outages, {len(report.active)} active")


def ensure_first_admin(settings: Settings) -> None:
    """On a database without users, create ``admin`` so the pages can be opened at all.

    The password is random, shown once and kept in ``$BELOFTE_HOME/admin-password`` (mode 600):
    a fixed default password would be the first thing tried against a new installation.
    """
    from bot.accounts.service import create_user, list_users
    from bot.storage.db import get_sessionmaker, session_scope

    with session_scope(get_sessionmaker(settings)) as session:
        if list_users(session):
            return
        password = secrets.token_urlsafe(15)
        create_user(session, username="admin", password=password, role="admin", settings=settings)
    path = settings.home / "admin-password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n", encoding="utf-8")
    say(
        f"Created the user 'admin' (password in {path}); add agents with "
        "`belofte users add NAME --role agent`"
    )


@dataclass
class Supervisor:
    """Starts child processes, waits for them to be healthy, and stops them together."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Set by the signal handler: Ctrl-C or SIGTERM arrived.
    stop_requested: bool = False

    def start(
        self, name: str, command: list[str], *, log: Path | None = None, **kwargs: object
    ) -> None:
        """Start ``command``; its output goes to ``log`` when given, else to this terminal."""
        output = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            output = log.open("ab")
        self.processes[name] = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            **kwargs,  # type: ignore[call-overload]
        )

    def failed(self) -> str | None:
        """The name of a child that has exited, if any."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name
        return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child, then SIGKILL those still alive after ``timeout`` seconds."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    supervisor: Supervisor,
    waiting_for: str,
    interval: float = 1.0,
) -> None:
    """Poll ``check`` until true, reporting every 15 s; fail if a child dies or time runs out."""
    start = time.monotonic()
    last_report = start
    while not check():
        if supervisor.stop_requested:
            raise InterruptedError("stopped by the user")
        if (dead := supervisor.failed()) is not None:
            raise RuntimeError(f"{dead} exited while waiting for {waiting_for}")
        now = time.monotonic()
        if now - start > timeout:
            raise TimeoutError(f"{waiting_for} did not become ready within {timeout:.0f} s")
        if now - last_report >= 15:
            say(f"Still waiting for {waiting_for} ({now - start:.0f} s)")
            last_report = now
        time.sleep(interval)


def _http_ok(url: str, params: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, params=params, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


#: What the warm-up asks Rasa to parse: one message per language the bot speaks.
_WARM_UP_TEXTS = ("hallo, is er een storing?", "hello, is there an outage?")


def warm_up_rasa(settings: Settings, transport: httpx.BaseTransport | None = None) -> bool:
    """Parse a message per language so the first customer does not wait for TensorFlow.

    Rasa builds its NLU graphs on the first message it reads (0.3-0.4 s here). ``/model/parse``
    runs the NLU pipeline without a conversation, so nothing is stored. Best effort: False
    (and a line on the console) if Rasa did not answer; the first message is then merely slower.
    """
    try:
        with httpx.Client(base_url=settings.rasa_url, transport=transport, timeout=30) as client:
            for text in _WARM_UP_TEXTS:
                response = client.post(
                    "/model/parse",
                    params={"token": settings.rasa_api_token()},
                    json={"text": text},
                )
                response.raise_for_status()
    except httpx.HTTPError as exc:
        say(f"Rasa warm-up failed ({exc}); the first message will be slower")
        return False
    return True


def run(settings: Settings, *, train: bool = True) -> int:
    """Prepare, start both servers, block until Ctrl-C or a crash; returns the exit code."""
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    project = RasaProject(settings)
    project.check_executable()
    prepare_database(settings)

    say("Indexing the knowledge base (only new or changed articles are embedded)")
    from knowledge.refresh import build_index, ensure_abstention_model

    outcome = build_index(settings)
    for error in outcome.skipped:
        say(f"Skipped {error}")
    say(outcome.summary())
    say(ensure_abstention_model(settings))

    if train and project.needs_training():
        say("Training the Rasa model (data or config changed; a few minutes on a laptop)")
        project.train()
    elif not project.model_path.exists():
        raise FileNotFoundError(f"No trained model at {project.model_path}: run `belofte train`")
    else:
        say("Rasa model is up to date")

    supervisor = Supervisor()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        supervisor.stop_requested = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    rasa_log = home / "logs" / "rasa.log"
    try:
        say(f"Starting the Belofte service on http://{settings.host}:{settings.port}")
        supervisor.start(
            "belofte",
            [
                sys.executable, "-m", "uvicorn", "bot.app:create_app", "--factory",
                "--host", settings.host, "--port", str(settings.port),
            ],
            cwd=PROJECT_ROOT,
        )  # fmt: skip
        if settings.redis_url:
            # Proactive messages: one arq worker (more can run anywhere with `belofte worker`).
            # Without Redis the service delivers the outbox itself.
            worker_log = home / "logs" / "worker.log"
            say(f"Starting a delivery worker (log: {worker_log})")
            supervisor.start(
                "worker", [sys.executable, "-m", "bot.delivery"], log=worker_log, cwd=PROJECT_ROOT
            )
        say(f"Starting Rasa on http://{settings.rasa_host}:{settings.rasa_port} (log: {rasa_log})")
        endpoints = project.write_endpoints()
        supervisor.start(
            "rasa",
            project.server_command(endpoints),
            log=rasa_log,
            cwd=PROJECT_ROOT,
            env=rasa_environment(),
        )
        token = settings.rasa_api_token()
        wait_until(
            lambda: _http_ok(f"{settings.rasa_url}/status", {"token": token}),
            timeout=settings.rasa_startup_timeout_seconds,
            supervisor=supervisor,
            waiting_for="Rasa to load its model (TensorFlow takes about a minute)",
        )
        warm_up_rasa(settings)
        base = f"http://{settings.host}:{settings.port}"
        wait_until(
            lambda: _http_ok(f"{base}/health"),
            timeout=60,
            supervisor=supervisor,
            waiting_for="the Belofte service to report healthy",
        )
        say("Belofte is running. Press Ctrl-C to stop.")
        print(f"    Console:  {base}/console", flush=True)
        print(f"    API docs: {base}/docs", flush=True)
        print(f"    Health:   {base}/health", flush=True)
        print(f"    Rasa:     {settings.rasa_url} (loopback, token in {home / 'rasa-token'})")
        while not supervisor.stop_requested:
            if (dead := supervisor.failed()) is not None:
                say(f"{dead} stopped unexpectedly; stopping the rest (Rasa log: {rasa_log})")
                return 1
            time.sleep(0.5)
        return 0
    except InterruptedError:
        return 130
    except (RuntimeError, TimeoutError) as exc:
        say(f"Could not start: {exc}. See {rasa_log}")
        return 1
    finally:
        say("Stopping")
        supervisor.stop()
