"""Per-sender rate limits: the generic cell rate algorithm (GCRA), in Redis or in memory.

Twilio queues what a number sends beyond its rate (1 message per second for a long code, more
for short codes and WhatsApp senders) and Telegram answers 429 above about 30 messages per second
per bot, so workers pace themselves per sender. A sender's state is one number, its theoretical
arrival time (TAT): the moment the next message would be due if every message kept exactly to
the rate. :meth:`RateLimiter.reserve` books the next slot and says how long to wait for it, or
books nothing when the wait would be longer than the caller is willing to wait.

:class:`RedisRateLimiter` runs the algorithm as one Lua script, so every worker on the same
Redis shares a sender's budget; its clock is the Redis server's (``TIME``), so workers' clocks
need not agree. :class:`MemoryRateLimiter` is the same algorithm for one process (the embedded
delivery without Redis). Both take an optional clock, which the tests replace.

No library is used: the ones on PyPI that share limits through Redis (``limits``) take the time
from the client's clock inside the library, which would make the pace untestable without wall
time, and they answer "allowed or not" instead of "wait this long".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from bot.settings import Settings

#: A clock in seconds (any epoch, as long as it only moves forward).
Clock = Callable[[], float]

# KEYS[1]: the sender's TAT key. ARGV: now in seconds ('' for the Redis server's clock), the
# emission interval, the burst tolerance and the longest acceptable wait, all in seconds.
# Returns {booked (1/0), wait in seconds as a string}: Lua numbers would be cut to integers.
_GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]))
if (not tat) or tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, tostring(wait)} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(wait)}
"""


@dataclass(frozen=True)
class Rate:
    """A sender's pace: ``per_second`` messages per second, ``burst`` of them at once."""

    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.per_second <= 0:
            raise ValueError("a rate must be positive")
        if self.burst < 1:
            raise ValueError("a burst is at least one message")

    @property
    def interval(self) -> float:
        """Seconds between two messages at this rate."""
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of the pace a sender may be (the burst)."""
        return self.interval * (self.burst - 1)


class RateLimiter(Protocol):
    """Books sending slots per sender key."""

    async def reserve(self, key: str, rate: Rate, max_wait: float) -> float | None:
        """Book the next slot of ``key``: seconds to wait for it (0: send now).

        None when that wait would exceed ``max_wait``; nothing is booked then.
        """
        ...


class MemoryRateLimiter:
    """GCRA for one process (no Redis): the embedded delivery and tests."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or time.monotonic
        self._tat: dict[str, float] = {}

    async def reserve(self, key: str, rate: Rate, max_wait: float) -> float | None:
        """See :meth:`RateLimiter.reserve`."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        wait = max(0.0, tat - rate.tolerance - now)
        if wait > max_wait:
            return None
        self._tat[key] = tat + rate.interval
        return wait


class RedisRateLimiter:
    """GCRA in Redis, shared by every worker; keys are ``<prefix>:rate:<sender key>``."""

    def __init__(self, redis: Redis, prefix: str, clock: Clock | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._script = redis.register_script(_GCRA_SCRIPT)

    async def reserve(self, key: str, rate: Rate, max_wait: float) -> float | None:
        """See :meth:`RateLimiter.reserve`."""
        now = "" if self._clock is None else repr(self._clock())
        booked, wait = await self._script(
            keys=[f"{self._prefix}:rate:{key}"],
            args=[now, repr(rate.interval), repr(rate.tolerance), repr(max_wait)],
        )
        return float(wait) if int(booked) else None


def sender_key(settings: Settings, channel: str) -> str:
    """Who sends a proactive message on ``channel``: ``sms:+3197...``, ``telegram:<bot id>``.

    Proactive messages go from the configured sender of the channel, so that is whose rate
    they use.
    """
    if channel == "sms":
        sender = settings.twilio_sms_from or ""
    elif channel == "whatsapp":
        sender = settings.twilio_whatsapp_from or ""
    elif channel == "telegram" and settings.telegram_bot_token is not None:
        sender = settings.telegram_bot_token.get_secret_value().split(":", 1)[0]
    else:
        sender = ""
    return f"{channel}:{sender.removeprefix('whatsapp:')}"


def rate_for(settings: Settings, key: str) -> Rate | None:
    """The configured rate of sender ``key`` (its own entry, else its channel's); None: none."""
    per_second = settings.delivery_rate_limits.get(key)
    if per_second is None:
        per_second = settings.delivery_rate_limits.get(key.split(":", 1)[0])
    if per_second is None:
        return None
    return Rate(per_second, settings.delivery_rate_burst)
