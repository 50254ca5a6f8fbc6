"""Promises for outages, on the database: the service around the promise engine (``promise``).

- :mod:`bot.promises.history_store`: outage history in and out as :class:`promise.Incident`;
- :mod:`bot.promises.service`: the current promise, supervisors' approvals and overrides,
  promises given and their scores, renewals and "fixed" messages in the outbox;
- :mod:`bot.promises.watch`: the background loop that renews promises about to break.
"""

from bot.promises.history_store import (
    HistoryImportError,
    ImportSummary,
    import_incidents,
    load_incidents,
)
from bot.promises.service import (
    InvalidPromise,
    OutageResolved,
    PromiseError,
    PromiseService,
    PromiseView,
    ResolveSummary,
    TargetView,
    UnknownOutage,
    history_fingerprint,
    queue_message,
)
from bot.promises.watch import PromiseWatch

__all__ = [
    "HistoryImportError",
    "ImportSummary",
    "InvalidPromise",
    "OutageResolved",
    "PromiseError",
    "PromiseService",
    "PromiseView",
    "PromiseWatch",
    "ResolveSummary",
    "TargetView",
    "UnknownOutage",
    "history_fingerprint",
    "import_incidents",
    "load_incidents",
    "queue_message",
]
