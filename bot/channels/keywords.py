"""SMS and WhatsApp keywords: STOP, START and HELP, in English and Dutch.

A keyword counts only as the whole message ("stop", "Stop!", " STOPPEN "), as carriers and
Twilio treat them: "stop met die updates" is a sentence for the assistant, not an opt-out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from bot.settings import Language


class KeywordAction(enum.StrEnum):
    """What a keyword asks for."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


@dataclass(frozen=True)
class Keyword:
    """A recognised keyword; ``language`` is None when the word is the same in both languages."""

    word: str
    action: KeywordAction
    language: Language | None


_WORDS: Final[dict[str, tuple[KeywordAction, Language | None]]] = {
    # Opt-out: the carriers' English set, the Dutch words customers use, and STOPP.
    "STOP": (KeywordAction.OPT_OUT, None),
    "STOPP": (KeywordAction.OPT_OUT, None),
    "STOPALL": (KeywordAction.OPT_OUT, "en"),
    "UNSUBSCRIBE": (KeywordAction.OPT_OUT, "en"),
    "CANCEL": (KeywordAction.OPT_OUT, "en"),
    "END": (KeywordAction.OPT_OUT, "en"),
    "QUIT": (KeywordAction.OPT_OUT, "en"),
    "STOPPEN": (KeywordAction.OPT_OUT, "nl"),
    "AFMELDEN": (KeywordAction.OPT_OUT, "nl"),
    "UITSCHRIJVEN": (KeywordAction.OPT_OUT, "nl"),
    # Opt back in. Not YES: "ja"/"yes" answers the assistant's questions.
    "START": (KeywordAction.OPT_IN, None),
    "UNSTOP": (KeywordAction.OPT_IN, "en"),
    "AANMELDEN": (KeywordAction.OPT_IN, "nl"),
    # Help.
    "HELP": (KeywordAction.HELP, None),
    "INFO": (KeywordAction.HELP, None),
    "HULP": (KeywordAction.HELP, "nl"),
}

_TRIM: Final = " \t\r\n.!?¡¿,;:'\"*"


def parse_keyword(text: str) -> Keyword | None:
    """The keyword ``text`` consists of, or None for anything else."""
    word = text.strip(_TRIM).upper()
    found = _WORDS.get(word)
    if found is None:
        return None
    return Keyword(word=word, action=found[0], language=found[1])
