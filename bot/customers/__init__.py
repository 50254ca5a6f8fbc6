"""One customer across channels: the service side.

- :mod:`bot.customers.identities`: customers and their channel identities (the same number on
  SMS, WhatsApp and voice is one customer; a Telegram chat is tied by its shared contact), merging
  two records, the preferred channel for notifications.
- :mod:`bot.customers.link_codes`: one-time codes that tie a Telegram chat and a number.
- :mod:`bot.customers.notifications`: where an outbox message goes (the preferred channel).
- :mod:`bot.customers.history`: the messages of all of a customer's conversations, for agents.

Services and the API use this package; the channels (:mod:`bot.channels`) call it, never the
other way round.
"""
