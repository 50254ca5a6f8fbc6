"""Training only when something changed, and the endpoints Rasa runs with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from bot.rasa_project import RasaProject, training_fingerprint
from bot.settings import PROJECT_ROOT, Settings


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "data" / "nlu").mkdir(parents=True)
    (root / "config.yml").write_text("language: nl\n")
    (root / "domain.yml").write_text("version: '3.1'\n")
    (root / "data" / "nlu" / "nl.yml").write_text("nlu: []\n")
    return root


def test_fingerprint_changes_with_training_data_and_not_with_other_files(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = training_fingerprint(root)
    (root / "README.md").write_text("docs")
    assert training_fingerprint(root) == before
    (root / "data" / "nlu" / "nl.yml").write_text("nlu: [{intent: greet}]\n")
    assert training_fingerprint(root) != before


def test_needs_training_until_a_model_with_the_current_fingerprint_exists(tmp_path: Path) -> None:
    root = _project(tmp_path)
    settings = Settings(home=tmp_path / "home")
    project = RasaProject(settings, root=root)
    assert project.needs_training()
    settings.models_dir.mkdir(parents=True)
    project.model_path.write_bytes(b"model")
    (settings.models_dir / "belofte.fingerprint").write_text(training_fingerprint(root))
    assert not project.needs_training()
    (root / "config.yml").write_text("language: en\n")
    assert project.needs_training()


def test_endpoints_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, port=8123, redis_url="redis://:secret@127.0.0.1:6380/2")
    endpoints = yaml.safe_load(RasaProject(settings).write_endpoints().read_text())
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:8123/webhook"
    assert endpoints["lock_store"] == {
        "type": "redis",
        "url": "127.0.0.1",
        "port": 6380,
        "db": 2,
        "password": "secret",
        "key_prefix": "belofte",
    }
    assert endpoints["tracker_store"]["db"].startswith(str(tmp_path))


def test_server_command_binds_loopback_with_a_token(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, rasa_token="s3cret")
    command = RasaProject(settings).server_command(tmp_path / "endpoints.yml")
    assert command[command.index("--interface") + 1] == "127.0.0.1"
    assert command[command.index("--auth-token") + 1] == "s3cret"
    assert "--enable-api" in command


def test_a_missing_rasa_install_is_named(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, rasa_executable=tmp_path / "nope" / "rasa")
    with pytest.raises(FileNotFoundError, match=r"make setup.*3\.10"):
        RasaProject(settings).check_executable()


def test_find_python_names_what_to_install(tmp_path: Path) -> None:
    script = PROJECT_ROOT / "scripts" / "find-python.sh"
    result = subprocess.run(
        ["bash", str(script), "2.1", "NO_SUCH_VAR"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "Python 2.1 was not found" in result.stderr
