"""``belofte telegram set-webhook`` against the loopback Bot API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from channel_fakes import BOT_TOKEN, FakeBotApi
from typer.testing import CliRunner

from bot.channels.cli import webhook_url
from bot.cli import app
from bot.settings import Settings, get_settings


@pytest.fixture
def env(
    tmp_path: Path, fake_bot_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory
    monkeypatch.setenv("BELOFTE_HOME", str(tmp_path))
    monkeypatch.setenv("BELOFTE_TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("BELOFTE_TELEGRAM_API_BASE_URL", fake_bot_api.base_url)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_set_webhook_registers_the_url_with_the_secret_token(
    env: Path, fake_bot_api: FakeBotApi
) -> None:
    result = CliRunner().invoke(app, ["telegram", "set-webhook", "https://belofte.example.nl/"])

    assert result.exit_code == 0, result.output
    (call,) = fake_bot_api.sent("setWebhook")
    assert call["url"] == "https://belofte.example.nl/webhooks/telegram"
    assert call["secret_token"] == Settings(home=env).telegram_secret_token()
    assert call["secret_token"] == (env / "telegram-webhook-secret").read_text().strip()
    assert call["allowed_updates"] == ["message", "callback_query"]


def test_set_webhook_needs_a_token(
    env: Path, fake_bot_api: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BELOFTE_TELEGRAM_BOT_TOKEN")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["telegram", "set-webhook", "https://belofte.example.nl"])
    assert result.exit_code == 2
    assert fake_bot_api.calls == []


def test_webhook_url_appends_the_path_to_a_bare_origin() -> None:
    assert webhook_url("https://x.example") == "https://x.example/webhooks/telegram"
    assert webhook_url("https://x.example/hooks/tg") == "https://x.example/hooks/tg"
