"""User-facing texts of the service itself, in Dutch and English (``nl.yml``, ``en.yml``).

The dialogue's own texts are Rasa responses in ``domain.yml``; these are the words the service
adds (service names, error messages, the follow-up messages of the outbox) and the formatting of
numbers and times per language.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml

from bot.settings import Language

_DIR = Path(__file__).parent

#: How a moment is introduced: "vóór 14:30" (a deadline) or "om 15:00" (an update, an event).
MomentStyle = Literal["before", "at"]

#: The outbox templates :func:`render_outbox` knows (``payload["template"]`` of an outbox row).
OUTBOX_TEMPLATES = ("outage_fixed", "promise_renewed", "promise_next_update")


@lru_cache(maxsize=2)
def _catalogue(language: Language) -> dict[str, str]:
    data = yaml.safe_load((_DIR / f"{language}.yml").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def as_language(value: str | None) -> Language:
    """``value`` as a :data:`Language` ("nl" or "en"); ValueError for anything else."""
    if value == "nl":
        return "nl"
    if value == "en":
        return "en"
    raise ValueError(f"unknown language {value!r}")


def text(key: str, language: Language, **values: Any) -> str:
    """The template ``key`` in ``language``, filled with ``values``."""
    return _catalogue(language)[key].format(**values)


def service_name(service: str | None, language: Language) -> str:
    """How a canonical service ("landline") is called in ``language`` ("vaste telefoon")."""
    key = f"service_{service}"
    return text(key if key in _catalogue(language) else "service_unknown", language)


def count(value: int, language: Language) -> str:
    """A whole number with the language's thousands separator (1.840 / 1,840)."""
    formatted = f"{value:,}"
    return formatted.replace(",", ".") if language == "nl" else formatted


def clock_time(moment: datetime, timezone: str) -> str:
    """The local wall-clock time of ``moment`` as HH:MM (the same in both languages)."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%H:%M")


def spoken_clock(moment: datetime, language: Language, timezone: str) -> str:
    """The local time of ``moment`` as people write it: "14:30" in Dutch, "2:30 pm" in English.

    Midnight is "middernacht" / "midnight" (see :func:`moment_phrase` for its day).
    """
    local = moment.astimezone(ZoneInfo(timezone))
    if (local.hour, local.minute) == (0, 0):
        return text("clock_midnight", language)
    if language == "nl":
        return local.strftime("%H:%M")
    hour = local.hour % 12 or 12
    return f"{hour}:{local.minute:02d} {'am' if local.hour < 12 else 'pm'}"


def calendar_date(day: date, language: Language) -> str:
    """A date with its weekday: "woensdag 3 december" / "Wednesday 3 December"."""
    return text(
        "date",
        language,
        weekday=text(f"weekday_{day.weekday()}", language),
        day=day.day,
        month=text(f"month_{day.month}", language),
    )


def moment_phrase(
    moment: datetime, now: datetime, language: Language, timezone: str, style: MomentStyle
) -> str:
    """``moment`` as told to a customer at ``now``, with its day when that is not today.

    ``style="before"``: "vóór 14:30", "morgen vóór 09:00", "op woensdag 3 december vóór 09:00" /
    "before 2:30 pm", "tomorrow before 9:00 am", "on Wednesday 3 December before 9:00 am".
    ``style="at"``: the same with "om" / "at" (and "gisteren" / "yesterday" for the day before).
    Midnight belongs to the day it ends: 00:00 on Thursday is "woensdag vóór middernacht".
    """
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    day = local.date()
    if (local.hour, local.minute) == (0, 0):
        day -= timedelta(days=1)
    offset = (day - now.astimezone(zone).date()).days
    when = {0: "today", 1: "tomorrow", -1: "yesterday"}.get(offset, "date")
    return text(
        f"moment_{style}_{when}",
        language,
        time=spoken_clock(moment, language, timezone),
        date=calendar_date(day, language) if when == "date" else "",
    )


# -- the outbox --------------------------------------------------------------------------------


def _moment(value: Any) -> datetime | None:
    """An ISO 8601 time of an outbox payload (None stays None)."""
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"time without a time zone in an outbox payload: {value!r}")
    return moment


def _new_promise(
    params: Mapping[str, Any], now: datetime, language: Language, timezone: str
) -> str:
    """The sentence with the new promise of a ``promise_renewed`` / ``promise_next_update``."""
    deadline = _moment(params.get("new_deadline"))
    if deadline is not None:
        when = moment_phrase(deadline, now, language, timezone, "before")
        return text("outbox_new_deadline", language, when=when)
    next_update = _moment(params.get("new_next_update_at"))
    if next_update is not None:
        when = moment_phrase(next_update, now, language, timezone, "at")
        return text("outbox_new_next_update", language, when=when)
    return text("outbox_new_unknown", language)


def render_outbox(
    kind: str,
    payload: Mapping[str, Any],
    language: str,
    *,
    timezone: str,
    now: datetime,
) -> str:
    """The text of an outbox message, as the channels send it.

    ``kind`` and ``language`` are the outbox row's columns and ``payload`` its ``payload``
    (``{"template": ..., "params": {...}}``, see :func:`bot.promises.service.queue_message`);
    times are told in ``timezone`` relative to ``now``, the moment of sending ("morgen vóór
    09:00"). The template is ``payload["template"]`` (``kind`` when absent): ``outage_fixed``,
    ``promise_renewed`` (an apology: a clock time will not be met) or ``promise_next_update`` (a
    new time after a "we'll know more at ..."). Raises ValueError for an unknown template or
    language, KeyError for a missing parameter.
    """
    lang = as_language(language)
    template = str(payload.get("template") or kind)
    params: Mapping[str, Any] = payload.get("params") or {}
    service = service_name(params.get("service"), lang)
    if template == "outage_fixed":
        resolved = _moment(params["resolved_at"])
        if resolved is None:
            raise KeyError("resolved_at")
        return text(
            "outbox_outage_fixed",
            lang,
            service_name=service,
            region=params.get("region") or text("region_unknown", lang),
            when=moment_phrase(resolved, now, lang, timezone, "at"),
        )
    if template == "promise_renewed":
        old = _moment(params.get("old_deadline"))
        new = _new_promise(params, now, lang, timezone)
        if old is None:  # queued as an apology, but no clock time was broken
            return text("outbox_promise_next_update", lang, service_name=service, new=new)
        return text(
            "outbox_promise_renewed",
            lang,
            service_name=service,
            old=moment_phrase(old, now, lang, timezone, "before"),
            new=new,
        )
    if template == "promise_next_update":
        new = _new_promise(params, now, lang, timezone)
        return text("outbox_promise_next_update", lang, service_name=service, new=new)
    raise ValueError(f"unknown outbox template {template!r} (kind {kind!r})")
