"""The supervisors' page: promise review, targets, calibration and the message queue (issue 6).

:mod:`bot.supervisor.report` computes what the page shows, :mod:`bot.supervisor.charts` draws
the calibration charts, :mod:`bot.supervisor.routes` serves the page and its JSON API.
"""
