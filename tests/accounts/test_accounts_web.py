"""Login, sessions, cookies, CSRF, roles, rate limit and language switch over HTTP (issue 6)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from web_login import login as web_login

from bot.accounts import CurrentUser, page_user, require_api_key_or_role, require_role, service
from bot.accounts.routes import install
from bot.settings import Settings
from bot.storage.db import SessionFactory, make_sessionmaker
from bot.storage.models import LoginAttempt, User, WebSession
from bot.storage.types import utcnow
from bot.web import render_page

PASSWORD = "a long enough password"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Cheap argon2 parameters: the tests check behaviour, not hashing cost.
    return Settings(
        home=tmp_path,
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        api_key="operations-key",
    )


@pytest.fixture
def factory(session: Session, db_engine: Engine) -> SessionFactory:
    return make_sessionmaker(db_engine)


def build_app(settings: Settings, factory: SessionFactory) -> FastAPI:
    """The account routes plus one page and API of each kind, as page packages use them."""
    app = FastAPI()
    app.state.settings = settings
    app.state.sessions = factory
    install(app)

    @app.get("/supervisor", response_class=HTMLResponse)
    async def supervisor_page(
        request: Request, user: Annotated[CurrentUser, Depends(page_user("supervisor"))]
    ) -> HTMLResponse:
        return render_page(request, "forbidden.html", user, {})

    @app.get("/console", response_class=HTMLResponse)
    async def console_page(
        request: Request, user: Annotated[CurrentUser, Depends(page_user("agent"))]
    ) -> HTMLResponse:
        return render_page(request, "forbidden.html", user, {})

    @app.post("/api/v1/test/supervise")
    async def supervise(
        user: Annotated[CurrentUser, Depends(require_role("supervisor"))],
    ) -> dict[str, str]:
        return {"by": user.username}

    @app.get("/api/v1/test/read")
    async def read(
        user: Annotated[CurrentUser, Depends(require_role("supervisor"))],
    ) -> dict[str, str]:
        return {"by": user.username}

    @app.post("/api/v1/test/machine")
    async def machine(
        user: Annotated[CurrentUser | None, Depends(require_api_key_or_role("supervisor"))],
    ) -> dict[str, str | None]:
        return {"by": user.username if user else None}

    return app


@pytest.fixture
def client(settings: Settings, factory: SessionFactory) -> Iterator[TestClient]:
    with TestClient(build_app(settings, factory)) as test_client:
        yield test_client


def add_user(
    factory: SessionFactory, settings: Settings, username: str, role: str, language: str = "nl"
) -> None:
    with factory() as db:
        service.create_user(
            db,
            username=username,
            password=PASSWORD,
            role=role,
            display_name=username.title(),
            language=language,
            settings=settings,
        )


def form_token(client: TestClient) -> str:
    page = client.get("/login")
    found = _CSRF_FIELD.search(page.text)
    assert found is not None
    return found.group(1)


def post_login(
    client: TestClient, username: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    data = {"username": username, "password": password, "csrf_token": form_token(client)}
    data.update(extra)
    return client.post("/login", data=data, follow_redirects=False)


def session_csrf(client: TestClient) -> str:
    answer = client.get("/api/v1/me")
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["csrf_token"]
    return token


# -- login -------------------------------------------------------------------------------------


def test_login_success_redirects_home_and_me_describes_the_user(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "Sanne", "supervisor")
    answer = client.post(
        "/login",
        data={"username": " SANNE ", "password": PASSWORD, "csrf_token": form_token(client)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/supervisor"
    me = client.get("/api/v1/me").json()
    assert me["username"] == "sanne"
    assert me["display_name"] == "Sanne"
    assert me["role"] == "supervisor"
    assert me["language"] == "nl"
    assert len(me["csrf_token"]) >= 32
    with factory() as db:
        stored = db.scalars(select(WebSession)).one()
        # Only a hash of the cookie is stored.
        cookie = client.cookies.get("belofte_session")
        assert cookie and stored.token_hash != cookie
        assert stored.token_hash == service.token_hash(cookie)
        assert db.scalars(select(LoginAttempt)).all() == []


def test_login_follows_a_local_next_but_never_another_host(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    answer = post_login(client, "sanne", next="/supervisor?tab=2")
    assert answer.headers["location"] == "/supervisor?tab=2"
    client.cookies.clear()
    answer = post_login(client, "sanne", next="//evil.example/x")
    assert answer.headers["location"] == "/supervisor"


def test_anonymous_page_redirects_to_login_with_next_and_back(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    answer = client.get("/supervisor?week=3", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/supervisor%3Fweek%3D3"
    page = client.get(answer.headers["location"])
    assert 'name="next" value="/supervisor?week=3"' in page.text
    add_user(factory, settings, "sanne", "supervisor")
    answer = post_login(client, "sanne", next="/supervisor?week=3")
    assert answer.headers["location"] == "/supervisor?week=3"


@pytest.mark.parametrize("who", ["existing", "unknown"])
def test_login_failure_shows_the_same_error(
    client: TestClient, factory: SessionFactory, settings: Settings, who: str
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    username = "sanne" if who == "existing" else "nobody"
    answer = client.post(
        "/login",
        data={
            "username": username,
            "password": "wrong password!",
            "csrf_token": form_token(client),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 401
    assert 'data-testid="login-error"' in answer.text
    assert "Gebruikersnaam of wachtwoord klopt niet." in answer.text
    assert "belofte_session" not in client.cookies
    assert client.get("/api/v1/me").status_code == 401


def test_rate_limit_per_username_names_the_wait(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    for _ in range(settings.login_max_failures):
        assert post_login(client, "sanne", "not the password").status_code == 401
    # Now even the right password is refused until the window has passed.
    answer = post_login(client, "sanne")
    assert answer.status_code == 429
    wait = int(answer.headers["retry-after"])
    assert 0 < wait <= settings.login_failure_window_seconds
    assert "Te veel mislukte pogingen. Probeer het over 15 minuten opnieuw." in answer.text
    assert client.get("/api/v1/me").status_code == 401
    # Refused attempts are not counted, so the lock does not grow while someone keeps trying.
    with factory() as db:
        assert service.failure_count(db, settings, "sanne") == settings.login_max_failures
        # Once the failures are older than the window, the right password works again.
        db.execute(update(LoginAttempt).values(at=utcnow() - timedelta(minutes=16)))
        db.commit()
    assert post_login(client, "sanne").status_code == 303


def test_rate_limit_per_address_across_usernames(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    for index in range(settings.login_max_failures):
        post_login(client, f"guess{index}", "not the password")
    answer = post_login(client, "sanne")
    assert answer.status_code == 429
    assert "retry-after" in answer.headers


def test_success_clears_the_failures_of_that_username(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    for _ in range(settings.login_max_failures - 1):
        post_login(client, "sanne", "not the password")
    assert post_login(client, "sanne").status_code == 303
    with factory() as db:
        assert service.failure_count(db, settings, "sanne") == 0


def test_login_without_or_with_a_wrong_csrf_token_is_refused(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    form_token(client)  # the cookie is there, the field is not
    answer = client.post(
        "/login", data={"username": "sanne", "password": PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert 'data-testid="login-error"' in answer.text
    answer = client.post(
        "/login",
        data={"username": "sanne", "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    # A token from a form without its signed cookie (another browser) does not work either.
    token = form_token(client)
    client.cookies.clear()
    answer = client.post(
        "/login",
        data={"username": "sanne", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "belofte_session" not in client.cookies


# -- cookies -----------------------------------------------------------------------------------


def _session_set_cookie(answer: httpx.Response) -> str:
    cookies = answer.headers.get_list("set-cookie")
    found = [c for c in cookies if c.startswith("belofte_session=")]
    assert len(found) == 1, cookies
    return found[0].lower()


def test_session_cookie_is_httponly_and_samesite_lax_without_secure_over_http(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    cookie = _session_set_cookie(post_login(client, "sanne"))
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie
    assert "path=/" in cookie


@pytest.mark.parametrize(
    ("trust", "force", "proto", "secure"),
    [
        (True, False, "https", True),
        (False, False, "https", False),  # a header nobody vouches for is ignored
        (True, False, "http", False),
        (False, True, None, True),
    ],
)
def test_secure_flag_behind_https(
    settings: Settings,
    factory: SessionFactory,
    trust: bool,
    force: bool,
    proto: str | None,
    secure: bool,
) -> None:
    configured = settings.model_copy(
        update={"trust_proxy_headers": trust, "session_cookie_secure": force}
    )
    add_user(factory, configured, "sanne", "supervisor")
    headers = {"X-Forwarded-Proto": proto} if proto else {}
    with TestClient(build_app(configured, factory), headers=headers) as test_client:
        # The login CSRF cookie may itself be Secure, which the test client will not send back
        # over http: pass it by hand.
        form = test_client.get("/login")
        csrf_cookie = form.headers["set-cookie"].split(";")[0]
        found = _CSRF_FIELD.search(form.text)
        assert found is not None
        test_client.cookies.clear()
        answer = test_client.post(
            "/login",
            data={"username": "sanne", "password": PASSWORD, "csrf_token": found.group(1)},
            headers={"Cookie": csrf_cookie},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        cookie = _session_set_cookie(answer)
    assert ("secure" in cookie) is secure


# -- sessions ----------------------------------------------------------------------------------


def test_login_issues_a_new_session_id_and_drops_the_planted_one(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    add_user(factory, settings, "mallory", "agent")
    # Mallory logs in and plants her own valid session cookie in the victim's browser.
    post_login(client, "mallory")
    planted = client.cookies.get("belofte_session")
    assert planted
    answer = post_login(client, "sanne")
    assert answer.status_code == 303
    fresh = client.cookies.get("belofte_session")
    assert fresh and fresh != planted
    assert client.get("/api/v1/me").json()["username"] == "sanne"
    with factory() as db:
        assert service.current_user(db, planted, settings) is None
    # An unknown planted token never becomes a session either.
    client.cookies.clear()
    client.cookies.set("belofte_session", "chosen-by-attacker", domain="testserver.local")
    post_login(client, "sanne")
    assert client.cookies.get("belofte_session") != "chosen-by-attacker"
    with factory() as db:
        assert service.current_user(db, "chosen-by-attacker", settings) is None


def test_logout_ends_the_session(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    post_login(client, "sanne")
    token = client.cookies.get("belofte_session")
    csrf = session_csrf(client)
    answer = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert client.get("/api/v1/me").status_code == 401
    # Even a copy of the old cookie is useless now.
    client.cookies.clear()
    client.cookies.set("belofte_session", token or "", domain="testserver.local")
    assert client.get("/api/v1/me").status_code == 401
    with factory() as db:
        assert db.scalars(select(WebSession)).all() == []


def test_logout_without_csrf_is_refused_and_keeps_the_session(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    post_login(client, "sanne")
    answer = client.post("/logout", data={}, follow_redirects=False)
    assert answer.status_code == 403
    assert 'data-testid="forbidden"' in answer.text
    assert client.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize("change", ["disable", "password"])
def test_disabling_or_a_new_password_ends_sessions(
    client: TestClient, factory: SessionFactory, settings: Settings, change: str
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    post_login(client, "sanne")
    assert client.get("/api/v1/me").status_code == 200
    with factory() as db:
        if change == "disable":
            service.set_active(db, "sanne", False)
        else:
            service.set_password(db, "sanne", "another long password", settings)
    assert client.get("/api/v1/me").status_code == 401
    answer = post_login(client, "sanne")
    assert answer.status_code == 401
    if change == "password":
        assert post_login(client, "sanne", "another long password").status_code == 303


def test_idle_and_absolute_timeouts_end_a_session(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    post_login(client, "sanne")
    with factory() as db:
        db.execute(
            update(WebSession).values(
                last_seen_at=utcnow() - timedelta(minutes=settings.session_idle_minutes - 1)
            )
        )
        db.commit()
    assert client.get("/api/v1/me").status_code == 200  # still within the idle time (touched)
    with factory() as db:
        db.execute(
            update(WebSession).values(
                last_seen_at=utcnow() - timedelta(minutes=settings.session_idle_minutes + 1)
            )
        )
        db.commit()
    assert client.get("/api/v1/me").status_code == 401
    post_login(client, "sanne")
    with factory() as db:
        db.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert client.get("/api/v1/me").status_code == 401


def test_a_hash_with_old_parameters_is_renewed_at_login(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    older = settings.model_copy(update={"password_hash_memory_kib": 2048})
    add_user(factory, older, "sanne", "supervisor")
    with factory() as db:
        before = db.scalars(select(User.password_hash)).one()
    assert "m=2048" in before
    assert post_login(client, "sanne").status_code == 303
    with factory() as db:
        after = db.scalars(select(User.password_hash)).one()
    assert "m=1024" in after


# -- roles and CSRF on the API -----------------------------------------------------------------


def test_roles_on_pages_and_api(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "anna", "agent")
    assert client.get("/api/v1/test/read").status_code == 401
    post_login(client, "anna")
    page = client.get("/supervisor")
    assert page.status_code == 403
    assert 'data-testid="forbidden"' in page.text
    assert client.get("/console").status_code == 200
    api = client.get("/api/v1/test/read")
    assert api.status_code == 403
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()["detail"] == "Je account heeft hier geen toegang toe."


def test_admin_may_do_everything(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "root", "admin")
    assert post_login(client, "root").headers["location"] == "/supervisor"
    csrf = session_csrf(client)
    assert client.get("/supervisor").status_code == 200
    assert client.get("/console").status_code == 200
    page = client.get("/console").text
    for testid in ("nav-console", "nav-supervisor", "nav-cx"):
        assert f'data-testid="{testid}"' in page
    answer = client.post("/api/v1/test/supervise", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200


def test_api_csrf_missing_wrong_and_right(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "sanne", "supervisor")
    post_login(client, "sanne")
    csrf = session_csrf(client)
    missing = client.post("/api/v1/test/supervise")
    assert missing.status_code == 403
    assert "beveiligingstoken" in missing.json()["detail"]
    wrong = client.post("/api/v1/test/supervise", headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    right = client.post("/api/v1/test/supervise", headers={"X-CSRF-Token": csrf})
    assert right.status_code == 200
    assert right.json() == {"by": "sanne"}
    # The form field works for plain HTML forms.
    form = client.post("/api/v1/test/supervise", data={"csrf_token": csrf})
    assert form.status_code == 200
    # Another session's token is not this session's token.
    other = TestClient(client.app)
    add_user(factory, settings, "sem", "supervisor")
    post_login(other, "sem")
    assert (
        client.post(
            "/api/v1/test/supervise", headers={"X-CSRF-Token": session_csrf(other)}
        ).status_code
        == 403
    )


def test_api_key_or_role(client: TestClient, factory: SessionFactory, settings: Settings) -> None:
    assert client.post("/api/v1/test/machine").status_code == 401
    answer = client.post("/api/v1/test/machine", headers={"X-API-Key": "operations-key"})
    assert answer.status_code == 200
    assert answer.json() == {"by": None}
    assert client.post("/api/v1/test/machine", headers={"X-API-Key": "wrong"}).status_code == 401
    add_user(factory, settings, "anna", "agent")
    post_login(client, "anna")
    csrf = session_csrf(client)
    assert client.post("/api/v1/test/machine", headers={"X-CSRF-Token": csrf}).status_code == 403
    add_user(factory, settings, "sanne", "supervisor")
    post_login(client, "sanne")
    csrf = session_csrf(client)
    assert client.post("/api/v1/test/machine").status_code == 403  # CSRF applies to sessions
    answer = client.post("/api/v1/test/machine", headers={"X-CSRF-Token": csrf})
    assert answer.json() == {"by": "sanne"}


# -- page shell and language -------------------------------------------------------------------


def test_page_shell_has_the_contract_elements(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "anna", "agent")
    post_login(client, "anna")
    page = client.get("/console")
    csrf = session_csrf(client)
    meta = _META_CSRF.search(page.text)
    assert meta is not None and meta.group(1) == csrf
    for testid in ("nav", "logout", "lang-nl", "lang-en", "feedback-open", "nav-console"):
        assert f'data-testid="{testid}"' in page.text, testid
    assert 'data-testid="nav-supervisor"' not in page.text
    assert '<script type="application/json" id="ui-texts">' in page.text
    assert "/static/cx/feedback.js" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_login_page_contract(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="nl">' in page.text
    for needle in ('name="username"', 'name="password"', 'data-testid="login-submit"'):
        assert needle in page.text
    assert 'data-testid="logout"' not in page.text
    cookie = next(c for c in page.headers.get_list("set-cookie") if "belofte_login_csrf" in c)
    assert "httponly" in cookie.lower()


def test_language_is_dutch_by_default_and_switches_per_user(
    client: TestClient, factory: SessionFactory, settings: Settings
) -> None:
    add_user(factory, settings, "anna", "agent")
    post_login(client, "anna")
    page = client.get("/console").text
    assert '<html lang="nl">' in page and "Uitloggen" in page
    csrf = session_csrf(client)
    # Without the CSRF token nothing changes.
    refused = client.post("/lang/en", data={"next": "/console"}, follow_redirects=False)
    assert refused.status_code == 403
    answer = client.post(
        "/lang/en", data={"csrf_token": csrf, "next": "/console"}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console"
    page = client.get("/console").text
    assert '<html lang="en">' in page and "Log out" in page and "Uitloggen" not in page
    assert client.get("/api/v1/me").json()["language"] == "en"
    with factory() as db:
        assert db.scalars(select(User.language)).one() == "en"
    # Stored on the user: a new browser gets English too.
    fresh = TestClient(client.app)
    post_login(fresh, "anna")
    assert '<html lang="en">' in fresh.get("/console").text
    assert client.post("/lang/de", data={"csrf_token": csrf}).status_code == 404


def test_anonymous_language_switch_changes_the_login_page(client: TestClient) -> None:
    answer = client.post("/lang/en", data={"next": "/login"}, follow_redirects=False)
    assert answer.status_code == 303
    page = client.get("/login").text
    assert '<html lang="en">' in page and "Log in" in page


def test_helper_login_for_other_tests(
    client: TestClient, factory: SessionFactory, session: Session
) -> None:
    csrf = web_login(client, session, "supervisor")
    answer = client.post("/api/v1/test/supervise", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200
    # Twice for the same role works (the user exists already).
    other = TestClient(client.app)
    assert web_login(other, factory, "supervisor") == session_csrf(other)
