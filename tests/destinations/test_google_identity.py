"""Google's normalisation and hashing (connector.destinations.google.identity).

The expected digests are the vectors of Google's own formatting library for the Data Manager
API (googleads/data-manager-python ``tests/formatter_test.py``): if our rules drifted from
Google's, these would no longer match.
"""

from __future__ import annotations

import pytest

from connector.destinations.google import DESTINATION
from connector.destinations.google.identity import (
    format_ip,
    format_postal_code,
    format_region,
    normalise_email,
    normalise_name,
    normalise_phone,
    user_data,
)
from connector.events import ClickIds, Shopper
from connector.hashing import sha256_hex
from connector.signals import carries

ALEXZ_HASH = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a"
PHONE_HASH = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"
GIVENNAME_HASH = "128a07bfe2df877c52076e60d7774cf5baaa046c5a6c48daf30ff43ecca2f814"
FAMILYNAME_HASH = "77762c287e61ce065bee5c15464012c6fbe088398b8057627d5577249430d574"


@pytest.mark.parametrize(
    "raw",
    ["alexz@example.com", "  alexz@example.com", "  ALEXZ@example.com   ", "alexz@EXAMPLE.com"],
)
def test_email_variants_hash_to_googles_vector(raw: str) -> None:
    assert user_data(Shopper(email=raw), ClickIds())["email"] == ALEXZ_HASH


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jefferson.Loves.hiking@gmail.com", "jeffersonloveshiking@gmail.com"),
        ("Jefferson.LOVES.Hiking@googlemail.com", "jeffersonloveshiking@googlemail.com"),
        ("Cloudy.SanFrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
        ("Cloudy.SanFrancisco+shopping@googlemail.com", "cloudysanfrancisco@googlemail.com"),
        ("user.name+NYC@Example.com", "user.name+nyc@example.com"),  # not Gmail: kept
        ("jane .doe@example.com", "jane.doe@example.com"),  # intermediate whitespace removed
    ],
)
def test_email_rules(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "quinn", " @googlemail.com", "...@gmail.com", "a@b"])
def test_not_an_email_is_dropped(raw: str) -> None:
    assert normalise_email(raw) is None
    assert "email" not in user_data(Shopper(email=raw), ClickIds())


@pytest.mark.parametrize(
    ("raw", "region"),
    [("+18005550100", None), ("   +1-800-555-0100", None), ("1-800-555-0100   ", "US")],
)
def test_phone_hashes_to_googles_vector(raw: str, region: str | None) -> None:
    shopper = Shopper(phone=raw, country_code=region)
    assert user_data(shopper, ClickIds())["phone"] == PHONE_HASH


def test_national_phone_gets_the_country_code_of_the_address() -> None:
    assert normalise_phone("020 7031 3000", "GB") == "+442070313000"
    assert normalise_phone("020 7031 3000", None) is None  # no country: no guess


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Givenname", GIVENNAME_HASH),
        ("  GivenName  ", GIVENNAME_HASH),
        ("Familyname", FAMILYNAME_HASH),
        ("  FamilyName ", FAMILYNAME_HASH),
    ],
)
def test_names_hash_to_googles_vectors(raw: str, expected: str) -> None:
    assert sha256_hex(normalise_name(raw) or "") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mrs. Jane", "jane"),
        ("Dr John", "john"),
        ("Smith Jr.", "smith"),
        ("Smith-Jones", "smith-jones"),
        ("O'Brien", "o'brien"),
        ("Mary  Ann", "mary ann"),
        ("Zoe\u0308", "zoë"),
        ("   ", None),
    ],
)
def test_name_rules(raw: str, expected: str | None) -> None:
    assert normalise_name(raw) == expected


def test_region_and_postal_code_are_plain() -> None:
    assert format_region(" us") == "US"
    assert format_region(" uS ") == "US"
    assert format_region("United States") is None
    assert format_postal_code(" 1229-076  ") == "1229-076"


def test_ip_must_be_an_address() -> None:
    assert format_ip(" 203.0.113.7 ") == "203.0.113.7"
    assert format_ip("2001:DB8::1") == "2001:db8::1"
    assert format_ip("unknown") is None


def full_shopper(**changes: str | None) -> Shopper:
    fields: dict[str, str | None] = {
        "email": "Shopper@Example.com",
        "phone": "(650) 555-1212",
        "first_name": "Jane",
        "last_name": "Doe",
        "zip_code": "94043",
        "country_code": "us",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
    }
    fields.update(changes)
    return Shopper(**fields)


def test_user_data_keys_hashed_and_plain() -> None:
    clicks = ClickIds(gclid=" Cj0KCQ ", wbraid="WB", ttclid="not-google")
    data = user_data(full_shopper(), clicks)
    assert data == {
        "email": sha256_hex("shopper@example.com"),
        "phone": sha256_hex("+16505551212"),
        "given_name": sha256_hex("jane"),
        "family_name": sha256_hex("doe"),
        "region_code": "US",
        "postal_code": "94043",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "gclid": "Cj0KCQ",
        "wbraid": "WB",
    }


def test_a_partial_address_is_left_out_whole() -> None:
    data = user_data(full_shopper(zip_code=None), ClickIds())
    assert not {"given_name", "family_name", "region_code", "postal_code"} & set(data)
    assert "email" in data


def test_already_hashed_values_pass_through_lowercased() -> None:
    digest = sha256_hex("someone@example.com")
    data = user_data(Shopper(email=digest.upper()), ClickIds())
    assert data["email"] == digest


def test_destination_user_data_and_signal_keys() -> None:
    data = DESTINATION.user_data(full_shopper(), ClickIds(gclid="G"), 1_700_000_000)
    for signal in DESTINATION.signal_keys:
        assert carries(data, DESTINATION.signal_keys, signal), signal
    ios_click = DESTINATION.user_data(full_shopper(), ClickIds(gbraid="GB"), 1_700_000_000)
    assert carries(ios_click, DESTINATION.signal_keys, "click_id")  # a gbraid is a click too
