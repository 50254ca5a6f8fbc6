"""Deadlines rounded up to times people say: "before 14:30", "before 9 tomorrow"."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

#: Promises up to this far ahead are rounded up to a quarter hour, later ones to a whole hour.
QUARTER_HOUR_HORIZON = timedelta(days=1)


def round_up_deadline(deadline: datetime, now: datetime, timezone: str) -> datetime:
    """``deadline`` rounded up, on the local clock of ``timezone``, to a time worth saying.

    Within a day of ``now`` the step is a quarter hour ("vóór 14:30"); beyond it a whole hour.
    Rounding happens on the local wall clock so that half-hour time zones still give round
    local times. The result is aware, in ``timezone``.
    """
    step = 15 if deadline - now <= QUARTER_HOUR_HORIZON else 60
    local = deadline.astimezone(ZoneInfo(timezone))
    # Wall-clock minutes, not elapsed ones: on a daylight-saving day they differ by an hour.
    minutes = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60.0
    rounded = math.ceil(minutes / step - 1e-9) * step
    wall = local.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    return (wall + timedelta(minutes=rounded)).replace(tzinfo=ZoneInfo(timezone))
