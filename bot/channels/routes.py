"""The webhook routes of the channels (``/webhooks/...``), handled by ``app.state.channels``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.channels.gateway import ChannelGateway
from bot.channels.voice import VoiceLine

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


# -- voice line (bot/channels/voice.py) ---------------------------------------------------------


def _voice(request: Request) -> VoiceLine:
    # Built per request: it only bundles the app's settings, sessions, promise service and the
    # Twilio signature check, and holds no connections of its own.
    state = request.app.state
    return VoiceLine(state.settings, state.sessions, state.promises, _gateway(request).twilio)


@router.post("/twilio/voice", summary="Incoming call on the outage line (Twilio, signed)")
async def twilio_voice(request: Request) -> Response:
    """A call comes in: TwiML greeting with the language choice; 403 if not signed by Twilio."""
    return await _voice(request).handle_call(request, None)


@router.post("/twilio/voice/status", summary="Call status callbacks of the outage line (signed)")
async def twilio_voice_status(request: Request) -> Response:
    """A call status (ringing, in-progress, completed, ...), stored once per status."""
    return await _voice(request).handle_status(request)


@router.post("/twilio/voice/language", summary="Voice line: the language answer (signed)")
async def twilio_voice_language(request: Request) -> Response:
    """The caller's answer to "for English, press 9"."""
    return await _voice(request).handle_call(request, "language")


@router.post("/twilio/voice/known-postcode", summary="Voice line: the postcode on file (signed)")
async def twilio_voice_known_postcode(request: Request) -> Response:
    """The caller's answer to "is it about postcode ...?"."""
    return await _voice(request).handle_call(request, "known_postcode")


@router.post("/twilio/voice/postcode", summary="Voice line: the postcode (signed)")
async def twilio_voice_postcode(request: Request) -> Response:
    """The postcode, keyed or said."""
    return await _voice(request).handle_call(request, "postcode")


@router.post("/twilio/voice/menu", summary="Voice line: text message, agent (signed)")
async def twilio_voice_menu(request: Request) -> Response:
    """The choice after the outage status: a text when fixed, another postcode, an agent."""
    return await _voice(request).handle_call(request, "menu")


@router.post("/twilio/voice/after-transfer", summary="Voice line: after the transfer (signed)")
async def twilio_voice_after_transfer(request: Request) -> Response:
    """The end of ``<Dial>`` / ``<Enqueue>``: the call ends, politely if nobody answered."""
    return await _voice(request).handle_call(request, "transferred")
