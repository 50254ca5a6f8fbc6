"""User-facing texts of the service itself, in Dutch and English (``nl.yml``, ``en.yml``).

The dialogue's own texts are Rasa responses in ``domain.yml``; these are the words the service
adds (service names, error messages) and the formatting of numbers and times per language.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from bot.settings import Language

_DIR = Path(__file__).parent


@lru_cache(maxsize=2)
def _catalogue(language: Language) -> dict[str, str]:
    data = yaml.safe_load((_DIR / f"{language}.yml").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


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
