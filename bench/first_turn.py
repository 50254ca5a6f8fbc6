"""The first turns after a start: what the first customers wait for, with and without warm-up.

Example::

    .venv/bin/python bench/first_turn.py --starts 3 [--warm-up]

Starts the live stack of the end-to-end tests (``tests/live_stack.py``: Rasa with the model of
``$BELOFTE_TEST_HOME`` and the Belofte service with the knowledge index, on a fresh demo-seeded
SQLite database) ``--starts`` times. After each start it sends ``--turns`` customer messages,
each opening a new conversation, alternating Dutch and English, to ``POST
/api/v1/conversations/{id}/messages``, and times each round trip. With ``--warm-up`` it first
does what ``belofte run`` does once Rasa is up (:func:`bot.runner.warm_up_rasa`). Prints JSON:
per start, the milliseconds of each turn; and the median of the first turn against the median
of the later ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

#: Customer questions about the demo provider's outages, Dutch and English in turn.
MESSAGES = (
    "hoi, is er een storing in 3511?",
    "is there an outage in 3511? my internet is down",
    "wanneer is de storing opgelost?",
    "when will it be fixed?",
)


def _turn(base: str, key: str, text: str) -> float:
    """Milliseconds from sending ``text`` in a new conversation to the complete answer."""
    started = time.perf_counter()
    response = httpx.post(
        f"{base}/api/v1/conversations/ft-{uuid.uuid4().hex[:10]}/messages",
        json={"text": text, "channel": "api"},
        headers={"X-API-Key": key},
        timeout=120,
    )
    elapsed = (time.perf_counter() - started) * 1000.0
    response.raise_for_status()
    return round(elapsed, 1)


def one_start(turns: int, warm_up: bool) -> list[float]:
    """Start the stack, optionally warm Rasa up, and time ``turns`` first messages."""
    from live_stack import live_stack

    # The stack's progress lines go to stderr: stdout is the JSON result.
    with (
        tempfile.TemporaryDirectory(prefix="belofte-first-turn-") as home,
        contextlib.redirect_stdout(sys.stderr),
        live_stack(Path(home), knowledge=True) as stack,
    ):
        if warm_up:
            from bot.runner import warm_up_rasa

            warm_up_rasa(stack.settings)
        return [
            _turn(stack.base, stack.api_key, MESSAGES[index % len(MESSAGES)])
            for index in range(turns)
        ]


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--warm-up", action="store_true", help="warm Rasa up as `belofte run`")
    args = parser.parse_args()
    runs = [one_start(args.turns, args.warm_up) for _ in range(args.starts)]
    result: dict[str, Any] = {
        "warm_up": args.warm_up,
        "turn_ms": runs,
        "first_turn_median_ms": statistics.median(run[0] for run in runs),
        "later_turns_median_ms": statistics.median(ms for run in runs for ms in run[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
