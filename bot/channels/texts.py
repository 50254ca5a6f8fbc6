"""The channels' user-facing texts: the ``channels:`` and ``link:`` blocks of
``bot/messages/{nl,en}.yml``."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.settings import Language

_MESSAGES_DIR = Path(__file__).resolve().parent.parent / "messages"


@lru_cache(maxsize=4)
def _catalogue(language: Language, block: str = "channels") -> dict[str, str]:
    data = yaml.safe_load((_MESSAGES_DIR / f"{language}.yml").read_text(encoding="utf-8"))
    texts = data.get(block) or {}
    return {str(k): str(v) for k, v in texts.items()}


def text(key: str, language: Language, **values: Any) -> str:
    """The channel text ``key`` in ``language``, filled with ``values``."""
    return _catalogue(language)[key].format(**values)


def link_text(key: str, language: Language, **values: Any) -> str:
    """The text ``key`` of linking channels (``link:`` block) in ``language``, filled in."""
    return _catalogue(language, "link")[key].format(**values)


def language_of(code: str | None, default: Language) -> Language:
    """A client's language code ("nl", "nl-BE", "en-GB", ...) as a :data:`Language`.

    Anything neither Dutch nor English (or unknown) falls back to ``default``: Belofte answers in
    Dutch or English only.
    """
    prefix = (code or "").strip().lower()[:2]
    if prefix == "nl":
        return "nl"
    if prefix == "en":
        return "en"
    return default


def utf16_units(char: str) -> int:
    """How many UTF-16 code units a character takes: Telegram counts message length in them."""
    return 2 if ord(char) > 0xFFFF else 1


def _one(_char: str) -> int:
    return 1


def split_text(text: str, limit: int, units: Callable[[str], int] = _one) -> list[str]:
    """``text`` in pieces of at most ``limit`` units, cut at a paragraph, line, sentence or word.

    ``units`` says how much one character counts (one by default; :func:`utf16_units` for
    Telegram). A word longer than ``limit`` is cut where it must be. Whitespace at the cuts is
    dropped; an empty text gives no pieces.
    """
    pieces: list[str] = []
    rest = text.strip()
    while rest:
        fit, used = 0, 0
        for char in rest:
            used += units(char)
            if used > limit:
                break
            fit += 1
        if fit == len(rest):
            pieces.append(rest)
            break
        cut = max(fit, 1)
        window = rest[:fit]
        # Prefer the latest natural boundary, but not one so early that pieces get tiny.
        for separator in ("\n\n", "\n", ". ", " "):
            at = window.rfind(separator)
            if at > fit // 2:
                cut = at + len(separator)
                break
        piece = rest[:cut].rstrip()
        if piece:
            pieces.append(piece)
        rest = rest[cut:].lstrip()
    return pieces
