"""``belofte run``'s Rasa warm-up: one NLU parse per language, best effort."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bot.runner import warm_up_rasa
from bot.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, rasa_token="warm-token", rasa_port=5999)


def test_the_warm_up_parses_a_message_per_language(settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def rasa(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"intent": {"name": "greet"}})

    assert warm_up_rasa(settings, httpx.MockTransport(rasa))
    assert [(r.method, r.url.path, r.url.params["token"]) for r in seen] == [
        ("POST", "/model/parse", "warm-token")
    ] * 2
    assert str(seen[0].url).startswith(settings.rasa_url)
    # Parsing only: no conversation (and no tracker) is started by the warm-up.
    texts = [json.loads(r.content)["text"] for r in seen]
    assert "storing" in texts[0] and "outage" in texts[1]
    assert all(set(json.loads(r.content)) == {"text"} for r in seen)


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: httpx.Response(500, json={"message": "model not loaded"}),
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
    ],
    ids=["error", "unreachable"],
)
def test_a_failed_warm_up_is_reported_and_does_not_stop_the_start(
    settings: Settings, answer: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not warm_up_rasa(settings, httpx.MockTransport(answer))  # type: ignore[arg-type]
    assert "first message will be slower" in capsys.readouterr().out
