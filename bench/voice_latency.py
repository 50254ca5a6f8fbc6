"""Server time per webhook of the voice outage line, over scripted calls on the demo provider.

Example::

    .venv/bin/python bench/voice_latency.py --calls 200

Creates a fresh SQLite database in a temporary folder (or uses ``--database-url``, which must be
an empty database: it is migrated and seeded), loads the demo provider (active outages and two
years of history, so the real promise engine is fitted on real-sized history), and posts N
scripted calls through the Belofte ASGI app in-process (httpx ``ASGITransport``), each request
signed with twilio's ``RequestValidator`` like Twilio signs them. Every call: the incoming call,
the language answer (half press 9 for English, half stay silent), the postcode said as words
("drie vijf één één" / "three five one one"), press 1 for a text message, and the "completed"
status callback.

Server time is measured inside the app (from the request entering the ASGI app to the last byte
of the answer), so signing and the client are left out. The first call is a warm-up and not
counted: it fits the promise engine on the history (reported separately as ``first_call_ms``).
Prints p50/p95/max per webhook in milliseconds as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.app import create_app  # noqa: E402
from bot.demo.seed import seed_demo  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.storage.db import make_engine, make_sessionmaker  # noqa: E402
from bot.storage.migrate import upgrade_database  # noqa: E402

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-auth-token"
PUBLIC_BASE = "https://belofte.example.nl"
VOICE = "/webhooks/twilio/voice"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerTimer:
    """ASGI wrapper: records the time each request spends in the app, by path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.times: dict[str, list[float]] = defaultdict(list)
        self.recording = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tick = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if self.recording:
                self.times[scope["path"]].append((time.perf_counter() - tick) * 1000.0)


class ScriptedCall:
    """One call, posted as Twilio posts it, following the URLs of the TwiML answers."""

    def __init__(self, client: httpx.AsyncClient, sid: str, caller: str) -> None:
        self.client = client
        self.sid = sid
        self.caller = caller
        self.last: ElementTree.Element | None = None
        self.validator = RequestValidator(AUTH_TOKEN)

    def params(self, **extra: str) -> dict[str, str]:
        return {
            "CallSid": self.sid,
            "AccountSid": ACCOUNT_SID,
            "From": self.caller,
            "To": "+31850000000",
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **extra,
        }

    async def post(self, url: str, params: dict[str, str]) -> httpx.Response:
        signature = self.validator.compute_signature(url, params)
        response = await self.client.post(
            url[len(PUBLIC_BASE) :], data=params, headers={"X-Twilio-Signature": signature}
        )
        if response.status_code >= 300:
            raise RuntimeError(f"{url}: {response.status_code} {response.text}")
        if response.content:
            self.last = ElementTree.fromstring(response.text)
        return response

    def _action(self) -> str:
        assert self.last is not None
        gather = self.last.find("Gather")
        if gather is None:
            raise RuntimeError(f"no question asked: {ElementTree.tostring(self.last)!r}")
        return str(gather.get("action"))

    def _redirect(self) -> str:
        assert self.last is not None
        redirect = self.last.find("Redirect")
        assert redirect is not None
        return str(redirect.text)

    async def run(self, english: bool) -> None:
        await self.post(PUBLIC_BASE + VOICE, self.params(CallStatus="ringing"))
        if english:
            await self.post(self._action(), self.params(Digits="9"))
            speech = "three five one one"
        else:
            await self.post(self._redirect(), self.params())  # silence: Dutch
            speech = "drie vijf één één"
        await self.post(self._action(), self.params(SpeechResult=speech, Confidence="0.93"))
        await self.post(self._action(), self.params(Digits="1"))
        await self.post(
            f"{PUBLIC_BASE}{VOICE}/status", self.params(CallStatus="completed", CallDuration="40")
        )


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(p95, 2),
        "max": round(ordered[-1], 2),
    }


async def bench(settings: Settings, calls: int) -> dict[str, Any]:
    """Run ``calls`` scripted calls (plus one warm-up) and return the timings."""
    logging.getLogger("bot.app").setLevel(logging.ERROR)  # no knowledge index: expected here
    app = create_app(settings)
    timer = ServerTimer(app)
    transport = httpx.ASGITransport(app=timer)
    async with httpx.AsyncClient(transport=transport, base_url="http://belofte.test") as client:
        tick = time.perf_counter()
        await ScriptedCall(client, "CA" + "0" * 32, "+31600000000").run(english=False)
        first_call_ms = (time.perf_counter() - tick) * 1000.0
        timer.times.clear()
        tick = time.perf_counter()
        for number in range(1, calls + 1):
            caller = f"+316{10000000 + number:08d}"
            await ScriptedCall(client, f"CA{number:032d}", caller).run(english=number % 2 == 0)
        wall = time.perf_counter() - tick
    names = {
        VOICE: "incoming",
        f"{VOICE}/language": "language",
        f"{VOICE}/postcode": "postcode",
        f"{VOICE}/menu": "menu",
        f"{VOICE}/status": "status",
    }
    per_webhook = {names.get(path, path): _percentiles(v) for path, v in timer.times.items()}
    every = [ms for values in timer.times.values() for ms in values]
    return {
        "calls": calls,
        "database": settings.sqlalchemy_url.split(":", 1)[0],
        "first_call_ms": round(first_call_ms, 1),
        "server_ms": per_webhook,
        "all_webhooks_ms": _percentiles(every),
        "calls_per_second": round(calls / wall, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="belofte-voice-bench-") as home:
        url = args.database_url or f"sqlite:///{home}/belofte.db"
        settings = Settings(
            home=Path(home),
            database_url=url,
            rasa_token="bench",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_sms_from="+3197010000001",
            public_base_url=PUBLIC_BASE,
            voice_agent_queue="storingen",
        )
        upgrade_database(url)
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session:
            seed_demo(session, now=datetime.now(UTC), seed=7)
            session.commit()
        engine.dispose()
        report = asyncio.run(bench(settings, args.calls))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
