"""argon2id password hashing (argon2-cffi), with parameters from the settings.

Hashes made with other parameters still verify; :func:`needs_rehash` tells the login to store a
fresh hash. Unknown usernames are verified against a dummy hash so that a login for someone who
does not exist takes as long as one for someone who does.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bot.settings import Settings


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hasher(settings: Settings) -> PasswordHasher:
    """The password hasher for the configured argon2 parameters."""
    return _hasher(settings.password_hash_time_cost, settings.password_hash_memory_kib)


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash("belofte-dummy-password-for-timing")


def hash_password(settings: Settings, password: str) -> str:
    """An argon2id hash of ``password``."""
    return hasher(settings).hash(password)


def verify_password(settings: Settings, stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` (no such user) costs the same time."""
    ph = hasher(settings)
    if stored_hash is None:
        with contextlib.suppress(VerificationError):
            ph.verify(
                _dummy_hash(settings.password_hash_time_cost, settings.password_hash_memory_kib),
                password,
            )
        return False
    try:
        return ph.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(settings: Settings, stored_hash: str) -> bool:
    """True when ``stored_hash`` was made with other parameters than the configured ones."""
    try:
        return hasher(settings).check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
