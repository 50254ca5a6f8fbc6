"""The first start creates one admin with a random password kept in BELOFTE_HOME."""

from __future__ import annotations

import stat
from pathlib import Path

from bot.accounts.passwords import verify_password
from bot.accounts.service import list_users
from bot.runner import ensure_first_admin
from bot.settings import Settings
from bot.storage.db import get_sessionmaker, session_scope
from bot.storage.migrate import upgrade_database


def test_first_admin_is_created_once_with_a_private_password(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'b.db'}")
    upgrade_database(settings.sqlalchemy_url)

    ensure_first_admin(settings)
    password_file = tmp_path / "admin-password"
    password = password_file.read_text(encoding="utf-8").strip()
    ensure_first_admin(settings)  # a second start changes nothing

    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text(encoding="utf-8").strip() == password
    with session_scope(get_sessionmaker(settings)) as session:
        users = list_users(session)
        assert [(u.username, u.role) for u in users] == [("admin", "admin")]
        assert verify_password(settings, users[0].password_hash, password)
        assert not verify_password(settings, users[0].password_hash, password + "x")
