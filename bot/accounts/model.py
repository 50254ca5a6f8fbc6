"""The logged-in user as the web layer sees it (no database objects leave ``bot.accounts``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, get_args

Role = Literal["agent", "supervisor", "cx", "admin"]
Language = Literal["nl", "en"]

ROLES: Final[tuple[Role, ...]] = get_args(Role)
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)


@dataclass(frozen=True)
class CurrentUser:
    """Who is making this request, from their server-side session."""

    id: int
    username: str
    display_name: str
    role: Role
    language: Language
    #: The server-side session's public id (not the cookie token, which is never stored). Never
    #: store it with anonymous feedback.
    session_id: str
    #: The session's CSRF token, for pages and ``/api/v1/me``; kept out of logs and reprs.
    csrf_token: str = field(default="", repr=False, compare=False)

    def has_role(self, *roles: Role) -> bool:
        """True when this user may act as one of ``roles`` (admin may act as anyone)."""
        return self.role == "admin" or not roles or self.role in roles
