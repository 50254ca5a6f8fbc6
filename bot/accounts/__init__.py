"""Accounts of the people who use the web pages: users, roles, sessions, CSRF, login.

The public interface for page packages::

    from bot.accounts import CurrentUser, page_user, require_role, require_api_key_or_role

    @router.get("/supervisor")
    def page(request: Request, user: CurrentUser = Depends(page_user("supervisor"))): ...

    @router.post("/api/v1/thing")
    def act(user: CurrentUser = Depends(require_role("supervisor"))): ...

Users are managed with ``belofte users`` (:mod:`bot.accounts.cli`) or
:mod:`bot.accounts.service`; the login, logout and language routes are in
:mod:`bot.accounts.routes`.
"""

from bot.accounts.deps import (
    LoginRequired,
    PageForbidden,
    page_user,
    request_user,
    require_api_key_or_role,
    require_role,
)
from bot.accounts.model import ROLES, CurrentUser, Role

__all__ = [
    "ROLES",
    "CurrentUser",
    "LoginRequired",
    "PageForbidden",
    "Role",
    "page_user",
    "request_user",
    "require_api_key_or_role",
    "require_role",
]
