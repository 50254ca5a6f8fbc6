"""Rasa custom actions. Thin: each one asks a Belofte service and says what it found.

They run in-process in the Belofte service (``bot.actions_server``), which builds them with
:func:`build_actions` and hands them their dependencies.
"""

from __future__ import annotations

from rasa_sdk import Action

from actions.context import ActionContext
from actions.feedback import ActionRecordFeedback
from actions.forms import ValidateOutageForm
from actions.handoff import ActionHandoff
from actions.knowledge import ActionAnswerQuestion
from actions.language import ActionSetLanguage
from actions.outages import ActionCheckOutage
from actions.promises import ActionTellPromise
from actions.subscriptions import ActionSubscribeUpdates, ActionUnsubscribe

__all__ = ["ActionContext", "build_actions"]


def build_actions(context: ActionContext) -> list[Action]:
    """Every custom action of the domain, wired to ``context``."""
    return [
        ActionSetLanguage(),
        ValidateOutageForm(),
        ActionCheckOutage(context),
        ActionTellPromise(context),
        ActionSubscribeUpdates(context),
        ActionUnsubscribe(context),
        ActionRecordFeedback(context),
        ActionHandoff(context),
        ActionAnswerQuestion(context),
    ]
