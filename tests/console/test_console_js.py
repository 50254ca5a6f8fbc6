"""The console script's decisions (static/console_state.js), run under Node.

Node is the one bundled with Playwright (a test dependency), so this needs no browser and no
system Node. The interesting case: answers arriving out of order must never let an older
message's cards replace a newer message's cards.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from playwright._impl._driver import compute_driver_executable

from bot.settings import PROJECT_ROOT

STATE_JS = PROJECT_ROOT / "bot" / "console" / "static" / "console_state.js"


def _node() -> str:
    node = compute_driver_executable()[0]
    assert Path(node).is_file(), f"Playwright's Node is missing at {node}"
    return str(node)


def run_js(body: str) -> Any:
    """Run ``body`` with ``S`` = console_state.js; it calls ``done(value)``; returns the value."""
    script = (
        f"const S = require({json.dumps(str(STATE_JS))});\n"
        "const done = (v) => process.stdout.write(JSON.stringify(v));\n"
        f"(async () => {{ {body} }})().catch((e) => {{ console.error(e); process.exit(1); }});\n"
    )
    result = subprocess.run(
        [_node(), "-e", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_late_answer_to_an_older_message_never_replaces_newer_cards() -> None:
    # Two messages are sent; the answer to the first arrives after the answer to the second.
    shown = run_js(
        """
        const gate = S.createCardGate();
        let cards = null;
        const answer = (seq, label, delay) => new Promise((resolve) => setTimeout(() => {
          if (gate.admit(seq)) cards = label;
          resolve();
        }, delay));
        const first = gate.next();
        const second = gate.next();
        await Promise.all([answer(first, "old", 40), answer(second, "new", 5)]);
        done({cards, shown: gate.shown(), first, second});
        """
    )
    assert shown == {"cards": "new", "shown": 2, "first": 1, "second": 2}


def test_answers_in_order_each_show_their_cards_in_turn() -> None:
    result = run_js(
        """
        const gate = S.createCardGate();
        const a = gate.next();
        const admittedA = gate.admit(a);
        const b = gate.next();
        done([admittedA, gate.admit(a), gate.admit(b), gate.shown()]);
        """
    )
    assert result == [True, False, True, 2]


def test_a_conversation_switch_drops_a_pending_answer() -> None:
    result = run_js(
        """
        const gate = S.createCardGate();
        const pending = gate.next();   // sent in conversation A
        gate.next();                   // the agent picks up conversation B
        done(gate.admit(pending));
        """
    )
    assert result is False


def test_only_confident_suggestions_become_cards() -> None:
    result = run_js(
        """
        const sure = {id: "a", answer: "Herstart de modem.", confident: true};
        const unsure = {id: "b", answer: "Misschien dit.", confident: false};
        done([
          S.cardsFor([sure, unsure]),
          S.cardsFor([unsure]),
          S.cardsFor([]),
          S.cardsFor(undefined),
        ]);
        """
    )
    assert result[0] == {
        "cards": [{"id": "a", "answer": "Herstart de modem.", "confident": True}],
        "abstained": False,
    }
    assert result[1] == {"cards": [], "abstained": True}
    assert result[2] == {"cards": [], "abstained": True}
    assert result[3] == {"cards": [], "abstained": True}


def test_waiting_times_percentages_and_the_outage_in_play() -> None:
    result = run_js(
        """
        done({
          waiting: [S.waitingParts(59), S.waitingParts(7 * 60 + 5), S.waitingParts(8000)],
          percent: [S.percent(0.8), S.percent(0.955), S.percent(undefined)],
          outage: [
            S.outageOf({promise: {outage: "STO-1"}, outage: {reference: "STO-2"}}, null),
            S.outageOf({promise: null, outage: {reference: "STO-2"}}, "STO-0"),
            S.outageOf({promise: null, outage: null}, "STO-0"),
          ],
        });
        """
    )
    assert result["waiting"] == [
        {"hours": 0, "minutes": 0, "total": 0},
        {"hours": 0, "minutes": 7, "total": 7},
        {"hours": 2, "minutes": 13, "total": 133},
    ]
    assert result["percent"] == ["80", "96", "0"]
    assert result["outage"] == ["STO-1", "STO-2", "STO-0"]
