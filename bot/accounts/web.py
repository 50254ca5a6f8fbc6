"""Request helpers of the accounts layer: cookies, HTTPS detection, client address, CSRF."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response

from bot.accounts.model import CurrentUser, Role
from bot.settings import Settings

#: The session cookie: a random token whose SHA-256 keys the server-side session.
SESSION_COOKIE: Final = "belofte_session"
#: The login form's CSRF cookie (signed double submit: ``<token>.<hmac>``).
LOGIN_CSRF_COOKIE: Final = "belofte_login_csrf"
#: Methods that change nothing and so need no CSRF token.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Where each role starts (``/``); admin starts at the supervisor page.
HOME: Final[dict[Role, str]] = {
    "agent": "/console",
    "supervisor": "/supervisor",
    "cx": "/cx",
    "admin": "/supervisor",
}


def settings_of(request: Request) -> Settings:
    """The settings of the app serving ``request``."""
    settings: Settings = request.app.state.settings
    return settings


def is_https(request: Request, settings: Settings) -> bool:
    """Whether the browser reached us over HTTPS (directly, or per X-Forwarded-Proto if trusted)."""
    if request.url.scheme == "https":
        return True
    if settings.trust_proxy_headers:
        forwarded = request.headers.get("x-forwarded-proto", "")
        return forwarded.split(",")[0].strip().lower() == "https"
    return False


def client_address(request: Request, settings: Settings) -> str:
    """The client's address for the rate limit: behind a trusted proxy, the address it saw.

    The last X-Forwarded-For entry is the one our own proxy appended; earlier ones are whatever
    the client claimed and could be forged to escape the limit.
    """
    if settings.trust_proxy_headers:
        forwarded = request.headers.get("x-forwarded-for", "")
        entries = [part.strip() for part in forwarded.split(",") if part.strip()]
        if entries:
            return entries[-1][:64]
    return (request.client.host if request.client else "unknown")[:64]


def set_cookie(
    response: Response,
    request: Request,
    settings: Settings,
    name: str,
    value: str,
    *,
    max_age: int | None,
    httponly: bool = True,
) -> None:
    """Set a cookie with Belofte's flags: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=httponly,
        samesite="lax",
        secure=settings.session_cookie_secure or is_https(request, settings),
    )


def delete_cookie(response: Response, request: Request, settings: Settings, name: str) -> None:
    """Remove a cookie set by :func:`set_cookie`."""
    response.delete_cookie(
        name,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.session_cookie_secure or is_https(request, settings),
    )


def tokens_match(sent: str | None, expected: str) -> bool:
    """Constant-time comparison of a CSRF token sent by the browser with the expected one."""
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


async def sent_csrf_token(request: Request) -> str | None:
    """The CSRF token of a request: the X-CSRF-Token header, else the form field csrf_token."""
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        # Starlette caches the parsed form on the request, so the route can still read it.
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def csrf_ok(request: Request, user: CurrentUser) -> bool:
    """Whether a state-changing request carries ``user``'s CSRF token (safe methods always do)."""
    if request.method in SAFE_METHODS:
        return True
    return tokens_match(await sent_csrf_token(request), user.csrf_token)


# -- login form: signed double-submit cookie ---------------------------------------------------


def _signature(settings: Settings, token: str) -> str:
    return hmac.new(settings.web_session_key(), token.encode("utf-8"), hashlib.sha256).hexdigest()


def login_csrf_cookie_token(request: Request, settings: Settings) -> str | None:
    """The token inside a valid (correctly signed) login CSRF cookie, or None."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    token, _, signature = cookie.partition(".")
    if token and tokens_match(signature, _signature(settings, token)):
        return token
    return None


def new_login_csrf(settings: Settings) -> tuple[str, str]:
    """A fresh login CSRF token and the cookie value that vouches for it."""
    token = secrets.token_urlsafe(24)
    return token, f"{token}.{_signature(settings, token)}"


def safe_next(target: str | None, fallback: str) -> str:
    """``target`` if it is a path on this site (never another host), else ``fallback``."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return fallback
    if any(ord(char) < 32 for char in target) or target.startswith(("/login", "/logout")):
        return fallback
    return target


def login_url(request: Request) -> str:
    """``/login?next=<this page>``."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(here, safe='/')}"
