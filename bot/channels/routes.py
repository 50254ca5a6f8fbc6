"""The webhook routes of the channels (``/webhooks/...``), handled by ``app.state.channels``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.channels.gateway import ChannelGateway

router = APIRouter(prefix="/webhooks", tags=["channels"])


def _gateway(request: Request) -> ChannelGateway:
    gateway: ChannelGateway = request.app.state.channels
    return gateway


@router.post("/telegram", summary="Telegram Bot API updates (secret token required)")
async def telegram_webhook(request: Request) -> Response:
    """One Telegram update; 403 without the right ``X-Telegram-Bot-Api-Secret-Token``."""
    return await _gateway(request).telegram.handle_webhook(request)


@router.post("/twilio/sms", summary="Inbound SMS from Twilio (signed)")
async def twilio_sms(request: Request) -> Response:
    """One inbound SMS; 403 without a valid ``X-Twilio-Signature`` for this account."""
    return await _gateway(request).twilio.handle_message(request, "sms")


@router.post("/twilio/whatsapp", summary="Inbound WhatsApp message from Twilio (signed)")
async def twilio_whatsapp(request: Request) -> Response:
    """One inbound WhatsApp message; 403 without a valid ``X-Twilio-Signature``."""
    return await _gateway(request).twilio.handle_message(request, "whatsapp")


@router.post("/twilio/status", summary="Twilio delivery status callbacks (signed)")
async def twilio_status(request: Request) -> Response:
    """A delivery status of a message sent through Twilio, stored once per status."""
    return await _gateway(request).twilio.handle_status(request)
