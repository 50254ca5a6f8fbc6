"""Agent console: time from sending what the customer says to the assistant's reply, real Rasa.

Target (issue 6): the reply appears within 300 ms of sending on this machine.

Example::

    .venv/bin/python bench/console_latency.py --messages 120 --browser 40

Starts the live stack of the end-to-end tests (``tests/live_stack.py``: Rasa with the model of
``$BELOFTE_TEST_HOME``, trained if missing, and the Belofte service with the knowledge index, on
a fresh demo-seeded SQLite database), creates an agent with ``belofte users add`` and logs in
through the real login form, then:

1. **HTTP**: posts ``--messages`` customer messages (half Dutch, half English, in five-turn
   conversations) to ``POST /api/v1/conversations/{id}/messages`` with channel ``console``, the
   session cookie and the CSRF token, exactly as the console's script does, and times each round
   trip (send -> complete JSON answer, which includes the next-best answers).
2. **Breakdown** (``--breakdown``): the same texts straight to Rasa (the two calls of
   :class:`bot.rasa_client.RasaClient`) and to the knowledge retriever, to see where the time
   goes.
3. **Browser** (``--browser N``, needs Playwright and /usr/bin/chromium): N messages typed into
   the real ``/console`` page; the page records send -> reply shown (``performance.now()``,
   ``data-last-latency-ms``).

``--base-url URL --api-key KEY`` measures an already running service instead (with the key; no
login, no browser). Prints JSON with p50/p95/max in milliseconds per language and overall, the
load average before and after, and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bot.settings import Settings  # noqa: E402

#: What customers tell agents, as agents type it (nl and en; outages of the demo provider).
CONVERSATIONS: dict[str, list[list[str]]] = {
    "nl": [
        [
            "is er een storing in 3511 AB?",
            "internet",
            "wanneer is het opgelost?",
            "krijg ik een vergoeding?",
            "bedankt",
        ],
        [
            "mijn tv doet het niet, postcode 1012 AB",
            "tv",
            "hoe lang duurt het nog?",
            "moet ik mijn decoder herstarten?",
            "oké dank je",
        ],
        [
            "geen stroom in 2000 Antwerpen",
            "stroom",
            "wanneer komt de stroom terug?",
            "hoe zeg ik mijn abonnement op?",
            "doei",
        ],
    ],
    "en": [
        [
            "is there an outage in 3511 AB?",
            "internet",
            "when will it be fixed?",
            "do I get a refund?",
            "thanks",
        ],
        [
            "my tv is not working, postcode 1012 AB",
            "tv",
            "how much longer will it take?",
            "should I restart my set-top box?",
            "ok thank you",
        ],
        [
            "no electricity in 2000 Antwerp",
            "electricity",
            "when will the power be back?",
            "how do I cancel my subscription?",
            "bye",
        ],
    ],
}
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "bench password for the console"


def percentiles(values: list[float]) -> dict[str, float | int]:
    """Count, p50, p95 and max of ``values`` (milliseconds), rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "max": round(ordered[-1], 1),
    }


def messages(total: int) -> Iterator[tuple[str, str, str]]:
    """(language, conversation id, text) for ``total`` messages, alternating languages."""
    count = 0
    round_ = 0
    while True:
        for language in ("nl", "en"):
            for script in CONVERSATIONS[language]:
                conversation = f"bench-{language}-{round_}-{uuid.uuid4().hex[:6]}"
                for text in script:
                    if count >= total:
                        return
                    yield language, conversation, text
                    count += 1
        round_ += 1


def login(base: str) -> tuple[httpx.Client, str]:
    """A client logged in as the bench agent, and its CSRF token."""
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/login")
    found = _CSRF_FIELD.search(page.text)
    if found is None:
        raise RuntimeError("no csrf_token on /login")
    answer = client.post(
        "/login",
        data={"username": "bench-agent", "password": PASSWORD, "csrf_token": found.group(1)},
    )
    if answer.status_code not in (200, 303):
        raise RuntimeError(f"login failed: {answer.status_code}")
    token: str = client.get("/api/v1/me").json()["csrf_token"]
    return client, token


def http_round_trips(
    client: httpx.Client, headers: dict[str, str], total: int, warmup: int
) -> dict[str, Any]:
    """Time ``total`` console turns after ``warmup`` untimed ones."""
    times: dict[str, list[float]] = {"nl": [], "en": []}
    suggestions = 0
    for i, (language, conversation, text) in enumerate(messages(total + warmup)):
        started = time.perf_counter()
        response = client.post(
            f"/api/v1/conversations/{conversation}/messages",
            json={"text": text, "channel": "console"},
            headers=headers,
        )
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{text!r}: {response.status_code} {response.text}")
        if i >= warmup:
            times[language].append(elapsed)
            suggestions += bool(response.json()["suggestions"])
    return {
        "nl": percentiles(times["nl"]),
        "en": percentiles(times["en"]),
        "all": percentiles(times["nl"] + times["en"]),
        "turns_with_suggestions": suggestions,
    }


def breakdown(settings: Settings, total: int) -> dict[str, Any]:
    """Rasa alone (the service's two calls) and the retriever alone, on the same texts."""
    from bot.rasa_client import RasaClient
    from bot.suggestions.knowledge import suggestions_for_turn
    from knowledge import Retriever

    retriever = Retriever.from_settings(settings)
    rasa_ms: list[float] = []
    retrieval_ms: list[float] = []

    async def run() -> None:
        client = RasaClient(settings)
        try:
            for language, conversation, text in messages(total):
                lang = "en" if language == "en" else "nl"
                started = time.perf_counter()
                await client.handle(
                    f"raw-{conversation}", text, lang, {"channel": "console", "language": lang}
                )
                rasa_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                suggestions_for_turn(retriever, text, lang, "console", None)
                retrieval_ms.append((time.perf_counter() - started) * 1000)
        finally:
            await client.aclose()

    asyncio.run(run())
    return {"rasa": percentiles(rasa_ms), "retrieval": percentiles(retrieval_ms)}


def browser_round_trips(base: str, total: int) -> dict[str, Any]:
    """Messages typed into the real console page; the page's own send -> reply-shown time."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"nl": [], "en": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "bench-agent")
            page.fill("input[name=password]", PASSWORD)
            page.click("[data-testid=login-submit]")
            page.goto(f"{base}/console")
            conversation = None
            for language, script_conversation, text in messages(total + 2):
                if script_conversation != conversation:
                    conversation = script_conversation
                    page.click("[data-testid=console-new]")
                seq = page.evaluate("window.BelofteConsole.state.gate.latest()")
                page.fill("[data-testid=console-input]", text)
                page.click("[data-testid=console-send]")
                page.wait_for_function(
                    "seq => document.getElementById('console').dataset.lastSeq == String(seq)",
                    arg=seq + 1,
                    timeout=60_000,
                )
                latency = float(
                    page.evaluate("document.getElementById('console').dataset.lastLatencyMs")
                )
                times[language].append(latency)
        finally:
            browser.close()
    # The first two turns (new browser, cold caches) are not counted.
    first = times["nl"][:2]
    times["nl"] = times["nl"][2:]
    return {
        "nl": percentiles(times["nl"]),
        "en": percentiles(times["en"]),
        "all": percentiles(times["nl"] + times["en"]),
        "warmup_ms": [round(v, 1) for v in first],
    }


@contextmanager
def started_stack(home: Path) -> Iterator[Any]:
    from live_stack import live_stack

    with live_stack(home, knowledge=True) as stack:
        stack.add_user("bench-agent", PASSWORD, "agent", "Bench Agent")
        yield stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=120, help="timed HTTP turns (>= 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed turns first")
    parser.add_argument("--browser", type=int, default=0, help="turns typed into the page")
    parser.add_argument("--breakdown", action="store_true", help="time Rasa and retrieval alone")
    parser.add_argument("--base-url", help="measure this running service (with --api-key)")
    parser.add_argument("--api-key", help="the running service's X-API-Key")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average_before": [round(v, 2) for v in load_before],
        "messages": args.messages,
    }
    if args.base_url:
        client = httpx.Client(base_url=args.base_url, timeout=60)
        result["http"] = http_round_trips(
            client, {"X-API-Key": args.api_key or ""}, args.messages, args.warmup
        )
    else:
        with (
            tempfile.TemporaryDirectory(prefix="belofte-console-bench-") as tmp,
            started_stack(Path(tmp)) as stack,
        ):
            client, csrf = login(stack.base)
            result["http"] = http_round_trips(
                client, {"X-CSRF-Token": csrf}, args.messages, args.warmup
            )
            if args.breakdown:
                result["breakdown"] = breakdown(stack.settings, args.messages)
            if args.browser:
                result["browser"] = browser_round_trips(stack.base, args.browser)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
