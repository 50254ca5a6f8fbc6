"""``belofte telegram``: register the bot's webhook with Telegram."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlsplit

import typer

from bot.settings import get_settings

app = typer.Typer(help="The Telegram channel: its webhook.", no_args_is_help=True)

WEBHOOK_PATH = "/webhooks/telegram"


def webhook_url(url: str) -> str:
    """``url`` as the full webhook URL: a bare origin gets ``/webhooks/telegram`` appended."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + WEBHOOK_PATH
    return url


@app.command("set-webhook")
def set_webhook_command(
    url: Annotated[
        str,
        typer.Argument(
            help="Public https URL of the service (https://belofte.example.nl) or of its "
            "webhook (.../webhooks/telegram)."
        ),
    ],
    drop_pending_updates: Annotated[
        bool,
        typer.Option("--drop-pending-updates", help="Discard updates Telegram still holds."),
    ] = False,
) -> None:
    """Register the webhook with Telegram, with the secret token the service checks."""
    from telegram.error import TelegramError

    from bot.channels.telegram import set_webhook

    settings = get_settings()
    if settings.telegram_bot_token is None:
        typer.echo("Set BELOFTE_TELEGRAM_BOT_TOKEN first.", err=True)
        raise typer.Exit(2)
    full = webhook_url(url)
    if not full.startswith("https://"):
        # Telegram only delivers to https; allowed anyway for a local Bot API server.
        typer.echo(f"Warning: {full} is not https; Telegram's servers will not call it.", err=True)
    try:
        ok = asyncio.run(set_webhook(settings, full, drop_pending_updates=drop_pending_updates))
    except TelegramError as exc:
        typer.echo(f"Telegram refused the webhook: {exc}", err=True)
        raise typer.Exit(1) from exc
    if not ok:
        typer.echo("Telegram did not accept the webhook.", err=True)
        raise typer.Exit(1)
    typer.echo(f"Webhook set: {full} (secret token in X-Telegram-Bot-Api-Secret-Token)")
