"""Users, server-side web sessions and the login rate limit, on the database.

Everything here takes an ORM session and commits its own unit of work, so the CLI, the routes and
tests use the same code. Cookie tokens are never stored: a session row keeps the SHA-256 of its
token, and a lost database copy cannot be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.accounts.model import LANGUAGES, ROLES, CurrentUser, Language, Role
from bot.accounts.passwords import hash_password, needs_rehash, verify_password
from bot.settings import Settings, get_settings
from bot.storage.models import LoginAttempt, User, WebSession
from bot.storage.types import utcnow

#: Usernames: lower-case letters, digits and . _ @ - (an e-mail address fits).
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
#: A session's last activity is written at most this often (not on every request).
_TOUCH_EVERY = timedelta(seconds=60)


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why (for the CLI)."""


def normalise_username(username: str) -> str:
    """``username`` as stored: trimmed and lower-cased (logins are case-insensitive)."""
    return username.strip().lower()


def _check_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.match(name):
        raise AccountError(
            f"invalid username {username!r}: 1-64 characters, lower-case letters, digits and "
            ". _ @ -, starting with a letter or digit"
        )
    return name


def _check_password(settings: Settings, password: str) -> None:
    if len(password) < settings.password_min_length:
        raise AccountError(
            f"the password is too short: at least {settings.password_min_length} characters"
        )
    if password != password.strip():
        # Leading or trailing blanks are almost always a copy-paste accident.
        raise AccountError("the password starts or ends with a space")


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def check_language(language: str) -> Language:
    for known in LANGUAGES:
        if language == known:
            return known
    raise AccountError(f"unknown language {language!r}: one of {', '.join(LANGUAGES)}")


# -- users -------------------------------------------------------------------------------------


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
    language: str = "nl",
    settings: Settings | None = None,
) -> User:
    """Add an active user (committed). Raises :class:`AccountError` on bad input or a taken name."""
    settings = settings or get_settings()
    name = _check_username(username)
    _check_password(settings, password)
    user = User(
        username=name,
        display_name=(display_name or "").strip() or name,
        role=check_role(role),
        language=check_language(language),
        password_hash=hash_password(settings, password),
        is_active=True,
    )
    if len(user.display_name) > 200:
        raise AccountError("the display name is longer than 200 characters")
    session.add(user)
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise AccountError(f"the username {name!r} is taken") from error
    return user


def get_user(session: Session, username: str) -> User | None:
    """The user called ``username`` (case-insensitive), or None."""
    return session.scalar(select(User).where(User.username == normalise_username(username)))


def _existing(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise AccountError(f"no user {normalise_username(username)!r}")
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


def set_password(
    session: Session, username: str, password: str, settings: Settings | None = None
) -> User:
    """Give ``username`` a new password and end all their sessions (committed)."""
    settings = settings or get_settings()
    user = _existing(session, username)
    _check_password(settings, password)
    user.password_hash = hash_password(settings, password)
    user.password_changed_at = utcnow()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.commit()
    return user


def set_active(session: Session, username: str, active: bool) -> User:
    """Enable or disable ``username``; disabling ends all their sessions (committed)."""
    user = _existing(session, username)
    user.is_active = active
    if not active:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.commit()
    return user


def set_language(session: Session, user_id: int, language: str) -> None:
    """Store the interface language of a user (committed)."""
    user = session.get(User, user_id)
    if user is None:
        raise AccountError(f"no user with id {user_id}")
    user.language = check_language(language)
    session.commit()


# -- sessions ----------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """The stored form of a session cookie token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(
    session: Session, user: User, settings: Settings, *, replaces: str | None = None
) -> str:
    """A new session for ``user``; returns the cookie token (committed).

    ``replaces`` is the cookie token the browser came with: that session is deleted, so a token
    planted before the login can never become a logged-in one (session fixation). Expired sessions
    of everybody are cleaned up on the way.
    """
    now = utcnow()
    if replaces:
        session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(replaces)))
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id=secrets.token_hex(16),
            token_hash=token_hash(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.session_max_hours),
        )
    )
    user.last_login_at = now
    session.commit()
    return token


def current_user(session: Session, token: str, settings: Settings) -> CurrentUser | None:
    """The user of the session with cookie ``token``, or None when there is no live session.

    A session past its idle timeout or absolute lifetime is deleted; one of a disabled user is
    refused. Activity is written at most once a minute.
    """
    now = utcnow()
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == token_hash(token))
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        return None
    web_session, user = row
    idle_limit = web_session.last_seen_at + timedelta(minutes=settings.session_idle_minutes)
    if now >= web_session.expires_at or now >= idle_limit or not user.is_active:
        session.delete(web_session)
        session.commit()
        return None
    if now - web_session.last_seen_at >= _TOUCH_EVERY:
        web_session.last_seen_at = now
        session.commit()
    return CurrentUser(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=check_role(user.role),
        language=check_language(user.language),
        session_id=web_session.id,
        csrf_token=web_session.csrf_token,
    )


def end_session(session: Session, token: str) -> None:
    """Log out: delete the session of cookie ``token`` (committed; no error if there is none)."""
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))
    session.commit()


# -- login and its rate limit ------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    """The outcome of :func:`login`: a cookie token, or why not."""

    token: str | None = None
    user: User | None = None
    #: Set when the attempt was refused by the rate limit: seconds until the next may be tried.
    retry_after: int | None = None


def retry_after(
    session: Session, settings: Settings, username: str, address: str, now: datetime
) -> int | None:
    """Seconds until a login for ``username`` from ``address`` may be tried again, or None.

    Either too many failures for the name or too many from the address block it; the wait ends
    when the oldest failure that still counts leaves the window.
    """
    window = timedelta(seconds=settings.login_failure_window_seconds)
    since = now - window
    waits: list[int] = []
    for column, value in ((LoginAttempt.username, username), (LoginAttempt.address, address)):
        times = list(
            session.scalars(
                select(LoginAttempt.at)
                .where(column == value, LoginAttempt.at > since)
                .order_by(LoginAttempt.at.desc())
                .limit(settings.login_max_failures)
            )
        )
        if len(times) >= settings.login_max_failures:
            free_at = times[-1] + window
            waits.append(max(1, int((free_at - now).total_seconds() + 0.999)))
    return max(waits) if waits else None


def failure_count(session: Session, settings: Settings, username: str) -> int:
    """Failed logins for ``username`` in the current window (for tests and the CLI)."""
    since = utcnow() - timedelta(seconds=settings.login_failure_window_seconds)
    count = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.username == normalise_username(username)[:64], LoginAttempt.at > since)
    )
    return int(count or 0)


def login(
    session: Session,
    settings: Settings,
    *,
    username: str,
    password: str,
    address: str,
    replaces: str | None = None,
) -> LoginResult:
    """Check a username and password; on success start a session.

    The attempt is stored as a failure *before* the password is checked and removed on success,
    so parallel guesses all count. A refused attempt (rate limit) is not stored: otherwise an
    attacker could keep a user locked out for ever.
    """
    name = normalise_username(username)[:64]
    address = address[:64]
    now = utcnow()
    wait = retry_after(session, settings, name, address, now)
    if wait is not None:
        return LoginResult(retry_after=wait)
    attempt = LoginAttempt(username=name, address=address, at=now)
    session.add(attempt)
    # Old attempts are of no use any more; deleting them here keeps the table small.
    session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.at < now - timedelta(seconds=settings.login_failure_window_seconds)
        )
    )
    session.commit()
    # Fresh from the database, even if this session saw the user before a password change.
    user = session.scalar(
        select(User).where(User.username == name).execution_options(populate_existing=True)
    )
    ok = verify_password(settings, user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        return LoginResult()
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == name))
    if needs_rehash(settings, user.password_hash):
        user.password_hash = hash_password(settings, password)
    token = start_session(session, user, settings, replaces=replaces)
    return LoginResult(token=token, user=user)
