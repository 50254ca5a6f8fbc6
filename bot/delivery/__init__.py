"""Delivery of proactive messages: the outbox, sent to every subscriber on their channel.

The promise engine writes messages to the ``outbox`` table in the same transaction as their
reason (an outage resolved, a promise renewed; see :func:`bot.promises.service.queue_message`).
This package sends them, at least once and, as far as the platforms let us know, never twice:

- :mod:`bot.delivery.dispatch`: due rows become arq jobs (job id = outbox row + recipient, so
  queueing a message twice is a no-op); without Redis the service delivers in-process
  (:class:`EmbeddedDelivery`).
- :mod:`bot.delivery.worker`: one attempt at one row (:class:`Deliverer`: render in the row's
  language, wait for the sender's rate, send through the channel gateway under the row's
  ``dedupe_key``, record the verdict) and the arq worker of ``belofte worker``.
- :mod:`bot.delivery.policy`: transient or permanent, and the backoff schedule.
- :mod:`bot.delivery.ratelimit`: per-sender GCRA in Redis (shared by all workers) or memory.
- :mod:`bot.delivery.store`: the outbox states, dead letters and queue health.
- :mod:`bot.delivery.api`: ``/api/v1/outbox/dead-letters``, ``/{id}/retry``, ``/health``.

Never sent twice: how, and where it can still happen
-----------------------------------------------------
The idempotency key of a message to one recipient is its outbox ``dedupe_key``. Sending claims
the key in ``channel_outbound`` (a unique row) and commits that claim *before* the REST call; the
call's answer finishes the row. A retry (a backoff, a worker killed mid-job and its job run
again by arq, a supervisor's retry) meets the claim and, per :mod:`bot.channels.outbound`: sends
nothing when the platform took the message; sends again when the platform certainly did not
(it answered with an error, or no connection was made); waits while a claim is younger than
``delivery_claim_lease_seconds``; and for an older claim or a call that ended in a timeout or a
dropped connection ("outcome unknown") first lists the Twilio messages from the sender to the
number and adopts one with the same body created since the first claim, sending only when there
is none. So a crash at any point (before the call, during it, after Twilio answered but before
the answer was written) is settled without loss and, on Twilio, without a second message.

What remains:

- Twilio's list must show the message. A message it created is listed at once in practice, but
  nothing guarantees it; a lookup that fails leaves the message "unknown" and retries later
  (never sends blind), but a lookup that succeeds without the message resends.
- A worker that stalls longer than the lease between its claim and its REST call reaching Twilio
  (a frozen VM, not a crash) can send after another worker already settled the claim: both go
  out. The lease is validated to be at least twice the Twilio timeout.
- Templates (WhatsApp outside the 24-hour window) are matched on sender, number and time only,
  as their body is Twilio's rendering: an earlier, different template message in that window
  would be taken for ours.
- Telegram's Bot API cannot list sent messages: an unknown outcome there (a timeout) is resent
  after the lease, so a message can arrive twice; never lost.
- A mock API that does not keep what it was sent (Prism with generated answers) cannot be
  asked, so against it a message whose worker was SIGKILLed mid-call is sent again
  (``bench/fanout.py`` counts those).
"""

from __future__ import annotations

from bot.channels.outbound import SendResult
from bot.delivery.dispatch import Dispatcher, EmbeddedDelivery, job_id
from bot.delivery.policy import Verdict, backoff_seconds, classify
from bot.delivery.ratelimit import MemoryRateLimiter, Rate, RedisRateLimiter
from bot.delivery.store import DueMessage, QueueHealth
from bot.delivery.worker import Deliverer, Outcome, Sender, build_worker, run_worker
from bot.settings import Settings
from bot.storage.db import SessionFactory

__all__ = [
    "Deliverer",
    "Dispatcher",
    "DueMessage",
    "EmbeddedDelivery",
    "MemoryRateLimiter",
    "Outcome",
    "QueueHealth",
    "Rate",
    "RedisRateLimiter",
    "SendResult",
    "Sender",
    "Verdict",
    "backoff_seconds",
    "build_worker",
    "classify",
    "embedded_delivery",
    "job_id",
    "run_worker",
]


def embedded_delivery(
    settings: Settings, sessions: SessionFactory, sender: Sender
) -> EmbeddedDelivery | None:
    """The in-process delivery of a service without Redis; None when workers deliver (Redis)."""
    if settings.redis_url:
        return None
    deliverer = Deliverer(settings, sessions, sender, MemoryRateLimiter())
    return EmbeddedDelivery(settings, sessions, deliverer.deliver)
