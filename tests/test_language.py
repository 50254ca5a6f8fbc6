"""Choosing the reply language from short, messy customer messages."""

from __future__ import annotations

import pytest

from bot.language import LanguageIdentifier, choose_language, clean_text
from bot.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_nlu_data(PROJECT_ROOT / "data" / "nlu")


@pytest.mark.parametrize(
    "text",
    [
        "storing?",
        "hoi",
        "wnr doet mn internet het weer",
        "is er een storing in 3511",
        "mijn wifi doet het niet",
        "geen stroom sinds vanochtend",
        "kan ik iemand spreken",
        "wanneer is het opgelost",
        "bedankt!",
        "t internet ligt eruit",
    ],
)
def test_dutch_messages_are_dutch(identifier: LanguageIdentifier, text: str) -> None:
    assert identifier.predict(text) == "nl"


@pytest.mark.parametrize(
    "text",
    [
        "is there an outage",
        "my wifi is down",
        "when will it be fixed",
        "hello",
        "can i talk to a person",
        "no power since this morning",
        "thanks!",
        "how much does an engineer visit cost",
    ],
)
def test_english_messages_are_english(identifier: LanguageIdentifier, text: str) -> None:
    assert identifier.predict(text) == "en"


@pytest.mark.parametrize("text", ["3511 AB", "2000", "1012ab", "", "?"])
def test_messages_without_language_signal_keep_the_conversation_language(
    identifier: LanguageIdentifier, text: str
) -> None:
    assert identifier.predict(text) is None
    assert choose_language(identifier, text, previous="en", default="nl") == "en"
    assert choose_language(identifier, text, previous=None, default="nl") == "nl"


def test_clean_text_drops_postcodes_and_annotation_markup() -> None:
    assert clean_text('storing in [3511 AB](postcode) voor [wifi]{"entity": "service"}!') == (
        "storing in voor wifi"
    )


def test_an_unfitted_identifier_refuses_to_guess() -> None:
    with pytest.raises(RuntimeError):
        LanguageIdentifier().predict("hoi")


def test_fit_needs_both_languages() -> None:
    with pytest.raises(ValueError, match="both"):
        LanguageIdentifier().fit(["hoi", "doei"], ["nl", "nl"])
