"""Interface texts in Dutch and English, from ``bot/<package>/ui/<lang>.yml``.

Each page package keeps flat keys prefixed with its name (``cx.state.triaged: "Getrieerd"``).
The files of all page packages are merged per language; a file changed on disk is read again,
so editing texts needs no restart. A key that does not exist raises :class:`MissingTextError`:
a missing text is a bug the tests must catch, not something to paper over with the key.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

import yaml

#: ``bot/``: every page package lives under it.
BOT_DIR: Final = Path(__file__).resolve().parent.parent
#: The packages whose ``ui/`` texts and ``templates/`` make up the web pages.
PAGE_PACKAGES: Final = ("web", "accounts", "console", "supervisor", "cx")
#: Interface languages (the same as bot.accounts.model.LANGUAGES; not imported from there so
#: that bot.web never imports bot.accounts at run time).
LANGUAGES: Final = ("nl", "en")
DEFAULT_LANGUAGE: Final = "nl"


class MissingTextError(KeyError):
    """A template or the code asked for a text key that no ui/*.yml file defines."""


class TextFileError(ValueError):
    """A ui/*.yml file is not a flat mapping of text keys to strings, or repeats a key."""


def ui_files(language: str) -> list[Path]:
    """The existing ``ui/<language>.yml`` files of the page packages."""
    return [
        BOT_DIR / package / "ui" / f"{language}.yml"
        for package in PAGE_PACKAGES
        if (BOT_DIR / package / "ui" / f"{language}.yml").is_file()
    ]


def load_file(path: Path) -> dict[str, str]:
    """One ui file as a flat dict; raises :class:`TextFileError` when it is malformed."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TextFileError(f"{path}: expected a mapping of text keys to strings")
    texts: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TextFileError(f"{path}: {key!r} must be a text key with a string value")
        texts[key] = value
    return texts


_lock = threading.Lock()
_cache: dict[str, tuple[tuple[tuple[str, float], ...], dict[str, str]]] = {}


def texts(language: str) -> dict[str, str]:
    """All interface texts of ``language`` (merged over the page packages)."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    files = ui_files(language)
    stamp = tuple((str(path), path.stat().st_mtime) for path in files)
    with _lock:
        cached = _cache.get(language)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    merged: dict[str, str] = {}
    for path in files:
        for key, value in load_file(path).items():
            if key in merged:
                raise TextFileError(f"{path}: key {key!r} is already defined by another package")
            merged[key] = value
    with _lock:
        _cache[language] = (stamp, merged)
    return merged


def translate(language: str, key: str, **params: object) -> str:
    """The text ``key`` in ``language`` with ``{name}`` placeholders filled from ``params``."""
    try:
        text = texts(language)[key]
    except KeyError:
        raise MissingTextError(f"no interface text {key!r} in ui/{language}.yml") from None
    return text.format(**params) if params else text
