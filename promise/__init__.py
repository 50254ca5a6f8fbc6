"""The promise engine: calibrated outage resolution times learned from outage history.

Public interface:

- :class:`~promise.history.Incident` and the history readers in :mod:`promise.history`;
- :class:`~promise.engine.PromiseEngine` (``fit`` on history, then ``promise`` for an open
  outage) and its :class:`~promise.engine.EngineConfig`;
- :func:`~promise.backtest.run_backtest` in :mod:`promise.backtest`.

The package knows nothing of databases, channels or Rasa: the service (``bot.promises``) feeds it
history and stores what it returns.
"""
