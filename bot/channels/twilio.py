"""Twilio SMS and WhatsApp, with the twilio 9 library.

Inbound: Twilio posts each message to ``/webhooks/twilio/sms`` or ``/webhooks/twilio/whatsapp``
and delivery reports to ``/webhooks/twilio/status``. Every request must carry a valid
``X-Twilio-Signature`` for the URL Twilio called (the configured public base URL, or the URL
rebuilt from ``X-Forwarded-Proto``/``X-Forwarded-Host`` behind a trusted proxy) and this
account's ``AccountSid``; anything else gets 403 and a log line without the body. The webhook
records the ``MessageSid`` (a repeated one is acknowledged and dropped), answers with empty
TwiML at once, and the gateway then runs the turn and sends the replies through the REST API.

Outbound (:class:`TwilioSender`): every message, reply or notification, is recorded in
``channel_outbound`` and checked right before sending: an opted-out number gets nothing, and on
WhatsApp only the configured approved template is sent more than 24 hours after the customer's
last message. Delivery status callbacks are stored per status and advance the message's status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import aiohttp
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import ImmutableMultiDict
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioException,
    TwilioRestException,
)
from twilio.http import AsyncHttpClient  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]
from twilio.twiml.messaging_response import MessagingResponse  # type: ignore[import-untyped]

from bot.channels import store
from bot.channels.customers import (
    attach_conversation,
    conversation_id,
    link_customer,
    phone_number,
)
from bot.channels.keywords import Keyword, KeywordAction, parse_keyword
from bot.channels.linking import parse_link_command
from bot.channels.outbound import (
    CLAIMED,
    UNKNOWN,
    ClaimAction,
    EarlierAttempt,
    SendResult,
    claim_outbound,
    is_known_sid,
    relax_durability,
    update_claim,
)
from bot.channels.texts import split_text, text
from bot.conversation.service import AssistantUnavailable, InvalidMessage, Reply
from bot.settings import Language, Settings
from bot.storage.db import SessionFactory
from bot.storage.models import ChannelDeliveryEvent, ChannelOutbound, Conversation
from bot.storage.types import utcnow
from bot.subscriptions.service import unsubscribe

if TYPE_CHECKING:
    from bot.channels.gateway import ChannelGateway

logger = logging.getLogger(__name__)

#: Twilio's own REST API origin, which the twilio library has built in.
TWILIO_API: Final = "https://api.twilio.com"
#: Meta's customer service window: free-form WhatsApp messages only this long after the
#: customer's last message.
WHATSAPP_WINDOW: Final = timedelta(hours=24)
#: Longest body Twilio accepts for one SMS or WhatsApp message.
MAX_BODY_CHARS: Final = 1600
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
#: How much earlier than our first claim a message found at Twilio may be dated (clocks differ).
LOOKUP_CLOCK_SKEW: Final = timedelta(minutes=5)
STATUS_PATH: Final = "/webhooks/twilio/status"

#: Sends one reply: (text, kind, confirming an opt-out).
Replier = Callable[[str, str, bool], Awaitable[None]]
#: Makes the HTTP client of the twilio REST client; called in the running event loop (aiohttp
#: sessions need one).
HttpClientFactory = Callable[[], AsyncHttpClient]
#: Fields of a status callback kept with the event (never the message text).
_STATUS_DETAILS: Final = (
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "ErrorMessage",
    "To",
    "From",
    "ChannelToAddress",
    "ChannelStatusMessage",
)


def _first(value: str | None) -> str | None:
    """The first of a comma-separated header's values (proxies append theirs)."""
    if not value:
        return None
    return value.split(",", 1)[0].strip() or None


def public_url(request: Request, settings: Settings) -> str:
    """The URL Twilio called for ``request``, the one its signature covers.

    The configured ``public_base_url`` wins; else, when ``trust_proxy_headers`` is on, scheme
    and host come from ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (or ``Host``); else the
    URL as this server saw it.
    """
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + path
    if settings.trust_proxy_headers:
        scheme = _first(request.headers.get("x-forwarded-proto")) or request.url.scheme
        host = (
            _first(request.headers.get("x-forwarded-host"))
            or request.headers.get("host")
            or request.url.netloc
        )
        return f"{scheme}://{host}{path}"
    return str(request.url)


async def read_form(request: Request) -> ImmutableMultiDict[str, str]:
    """The form-encoded body Twilio posts, every value kept (the signature covers them all)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return ImmutableMultiDict(parse_qsl(body, keep_blank_values=True))


def empty_twiml() -> Response:
    """The answer to a message webhook: nothing to say now (replies go through the REST API)."""
    return Response(content=str(MessagingResponse()), media_type="application/xml")


class RoutedTwilioHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's own asynchronous HTTP client, sending to ``api_base_url`` instead of Twilio.

    The twilio library has ``https://api.twilio.com`` built in; its supported extension point
    is the HTTP client, so a mock server (Prism in tests and benchmarks) is reached by
    rewriting the origin here and nowhere else.
    """

    def __init__(self, api_base_url: str = TWILIO_API, timeout: float | None = None) -> None:
        super().__init__(timeout=timeout)
        self.api_base_url = api_base_url.rstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        """Send the request to ``api_base_url`` (see :class:`AsyncTwilioHttpClient`)."""
        if self.api_base_url != TWILIO_API and url.startswith(TWILIO_API):
            url = self.api_base_url + url[len(TWILIO_API) :]
        if auth is not None:
            # The same Basic credentials as a header: aiohttp deprecates the BasicAuth object
            # the parent class would build from ``auth``.
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


class TwilioSender:
    """Sends SMS and WhatsApp messages through the twilio REST client, every check included.

    This is the one send path for Twilio: replies to webhooks and proactive notifications (the
    outbox workers) both go through :meth:`send`.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        http_client: HttpClientFactory | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._http_client_factory = http_client or self._default_http_client
        self._http_client: AsyncHttpClient | None = None
        self._client: Any = None
        #: How long a claimed message counts as still being sent (see bot.channels.outbound).
        self.claim_lease = timedelta(seconds=settings.delivery_claim_lease_seconds)

    @property
    def enabled(self) -> bool:
        """True when the account SID and auth token are configured."""
        return (
            bool(self._settings.twilio_account_sid) and self._settings.twilio_auth_token is not None
        )

    async def start(self) -> None:
        """Create the REST client (its aiohttp session needs the running event loop)."""
        if not self.enabled or self._client is not None:
            return
        self._http_client = self._http_client_factory()
        token = self._settings.twilio_auth_token
        assert token is not None  # enabled
        sid = self._settings.twilio_account_sid
        self._client = Client(sid, token.get_secret_value(), sid, http_client=self._http_client)

    async def stop(self) -> None:
        """Close the HTTP client."""
        client, self._http_client, self._client = self._http_client, None, None
        close = getattr(client, "close", None)
        if close is not None:
            await close()

    def _default_http_client(self) -> AsyncHttpClient:
        return RoutedTwilioHttpClient(
            self._settings.twilio_api_base_url, timeout=self._settings.twilio_timeout_seconds
        )

    async def send(
        self,
        channel: str,
        to: str,
        body: str,
        *,
        kind: str,
        sender: str | None = None,
        conversation: str | None = None,
        idempotency_key: str | None = None,
        outbox_id: int | None = None,
        template_variables: dict[str, str] | None = None,
        callback_base: str | None = None,
        confirming_opt_out: bool = False,
    ) -> SendResult:
        """Send ``body`` to ``to`` on ``channel`` ("sms" or "whatsapp") unless that is forbidden.

        ``sender``: the number to send from (default: the configured one). ``idempotency_key``:
        a key already used means the message was handled before and nothing is sent again.
        ``template_variables``: the variables of the WhatsApp template when it has to be used
        (default ``{"1": body}``). ``callback_base``: public base URL for the status callback
        (default ``public_base_url``; without either, no status callbacks are asked for).
        ``confirming_opt_out``: only for the one confirmation of a STOP, which may go to the
        number that just opted out.
        """
        if channel not in ("sms", "whatsapp"):
            raise ValueError(f"not a Twilio messaging channel: {channel!r}")
        if not self.enabled or self._client is None:
            return SendResult("refused", reason="Twilio is not configured or not started")
        number = phone_number(to)

        def claim() -> SendResult | _Prepared:
            with self._sessions() as session, session.begin():
                # Committed before the REST call: the claim must outlive a crash during it.
                return self._prepare(
                    session,
                    channel=channel,
                    number=number,
                    body=body,
                    kind=kind,
                    sender=sender,
                    conversation=conversation,
                    idempotency_key=idempotency_key,
                    outbox_id=outbox_id,
                    template_variables=template_variables,
                    confirming_opt_out=confirming_opt_out,
                )

        # The database work runs in a thread, so that many sends (the outbox workers run dozens
        # at once) overlap their round trips instead of queueing on the event loop.
        prepared = await asyncio.to_thread(claim)
        if isinstance(prepared, SendResult):
            return prepared
        return await self._deliver(prepared, callback_base)

    def _prepare(
        self,
        session: Session,
        *,
        channel: str,
        number: str,
        body: str,
        kind: str,
        sender: str | None,
        conversation: str | None,
        idempotency_key: str | None,
        outbox_id: int | None,
        template_variables: dict[str, str] | None,
        confirming_opt_out: bool,
    ) -> SendResult | _Prepared:
        """Record the message and decide: send as text, as template, or refuse (and why)."""
        now = utcnow()
        reason: str | None = None
        content_sid: str | None = None
        variables: dict[str, str] | None = None
        configured = (
            self._settings.twilio_sms_from
            if channel == "sms"
            else self._settings.twilio_whatsapp_from
        )
        from_number = phone_number(sender or configured or "")
        if not confirming_opt_out and store.is_opted_out(session, channel=channel, address=number):
            reason = "the recipient opted out (STOP)"
        elif not from_number:
            reason = f"no sender number: set BELOFTE_TWILIO_{channel.upper()}_FROM"
        elif channel == "whatsapp" and not store.within_window(
            session, channel=channel, address=number, now=now, window=WHATSAPP_WINDOW
        ):
            content_sid = self._settings.twilio_whatsapp_template_sid
            if content_sid is None:
                reason = (
                    "outside the WhatsApp 24-hour window and no approved template configured "
                    "(BELOFTE_TWILIO_WHATSAPP_TEMPLATE_SID)"
                )
            else:
                variables = template_variables or {"1": body[:MAX_BODY_CHARS]}
        known = conversation is not None and session.get(Conversation, conversation) is not None
        values: dict[str, Any] = {
            "channel": channel,
            "address": number,
            "sender": from_number or None,
            "kind": kind,
            "body": body,
            "content_sid": content_sid,
            "content_variables": variables,
            "conversation_id": conversation if known else None,
            "outbox_id": outbox_id,
            "idempotency_key": idempotency_key,
            "status": "refused" if reason else CLAIMED,
            "error_message": reason,
            "created_at": now,
            "updated_at": now,
        }
        claim = claim_outbound(session, values, lease=self.claim_lease, now=now)
        if claim.action is ClaimAction.DONE:
            return SendResult("duplicate", claim.outbound_id, claim.twilio_sid, "sent before")
        if claim.action is ClaimAction.BUSY:
            return SendResult(
                "busy",
                claim.outbound_id,
                reason="another attempt is sending this message",
                retryable=True,
                retry_at=claim.retry_at,
            )
        assert claim.outbound_id is not None
        if reason:
            logger.info("Refused %s message %s: %s", channel, claim.outbound_id, reason)
            return SendResult("refused", claim.outbound_id, reason=reason)
        return _Prepared(
            outbound_id=claim.outbound_id,
            version=claim.version,
            channel=channel,
            to=number,
            sender=from_number,
            body=body,
            content_sid=content_sid,
            content_variables=variables,
            earlier=claim.earlier,
        )

    async def _deliver(self, prepared: _Prepared, callback_base: str | None) -> SendResult:
        """The REST call, then the outcome recorded on the message.

        A claim taken over from an attempt with an unknown outcome first looks for that
        attempt's message at Twilio (:meth:`_find_earlier`) and sends only when it is not there.
        """
        if prepared.earlier is not None:
            found = await self._reconcile(prepared)
            if found is not None:
                return found
        prefix = "whatsapp:" if prepared.channel == "whatsapp" else ""
        params: dict[str, Any] = {"to": prefix + prepared.to, "from_": prefix + prepared.sender}
        if prepared.content_sid is not None:
            params["content_sid"] = prepared.content_sid
            params["content_variables"] = json.dumps(prepared.content_variables or {})
        else:
            params["body"] = prepared.body
        base = callback_base or self._settings.public_base_url
        if base:
            params["status_callback"] = base.rstrip("/") + STATUS_PATH
        try:
            message = await self._client.messages.create_async(**params)
        except TwilioRestException as exc:
            # Twilio answered: the message was not created. 429 and 5xx are worth a retry.
            retryable = exc.status == 429 or exc.status >= 500
            return await asyncio.to_thread(
                self._failed, prepared, exc.code, str(exc.msg), retryable=retryable
            )
        except aiohttp.ClientConnectorError as exc:
            # No connection was made, so nothing was sent.
            reason = f"{type(exc).__name__}: {exc}"
            return await asyncio.to_thread(self._failed, prepared, None, reason, retryable=True)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # The request may have reached Twilio: a retry looks it up before sending again.
            reason = f"{type(exc).__name__}: {exc}"
            return await asyncio.to_thread(
                self._failed, prepared, None, reason, retryable=True, status=UNKNOWN
            )
        return await asyncio.to_thread(
            self._accepted,
            prepared,
            str(message.sid),
            str(message.status or "accepted"),
            callbacks=bool(base),
        )

    def _accepted(
        self,
        prepared: _Prepared,
        sid: str,
        status: str,
        *,
        reconciled: bool = False,
        callbacks: bool = True,
    ) -> SendResult:
        """Record the message Twilio created (or that a lookup found) on its row.

        ``callbacks``: status callbacks were asked for, so one may have arrived already.
        """
        now = utcnow()
        with self._sessions() as session, session.begin():
            relax_durability(session)
            row = session.get(ChannelOutbound, prepared.outbound_id)
            assert row is not None
            if row.attempts != prepared.version and row.twilio_sid is not None:
                # Another attempt took over after our lease ran out and recorded its message.
                logger.warning(
                    "Message %s was also sent by a later attempt (%s, %s)",
                    prepared.outbound_id,
                    row.twilio_sid,
                    sid,
                )
                return SendResult("duplicate", row.id, row.twilio_sid, "sent by a later attempt")
            row.twilio_sid = sid
            row.status = store.advance_status(row.status, status)
            # A status callback can beat this update (Twilio is fast): adopt its events.
            early = (
                session.scalars(
                    select(ChannelDeliveryEvent).where(
                        ChannelDeliveryEvent.message_sid == sid,
                        ChannelDeliveryEvent.outbound_id.is_(None),
                    )
                )
                if callbacks
                else ()
            )
            for event in early:
                event.outbound_id = row.id
                row.status = store.advance_status(row.status, event.status)
            row.updated_at = now
            status = row.status
        return SendResult(status, prepared.outbound_id, sid, reconciled=reconciled)

    async def _reconcile(self, prepared: _Prepared) -> SendResult | None:
        """Settle an earlier attempt with an unknown outcome before sending again.

        Returns the result when the earlier message was found at Twilio (recorded, not sent
        again) or when the lookup failed (``unknown``, retryable: sending blind could double
        the message); None when Twilio has no such message, after the row was switched to the
        new content so that a crash from here on is settled against what is sent now.
        """
        assert prepared.earlier is not None
        try:
            found = await self._find_earlier(prepared, prepared.earlier)
        except (TwilioException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            # TwilioException: an error page (the list raises the base class for those).
            reason = f"looking up the earlier attempt failed: {type(exc).__name__}: {exc}"
            return await asyncio.to_thread(
                self._failed, prepared, None, reason, retryable=True, status=UNKNOWN
            )
        if found is not None:
            sid, status = found
            logger.info("Message %s was sent by an earlier attempt (%s)", prepared.outbound_id, sid)
            return await asyncio.to_thread(self._accepted, prepared, sid, status, reconciled=True)

        def switch() -> bool:
            with self._sessions() as session, session.begin():
                return update_claim(
                    session,
                    prepared.outbound_id,
                    prepared.version,
                    {
                        "body": prepared.body,
                        "sender": prepared.sender,
                        "content_sid": prepared.content_sid,
                        "content_variables": prepared.content_variables,
                        "claimed_at": utcnow(),
                    },
                    now=utcnow(),
                )

        still_ours = await asyncio.to_thread(switch)
        if not still_ours:
            return SendResult("busy", prepared.outbound_id, reason="taken over", retryable=True)
        return None

    async def _find_earlier(
        self, prepared: _Prepared, earlier: EarlierAttempt
    ) -> tuple[str, str] | None:
        """(sid, status) of the earlier attempt's message at Twilio, or None.

        Lists the messages from the earlier sender to the number, newest first, and takes the
        first one created since the first claim (less a margin for clock skew) whose body is the
        one the earlier attempt sent (any body for a WhatsApp template) and that no other row
        owns. Not filtered by ``DateSent``: a message still queued at Twilio has none yet.
        """
        prefix = "whatsapp:" if prepared.channel == "whatsapp" else ""
        sender = earlier.sender or prepared.sender
        # One page, the newest: a message of ours created within the lease is on it, and not
        # following next-page links keeps a lookup to one request.
        page = await self._client.messages.page_async(
            to=prefix + prepared.to,
            from_=prefix + sender,
            page_size=self._settings.delivery_lookup_limit,
        )
        since = earlier.since - LOOKUP_CLOCK_SKEW
        for message in page:
            created = message.date_created if isinstance(message.date_created, datetime) else None
            if created is not None and created < since:
                continue
            if earlier.content_sid is None and (message.body or "") != (earlier.body or ""):
                continue
            if earlier.content_sid is not None and created is None:
                continue  # a template is matched on its time alone: without one, no match
            sid = str(message.sid or "")
            if not sid:
                continue
            if await asyncio.to_thread(self._owned_elsewhere, sid, prepared.outbound_id):
                continue
            return sid, str(message.status or "accepted")
        return None

    def _owned_elsewhere(self, sid: str, outbound_id: int) -> bool:
        with self._sessions() as session:
            return is_known_sid(session, sid, besides=outbound_id)

    def _failed(
        self,
        prepared: _Prepared,
        code: int | None,
        message: str,
        *,
        retryable: bool = False,
        status: str = "failed",
    ) -> SendResult:
        logger.warning("Twilio refused message %s: %s %s", prepared.outbound_id, code, message)
        now = utcnow()
        with self._sessions() as session, session.begin():
            relax_durability(session)
            update_claim(
                session,
                prepared.outbound_id,
                prepared.version,
                {"status": status, "error_code": code, "error_message": message},
                now=now,
            )
            if code == store.TWILIO_UNSUBSCRIBED_RECIPIENT:
                # Twilio knows the number opted out (e.g. its own STOP handling): honour it.
                store.opt_out(
                    session, channel=prepared.channel, address=prepared.to, keyword="21610", now=now
                )
        return SendResult(
            status,
            prepared.outbound_id,
            reason=f"{code}: {message}",
            retryable=retryable,
            error_code=code,
        )


@dataclass(frozen=True)
class _Prepared:
    outbound_id: int
    version: int
    channel: str
    to: str
    sender: str
    body: str
    content_sid: str | None
    content_variables: dict[str, str] | None
    earlier: EarlierAttempt | None = None


class TwilioChannel:
    """The Twilio webhooks (SMS, WhatsApp, status) and the sender of one service."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        gateway: ChannelGateway,
        *,
        http_client: HttpClientFactory | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._gateway = gateway
        self.sender = TwilioSender(settings, sessions, http_client)
        token = settings.twilio_auth_token
        self._validator = RequestValidator(token.get_secret_value()) if token else None

    @property
    def enabled(self) -> bool:
        """True when the account SID and auth token are configured."""
        return self.sender.enabled

    async def start(self) -> None:
        """Create the REST client."""
        await self.sender.start()

    async def stop(self) -> None:
        """Close the REST client."""
        await self.sender.stop()

    # -- webhooks --------------------------------------------------------------------------

    def _not_configured(self) -> Response:
        return JSONResponse(
            status_code=404,
            content={
                "detail": "Twilio is not configured: set BELOFTE_TWILIO_ACCOUNT_SID and "
                "BELOFTE_TWILIO_AUTH_TOKEN."
            },
        )

    async def _verified_form(self, request: Request) -> ImmutableMultiDict[str, str] | Response:
        """The request's form when it is Twilio's, for this account; else the 403 to answer."""
        form = await read_form(request)
        reason = self.rejection(request, form)
        if reason is not None:
            client = request.client.host if request.client else "?"
            # Never log the body: it holds a customer's message and phone number.
            logger.warning(
                "Rejected Twilio webhook %s from %s: %s", request.url.path, client, reason
            )
            return JSONResponse(status_code=403, content={"detail": "Forbidden."})
        return form

    def rejection(self, request: Request, form: ImmutableMultiDict[str, str]) -> str | None:
        """Why ``request`` is not a genuine Twilio request for this account (None: it is)."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return f"no {SIGNATURE_HEADER} header"
        if self._validator is None:
            return "no auth token configured"
        url = public_url(request, self._settings)
        if not self._validator.validate(url, form, signature):
            return f"signature does not match {url}"
        if form.get("AccountSid") != self._settings.twilio_account_sid:
            return "foreign AccountSid"
        return None

    async def handle_message(self, request: Request, channel: str) -> Response:
        """An inbound SMS or WhatsApp message: check, record once, answer, process afterwards."""
        if not self.enabled:
            return self._not_configured()
        form = await self._verified_form(request)
        if isinstance(form, Response):
            return form
        message_sid = form.get("MessageSid") or form.get("SmsMessageSid")
        sender = phone_number(form.get("From") or "")
        if not message_sid or not sender:
            return JSONResponse(status_code=400, content={"detail": "MessageSid and From needed."})
        callback_base = public_url(request, self._settings).split("/webhooks/", 1)[0]
        with self._sessions() as session, session.begin():
            inbound_id = store.claim_inbound(
                session,
                channel=channel,
                external_id=message_sid,
                address=sender,
                now=utcnow(),
                # Kept until processed, for the gateway's sweep after a crash.
                payload={"form": dict(form), "callback_base": callback_base},
            )
        if inbound_id is None:
            logger.info("Twilio message %s was already taken in; ignored", message_sid)
            return empty_twiml()
        self._gateway.spawn(
            self._process(channel, inbound_id, dict(form), callback_base),
            f"{channel}-{message_sid}",
        )
        return empty_twiml()

    async def handle_status(self, request: Request) -> Response:
        """A delivery status callback: stored once per (message, status)."""
        if not self.enabled:
            return self._not_configured()
        form = await self._verified_form(request)
        if isinstance(form, Response):
            return form
        message_sid = form.get("MessageSid") or form.get("SmsSid")
        status = form.get("MessageStatus") or form.get("SmsStatus")
        if not message_sid or not status:
            return JSONResponse(
                status_code=400, content={"detail": "MessageSid and MessageStatus needed."}
            )
        error_code = _int(form.get("ErrorCode"))
        details = {k: form[k] for k in _STATUS_DETAILS if k in form}
        now = utcnow()
        with self._sessions() as session, session.begin():
            outbound = store.record_delivery_event(
                session,
                message_sid=message_sid,
                status=status,
                error_code=error_code,
                details=details,
                now=now,
            )
            if outbound is not None and error_code == store.TWILIO_UNSUBSCRIBED_RECIPIENT:
                store.opt_out(
                    session,
                    channel=outbound.channel,
                    address=outbound.address,
                    keyword=str(error_code),
                    now=now,
                )
        return Response(status_code=204)

    # -- processing, after the webhook answered --------------------------------------------

    async def replay(self, inbound_id: int, channel: str, payload: dict[str, Any] | None) -> bool:
        """Process a recorded message again (the gateway's sweep); False when that cannot be."""
        form = (payload or {}).get("form")
        callback_base = (payload or {}).get("callback_base")
        if not self.enabled or not isinstance(form, dict) or not isinstance(callback_base, str):
            return False
        if not form.get("From") or channel not in ("sms", "whatsapp"):
            return False
        values = {str(k): str(v) for k, v in form.items()}
        sid = values.get("MessageSid", inbound_id)
        self._gateway.spawn(
            self._process(channel, inbound_id, values, callback_base), f"{channel}-{sid}"
        )
        return True

    async def _process(
        self, channel: str, inbound_id: int, form: dict[str, str], callback_base: str
    ) -> None:
        error: str | None = None
        try:
            await self._respond(channel, form, callback_base)
        except asyncio.CancelledError:
            raise  # shutdown: the event stays "received"
        except Exception as exc:
            logger.exception("Processing %s message failed", channel)
            error = f"{type(exc).__name__}: {exc}"
        with self._sessions() as session, session.begin():
            store.finish_inbound(session, inbound_id, now=utcnow(), error=error)

    async def _respond(self, channel: str, form: dict[str, str], callback_base: str) -> None:
        number = phone_number(form["From"])
        ours = phone_number(form.get("To") or "") or None
        conversation = conversation_id(channel, number)
        message_text = (form.get("Body") or "").strip()
        keyword = parse_keyword(message_text) if message_text else None
        with self._sessions() as session, session.begin():
            customer = link_customer(
                session,
                channel,
                number,
                language=self._settings.default_language,
                display_name=form.get("ProfileName") or None,
            )
            customer_id = customer.id
            language = self._language(session, conversation, customer.language, keyword)

        async def reply(body: str, kind: str, confirming: bool) -> None:
            for piece in split_text(body, MAX_BODY_CHARS):
                await self.sender.send(
                    channel,
                    number,
                    piece,
                    kind=kind,
                    sender=ours,
                    conversation=conversation,
                    callback_base=callback_base,
                    confirming_opt_out=confirming,
                )

        if keyword is not None:
            await self._keyword(channel, number, keyword, language, reply)
            return
        command = parse_link_command(message_text) if message_text else None
        if command is not None:  # KOPPEL, KOPPEL <code>, KANAAL TELEGRAM (bot.channels.linking)
            answer = self._gateway.linking.handle(
                command,
                channel=channel,
                address=number,
                language=command.language or language,
                display_name=form.get("ProfileName") or None,
            )
            await reply(answer.text, "link", False)
            return
        if not message_text:
            # Media only (MMS, a WhatsApp photo or voice note): the assistant reads text.
            await reply(text("only_text", language), "reply", False)
            return
        try:
            result = await self._gateway.conversations.handle(conversation, message_text, channel)
        except (InvalidMessage, AssistantUnavailable) as exc:
            await reply(exc.reason, "reply", False)
            return
        with self._sessions() as session, session.begin():
            attach_conversation(session, conversation, customer_id)
        body = render_replies(result.replies, result.language)
        if body:
            await reply(body, "reply", False)

    async def _keyword(
        self, channel: str, number: str, keyword: Keyword, language: Language, reply: Replier
    ) -> None:
        now = utcnow()
        if keyword.action is KeywordAction.OPT_OUT:
            with self._sessions() as session, session.begin():
                store.opt_out(
                    session, channel=channel, address=number, keyword=keyword.word, now=now
                )
                # STOP also ends every "tell me when it is fixed" on this channel.
                for address in (conversation_id(channel, number), number):
                    unsubscribe(session, channel=channel, address=address, now=now)
            if self._settings.twilio_confirm_opt_out:
                await reply(text("opted_out", language), "opt_out_confirmation", True)
        elif keyword.action is KeywordAction.OPT_IN:
            with self._sessions() as session, session.begin():
                store.opt_in(
                    session, channel=channel, address=number, keyword=keyword.word, now=now
                )
            await reply(text("opted_in", language), "opt_in_confirmation", False)
        else:
            await reply(text("help", language), "help", False)

    def _language(
        self, session: Session, conversation: str, customer_language: str, keyword: Keyword | None
    ) -> Language:
        """A keyword's own language, else the conversation's, else the customer's."""
        if keyword is not None and keyword.language is not None:
            return keyword.language
        row = session.get(Conversation, conversation)
        value = row.language if row is not None else customer_language
        return "en" if value == "en" else "nl" if value == "nl" else self._settings.default_language


def render_replies(replies: list[Reply], language: Language) -> str:
    """The assistant's replies as one text message; buttons become a "reply with" line."""
    parts: list[str] = []
    for reply in replies:
        part = reply.text
        titles = [b["title"] for b in reply.buttons if b.get("title")]
        if titles:
            part += "\n" + text("options", language, options=" / ".join(titles))
        parts.append(part)
    return "\n\n".join(p for p in parts if p.strip())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
