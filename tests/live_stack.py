"""The live stack of the end-to-end tests: Rasa and the Belofte service on loopback.

Used by the integration test (``tests/integration``, SQLite) and the browser test
(``tests/browser``, PostgreSQL). :func:`live_stack` prepares a private ``BELOFTE_HOME`` (the Rasa
model and the knowledge index are shared with ``$BELOFTE_TEST_HOME`` so they are built once per
machine, not per run), migrates and seeds the database, starts both servers as subprocesses and
stops them afterwards. Their output goes to ``<home>/logs``; the tail of each log is printed when
the stack does not come up, because otherwise a failure here only says "timeout".
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bot.rasa_project import RasaProject, rasa_environment
from bot.runner import prepare_database
from bot.settings import PROJECT_ROOT, Settings

#: Where `make test` trains the model and builds the shared knowledge index.
TEST_HOME = Path(os.environ.get("BELOFTE_TEST_HOME", PROJECT_ROOT / "var" / "test")).resolve()
#: The `belofte` command of the service's virtual environment (the one running the tests).
BELOFTE = Path(sys.executable).with_name("belofte")


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveStack:
    """A running stack: its base URL, settings and the environment its processes got."""

    base: str
    settings: Settings
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return self.settings.resolved_home

    @property
    def api_key(self) -> str:
        """The operations key (X-API-Key) the service accepts."""
        return self.settings.operations_api_key()

    def belofte(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``belofte`` CLI against this stack's home and database; fail loudly."""
        result = subprocess.run(
            [str(BELOFTE), *args],
            cwd=PROJECT_ROOT, env=self.env, input=stdin, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(
                f"belofte {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def add_user(
        self, username: str, password: str, role: str, display_name: str, language: str = "nl"
    ) -> None:
        """Create a user the way an administrator does: ``belofte users add --password-stdin``."""
        self.belofte(
            "users", "add", username, "--role", role, "--name", display_name,
            "--language", language, "--password-stdin",
            stdin=f"{password}\n",
        )  # fmt: skip


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (SQLAlchemy URL), dropped afterwards.

    On the server of ``BELOFTE_TEST_POSTGRES_URL`` (default: user postgres on 127.0.0.1:5432), as
    ``tests/conftest.py`` does; a database of its own because the storage tests empty theirs
    after every test, which would pull the demo data from under a running stack.
    """
    admin_url = os.environ.get(
        "BELOFTE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    admin = make_url(admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"belofte_live_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def shared_model(settings: Settings) -> Path:
    """The Rasa model of ``$BELOFTE_TEST_HOME`` (trained here if missing or stale)."""
    project = RasaProject(settings.model_copy(update={"home": TEST_HOME}))
    project.train()
    return project.model_path


def shared_knowledge_index() -> Path:
    """The knowledge dir of ``$BELOFTE_TEST_HOME`` with an up-to-date index of the articles.

    Built incrementally (only new or changed chunks are embedded), so after the first run this
    costs a second instead of embedding every article again for each test home.
    """
    from knowledge.refresh import build_index

    settings = Settings(home=TEST_HOME)
    outcome = build_index(settings)
    if outcome.skipped:
        raise RuntimeError(f"knowledge articles that do not load: {outcome.skipped}")
    return settings.knowledge_dir


def _wait_for_health(url: str, timeout: float, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[:3]!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def _print_logs(logs: Path) -> None:
    for log in sorted(logs.glob("*.log")):
        sys.stderr.write(f"---- {log}\n{log.read_text(errors='replace')[-4000:]}\n")


@contextmanager
def live_stack(
    home: Path,
    *,
    database_url: str | None = None,
    knowledge: bool = False,
    extra_env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Iterator[LiveStack]:
    """Start Rasa and the service on loopback over a migrated, demo-seeded database.

    ``database_url`` defaults to SQLite in ``home``; a PostgreSQL URL must name an existing
    (empty or migrated) database. ``knowledge`` copies the shared knowledge index into ``home``
    so the service can make suggestions. ``extra_env`` adds BELOFTE_* settings for the service.
    """
    if timeout is None:
        # Rasa loads its model in about a minute on a quiet laptop; a busy 2-core CI runner
        # needs several.
        timeout = float(os.environ.get("BELOFTE_TEST_STACK_TIMEOUT", "600"))
    settings = Settings(
        home=home,
        port=free_port(),
        rasa_port=free_port(),
        rasa_token=uuid.uuid4().hex,
        api_key=uuid.uuid4().hex,
        database_url=database_url or f"sqlite:///{home / 'belofte.db'}",
    )
    model = shared_model(settings)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, settings.models_dir / model.name)
    if knowledge:
        # symlinks=True keeps the index's relative `current` link pointing into the copy.
        shutil.copytree(shared_knowledge_index(), settings.knowledge_dir, symlinks=True)
    prepare_database(settings)

    env = {
        **os.environ,
        "BELOFTE_HOME": str(settings.resolved_home),
        "BELOFTE_PORT": str(settings.port),
        "BELOFTE_RASA_PORT": str(settings.rasa_port),
        "BELOFTE_RASA_TOKEN": settings.rasa_api_token(),
        "BELOFTE_API_KEY": settings.operations_api_key(),
        "BELOFTE_DATABASE_URL": settings.sqlalchemy_url,
        **(extra_env or {}),
    }
    logs = settings.resolved_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as files:
        service_log: IO[Any] = files.enter_context((logs / "belofte.log").open("wb"))
        rasa_log: IO[Any] = files.enter_context((logs / "rasa-stdout.log").open("wb"))
        try:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "bot.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(settings.port)],
                cwd=PROJECT_ROOT, env=env, stdout=service_log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            project = RasaProject(settings)
            processes.append(subprocess.Popen(
                project.server_command(project.write_endpoints()),
                cwd=PROJECT_ROOT, env=rasa_environment(), stdout=rasa_log,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
            base = f"http://127.0.0.1:{settings.port}"
            try:
                _wait_for_health(f"{base}/health", timeout, processes)
            except (RuntimeError, TimeoutError):
                _print_logs(logs)
                raise
            yield LiveStack(base=base, settings=settings, env=env)
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in reversed(processes):
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
