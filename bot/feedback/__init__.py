"""What the frontline observes, sent to the CX team.

Observations (the ``feedback`` table) come from two places: agents and other staff through the
"Feedback to CX" dialog on every page (``POST /api/v1/feedback``, :mod:`bot.cx.routes`) and
customers through the chat (the Rasa action ``action_record_feedback``). Both go through
:func:`bot.feedback.service.record_feedback`, land in the same CX inbox and, when a webhook is
configured, get a forward row in the same transaction (:mod:`bot.cx.forwarding` sends it).
"""
