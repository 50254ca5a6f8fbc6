"""``belofte users`` (typer CliRunner) and the account service's input checks (issue 6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.accounts import service
from bot.accounts.passwords import verify_password
from bot.cli import app
from bot.settings import Settings, get_settings
from bot.storage.models import User, WebSession

PASSWORD = "a long enough password"


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, session: Session
) -> Iterator[Settings]:
    monkeypatch.setenv("BELOFTE_HOME", str(tmp_path))
    monkeypatch.setenv("BELOFTE_DATABASE_URL", db_url)
    monkeypatch.setenv("BELOFTE_PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("BELOFTE_PASSWORD_HASH_MEMORY_KIB", "1024")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _user(session: Session, username: str) -> User | None:
    session.expire_all()
    return session.scalar(select(User).where(User.username == username))


def test_users_add_with_password_stdin(cli_env: Settings, session: Session) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "add", "Anna", "--role", "agent", "--name", "Anna de Vries", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    user = _user(session, "anna")
    assert user is not None
    assert (user.role, user.display_name, user.language, user.is_active) == (
        "agent",
        "Anna de Vries",
        "nl",
        True,
    )
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert verify_password(cli_env, user.password_hash, PASSWORD)
    listing = CliRunner().invoke(app, ["users", "list"])
    assert listing.exit_code == 0
    assert "anna\tagent\tnl\tactive" in listing.output


def test_users_add_prompts_twice_hidden(cli_env: Settings, session: Session) -> None:
    result = CliRunner().invoke(
        app, ["users", "add", "sanne", "--role", "supervisor"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input
    assert _user(session, "sanne") is not None
    mismatch = CliRunner().invoke(
        app, ["users", "add", "sem", "--role", "cx"], input=f"{PASSWORD}\nsomething else!!\n"
    )
    assert mismatch.exit_code != 0
    assert _user(session, "sem") is None


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["users", "add", "anna", "--role", "boss"], PASSWORD, "unknown role"),
        (["users", "add", "anna", "--role", "agent"], "short", "too short"),
        (["users", "add", "an na", "--role", "agent"], PASSWORD, "invalid username"),
        (["users", "add", "anna", "--role", "agent", "--language", "de"], PASSWORD, "language"),
    ],
)
def test_users_add_refuses_bad_input(
    cli_env: Settings, session: Session, args: list[str], password: str, message: str
) -> None:
    result = CliRunner().invoke(app, [*args, "--password-stdin"], input=password + "\n")
    assert result.exit_code == 1
    assert message in result.output
    assert session.scalars(select(User)).all() == []


def test_users_add_twice_says_taken(cli_env: Settings, session: Session) -> None:
    command = ["users", "add", "anna", "--role", "agent", "--password-stdin"]
    assert CliRunner().invoke(app, command, input=PASSWORD + "\n").exit_code == 0
    again = CliRunner().invoke(app, command, input=PASSWORD + "\n")
    assert again.exit_code == 1
    assert "taken" in again.output


def test_users_disable_enable_and_set_password_end_sessions(
    cli_env: Settings, session: Session, db_engine: Engine
) -> None:
    user = service.create_user(
        session, username="anna", password=PASSWORD, role="agent", settings=cli_env
    )
    token = service.start_session(session, user, cli_env)
    assert service.current_user(session, token, cli_env) is not None

    assert CliRunner().invoke(app, ["users", "disable", "anna"]).exit_code == 0
    session.expire_all()
    assert session.scalars(select(WebSession)).all() == []
    assert service.current_user(session, token, cli_env) is None
    assert not service.login(
        session, cli_env, username="anna", password=PASSWORD, address="test"
    ).token
    assert CliRunner().invoke(app, ["users", "enable", "anna"]).exit_code == 0

    token = service.start_session(session, _user(session, "anna") or user, cli_env)
    result = CliRunner().invoke(
        app, ["users", "set-password", "anna", "--password-stdin"], input="a brand new secret\n"
    )
    assert result.exit_code == 0, result.output
    assert service.current_user(session, token, cli_env) is None
    assert service.login(
        session, cli_env, username="anna", password="a brand new secret", address="test"
    ).token
    missing = CliRunner().invoke(app, ["users", "disable", "nobody"])
    assert missing.exit_code == 1
    assert "no user" in missing.output


def test_unknown_user_costs_a_verification_and_counts_as_a_failure(
    cli_env: Settings, session: Session
) -> None:
    assert not verify_password(cli_env, None, PASSWORD)
    result = service.login(session, cli_env, username="ghost", password=PASSWORD, address="a")
    assert result.token is None and result.retry_after is None
    assert service.failure_count(session, cli_env, "ghost") == 1
