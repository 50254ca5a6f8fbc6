"""Test doubles of the delivery tests (tests/channels/test_channel_delivery*.py).

``TwilioMessages``  an in-process Twilio REST stand-in that keeps what it created, answers the
                    message list (filtered by To and From, like Twilio) and plays scripted
                    failures, including "created, but the answer never came back".
``FakeClock``       a clock and a ``sleep`` that only moves it (no wall time in the tests).
``outage_with_subscribers`` an outage, its subscribers and their "fixed" outbox rows.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from channel_fakes import ACCOUNT_SID
from sqlalchemy.orm import Session
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse

from bot.promises.service import queue_message
from bot.storage.models import Outage, Subscription


@dataclass
class Failure:
    """A scripted answer to the next message creation.

    ``status``/``code``: Twilio answers with this error. ``exception``: the call raises it instead
    (``created=True``: after the message was created, as when the connection drops before the
    answer arrives).
    """

    status: int = 500
    code: int = 20500
    exception: BaseException | None = None
    created: bool = False


class TwilioMessages(AsyncHttpClient):  # type: ignore[misc]
    """Twilio's Messages resource in memory: create and list; thread-safe.

    ``failures``: scripted answers to the next creates. ``forgetful``: the list answers as if
    Twilio had nothing (a mock that keeps no state). ``list_fails``: the list answers 503.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tests.delivery_twilio"), True, None)
        self._lock = threading.Lock()
        self.created: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.failures: list[Failure] = []
        self.forgetful = False
        self.list_fails = False

    def bodies_to(self, number: str) -> list[str]:
        """Bodies of the messages created for ``number`` (bare or whatsapp:)."""
        return [m["body"] for m in self.created if m["to"].removeprefix("whatsapp:") == number]

    def creates(self) -> int:
        """How many create calls reached the API (failed ones included)."""
        return sum(1 for method, _, _ in self.requests if method == "POST")

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        query = {k: str(v) for k, v in (params or {}).items()}
        form = {k: str(v) for k, v in (data or {}).items()}
        with self._lock:
            self.requests.append((method, uri, form or query))
            if method == "GET":
                return self._list(query)
            failure = self.failures.pop(0) if self.failures else None
            if failure is not None and failure.exception is None:
                body = {"code": failure.code, "message": "scripted", "status": failure.status}
                return TwilioResponse(failure.status, json.dumps(body))
            message = self._create(form)
        if failure is not None and failure.exception is not None:
            if not failure.created:
                with self._lock:
                    self.created.remove(message)
            raise failure.exception
        return TwilioResponse(201, json.dumps(message))

    def _create(self, form: dict[str, str]) -> dict[str, Any]:
        message = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": ACCOUNT_SID,
            "status": "queued",
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body") or "",
            "date_created": format_datetime(datetime.now(UTC), usegmt=True),
            "direction": "outbound-api",
        }
        self.created.append(message)
        return message

    def _list(self, query: dict[str, str]) -> TwilioResponse:
        if self.list_fails:
            return TwilioResponse(503, json.dumps({"code": 20503, "message": "unavailable"}))
        found = [] if self.forgetful else list(self.created)
        if "To" in query:
            found = [m for m in found if m["to"] == query["To"]]
        if "From" in query:
            found = [m for m in found if m["from"] == query["From"]]
        found.reverse()  # newest first, as Twilio lists
        size = int(query.get("PageSize", "50"))
        page = {
            "messages": found[:size],
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "start": 0,
            "end": max(0, min(size, len(found)) - 1),
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        }
        return TwilioResponse(200, json.dumps(page))

    async def close(self) -> None:
        """Nothing to close."""


def dropped_connection() -> BaseException:
    """What aiohttp raises when the server closed the connection before answering."""
    return aiohttp.ServerDisconnectedError()


def refused_connection() -> BaseException:
    """What aiohttp raises when no connection could be made."""
    fields = ConnectionKey._fields
    key = ConnectionKey("127.0.0.1", 9, *([None] * (len(fields) - 2)))
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


class FakeClock:
    """A clock for the deliverer (``now``), the rate limiter (``monotonic``) and ``sleep``."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        """The current time."""
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        """Seconds since the start."""
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        """Move the clock instead of waiting."""
        self.sleeps.append(seconds)
        self.elapsed += seconds


def outage_with_subscribers(
    session: Session,
    numbers: list[tuple[str, str, str]],
    *,
    now: datetime,
    reference: str = "STO-26-00001",
) -> list[int]:
    """An outage resolved at ``now`` with one subscriber per (channel, address, language) and
    their queued "fixed" messages; returns the outbox ids in order."""
    outage = Outage(
        reference=reference,
        service="internet",
        cause="fiber_cut",
        region_name="Utrecht",
        country="NL",
        started_at=now - timedelta(hours=3),
        resolved_at=now,
        customers_affected=len(numbers),
    )
    session.add(outage)
    session.flush()
    ids: list[int] = []
    for channel, address, language in numbers:
        subscription = Subscription(
            outage_id=outage.id,
            channel=channel,
            address=address,
            language=language,
            created_at=now - timedelta(hours=1),
        )
        session.add(subscription)
        session.flush()
        outbox_id = queue_message(
            session,
            kind="outage_fixed",
            outage_id=outage.id,
            channel=channel,
            address=address,
            language=language,
            template="outage_fixed",
            params={
                "outage": reference,
                "service": "internet",
                "region": "Utrecht",
                "started_at": (now - timedelta(hours=3)).isoformat(),
                "resolved_at": now.isoformat(),
            },
            dedupe_key=f"fixed:{outage.id}:{subscription.id}",
            now=now,
            subscription_id=subscription.id,
        )
        assert outbox_id is not None
        ids.append(outbox_id)
    session.commit()
    return ids
