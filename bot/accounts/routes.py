"""``/login``, ``/logout``, ``/lang/{code}``, ``/api/v1/me`` and ``/`` (home by role).

:func:`install` adds them to the app together with the handlers that turn
:class:`~bot.accounts.deps.LoginRequired` and :class:`~bot.accounts.deps.PageForbidden` into a
redirect and the 403 page.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.accounts import service
from bot.accounts.deps import LoginRequired, PageForbidden, request_user, require_role
from bot.accounts.model import LANGUAGES, CurrentUser
from bot.accounts.web import (
    HOME,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    client_address,
    csrf_ok,
    delete_cookie,
    login_csrf_cookie_token,
    new_login_csrf,
    safe_next,
    set_cookie,
    settings_of,
    tokens_match,
)
from bot.storage.db import SessionFactory
from bot.web import render_page
from bot.web.render import LANGUAGE_COOKIE

router = APIRouter()

#: How long the visitor's language cookie lasts (a year: it is only a preference).
_LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600


def _sessions(request: Request) -> SessionFactory:
    factory: SessionFactory = request.app.state.sessions
    return factory


def _login_page(
    request: Request,
    *,
    status_code: int = 200,
    error: str | None = None,
    error_params: dict[str, Any] | None = None,
    username: str = "",
    next_path: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The login form, with a login CSRF token (the cookie is renewed when it is not valid)."""
    settings = settings_of(request)
    token = login_csrf_cookie_token(request, settings)
    cookie_value = None
    if token is None:
        token, cookie_value = new_login_csrf(settings)
    response = render_page(
        request,
        "login.html",
        None,
        {
            "login_csrf": token,
            "error": error,
            "error_params": error_params or {},
            "username": username,
            "next": next_path,
        },
        status_code=status_code,
        headers=headers,
    )
    if cookie_value is not None:
        # Lives as long as the browser: a form left open over lunch must still work.
        set_cookie(response, request, settings, LOGIN_CSRF_COOKIE, cookie_value, max_age=None)
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, next: str = "") -> Response:
    """The login form, also for someone logged in already (to log in as someone else)."""
    return _login_page(request, next_path=safe_next(next, ""))


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Check the credentials; on success a new session (a new cookie) and 303 onwards.

    Wrong credentials: 401 and the form again. Too many failures for the name or from the
    address: 429 with Retry-After and the wait on the page.
    """
    settings = settings_of(request)
    next_path = safe_next(next, "")
    if not tokens_match(csrf_token, login_csrf_cookie_token(request, settings) or ""):
        return _login_page(
            request,
            status_code=403,
            error="accounts.login.error_csrf",
            username=username,
            next_path=next_path,
        )
    if not username.strip() or not password:
        return _login_page(
            request,
            status_code=401,
            error="accounts.login.error_missing",
            username=username,
            next_path=next_path,
        )
    address = client_address(request, settings)
    old_token = request.cookies.get(SESSION_COOKIE)
    factory = _sessions(request)

    def attempt() -> service.LoginResult:
        with factory() as db:
            return service.login(
                db,
                settings,
                username=username,
                password=password,
                address=address,
                replaces=old_token,
            )

    result = await run_in_threadpool(attempt)
    if result.retry_after is not None:
        return _login_page(
            request,
            status_code=429,
            error="accounts.login.error_rate_limited",
            error_params={"minutes": max(1, math.ceil(result.retry_after / 60))},
            username=username,
            next_path=next_path,
            headers={"Retry-After": str(result.retry_after)},
        )
    if result.token is None or result.user is None:
        return _login_page(
            request,
            status_code=401,
            error="accounts.login.error_invalid",
            username=username,
            next_path=next_path,
        )
    role = service.check_role(result.user.role)
    response = RedirectResponse(safe_next(next_path, HOME[role]), status_code=303)
    set_cookie(
        response,
        request,
        settings,
        SESSION_COOKIE,
        result.token,
        max_age=int(settings.session_max_hours * 3600),
    )
    delete_cookie(response, request, settings, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the session (with its CSRF token) and go to the login page."""
    settings = settings_of(request)
    user = await request_user(request)
    token = request.cookies.get(SESSION_COOKIE)
    if user is not None and not await csrf_ok(request, user):
        raise PageForbidden(user, "csrf")
    if token:
        factory = _sessions(request)

        def end() -> None:
            with factory() as db:
                service.end_session(db, token)

        await run_in_threadpool(end)
    response = RedirectResponse("/login", status_code=303)
    delete_cookie(response, request, settings, SESSION_COOKIE)
    return response


@router.post("/lang/{code}", include_in_schema=False)
async def switch_language(
    request: Request, code: str, next: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    """Switch the interface language: stored on the user (with CSRF) and in a cookie."""
    if code not in LANGUAGES:
        raise HTTPException(404, detail=f"unknown language {code!r}")
    settings = settings_of(request)
    user = await request_user(request)
    if user is not None:
        if not await csrf_ok(request, user):
            raise PageForbidden(user, "csrf")
        factory = _sessions(request)

        def store() -> None:
            with factory() as db:
                service.set_language(db, user.id, code)

        await run_in_threadpool(store)
    response = RedirectResponse(safe_next(next, "/"), status_code=303)
    # A preference, not a credential; readable by nobody else (HttpOnly) all the same.
    set_cookie(response, request, settings, LANGUAGE_COOKIE, code, max_age=_LANGUAGE_COOKIE_SECONDS)
    return response


@router.get("/api/v1/me", tags=["accounts"])
async def me(user: Annotated[CurrentUser, Depends(require_role())]) -> dict[str, str]:
    """Who is logged in, and the CSRF token for state-changing calls."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "language": user.language,
        "csrf_token": user.csrf_token,
    }


@router.get("/", include_in_schema=False)
async def home(request: Request) -> RedirectResponse:
    """Each role's start page; visitors who are not logged in go to the login page."""
    user = await request_user(request)
    return RedirectResponse("/login" if user is None else HOME[user.role], status_code=303)


async def _forbidden_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    return render_page(request, "forbidden.html", exc.user, status_code=403)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(exc.headers["Location"] if exc.headers else "/login", 303)


def install(app: FastAPI) -> None:
    """Add the account routes and the page-error handlers to ``app``."""
    app.include_router(router)
    app.add_exception_handler(PageForbidden, _forbidden_page)
    app.add_exception_handler(LoginRequired, _login_required)
