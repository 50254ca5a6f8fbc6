"""One customer across channels, as the channels use it.

The customer logic lives in the service package :mod:`bot.customers` (the promise service
routes notifications with it, and services never import the channels); this module gives the
channels its names under their old home:

- :func:`link_customer` finds or creates the customer of a channel address: the same phone
  number on SMS, WhatsApp and voice is one customer (E.164), race-safe;
- :func:`attach_conversation` ties a conversation to its customer;
- :func:`phone_number`, :func:`conversation_id`, :func:`channel_address`: the address forms.

Tying a Telegram chat to a number (shared contact, link codes) and the preferred channel are in
:mod:`bot.channels.linking`.
"""

from __future__ import annotations

from bot.customers.identities import PHONE_CHANNELS as PHONE_CHANNELS
from bot.customers.identities import PHONE_IDENTITY as PHONE_IDENTITY
from bot.customers.identities import attach_conversation as attach_conversation
from bot.customers.identities import channel_address as channel_address
from bot.customers.identities import conversation_id as conversation_id
from bot.customers.identities import link_customer as link_customer
from bot.customers.identities import phone_number as phone_number

__all__ = [
    "PHONE_CHANNELS",
    "PHONE_IDENTITY",
    "attach_conversation",
    "channel_address",
    "conversation_id",
    "link_customer",
    "phone_number",
]
