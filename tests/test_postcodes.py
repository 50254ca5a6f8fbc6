"""Postcode and service parsing on real customer phrasings."""

from __future__ import annotations

import dataclasses

import pytest

from bot.outages.postcodes import Postcode, normalise_service, parse_postcode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3511 AB", "3511 AB"),
        ("3511ab", "3511 AB"),
        ("3511 ab", "3511 AB"),
        ("3511Ab", "3511 AB"),
        ("3511", "3511"),
        ("1012 LG", "1012 LG"),
        ("9999 ZZ", "9999 ZZ"),
        ("1000", "1000"),
        ("Mijn postcode is 3511 AB en ik heb geen internet", "3511 AB"),
        ("postcode: 2000", "2000"),
        ("Ik woon in 9000 Gent", "9000"),
        ("storing in 3511 is al uren bezig", "3511"),
        ("2000 en 2018 hebben geen stroom", "2000"),
        ("3511 AB, huisnummer 12", "3511 AB"),
        ("(3512JC)", "3512 JC"),
        ("wonen op 1071 XX 5 hoog", "1071 XX"),
        ("I live at 5611 AZ Eindhoven", "5611 AZ"),
        ("postcode 1012AB!", "1012 AB"),
        ("my postcode is 3511 it is down", "3511"),
        ("3511 abc", "3511"),
    ],
)
def test_valid_postcodes(text: str, expected: str) -> None:
    postcode = parse_postcode(text)
    assert postcode is not None
    assert str(postcode) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "geen postcode hier",
        "0123",
        "0123 AB",
        "12345",
        "123",
        "3511 SA",
        "3511sa",
        "3511 SD",
        "3511 ss",
        "bel 06-12345678",
        "1.500 klanten",
        "om 14:30",
        "€ 12,50",
    ],
)
def test_invalid_postcodes(text: str) -> None:
    assert parse_postcode(text) is None


def test_country_hint() -> None:
    dutch = parse_postcode("3511 AB")
    bare = parse_postcode("2000")
    assert dutch == Postcode("3511", "AB", "NL")
    assert dutch is not None and dutch.country == "NL" and dutch.prefix == "3511"
    assert bare == Postcode("2000")
    assert bare is not None and bare.country is None and bare.letters is None


def test_postcode_is_frozen_and_validated() -> None:
    postcode = Postcode("3511", "AB")
    assert postcode.country == "NL"  # letters imply the Netherlands
    with pytest.raises(dataclasses.FrozenInstanceError):
        postcode.digits = "1000"  # type: ignore[misc]
    for digits, letters in [("0123", None), ("12345", None), ("3511", "SA"), ("3511", "ab")]:
        with pytest.raises(ValueError):
            Postcode(digits, letters)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("internet", "internet"),
        ("Mijn wifi doet het niet", "internet"),
        ("glasvezel ligt eruit", "internet"),
        ("kabel", "internet"),
        ("modem knippert rood", "internet"),
        ("internetstoring", "internet"),
        ("ik heb geen internetverbinding", "internet"),
        ("My broadband is down", "internet"),
        ("tv", "tv"),
        ("TV", "tv"),
        ("televisie", "tv"),
        ("digitale tv werkt niet", "tv"),
        ("kabel-tv", "tv"),
        ("tv-storing", "tv"),
        ("decoder geeft geen beeld", "tv"),
        ("vast bellen", "landline"),
        ("vaste lijn", "landline"),
        ("telefoon thuis doet het niet", "landline"),
        ("huistelefoon", "landline"),
        ("landline", "landline"),
        ("mobiel", "mobile"),
        ("geen bereik op mijn gsm", "mobile"),
        ("4G", "mobile"),
        ("5g valt steeds weg", "mobile"),
        ("mobiel internet", "mobile"),
        ("mobile data", "mobile"),
        ("stroom", "electricity"),
        ("stroomstoring", "electricity"),
        ("elektriciteit", "electricity"),
        ("Power cut in my street", "electricity"),
        ("geen licht in huis", "electricity"),
        ("gas", "gas"),
        ("gasstoring", "gas"),
        ("ik ruik een gaslek", "gas"),
        ("de cv-ketel doet niks", "gas"),
        ("internet en tv liggen eruit", "internet"),
    ],
)
def test_service_synonyms(text: str, expected: str) -> None:
    assert normalise_service(text) == expected


@pytest.mark.parametrize("text", ["", "hallo", "powerbank", "gasten", "ik wil opzeggen", "water"])
def test_unknown_services(text: str) -> None:
    assert normalise_service(text) is None
