"""Belofte: grounded answers and calibrated outage promises for contact centers.

Packages: ``bot.api`` (HTTP API), ``bot.console`` (web console), ``bot.conversation`` (one turn
through Rasa), ``bot.outages``, ``bot.subscriptions``, ``bot.feedback`` (domain services),
``bot.storage`` (database), ``bot.rasa_project`` and ``bot.runner`` (training and starting Rasa).
"""

__version__ = "0.1.0"
