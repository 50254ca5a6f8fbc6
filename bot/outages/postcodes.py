"""Finding postcodes and services in what customers type.

Dutch postcodes are four digits (1000–9999) plus two letters (``3511 AB``); the letter pairs SA,
SD and SS are never issued. Belgian postcodes are four digits (1000–9999) without letters. A bare
``3511`` is therefore either Dutch (letters omitted) or Belgian; only letters make it certainly
Dutch. Outage areas are kept at the 4-digit level, so the digits are what the lookup uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

#: Letter pairs never used in Dutch postcodes (they evoke the SA, SD and SS of 1940–45).
FORBIDDEN_LETTERS: Final = frozenset({"SA", "SD", "SS"})

# Short words that often follow a number in a sentence ("3511 is plat", "2000 en 2018"): when
# typed in lower case after a space they are read as words, not as postcode letters.
_COMMON_TWO_LETTER_WORDS: Final = frozenset(
    {
        # Dutch
        "al", "als", "bij", "da", "de", "di", "do", "dr", "en", "er", "ga", "ik", "in", "is",
        "je", "ja", "me", "na", "ne", "nu", "of", "om", "op", "te", "tv", "ud", "we", "wo",
        "za", "zo", "ze", "zi", "ma", "vr", "mn", "m'n", "pm", "am",
        # English
        "an", "as", "at", "be", "by", "go", "he", "hi", "if", "it", "my", "no", "on", "or",
        "so", "to", "up", "us",
    }
)  # fmt: skip

# Four digits not glued to other digits, decimal separators or phone-number punctuation,
# optionally followed by two letters (with or without one space). The letters must end a word so
# that "3511 abc" or "3511 avenue" are not read as postcodes with letters.
_POSTCODE_RE: Final = re.compile(
    r"(?<![\d.,:/+\-])(?P<digits>[1-9]\d{3})(?![\d]|[.,:]\d)"
    r"(?:(?P<space>[ \t]?)(?P<letters>[A-Za-z]{2})(?![A-Za-z\d]))?"
)


@dataclass(frozen=True, slots=True)
class Postcode:
    """A postcode found in text.

    ``country`` is ``"NL"`` when letters were given (only Dutch postcodes have them) and None when
    only the digits are known, which may be Dutch or Belgian.
    """

    digits: str
    letters: str | None = None
    country: Literal["NL"] | None = None

    def __post_init__(self) -> None:
        if len(self.digits) != 4 or not self.digits.isdigit() or self.digits[0] == "0":
            raise ValueError(f"postcode digits must be 1000-9999, got {self.digits!r}")
        if self.letters is not None:
            if (
                len(self.letters) != 2
                or not self.letters.isascii()
                or not self.letters.isalpha()
                or not self.letters.isupper()
            ):
                raise ValueError(f"postcode letters must be two capitals, got {self.letters!r}")
            if self.letters in FORBIDDEN_LETTERS:
                raise ValueError(f"{self.letters} is never used in Dutch postcodes")
            if self.country != "NL":
                object.__setattr__(self, "country", "NL")

    @property
    def prefix(self) -> str:
        """The four digits, which is what outage areas are keyed on."""
        return self.digits

    def __str__(self) -> str:
        """``3511 AB`` with letters, else ``3511``."""
        return f"{self.digits} {self.letters}" if self.letters else self.digits


def parse_postcode(text: str) -> Postcode | None:
    """Find the first Dutch or Belgian postcode in free text, or None.

    Accepts ``3511 AB``, ``3511ab``, ``3511 ab`` and a bare ``3511`` (Dutch without letters or
    Belgian). Invalid postcodes give None: a leading zero (``0123``), five digits (``12345``), or
    the unused Dutch letter pairs (``3511 SA``).
    """
    for match in _POSTCODE_RE.finditer(text):
        digits = match.group("digits")
        letters = match.group("letters")
        if letters is not None:
            # "3511 is" is a sentence, "3511is" or "3511 IS" is a postcode.
            if match.group("space") and letters.islower() and letters in _COMMON_TWO_LETTER_WORDS:
                letters = None
            else:
                letters = letters.upper()
                if letters in FORBIDDEN_LETTERS:
                    return None
        if letters is None:
            return Postcode(digits=digits)
        return Postcode(digits=digits, letters=letters, country="NL")
    return None


# Canonical service -> synonyms (Dutch, Flemish, English), matched case-insensitively as words.
SERVICE_SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "internet": (
        "internet", "wifi", "wi-fi", "wi fi", "wlan", "glasvezel", "fiber", "fibre", "kabel",
        "modem", "router", "breedband", "broadband", "dsl", "adsl", "vdsl", "online",
        "internetverbinding", "internettoegang", "mijn netwerk", "thuisnetwerk",
    ),
    "tv": (
        "tv", "t.v.", "televisie", "television", "telly", "digitale tv", "digitale televisie",
        "interactieve tv", "kabel-tv", "kabeltv", "kabel tv", "kabeltelevisie", "iptv",
        "decoder", "settopbox", "set-top box", "set top box", "tv-box", "tv box", "zenders",
        "kanalen", "channels", "tv kijken", "teletekst",
    ),
    "landline": (
        "vast bellen", "vaste lijn", "vaste telefoon", "vaste telefonie", "telefoon thuis",
        "thuistelefoon", "huistelefoon", "huistelefoon", "landline", "land line", "home phone",
        "fixed line", "fixed phone", "bellen via de vaste lijn", "voip",
    ),
    "mobile": (
        "mobiel", "mobiele", "mobiele telefoon", "mobiele data", "mobiel internet",
        "mobiel netwerk", "mobile", "mobile phone", "mobile data", "cellphone", "cell phone",
        "gsm", "smartphone", "3g", "4g", "5g", "lte", "bereik", "geen bereik", "no signal",
        "sms", "sms'en",
    ),
    "electricity": (
        "stroom", "elektriciteit", "electriciteit", "elektra", "electra", "electricity",
        "power", "power cut", "blackout", "black-out", "geen licht", "licht is uit",
        "lichten zijn uit", "stroomuitval", "stroompanne", "elektrische", "netstroom",
    ),
    "gas": (
        "gas", "aardgas", "gaslek", "gaslekkage", "gaslucht", "gasgeur", "gas leak", "gasmeter",
        "cv", "cv-ketel", "cv ketel", "verwarming", "heating", "boiler", "fornuis", "kookplaat",
    ),
}  # fmt: skip

# Compound and inflected endings: "stroomstoring", "internetstoring", "tv-storing", "gasstoringen".
_SUFFIXES: Final = (
    "storingen", "storing", "uitval", "problemen", "probleem", "verbinding", "aansluiting",
    "signaal", "ontvangst", "netwerk", "panne", "lekkage", "lek", "kastje", "box", "meter",
    "toegang", "abonnement", "s",
)  # fmt: skip


def _build_service_regex() -> tuple[re.Pattern[str], dict[str, str]]:
    lookup: dict[str, str] = {}
    for service, synonyms in SERVICE_SYNONYMS.items():
        for synonym in synonyms:
            lookup[synonym] = service
    # Longest first, so "kabel tv" beats "kabel" and "mobiel internet" beats "mobiel".
    ordered = sorted(lookup, key=len, reverse=True)
    words = "|".join(re.escape(s) for s in ordered)
    suffixes = "|".join(re.escape(s) for s in _SUFFIXES)
    pattern = re.compile(rf"(?<![\w])(?P<word>{words})(?:-?(?:{suffixes}))?(?![\w])", re.IGNORECASE)
    return pattern, lookup


_SERVICE_RE, _SERVICE_LOOKUP = _build_service_regex()


def normalise_service(text: str) -> str | None:
    """Map a service as customers name it to a canonical service, or None.

    Canonical services are ``internet``, ``tv``, ``landline``, ``mobile``, ``electricity`` and
    ``gas``. A canonical name maps to itself. When several services are mentioned the first one
    wins ("internet en tv" -> internet).
    """
    match = _SERVICE_RE.search(text)
    if match is None:
        return None
    return _SERVICE_LOOKUP[match.group("word").lower()]
