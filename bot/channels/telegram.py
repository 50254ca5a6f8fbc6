"""Telegram in webhook mode, with python-telegram-bot 22.

Telegram posts each update to ``POST /webhooks/telegram`` with the secret registered by
``belofte telegram set-webhook``. The webhook checks the secret, records the update (a
redelivered ``update_id`` is acknowledged and dropped), answers 200 and lets the gateway process
the update through PTB's :class:`~telegram.ext.Application` and its handlers:

- text goes to the assistant; its buttons become inline keyboards; when an outage was found a
  "🔔 Keep me posted" button subscribes the chat to it;
- every button press is answered (no endless spinner) and its payload goes to the assistant as
  if typed; payloads too long for the 64 bytes of callback data are kept in the database;
- ``/start`` (and ``/help`` or any unknown command) greets, ``/stop`` cancels subscriptions;
- ``/koppel`` (``/link``) ties the chat to a phone number, by a shared contact (only the
  sender's own) or a one-time code, and ``/kanaal`` (``/channel``) chooses where notifications
  go (:mod:`bot.channels.linking`);
- a chat that blocked the bot (403 Forbidden on a send) is opted out and gets nothing more
  until it writes again;
- photos, voice notes, stickers and other attachments get a polite "text only" reply;
- replies longer than Telegram's 4096 characters are split.

Updates of one chat are processed in order, different chats concurrently.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
    User,
)
from telegram.constants import InlineKeyboardButtonLimit, MessageLimit
from telegram.error import Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.channels import outbound, store
from bot.channels.customers import (
    attach_conversation,
    channel_address,
    conversation_id,
    link_customer,
)
from bot.channels.linking import LinkCommand, LinkReply, parse_link_command
from bot.channels.outbound import SendResult
from bot.channels.texts import language_of, link_text, split_text, text, utf16_units
from bot.conversation.service import AssistantUnavailable, InvalidMessage, Reply, TurnResult
from bot.settings import Language, Settings
from bot.storage.db import SessionFactory
from bot.storage.models import Conversation, Outage
from bot.storage.types import utcnow
from bot.subscriptions.service import subscribe, unsubscribe

if TYPE_CHECKING:
    from bot.channels.gateway import ChannelGateway

logger = logging.getLogger(__name__)

CHANNEL: Final = "telegram"
#: The header Telegram sends the webhook's secret token in.
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
#: The update types the webhook asks Telegram for (``belofte telegram set-webhook``).
ALLOWED_UPDATES: Final = ("message", "callback_query")
#: Callback data of a "keep me posted" button: ``sub:<outage reference>``.
SUBSCRIBE_PREFIX: Final = "sub:"
#: Callback data carrying the assistant's button payload itself / its key in the database.
PAYLOAD_PREFIX: Final = "t:"
PAYLOAD_KEY_PREFIX: Final = "h:"
#: How many updates are processed at once (across chats; one chat is always in order).
MAX_CONCURRENT_UPDATES: Final = 64

#: The opt-out keyword recorded when the Bot API answers 403: the customer blocked the bot.
BLOCKED: Final = "blocked"

#: PTB's application with the default context types (mypy needs its six type parameters).
TelegramApplication = Application[Any, Any, Any, Any, Any, Any]
#: Any keyboard a message can carry.
Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


class ChatOrderedUpdateProcessor(BaseUpdateProcessor):
    """Processes updates of different chats concurrently and those of one chat in order.

    A customer who sends two messages quickly must get the answer to the first one first, and
    the assistant must see them in that order; other customers need not wait for either.
    """

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Await ``coroutine`` once the updates of the same chat before it are done."""
        chat = update.effective_chat if isinstance(update, Update) else None
        key = chat.id if chat is not None else 0
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            # Forget idle chats so the table does not grow with every chat ever seen.
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def callback_data_fits(data: str) -> bool:
    """True when ``data`` stays under Telegram's limit for callback data (64 bytes)."""
    return 1 <= len(data.encode("utf-8")) < InlineKeyboardButtonLimit.MAX_CALLBACK_DATA


def split_message(message: str) -> list[str]:
    """``message`` in pieces Telegram accepts (at most 4096 UTF-16 code units each)."""
    return split_text(message, MessageLimit.MAX_TEXT_LENGTH, utf16_units)


class TelegramChannel:
    """The Telegram bot of one service; disabled while ``telegram_bot_token`` is unset."""

    def __init__(
        self, settings: Settings, sessions: SessionFactory, gateway: ChannelGateway
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._gateway = gateway
        self._application: TelegramApplication | None = None
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._secret: str | None = None

    @property
    def enabled(self) -> bool:
        """True when a bot token is configured."""
        return self._settings.telegram_bot_token is not None

    @property
    def application(self) -> TelegramApplication:
        """PTB's application (built by :meth:`start`)."""
        if self._application is None:
            raise RuntimeError("the Telegram channel is not started")
        return self._application

    def _token(self) -> str:
        token = self._settings.telegram_bot_token
        if token is None:
            raise RuntimeError("BELOFTE_TELEGRAM_BOT_TOKEN is not set")
        return token.get_secret_value()

    @property
    def bot_id(self) -> str:
        """The bot's numeric id: the part of the token before the colon (no network needed)."""
        return self._token().split(":", 1)[0]

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the application and connect to the Bot API (retried on the next update)."""
        if not self.enabled:
            return
        self._secret = self._settings.telegram_secret_token()
        self._application = self._build()
        await self._ensure_ready()

    async def stop(self) -> None:
        """Close the Bot API connection."""
        if self._application is not None and self._ready:
            await self._application.shutdown()
            self._ready = False

    async def _ensure_ready(self) -> bool:
        """Initialise PTB (it asks the Bot API who the bot is); False while that fails."""
        async with self._ready_lock:
            if self._ready:
                return True
            try:
                await self.application.initialize()
            except (TelegramError, OSError) as exc:
                # Not fatal: the service must start even when Telegram is unreachable. Updates
                # get 503 until it works, and Telegram delivers them again later.
                logger.error("Telegram is not reachable yet: %s", exc)
                return False
            self._ready = True
            return True

    def _build(self) -> TelegramApplication:
        application = (
            Application.builder()
            .token(self._token())
            .base_url(self._settings.telegram_api_base_url)
            .updater(None)
            .concurrent_updates(ChatOrderedUpdateProcessor(MAX_CONCURRENT_UPDATES))
            .build()
        )
        message = filters.UpdateType.MESSAGE
        application.add_handler(CommandHandler(["start", "help"], self._on_start, message))
        application.add_handler(CommandHandler("stop", self._on_stop, message))
        application.add_handler(
            CommandHandler(["koppel", "link", "kanaal", "channel"], self._on_link_command, message)
        )
        # Before the attachment handler: a shared contact is an attachment too.
        application.add_handler(MessageHandler(message & filters.CONTACT, self._on_contact))
        application.add_handler(CallbackQueryHandler(self._on_button))
        application.add_handler(
            MessageHandler(message & filters.TEXT & ~filters.COMMAND, self._on_text)
        )
        application.add_handler(MessageHandler(message & filters.COMMAND, self._on_start))
        application.add_handler(MessageHandler(message & filters.ATTACHMENT, self._on_attachment))
        application.add_error_handler(self._on_error)
        return application

    # -- the webhook -----------------------------------------------------------------------

    async def handle_webhook(self, request: Request) -> Response:
        """Check, record and schedule one update; Telegram gets its answer at once."""
        if not self.enabled:
            return JSONResponse(
                status_code=404,
                content={"detail": "Telegram is not configured: set BELOFTE_TELEGRAM_BOT_TOKEN."},
            )
        given = request.headers.get(SECRET_HEADER, "")
        expected = self._secret or self._settings.telegram_secret_token()
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            client = request.client.host if request.client else "?"
            reason = "missing" if not given else "wrong"
            # Never log the body: it is a customer's message.
            logger.warning("Rejected Telegram webhook from %s: %s secret token", client, reason)
            return JSONResponse(status_code=403, content={"detail": "Forbidden."})
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse(status_code=400, content={"detail": "The body is not JSON."})
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return JSONResponse(status_code=400, content={"detail": "Not a Telegram update."})
        if not await self._ensure_ready():
            return JSONResponse(
                status_code=503, content={"detail": "The Telegram Bot API is not reachable yet."}
            )
        try:
            update = Update.de_json(data, self.application.bot)
        except (KeyError, TypeError, ValueError):
            return JSONResponse(status_code=400, content={"detail": "Not a Telegram update."})
        chat = update.effective_chat
        user = update.effective_user
        address = str(chat.id if chat else user.id if user else "")
        with self._sessions() as session, session.begin():
            inbound_id = store.claim_inbound(
                session,
                channel=CHANNEL,
                external_id=self._external_id(update.update_id),
                address=address,
                now=utcnow(),
                payload=data,
            )
        if inbound_id is None:
            logger.info("Telegram update %s was already taken in; ignored", update.update_id)
            return JSONResponse({"ok": True, "duplicate": True})
        self._gateway.spawn(self._process(update, inbound_id), f"telegram-{update.update_id}")
        return JSONResponse({"ok": True})

    def _external_id(self, update_id: int) -> str:
        # update_ids count per bot: with the bot id a new token cannot collide with old rows.
        return f"{self.bot_id}:{update_id}"

    async def ready(self) -> bool:
        """True when the channel is configured and the Bot API answered (updates can run)."""
        return self.enabled and await self._ensure_ready()

    async def replay(self, inbound_id: int, payload: dict[str, Any] | None) -> bool:
        """Process a recorded update again (the gateway's sweep, once :meth:`ready`); False
        when the payload is no update."""
        if payload is None:
            return False
        try:
            update = Update.de_json(payload, self.application.bot)
        except (KeyError, TypeError, ValueError):
            return False
        self._gateway.spawn(self._process(update, inbound_id), f"telegram-{update.update_id}")
        return True

    async def _process(self, update: Update, inbound_id: int) -> None:
        chat = update.effective_chat
        if chat is not None:
            self._writes_again(str(chat.id))
        application = self.application
        await application.update_processor.process_update(
            update, application.process_update(update)
        )
        with self._sessions() as session, session.begin():
            # A handler failure already marked the event failed (see _on_error); this keeps it.
            store.finish_inbound(session, inbound_id, now=utcnow())

    # -- handlers --------------------------------------------------------------------------

    async def _on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        language = self._language(chat.id, update.effective_user)
        await self._send(context.bot, chat.id, text("start", language))

    async def _on_stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        conversation = conversation_id(CHANNEL, str(chat.id))
        now = utcnow()
        with self._sessions() as session, session.begin():
            # Rasa's action stores the conversation id as address; a bare chat id is covered too.
            for address in (conversation, str(chat.id)):
                unsubscribe(session, channel=CHANNEL, address=address, now=now)
        language = self._language(chat.id, update.effective_user)
        await self._send(context.bot, chat.id, text("unsubscribed", language))

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.text is None:
            return
        command = parse_link_command(message.text)
        if command is not None:  # "KANAAL SMS", "KOPPEL ABC234" typed without a slash
            await self._link(update, context, command)
            return
        await self._turn(update, context, message.text)

    # -- linking (bot.channels.linking) ----------------------------------------------------

    async def _on_link_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        command = parse_link_command(message.text or "") if message is not None else None
        if command is None:
            await self._on_start(update, context)
            return
        await self._link(update, context, command)

    async def _link(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, command: LinkCommand
    ) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        user = update.effective_user
        language = command.language or self._language(chat.id, user)
        reply = self._gateway.linking.handle(
            command,
            channel=CHANNEL,
            address=str(chat.id),
            language=language,
            display_name=user.full_name if user else None,
        )
        markup = self._contact_keyboard(language) if reply.ask_contact else None
        await self._send(context.bot, chat.id, reply.text, markup=markup)

    async def _on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        chat = update.effective_chat
        if message is None or chat is None:
            return
        user = update.effective_user
        contact = message.contact
        language = self._language(chat.id, user)
        # Only the sender's own contact, in a private chat, proves the number is theirs: a
        # forwarded contact of someone else must never tie their number to this chat.
        own = (
            contact is not None
            and user is not None
            and contact.user_id == user.id
            and chat.type == chat.PRIVATE
        )
        if not own or contact is None or user is None:
            await self._send(
                context.bot,
                chat.id,
                link_text("contact_not_own", language),
                markup=self._contact_keyboard(language),
            )
            return
        reply: LinkReply = self._gateway.linking.link_contact(
            chat_id=str(chat.id),
            phone=contact.phone_number,
            language=language,
            display_name=user.full_name,
        )
        await self._send(context.bot, chat.id, reply.text, markup=ReplyKeyboardRemove())

    @staticmethod
    def _contact_keyboard(language: Language) -> ReplyKeyboardMarkup:
        """A one-time keyboard whose button shares the user's own contact."""
        button = KeyboardButton(link_text("share_contact_button", language), request_contact=True)
        return ReplyKeyboardMarkup([[button]], one_time_keyboard=True, resize_keyboard=True)

    def _blocked(self, chat_id: str, reason: str) -> None:
        """The customer blocked the bot: opt the chat out until it writes again."""
        logger.info("Telegram chat blocked the bot; opted out until it writes again: %s", reason)
        with self._sessions() as session, session.begin():
            store.opt_out(session, channel=CHANNEL, address=chat_id, keyword=BLOCKED, now=utcnow())

    def _writes_again(self, chat_id: str) -> None:
        """A chat that blocked the bot and writes again (``/start``) may be messaged again."""
        with self._sessions() as session, session.begin():
            if store.is_opted_out(session, channel=CHANNEL, address=chat_id):
                store.opt_in(
                    session, channel=CHANNEL, address=chat_id, keyword="wrote_again", now=utcnow()
                )

    async def _on_attachment(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        language = self._language(chat.id, update.effective_user)
        await self._send(context.bot, chat.id, text("only_text", language))

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        if data.startswith(SUBSCRIBE_PREFIX):
            await self._subscribe(query, context, data.removeprefix(SUBSCRIBE_PREFIX))
            return
        payload: str | None = None
        if data.startswith(PAYLOAD_PREFIX):
            payload = data.removeprefix(PAYLOAD_PREFIX)
        elif data.startswith(PAYLOAD_KEY_PREFIX):
            with self._sessions() as session:
                payload = store.load_callback_payload(
                    session, data.removeprefix(PAYLOAD_KEY_PREFIX)
                )
        if not payload:
            chat_id = self._query_chat_id(query)
            await query.answer(text("button_expired", self._language(chat_id, query.from_user)))
            return
        # Answer first: the spinner on the button stops while the assistant thinks.
        await query.answer()
        await self._turn(update, context, payload)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        logger.error("Telegram update failed", exc_info=context.error)
        chat = update.effective_chat if isinstance(update, Update) else None
        if isinstance(context.error, Forbidden) and chat is not None:
            self._blocked(str(chat.id), str(context.error))
        if isinstance(update, Update):
            with self._sessions() as session, session.begin():
                store.fail_inbound(
                    session,
                    channel=CHANNEL,
                    external_id=self._external_id(update.update_id),
                    error=f"{type(context.error).__name__}: {context.error}",
                    now=utcnow(),
                )

    # -- turns and replies -----------------------------------------------------------------

    async def _turn(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, message_text: str
    ) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        conversation = conversation_id(CHANNEL, str(chat.id))
        try:
            result = await self._gateway.conversations.handle(conversation, message_text, CHANNEL)
        except (InvalidMessage, AssistantUnavailable) as exc:
            await self._send(context.bot, chat.id, exc.reason)
            return
        user = update.effective_user
        with self._sessions() as session, session.begin():
            customer = link_customer(
                session,
                CHANNEL,
                str(chat.id),
                language=result.language,
                display_name=user.full_name if user else None,
            )
            attach_conversation(session, conversation, customer.id)
        await self._send_replies(context.bot, chat.id, result)

    async def _send_replies(self, bot: Bot, chat_id: int, result: TurnResult) -> None:
        keep_posted = self._keep_posted_button(result)
        replies: list[Reply] = list(result.replies)
        for index, reply in enumerate(replies):
            rows = [
                [InlineKeyboardButton(button["title"], callback_data=self._callback_data(payload))]
                for button in reply.buttons
                if (payload := button.get("payload"))
            ]
            if keep_posted is not None and index == len(replies) - 1:
                rows.append([keep_posted])
            await self._send(bot, chat_id, reply.text, rows)

    def _keep_posted_button(self, result: TurnResult) -> InlineKeyboardButton | None:
        """The "🔔 Keep me posted" button when this turn found an outage."""
        reference = (result.outage or {}).get("reference")
        if not isinstance(reference, str) or not reference:
            return None
        data = f"{SUBSCRIBE_PREFIX}{reference}"
        if not callback_data_fits(data):
            return None
        return InlineKeyboardButton(text("keep_posted_button", result.language), callback_data=data)

    def _callback_data(self, payload: str) -> str:
        """Callback data for an assistant button: the payload itself, or its key if too long."""
        data = f"{PAYLOAD_PREFIX}{payload}"
        if callback_data_fits(data):
            return data
        with self._sessions() as session, session.begin():
            key = store.store_callback_payload(session, payload, utcnow())
        return f"{PAYLOAD_KEY_PREFIX}{key}"

    async def _subscribe(
        self, query: CallbackQuery, context: ContextTypes.DEFAULT_TYPE, reference: str
    ) -> None:
        chat_id = self._query_chat_id(query)
        conversation = conversation_id(CHANNEL, str(chat_id))
        language = self._language(chat_id, query.from_user)
        now = utcnow()
        with self._sessions() as session, session.begin():
            outage = session.scalars(
                select(Outage).where(Outage.reference == reference, Outage.is_active)
            ).first()
            if outage is not None:
                known = session.get(Conversation, conversation) is not None
                subscribe(
                    session,
                    channel=CHANNEL,
                    address=conversation,
                    language=language,
                    now=now,
                    outage_id=outage.id,
                    conversation_id=conversation if known else None,
                    service=outage.service,
                )
        if outage is None:
            await query.answer(text("subscribe_unknown_outage", language), show_alert=True)
            return
        await query.answer(text("subscribed_short", language))
        await self._send(context.bot, chat_id, text("subscribed", language))

    async def _send(
        self,
        bot: Bot,
        chat_id: int,
        message: str,
        rows: list[list[InlineKeyboardButton]] | None = None,
        *,
        markup: Markup | None = None,
    ) -> None:
        """Send ``message`` in as many pieces as needed; the keyboard goes on the last one.

        ``rows`` make an inline keyboard; ``markup`` is any other keyboard (or its removal).
        """
        keyboard = InlineKeyboardMarkup(rows) if rows else markup
        pieces = split_message(message)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            await bot.send_message(
                chat_id=chat_id, text=piece, reply_markup=keyboard if last else None
            )

    # -- proactive messages ----------------------------------------------------------------

    async def send(
        self,
        chat: str,
        body: str,
        *,
        kind: str,
        conversation: str | None = None,
        idempotency_key: str | None = None,
        outbox_id: int | None = None,
    ) -> SendResult:
        """Send ``body`` to a chat (its id or its conversation id ``telegram:<id>``), recorded.

        The Telegram send path for messages nobody just asked for (the outbox workers):
        recorded in ``channel_outbound`` first, once per ``idempotency_key`` (a leased claim, see
        :mod:`bot.channels.outbound`). The Bot API cannot list what a bot sent, so a claim whose
        outcome is unknown (a timeout, a crash) is sent again once its lease ran out.
        """
        chat_id = channel_address(CHANNEL, chat)
        now = utcnow()
        lease = timedelta(seconds=self._settings.delivery_claim_lease_seconds)
        with self._sessions() as session, session.begin():
            known = conversation is not None and session.get(Conversation, conversation) is not None
            reason = None if self.enabled else "Telegram is not configured"
            if reason is None and store.is_opted_out(session, channel=CHANNEL, address=chat_id):
                reason = "the chat blocked the bot (until it writes again)"
            claim = outbound.claim_outbound(
                session,
                {
                    "channel": CHANNEL,
                    "address": chat_id,
                    "kind": kind,
                    "body": body,
                    "conversation_id": conversation if known else None,
                    "outbox_id": outbox_id,
                    "idempotency_key": idempotency_key,
                    "status": "refused" if reason else outbound.CLAIMED,
                    "error_message": reason,
                    "created_at": now,
                    "updated_at": now,
                },
                lease=lease,
                now=now,
            )
        outbound_id = claim.outbound_id
        if claim.action is outbound.ClaimAction.DONE:
            return SendResult("duplicate", outbound_id, reason="sent before")
        if claim.action is outbound.ClaimAction.BUSY:
            return SendResult(
                "busy",
                outbound_id,
                reason="another attempt is sending this message",
                retryable=True,
                retry_at=claim.retry_at,
            )
        assert outbound_id is not None
        if reason is not None:
            return SendResult("refused", outbound_id, reason=reason)
        if claim.action is outbound.ClaimAction.RECONCILE:
            logger.warning("Telegram message %s: earlier outcome unknown, sent again", outbound_id)
        status, error, retryable, retry_at = "sent", None, False, None
        if not await self._ensure_ready():
            status, error, retryable = "failed", "the Telegram Bot API is not reachable", True
        else:
            try:
                await self._send(self.application.bot, int(chat_id), body)
            except Forbidden as exc:
                # The customer blocked the bot: nothing to retry, and nothing more to send.
                status, error = "refused", f"{type(exc).__name__}: {exc}"
                self._blocked(chat_id, str(exc))
            except RetryAfter as exc:
                # Flood control: Telegram says when to come back; nothing was sent.
                status, error, retryable = "failed", f"{type(exc).__name__}: {exc}", True
                retry_at = utcnow() + _retry_after(exc)
            except NetworkError as exc:
                # Timeouts and dropped connections: the message may have gone out.
                status, error, retryable = outbound.UNKNOWN, f"{type(exc).__name__}: {exc}", True
            except (TelegramError, ValueError) as exc:
                status, error = "failed", f"{type(exc).__name__}: {exc}"
        with self._sessions() as session, session.begin():
            outbound.update_claim(
                session,
                outbound_id,
                claim.version,
                {"status": status, "error_message": error},
                now=utcnow(),
            )
        return SendResult(status, outbound_id, reason=error, retryable=retryable, retry_at=retry_at)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _query_chat_id(query: CallbackQuery) -> int:
        message = query.message
        return message.chat.id if message is not None else query.from_user.id

    def _language(self, chat_id: int, user: User | None) -> Language:
        """The conversation's language, else the user's Telegram language, else the default."""
        with self._sessions() as session:
            conversation = session.get(Conversation, conversation_id(CHANNEL, str(chat_id)))
        if conversation is not None and conversation.language in ("nl", "en"):
            return "en" if conversation.language == "en" else "nl"
        return language_of(user.language_code if user else None, self._settings.default_language)


async def set_webhook(settings: Settings, url: str, *, drop_pending_updates: bool = False) -> bool:
    """Register ``url`` as the bot's webhook, with the secret token Belofte checks."""
    token = settings.telegram_bot_token
    if token is None:
        raise RuntimeError("BELOFTE_TELEGRAM_BOT_TOKEN is not set")
    bot = Bot(token.get_secret_value(), base_url=settings.telegram_api_base_url)
    async with bot:
        return await bot.set_webhook(
            url,
            secret_token=settings.telegram_secret_token(),
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=drop_pending_updates,
        )


def _retry_after(exc: RetryAfter) -> timedelta:
    """How long Telegram's flood control asks us to wait (an int or a timedelta, by PTB's mode)."""
    value = exc.retry_after
    return value if isinstance(value, timedelta) else timedelta(seconds=value)
