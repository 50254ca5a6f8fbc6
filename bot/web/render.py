"""``render_page``: a page of any package inside the shared ``base.html``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from bot.web.i18n import BOT_DIR, DEFAULT_LANGUAGE, PAGE_PACKAGES, texts, translate

if TYPE_CHECKING:
    from bot.accounts.model import CurrentUser

#: The cookie that remembers the language of a visitor who is not logged in (the login page).
LANGUAGE_COOKIE: Final = "belofte_lang"

#: Navigation: (text key, path, data-testid, roles that see it; admin sees everything).
NAV: Final = (
    ("web.nav.console", "/console", "nav-console", ("agent",)),
    ("web.nav.supervisor", "/supervisor", "nav-supervisor", ("supervisor",)),
    ("web.nav.cx", "/cx", "nav-cx", ("cx",)),
)

#: One environment for every page package: template names are unique across packages.
templates: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(
        [str(BOT_DIR / package / "templates") for package in PAGE_PACKAGES]
    ),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    auto_reload=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Headers of every page: no framing (clickjacking), no sniffing, no caching of CSRF tokens.
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _script_json(value: object) -> Markup:
    # Inside <script> only "</" can end the element early; \u003c keeps the JSON valid.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def page_language(request: Request, user: CurrentUser | None) -> str:
    """The interface language: the user's, else the visitor's cookie, else Dutch."""
    if user is not None:
        return user.language
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in ("nl", "en") else DEFAULT_LANGUAGE


def nav_items(user: CurrentUser | None, path: str) -> list[dict[str, Any]]:
    """The navigation links ``user`` may follow, the current one marked."""
    if user is None:
        return []
    return [
        {"key": key, "href": href, "testid": testid, "current": path.startswith(href)}
        for key, href, testid, roles in NAV
        if user.role == "admin" or user.role in roles
    ]


def render_page(
    request: Request,
    template: str,
    user: CurrentUser | None,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` (which extends ``base.html``) for ``user`` in their language.

    The base context: ``user``, ``csrf_token``, ``lang``, ``t(key, **params)``, ``nav``, the
    JSON of the texts for JavaScript, and ``path`` / ``next_path`` (for language switches).
    """
    lang = page_language(request, user)

    def t(key: str, **params: object) -> str:
        return translate(lang, key, **params)

    path = request.url.path
    next_path = path + (f"?{request.url.query}" if request.url.query else "")
    base: dict[str, Any] = {
        "request": request,
        "user": user,
        "csrf_token": user.csrf_token if user is not None else "",
        "lang": lang,
        "t": t,
        "nav": nav_items(user, path),
        "path": path,
        "next_path": next_path,
        "ui_texts_json": _script_json(texts(lang)),
        "context_json": _script_json(
            {
                "lang": lang,
                "user": None
                if user is None
                else {
                    "username": user.username,
                    "display_name": user.display_name,
                    "role": user.role,
                },
            }
        ),
    }
    base.update(context or {})
    html = templates.get_template(template).render(base)
    return HTMLResponse(html, status_code=status_code, headers={**_PAGE_HEADERS, **(headers or {})})
