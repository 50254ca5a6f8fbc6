"""Interface texts: every ui folder has the same keys in nl and en, every key used exists,
and the shell renders as the app serves it (issue 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.accounts import service
from bot.accounts.web import HOME
from bot.app import create_app
from bot.settings import Settings
from bot.storage.db import make_sessionmaker
from bot.web import MissingTextError, translate
from bot.web.i18n import BOT_DIR, PAGE_PACKAGES, load_file, texts
from bot.web.render import NAV

#: t("key") in templates, and "web.*" / "accounts.*" text keys written out in Python.
_TEMPLATE_KEY = re.compile(r"""\bt\(\s*["']([a-z0-9_.]*[a-z0-9_])["']""")
_PYTHON_KEY = re.compile(r"""["']((?:web|accounts)\.[a-z0-9_]+\.[a-z0-9_.]+)["']""")
_OWN = ("web", "accounts")


def _ui_folders() -> list[Path]:
    return [BOT_DIR / p / "ui" for p in PAGE_PACKAGES if (BOT_DIR / p / "ui").is_dir()]


@pytest.mark.parametrize("folder", _ui_folders(), ids=lambda p: p.parent.name)
def test_nl_and_en_have_the_same_keys(folder: Path) -> None:
    nl, en = folder / "nl.yml", folder / "en.yml"
    assert nl.is_file() and en.is_file(), f"{folder} needs nl.yml and en.yml"
    nl_keys, en_keys = set(load_file(nl)), set(load_file(en))
    assert nl_keys - en_keys == set(), f"only in {nl}"
    assert en_keys - nl_keys == set(), f"only in {en}"
    prefix = folder.parent.name + "."
    assert all(key.startswith(prefix) for key in nl_keys), f"keys of {folder} need {prefix}"


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for package in _OWN:
        for path in (BOT_DIR / package).rglob("*"):
            if path.suffix == ".html":
                keys |= set(_TEMPLATE_KEY.findall(path.read_text(encoding="utf-8")))
            elif path.suffix == ".py":
                keys |= set(_PYTHON_KEY.findall(path.read_text(encoding="utf-8")))
    # Keys built in templates: the nav, the language switch and the role names.
    keys |= {key for key, *_ in NAV}
    keys |= {f"web.lang.{code}" for code in ("nl", "en")}
    keys |= {f"web.role.{role}" for role in HOME}
    return keys


@pytest.mark.parametrize("language", ["nl", "en"])
def test_every_key_used_by_the_shell_exists(language: str) -> None:
    used = _used_keys()
    assert len(used) > 20  # the scan found the templates
    assert sorted(used - set(texts(language))) == []


def test_a_missing_key_fails_loudly() -> None:
    with pytest.raises(MissingTextError):
        translate("nl", "web.no_such_text")
    assert translate("en", "accounts.login.error_rate_limited", minutes=3).endswith("in 3 minutes.")


def test_app_redirects_home_by_role_and_serves_the_shell(
    tmp_path: Path, db_engine: Engine, session: Session
) -> None:
    settings = Settings(home=tmp_path, password_hash_time_cost=1, password_hash_memory_kib=1024)
    app = create_app(settings, sessions=make_sessionmaker(db_engine))
    client = TestClient(app)  # no lifespan needed: no Rasa, no loops
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    for package, name in (("web", "web.js"), ("web", "web.css")):
        asset = client.get(f"/static/{package}/{name}")
        assert asset.status_code == 200, name
    assert "window.Belofte" in client.get("/static/web/web.js").text
    for role, home in HOME.items():
        service.create_user(
            session, username=role, password="a long enough password", role=role, settings=settings
        )
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        answer = client.post(
            "/login",
            data={
                "username": role,
                "password": "a long enough password",
                "csrf_token": token.group(1),
            },
            follow_redirects=False,
        )
        assert answer.headers["location"] == home
        assert client.get("/", follow_redirects=False).headers["location"] == home
