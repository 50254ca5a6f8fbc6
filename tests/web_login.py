"""Log a test client in through the real login form (for every web page's tests).

    from web_login import login
    csrf = login(client, session, "supervisor")
    client.post("/api/v1/...", json={...}, headers={"X-CSRF-Token": csrf})

The user is created with :func:`bot.accounts.service.create_user` unless it exists (then the
same password is assumed), the login form's CSRF token is read from ``GET /login`` and the
session's CSRF token from ``GET /api/v1/me``.
"""

from __future__ import annotations

import re
from typing import Final

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bot.accounts import service

#: The password of every user made here (long enough for the default minimum of 12).
PASSWORD: Final = "correct horse battery staple"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def login_form_token(client: TestClient) -> str:
    """The CSRF token of the login form (``GET /login`` also sets its signed cookie)."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    found = _CSRF_FIELD.search(page.text)
    assert found, "no csrf_token field on /login"
    return found.group(1)


def ensure_user(
    sessions: Session | sessionmaker[Session],
    role: str,
    *,
    username: str | None = None,
    display_name: str | None = None,
    language: str = "nl",
) -> str:
    """Create the user ``username`` (default: the role's name) unless it exists; its username."""
    name = username or role
    db = sessions() if isinstance(sessions, sessionmaker) else sessions
    try:
        if service.get_user(db, name) is None:
            service.create_user(
                db,
                username=name,
                password=PASSWORD,
                role=role,
                display_name=display_name or f"Test {role}",
                language=language,
            )
    finally:
        if db is not sessions:
            db.close()
    return name


def login(
    client: TestClient,
    sessions: Session | sessionmaker[Session],
    role: str,
    *,
    username: str | None = None,
    display_name: str | None = None,
    language: str = "nl",
) -> str:
    """Log ``client`` in as a user of ``role``; returns the session's CSRF token."""
    name = ensure_user(
        sessions, role, username=username, display_name=display_name, language=language
    )
    answer = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": login_form_token(client)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, f"login as {name} failed: {answer.status_code} {answer.text}"
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.text
    token: str = me.json()["csrf_token"]
    return token
