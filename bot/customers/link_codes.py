"""One-time link codes: tie a Telegram chat to a phone number, or the other way round.

The customer asks for a code on one channel (KOPPEL by SMS or WhatsApp, ``/koppel`` on
Telegram) and sends it on the other; the two customer records become one
(:func:`~bot.customers.identities.merge_customers`). Rules:

- only a keyed hash (HMAC-SHA256) of a code is stored, never the code;
- a code expires (``link_code_ttl_seconds``) and works once: using it is a conditional UPDATE
  of ``used_at``, so the same code sent twice at the same moment links once;
- a new code replaces the customer's unused ones;
- an address that sent ``link_code_max_attempts`` wrong codes within the window gets every
  code refused until the window has passed, the right one too: guessing does not pay.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bot.customers.identities import merge_customers
from bot.settings import Settings
from bot.storage.inserts import insert_ignoring_conflict
from bot.storage.models import Customer, CustomerLinkAttempt, CustomerLinkCode

#: Characters of a code: no 0/O, 1/I/L or U/V look-alikes, easy to read out and to type.
ALPHABET: Final = "ABCDEFGHJKMNPQRSTWXYZ23456789"
#: Length of a code: 29**6, about 600 million codes, against a handful of tries per window.
CODE_LENGTH: Final = 6
_SEPARATORS: Final = " -_."


@dataclass(frozen=True)
class LinkCodePolicy:
    """How long codes live and how many wrong ones an address may send, and the hash key."""

    ttl: timedelta
    max_attempts: int
    attempt_window: timedelta
    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkCodePolicy:
        """The policy configured by ``link_code_*`` settings."""
        return cls(
            ttl=timedelta(seconds=settings.link_code_ttl_seconds),
            max_attempts=settings.link_code_max_attempts,
            attempt_window=timedelta(seconds=settings.link_code_attempt_window_seconds),
            key=settings.link_code_key(),
        )


class RedeemStatus(enum.StrEnum):
    """What became of a code sent by a customer."""

    #: The two records are one customer now.
    LINKED = "linked"
    #: The code was the sender's own customer's: nothing to tie.
    ALREADY_LINKED = "already_linked"
    #: No such code (never issued, mistyped).
    UNKNOWN = "unknown"
    #: The code was issued but is past its time.
    EXPIRED = "expired"
    #: The code was used before.
    USED = "used"
    #: Too many wrong codes from this address lately: refused without looking.
    LOCKED = "locked"


@dataclass(frozen=True)
class RedeemResult:
    """The outcome of :func:`redeem_code`; ``customer`` is the linked customer when linked."""

    status: RedeemStatus
    customer: Customer | None = None

    @property
    def refused(self) -> bool:
        """True when the code did not link anything (wrong, expired, used or locked out)."""
        return self.status not in (RedeemStatus.LINKED, RedeemStatus.ALREADY_LINKED)


def normalise_code(text: str) -> str:
    """A code as typed ("abc-d2e", "ABC D2E") in its canonical form ("ABCD2E")."""
    return "".join(c for c in text.upper() if c not in _SEPARATORS)


def looks_like_code(text: str) -> bool:
    """True when ``text`` has the shape of a code (length and characters), right or wrong."""
    code = normalise_code(text)
    return len(code) == CODE_LENGTH and all(c in ALPHABET for c in code)


def code_hash(code: str, key: bytes) -> str:
    """The keyed hash a code is stored under."""
    return hmac.new(key, normalise_code(code).encode("utf-8"), hashlib.sha256).hexdigest()


def issue_code(
    session: Session, customer_id: int, *, channel: str, policy: LinkCodePolicy, now: datetime
) -> str:
    """A new code for the customer (its unused older ones stop working); the caller commits.

    The code itself is returned once, to be told to the customer, and never stored.
    """
    # Expired codes are of no use to anyone; a customer has one live code at a time.
    session.execute(delete(CustomerLinkCode).where(CustomerLinkCode.expires_at <= now))
    session.execute(
        delete(CustomerLinkCode).where(
            CustomerLinkCode.customer_id == customer_id, CustomerLinkCode.used_at.is_(None)
        )
    )
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        inserted = insert_ignoring_conflict(
            session,
            CustomerLinkCode,
            {
                "customer_id": customer_id,
                "code_hash": code_hash(code, policy.key),
                "channel": channel,
                "created_at": now,
                "expires_at": now + policy.ttl,
            },
            ("code_hash",),
        )
        if inserted:  # else another live code is the same: draw again
            return code


def failed_attempts(
    session: Session, *, channel: str, address: str, policy: LinkCodePolicy, now: datetime
) -> int:
    """How many wrong codes ``address`` sent on ``channel`` within the attempt window."""
    count = session.scalar(
        select(func.count())
        .select_from(CustomerLinkAttempt)
        .where(
            CustomerLinkAttempt.channel == channel,
            CustomerLinkAttempt.address == address,
            CustomerLinkAttempt.at > now - policy.attempt_window,
        )
    )
    return int(count or 0)


def _refuse(
    session: Session, status: RedeemStatus, channel: str, address: str, now: datetime
) -> RedeemResult:
    session.add(CustomerLinkAttempt(channel=channel, address=address, at=now))
    return RedeemResult(status)


def redeem_code(
    session: Session,
    code: str,
    *,
    customer_id: int,
    channel: str,
    address: str,
    policy: LinkCodePolicy,
    now: datetime,
) -> RedeemResult:
    """Use ``code``, sent by the customer ``customer_id`` from ``address`` on ``channel``.

    On success the sender's customer and the code's customer are merged. Every refusal except
    the lockout itself counts as a wrong attempt of the address. The caller commits (also after
    a refusal: the attempt must be kept).
    """
    if failed_attempts(session, channel=channel, address=address, policy=policy, now=now) >= (
        policy.max_attempts
    ):
        return RedeemResult(RedeemStatus.LOCKED)
    row = session.scalars(
        select(CustomerLinkCode).where(CustomerLinkCode.code_hash == code_hash(code, policy.key))
    ).first()
    if row is None:
        return _refuse(session, RedeemStatus.UNKNOWN, channel, address, now)
    if row.used_at is not None:
        return _refuse(session, RedeemStatus.USED, channel, address, now)
    if row.expires_at <= now:
        return _refuse(session, RedeemStatus.EXPIRED, channel, address, now)
    claimed = session.execute(
        update(CustomerLinkCode)
        .where(
            CustomerLinkCode.id == row.id,
            CustomerLinkCode.used_at.is_(None),
            CustomerLinkCode.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        # Another request used it a moment ago.
        return _refuse(session, RedeemStatus.USED, channel, address, now)
    session.expire(row, ["used_at"])
    if row.customer_id == customer_id:
        return RedeemResult(RedeemStatus.ALREADY_LINKED, session.get(Customer, customer_id))
    # A right code clears the address's wrong ones.
    session.execute(
        delete(CustomerLinkAttempt).where(
            CustomerLinkAttempt.channel == channel, CustomerLinkAttempt.address == address
        )
    )
    return RedeemResult(RedeemStatus.LINKED, merge_customers(session, customer_id, row.customer_id))
