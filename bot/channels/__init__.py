"""The channel gateway: Telegram, Twilio SMS and WhatsApp webhooks inside the Belofte service.

Every channel hands customer text to :class:`bot.conversation.service.ConversationService`, so
all channels give the same grounded answer; what differs per channel lives here:

- :mod:`bot.channels.telegram`: python-telegram-bot in webhook mode (inline keyboards, callback
  queries, the "keep me posted" button, ``/start`` and ``/stop``).
- :mod:`bot.channels.twilio`: signed Twilio webhooks for SMS and WhatsApp, STOP/START/HELP,
  replies through the REST API after the webhook returned, delivery status callbacks.
- :mod:`bot.channels.store`: what makes "processed once" and "never after STOP" hold across
  restarts and workers (unique rows in the database, not memory).
- :mod:`bot.channels.customers`: one customer across channels (the same phone number on SMS,
  WhatsApp and voice), from the service package :mod:`bot.customers`;
  :mod:`bot.channels.linking`: the customer's side of it (shared contact, link codes, the
  channel for notifications).
- :mod:`bot.channels.gateway` and :mod:`bot.channels.routes`: lifecycle and HTTP routes.
"""
