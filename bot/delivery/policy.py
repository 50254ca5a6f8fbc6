"""What to do after one delivery attempt: done, try again later, or give up.

A failure is transient when trying again may help: the platform could not be reached, the
connection dropped, Twilio answered 429 or a 5xx, Telegram asked us to slow down. It is permanent
when it cannot: the recipient opted out, the number is invalid (Twilio 21211), unsubscribed
(21610), not a mobile number (21614), the WhatsApp window closed without a template. Transient
failures are retried with exponential backoff and jitter, up to ``delivery_max_attempts``;
permanent ones go to the dead letters at once.
"""

from __future__ import annotations

import enum
from typing import Final

from bot.channels.outbound import SendResult

#: Twilio error codes that no retry can fix (the number or the recipient, not the moment).
PERMANENT_TWILIO_CODES: Final = frozenset(
    {
        21211,  # invalid 'To' phone number
        21408,  # permission to send to this region not enabled
        21606,  # the 'From' number cannot send this kind of message
        21610,  # the recipient unsubscribed (replied STOP)
        21612,  # the 'To' number is not reachable over this route
        21614,  # 'To' is not a valid mobile number
        63016,  # WhatsApp: outside the 24-hour window, free-form message refused
    }
)
#: Results meaning the message was not sent and will not be by trying again soon.
_PERMANENT_STATUSES: Final = frozenset({"refused"})
#: Results meaning the message was not sent yet but another attempt holds it, or it can wait.
_LATER_STATUSES: Final = frozenset({"busy"})
#: Results meaning the attempt may or may not have been sent (always retried: the next attempt
#: looks the message up before sending it again).
_UNSETTLED_STATUSES: Final = frozenset({"failed", "unknown"})


class Verdict(enum.StrEnum):
    """What became of a message after one attempt."""

    #: The platform took it (now, or an earlier attempt did).
    SENT = "sent"
    #: A transient failure: try again after a backoff (counts as an attempt).
    RETRY = "retry"
    #: A permanent failure: to the dead letters.
    DEAD = "dead"
    #: Not attempted (another attempt holds it, or the sender's rate is used up): try again
    #: later without counting an attempt.
    LATER = "later"


def classify(result: SendResult) -> Verdict:
    """The verdict on one :class:`SendResult` of the channel gateway."""
    if result.twilio_sid:
        # Twilio created the message: whatever its status says now (even "failed" or
        # "undelivered" later on), this message was sent and is not ours to send again.
        return Verdict.SENT
    if result.status in _LATER_STATUSES:
        return Verdict.LATER
    if result.status in _PERMANENT_STATUSES:
        return Verdict.DEAD
    if result.status in _UNSETTLED_STATUSES:
        if result.error_code in PERMANENT_TWILIO_CODES:
            return Verdict.DEAD
        return Verdict.RETRY if result.retryable else Verdict.DEAD
    # "duplicate" (sent before), "sent" (Telegram) or Twilio's status of the created message.
    return Verdict.SENT


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """How long to wait after failed attempt number ``attempt`` (1 for the first).

    ``base * 2**(attempt - 1)``, at most ``cap``, scaled into its upper half by ``jitter`` in
    [0, 1] ("equal jitter"): workers that failed together (Twilio down for a minute) do not all
    come back in the same second, and no wait is shorter than half the schedule.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be in [0, 1]")
    # Capping the exponent first keeps 2**n finite for absurd attempt numbers.
    raw = min(cap, base * 2.0 ** min(attempt - 1, 64))
    return raw / 2.0 + raw / 2.0 * jitter
