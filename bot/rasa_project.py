"""The Rasa project at the repository root: training it when (and only when) it changed.

Rasa runs in its own Python 3.10 environment; this module drives its command line.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bot.settings import PROJECT_ROOT, Settings

MODEL_NAME = "belofte"
#: What a trained model depends on: a change in any of these means training again.
TRAINING_INPUTS = ("config.yml", "domain.yml", "data", "nlu", "requirements/rasa.lock")


def rasa_environment() -> dict[str, str]:
    """Environment for Rasa processes: offline, quiet, run from the project root."""
    env = dict(os.environ)
    env.update(
        {
            "RASA_TELEMETRY_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    return env


def training_fingerprint(root: Path = PROJECT_ROOT) -> str:
    """A hash of every file the model is trained from (sorted, path and content)."""
    digest = hashlib.sha256()
    for name in TRAINING_INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.exists() or "__pycache__" in file.parts:
                continue
            digest.update(str(file.relative_to(root)).encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


class RasaProject:
    """Training and configuration of the Rasa server for one ``BELOFTE_HOME``."""

    def __init__(self, settings: Settings, root: Path = PROJECT_ROOT) -> None:
        self.settings = settings
        self.root = root

    @property
    def model_path(self) -> Path:
        """The trained model (a tar.gz) used by ``belofte run``."""
        return self.settings.models_dir / f"{MODEL_NAME}.tar.gz"

    @property
    def _fingerprint_path(self) -> Path:
        return self.settings.models_dir / f"{MODEL_NAME}.fingerprint"

    def check_executable(self) -> Path:
        """The rasa command, or a clear error naming how to install it."""
        executable = self.settings.rasa_executable
        if not executable.exists():
            raise FileNotFoundError(
                f"Rasa is not installed at {executable}. Run `make setup` (it builds .venv-rasa "
                "with Python 3.10 and rasa==3.6.21), or set BELOFTE_RASA_EXECUTABLE."
            )
        return executable

    def needs_training(self) -> bool:
        """True when there is no model or the data, config or components changed since."""
        if not self.model_path.exists() or not self._fingerprint_path.exists():
            return True
        return self._fingerprint_path.read_text().strip() != training_fingerprint(self.root)

    def train(self, *, force: bool = False) -> bool:
        """Train if needed (or ``force``); returns whether it trained. Output goes to stdout."""
        if not force and not self.needs_training():
            return False
        fingerprint = training_fingerprint(self.root)
        self.settings.models_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.check_executable()),
            "train",
            "--config", "config.yml",
            "--domain", "domain.yml",
            "--data", "data",
            "--out", str(self.settings.models_dir),
            "--fixed-model-name", MODEL_NAME,
            "--force",
        ]  # fmt: skip
        subprocess.run(
            command, cwd=self.root, env=rasa_environment(), check=True, stdout=sys.stdout
        )
        self._fingerprint_path.write_text(fingerprint)
        return True

    def write_endpoints(self) -> Path:
        """Write the endpoints file Rasa runs with, from the settings; returns its path.

        The repository's ``endpoints.yml`` is for plain ``rasa`` commands; this one follows
        ``BELOFTE_PORT``, ``BELOFTE_HOME`` and ``BELOFTE_REDIS_URL``.
        """
        home = self.settings.resolved_home
        endpoints: dict[str, object] = {
            # Selective domain: Rasa sends its domain (every response, twice) only to the actions
            # that ask for it in domain.yml, not with every action call.
            "action_endpoint": {
                "url": self.settings.action_endpoint_url,
                "enable_selective_domain": True,
            },
            # Conversations survive a Rasa restart.
            "tracker_store": {
                "type": "SQL",
                "dialect": "sqlite",
                "db": str(home / "rasa-trackers.db"),
            },
        }
        if self.settings.redis_url:
            redis = urlsplit(self.settings.redis_url)
            endpoints["lock_store"] = {
                "type": "redis",
                "url": redis.hostname or "127.0.0.1",  # Rasa reads the host from "url"
                "port": redis.port or 6379,
                "db": int(redis.path.lstrip("/") or 0),
                "password": redis.password,
                "key_prefix": "belofte",
            }
        path = home / "rasa" / "endpoints.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(endpoints, sort_keys=False), encoding="utf-8")
        return path

    def server_command(self, endpoints: Path) -> list[str]:
        """The command that serves the trained model on loopback with a token-protected API."""
        return [
            str(self.check_executable()),
            "run",
            "--model", str(self.model_path),
            "--endpoints", str(endpoints),
            "--credentials", str(self.root / "credentials.yml"),
            "--interface", self.settings.rasa_host,
            "--port", str(self.settings.rasa_port),
            "--enable-api",
            "--auth-token", self.settings.rasa_api_token(),
            "--log-file", str(self.settings.resolved_home / "logs" / "rasa.log"),
        ]  # fmt: skip
