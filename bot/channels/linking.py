"""Linking channels from the customer's side: link codes, a shared contact, the update channel.

Commands (the whole message, any case; on Telegram also as ``/command``):

- ``KOPPEL`` / ``LINK`` asks for a one-time code: by SMS or WhatsApp to send to the Telegram
  bot (``/koppel CODE``), on Telegram to text from the phone (``KOPPEL CODE``), next to a
  button that shares the chat's own contact instead;
- ``KOPPEL CODE`` / ``LINK CODE`` uses a code: the two customer records become one;
- ``KANAAL SMS|WHATSAPP|TELEGRAM``, ``CHANNEL ...``, ``STUUR SMS``, ``SEND WHATSAPP`` choose
  where notifications go; ``KANAAL`` alone tells the current choice.

Without a slash, ``KOPPEL``/``LINK`` followed by anything that is not shaped like a code, and
``STUUR``/``SEND`` followed by anything but a channel, are sentences for the assistant.
The customer logic itself is in :mod:`bot.customers`; this module parses and answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy.orm import Session

from bot.channels.texts import link_text
from bot.customers.identities import (
    NOTIFY_CHANNELS,
    ChannelNotLinked,
    link_customer,
    link_phone,
    phone_number,
    set_preferred_channel,
)
from bot.customers.link_codes import (
    LinkCodePolicy,
    RedeemStatus,
    issue_code,
    looks_like_code,
    redeem_code,
)
from bot.settings import Language, Settings
from bot.storage.db import SessionFactory
from bot.storage.models import Customer
from bot.storage.types import utcnow


class LinkAction(enum.StrEnum):
    """What a link command asks for."""

    REQUEST_CODE = "request_code"
    REDEEM_CODE = "redeem_code"
    CHOOSE_CHANNEL = "choose_channel"


@dataclass(frozen=True)
class LinkCommand:
    """A parsed command; ``language`` is None when the word is the same in both languages."""

    action: LinkAction
    argument: str | None
    language: Language | None


@dataclass(frozen=True)
class LinkReply:
    """The answer to a link command; ``ask_contact``: show Telegram's share-contact button."""

    text: str
    ask_contact: bool = False


_LINK_WORDS: Final[dict[str, Language | None]] = {"KOPPEL": "nl", "KOPPELEN": "nl", "LINK": None}
_CHANNEL_WORDS: Final[dict[str, Language | None]] = {
    "KANAAL": "nl",
    "STUUR": "nl",
    "CHANNEL": "en",
    "SEND": "en",
}
#: Words that mean "tell me the current channel" when alone.
_CHANNEL_QUERY: Final = ("KANAAL", "CHANNEL")
_TRIM: Final = " \t\r\n.!?¡¿,;:'\"*"


def parse_link_command(text: str) -> LinkCommand | None:
    """The link command ``text`` is, or None for anything else (a sentence for the assistant)."""
    words = text.strip(_TRIM).split()
    if not words:
        return None
    first = words[0]
    slash = first.startswith("/")
    # Telegram appends the bot's name to commands in groups: /koppel@belofte_bot.
    verb = first.lstrip("/").split("@", 1)[0].upper()
    rest = words[1:]
    if verb in _LINK_WORDS:
        language = _LINK_WORDS[verb]
        if not rest:
            return LinkCommand(LinkAction.REQUEST_CODE, None, language)
        code = "".join(rest)
        if slash or looks_like_code(code):
            return LinkCommand(LinkAction.REDEEM_CODE, code, language)
        return None
    if verb in _CHANNEL_WORDS:
        language = _CHANNEL_WORDS[verb]
        if not rest:
            if slash or verb in _CHANNEL_QUERY:
                return LinkCommand(LinkAction.CHOOSE_CHANNEL, None, language)
            return None
        name = " ".join(rest).strip(_TRIM).lower()
        if name in NOTIFY_CHANNELS or slash or verb in _CHANNEL_QUERY:
            return LinkCommand(LinkAction.CHOOSE_CHANNEL, name, language)
    return None


class CustomerLinking:
    """Carries out link commands and shared contacts for the channels of one gateway."""

    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self._settings = settings
        self._sessions = sessions

    @property
    def policy(self) -> LinkCodePolicy:
        """The link-code policy of the settings."""
        return LinkCodePolicy.from_settings(self._settings)

    def handle(
        self,
        command: LinkCommand,
        *,
        channel: str,
        address: str,
        language: Language,
        display_name: str | None = None,
    ) -> LinkReply:
        """Answer ``command`` from ``address`` (a chat id, an E.164 number) on ``channel``."""
        with self._sessions() as session, session.begin():
            customer = link_customer(
                session, channel, address, language=language, display_name=display_name
            )
            if command.action is LinkAction.REQUEST_CODE:
                return self._request_code(session, customer, channel, language)
            if command.action is LinkAction.REDEEM_CODE:
                return self._redeem(
                    session, customer, command.argument or "", channel, address, language
                )
            return self._choose(session, customer, command.argument, channel, language)

    def link_contact(
        self, *, chat_id: str, phone: str, language: Language, display_name: str | None = None
    ) -> LinkReply:
        """Tie the Telegram chat to the number it shared as its own contact.

        The caller has checked that the contact is the sender's own (its ``user_id``).
        Telegram gives the number in international form, with or without the ``+``.
        """
        number = phone_number(phone if phone.strip().startswith("+") else f"+{phone.strip()}")
        with self._sessions() as session, session.begin():
            customer = link_customer(
                session, "telegram", chat_id, language=language, display_name=display_name
            )
            link_phone(session, customer.id, number)
        return LinkReply(
            link_text(
                "contact_linked",
                language,
                last_digits=number[-4:],
                choices=link_text("choices_telegram", language),
            )
        )

    # -- the commands ----------------------------------------------------------------------

    def _request_code(
        self, session: Session, customer: Customer, channel: str, language: Language
    ) -> LinkReply:
        policy = self.policy
        code = issue_code(session, customer.id, channel=channel, policy=policy, now=utcnow())
        minutes = _minutes(policy.ttl)
        if channel == "telegram":
            return LinkReply(
                link_text("code_for_phone", language, code=code, minutes=minutes), ask_contact=True
            )
        return LinkReply(link_text("code_for_telegram", language, code=code, minutes=minutes))

    def _redeem(
        self,
        session: Session,
        customer: Customer,
        code: str,
        channel: str,
        address: str,
        language: Language,
    ) -> LinkReply:
        policy = self.policy
        result = redeem_code(
            session,
            code,
            customer_id=customer.id,
            channel=channel,
            address=address,
            policy=policy,
            now=utcnow(),
        )
        if result.status is RedeemStatus.LINKED:
            return LinkReply(link_text("linked", language, choices=_choices(channel, language)))
        if result.status is RedeemStatus.ALREADY_LINKED:
            return LinkReply(link_text("already_linked", language))
        if result.status is RedeemStatus.LOCKED:
            return LinkReply(link_text("locked", language, minutes=_minutes(policy.attempt_window)))
        # Unknown, expired or used: one answer, so the reply tells a guesser nothing.
        return LinkReply(link_text("code_refused", language, command=_command(channel, language)))

    def _choose(
        self,
        session: Session,
        customer: Customer,
        choice: str | None,
        channel: str,
        language: Language,
    ) -> LinkReply:
        if choice not in NOTIFY_CHANNELS:
            current = customer.preferred_channel
            name = (
                link_text(f"channel_{current}", language)
                if current in NOTIFY_CHANNELS
                else link_text("channel_subscribed", language)
            )
            return LinkReply(
                link_text(
                    "channel_current", language, channel=name, choices=_choices(channel, language)
                )
            )
        try:
            set_preferred_channel(session, customer.id, choice)
        except ChannelNotLinked:
            if choice == "telegram":
                how = link_text("how_telegram", language)
            elif choice == "sms":
                how = link_text("how_phone", language)
            elif channel == "telegram":  # WhatsApp: a message from the number, tied to the chat
                how = f"{link_text('how_whatsapp', language)} {link_text('how_phone', language)}"
            else:
                how = link_text("how_whatsapp", language)
            return LinkReply(
                link_text(
                    "channel_not_linked",
                    language,
                    channel=link_text(f"channel_{choice}", language),
                    how=how,
                )
            )
        return LinkReply(
            link_text("channel_set", language, channel=link_text(f"channel_{choice}", language))
        )


def _minutes(span: timedelta) -> int:
    return max(1, int(span.total_seconds() // 60))


def _choices(channel: str, language: Language) -> str:
    """How to choose a channel, as written on ``channel`` (a command or a keyword)."""
    return link_text("choices_telegram" if channel == "telegram" else "choices_phone", language)


def _command(channel: str, language: Language) -> str:
    """How to ask for a code, as written on ``channel``."""
    return link_text("command_telegram" if channel == "telegram" else "command_phone", language)
