"""FastAPI dependencies that check who is asking: for JSON API routes and for HTML pages."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from bot.accounts import service
from bot.accounts.model import CurrentUser, Role
from bot.accounts.web import SESSION_COOKIE, csrf_ok, login_url, settings_of
from bot.storage.db import SessionFactory

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Operations API key of machine clients (BELOFTE_API_KEY).",
)
_NO_USER = object()


class LoginRequired(HTTPException):
    """A page was asked for without a session: 303 to the login page (which comes back here)."""

    def __init__(self, location: str) -> None:
        super().__init__(status_code=303, headers={"Location": location})


class PageForbidden(HTTPException):
    """A logged-in user asked for a page of another role (or a form without its CSRF token).

    The handler installed by :func:`bot.accounts.routes.install` renders the 403 page.
    """

    def __init__(self, user: CurrentUser, reason: str = "role") -> None:
        super().__init__(status_code=403, detail=reason)
        self.user = user
        self.reason = reason


def _text(request: Request, user: CurrentUser | None, key: str) -> str:
    from bot.web.i18n import translate
    from bot.web.render import page_language

    return translate(page_language(request, user), key)


async def request_user(request: Request) -> CurrentUser | None:
    """The logged-in user of ``request`` (looked up once per request), or None."""
    cached = getattr(request.state, "belofte_user", _NO_USER)
    if isinstance(cached, CurrentUser) or cached is None:
        return cached
    token = request.cookies.get(SESSION_COOKIE)
    user: CurrentUser | None = None
    if token:
        settings = settings_of(request)
        factory: SessionFactory = request.app.state.sessions

        def load() -> CurrentUser | None:
            with factory() as db:
                return service.current_user(db, token, settings)

        user = await run_in_threadpool(load)
    request.state.belofte_user = user
    return user


def require_role(*roles: Role) -> Any:
    """Dependency for JSON API routes: the logged-in :class:`CurrentUser` of one of ``roles``.

    401 without a live session, 403 for another role (admin is always allowed; no roles: any
    logged-in user), and 403 for POST/PUT/PATCH/DELETE without the session's X-CSRF-Token
    (or form field csrf_token).
    """

    async def dependency(request: Request) -> CurrentUser:
        user = await request_user(request)
        if user is None:
            raise HTTPException(401, detail=_text(request, None, "accounts.error.login_required"))
        if not user.has_role(*roles):
            raise HTTPException(403, detail=_text(request, user, "accounts.error.forbidden"))
        if not await csrf_ok(request, user):
            raise HTTPException(403, detail=_text(request, user, "accounts.error.csrf"))
        return user

    return dependency


def require_api_key_or_role(*roles: Role) -> Any:
    """Like :func:`require_role`, but a valid X-API-Key (machine clients) also passes.

    With the key the dependency returns None (no user; CSRF does not apply, as no browser
    sends that header by itself). A wrong key is 401 even when a session cookie is present.
    """
    by_role = require_role(*roles)

    async def dependency(
        request: Request, api_key: Annotated[str | None, Security(_api_key_header)]
    ) -> CurrentUser | None:
        if api_key:
            expected = settings_of(request).operations_api_key()
            if secrets.compare_digest(api_key.encode("utf-8"), expected.encode("utf-8")):
                return None
            raise HTTPException(401, detail=_text(request, None, "accounts.error.api_key"))
        user: CurrentUser = await by_role(request)
        return user

    return dependency


def page_user(*roles: Role) -> Any:
    """Dependency for HTML pages: the logged-in :class:`CurrentUser` of one of ``roles``.

    Not logged in: 303 to ``/login?next=<this page>``. Another role (or a form posted without
    the CSRF token): the 403 page (``data-testid="forbidden"``).
    """

    async def dependency(request: Request) -> CurrentUser:
        user = await request_user(request)
        if user is None:
            raise LoginRequired(login_url(request))
        if not user.has_role(*roles):
            raise PageForbidden(user, "role")
        if not await csrf_ok(request, user):
            raise PageForbidden(user, "csrf")
        return user

    return dependency
