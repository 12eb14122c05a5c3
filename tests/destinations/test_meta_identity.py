"""Meta's normalisation and hashing of shopper identifiers
(connector.destinations.meta.identity), checked against Meta's documented test vectors and
rules; every expected hash is computed here from the normalised string, never copied blind."""

from __future__ import annotations

import hashlib

import pytest

from connector.destinations.meta.identity import (
    click_id,
    normalise_city,
    normalise_external_id,
    normalise_name,
    normalise_phone,
    normalise_state,
    normalise_zip,
    user_data,
)
from connector.events import ClickIds, Shopper

# Meta's documented vectors (Customer Information Parameters): the SHA-256 of the normalised
# email and phone. Both are also recomputed below, so a typo here cannot pass unnoticed.
JOHN_SMITH_EMAIL_SHA256 = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
US_PHONE_SHA256 = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_documented_vectors_are_sha256_of_the_normalised_values() -> None:
    assert _sha("john_smith@gmail.com") == JOHN_SMITH_EMAIL_SHA256
    assert _sha("16505551212") == US_PHONE_SHA256


def test_email_is_trimmed_lowercased_and_hashed_to_metas_vector() -> None:
    data = user_data(Shopper(email="  John_Smith@Gmail.com "), ClickIds(), 0)
    assert data == {"em": JOHN_SMITH_EMAIL_SHA256}


def test_us_phone_becomes_digits_with_country_code_and_metas_vector() -> None:
    assert normalise_phone("(650) 555-1212", "us") == "16505551212"
    data = user_data(Shopper(phone="(650) 555-1212", country_code="US"), ClickIds(), 0)
    assert data["ph"] == US_PHONE_SHA256


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 (0)20 7031 3000", None, "442070313000"),  # the trunk (0) is dropped
        ("020 7031 3000", "gb", "442070313000"),
        ("+1 650 555 1212", "gb", "16505551212"),  # an international number keeps its own
        ("0044 20 7031 3000", None, "442070313000"),
    ],
)
def test_phone_has_no_plus_and_no_trunk_zero(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


def test_phone_without_a_country_is_dropped_not_guessed() -> None:
    assert normalise_phone("020 7031 3000", None) is None
    assert "ph" not in user_data(Shopper(phone="020 7031 3000"), ClickIds(), 0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Mary-Jane", "maryjane"), ("O'Brien", "obrien"), ("  JOHN ", "john"), ("Zoë", "zoë")],
)
def test_names_are_lowercase_without_punctuation(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("St. Louis", "stlouis"), ("New York", "newyork"), ("São Paulo", "saopaulo")],
)
def test_city_is_lowercase_without_spaces_or_punctuation(raw: str, expected: str) -> None:
    assert normalise_city(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("CA", "us", "ca"),
        ("California", "us", "ca"),
        ("New York", "us", "ny"),
        ("Atlantis", "us", None),  # a US value that is no state is dropped
        ("Île-de-France", "fr", "iledefrance"),
        ("ON", "ca", "on"),
    ],
)
def test_state_is_a_two_letter_code_in_the_us(raw: str, country: str, expected: str | None) -> None:
    assert normalise_state(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94035-1234", "us", "94035"),
        ("940351234", "us", "94035"),
        ("94035", "us", "94035"),
        ("SW1A 1AA", "gb", "sw1a1aa"),
        ("M1 1AE", "gb", "m11ae"),  # Meta's UK example
        ("K1A 0B1", "ca", "k1a0b1"),
        ("1234-567", "pt", "1234567"),
    ],
)
def test_zip_lowercase_no_spaces_or_dash_and_us_five_digits(
    raw: str, country: str, expected: str
) -> None:
    assert normalise_zip(raw, country) == expected


def test_external_id_is_trimmed_with_case_kept() -> None:
    assert normalise_external_id("  Cust-ABC ") == "Cust-ABC"
    data = user_data(Shopper(customer_id=" Cust-ABC "), ClickIds(), 0)
    assert data["external_id"] == _sha("Cust-ABC")


def test_every_personal_field_and_the_country_are_hashed() -> None:
    shopper = Shopper(
        first_name="John",
        last_name="Smith",
        city="St. Louis",
        state="MO",
        zip_code="63101-1234",
        country_code="US",
    )
    assert user_data(shopper, ClickIds(), 0) == {
        "fn": _sha("john"),
        "ln": _sha("smith"),
        "ct": _sha("stlouis"),
        "st": _sha("mo"),
        "zp": _sha("63101"),
        "country": _sha("us"),
    }


def test_ip_user_agent_fbc_and_fbp_are_sent_plain() -> None:
    clicks = ClickIds(fbc="fb.1.1554763741205.AbCdEf", fbp="fb.1.1558571054389.1098115397")
    shopper = Shopper(ip=" 203.0.113.7 ", user_agent="Mozilla/5.0 (X11)")
    assert user_data(shopper, clicks, 1_700_000_000) == {
        "client_ip_address": "203.0.113.7",
        "client_user_agent": "Mozilla/5.0 (X11)",
        "fbc": "fb.1.1554763741205.AbCdEf",
        "fbp": "fb.1.1558571054389.1098115397",
    }


def test_fbc_is_built_from_fbclid_with_the_event_time_in_milliseconds() -> None:
    clicks = ClickIds(fbclid="IwAR2xYz_AbC")
    assert click_id(clicks, 1_700_000_000) == "fb.1.1700000000000.IwAR2xYz_AbC"
    assert user_data(Shopper(), clicks, 1_700_000_000) == {"fbc": "fb.1.1700000000000.IwAR2xYz_AbC"}


def test_the_fbc_cookie_wins_over_a_landing_fbclid() -> None:
    clicks = ClickIds(fbclid="other", fbc="fb.1.1554763741205.cookie")
    assert click_id(clicks, 1_700_000_000) == "fb.1.1554763741205.cookie"


def test_already_hashed_values_pass_through_lowercased() -> None:
    upper = JOHN_SMITH_EMAIL_SHA256.upper()
    data = user_data(Shopper(email=upper, phone=US_PHONE_SHA256), ClickIds(), 0)
    assert data == {"em": JOHN_SMITH_EMAIL_SHA256, "ph": US_PHONE_SHA256}


def test_empty_and_invalid_fields_are_left_out() -> None:
    shopper = Shopper(email="not-an-email", phone=" ", first_name="", country_code="USA")
    assert user_data(shopper, ClickIds(fbc=" ", fbp=""), 0) == {}
