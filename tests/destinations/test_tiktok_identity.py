"""TikTok's normalisation and hashing of shopper identifiers
(connector.destinations.tiktok.identity), and the shared helpers of connector.hashing."""

from __future__ import annotations

import hashlib

import pytest

from connector.destinations.tiktok.identity import (
    format_city,
    format_country,
    format_locale,
    format_state,
    normalise_external_id,
    normalise_name,
    normalise_phone,
    normalise_zip,
    user_data,
)
from connector.events import ClickIds, Shopper
from connector.hashing import is_sha256_hex, normalise_email, sha256_hex

# Meta's documented test vector (customer-information-parameters), checked with sha256sum.
JOHN_SMITH_EMAIL_SHA256 = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
# printf 'zoë' | sha256sum (UTF-8 bytes).
ZOE_SHA256 = "2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450"
# printf '+16505551212' | sha256sum.
US_PHONE_SHA256 = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- hashing ------------------------------------------------------------------------------


def test_sha256_hex_matches_meta_test_vector() -> None:
    assert sha256_hex("john_smith@gmail.com") == JOHN_SMITH_EMAIL_SHA256


def test_sha256_hex_hashes_utf8_bytes() -> None:
    assert sha256_hex("zoë") == ZOE_SHA256


@pytest.mark.parametrize(
    "value",
    [JOHN_SMITH_EMAIL_SHA256, JOHN_SMITH_EMAIL_SHA256.upper(), "0" * 64, "aBcDeF" + "9" * 58],
)
def test_is_sha256_hex_accepts_64_hex_in_any_case(value: str) -> None:
    assert is_sha256_hex(value)


@pytest.mark.parametrize(
    "value",
    [
        JOHN_SMITH_EMAIL_SHA256[:63],
        JOHN_SMITH_EMAIL_SHA256 + "0",
        "g" + JOHN_SMITH_EMAIL_SHA256[1:],
        JOHN_SMITH_EMAIL_SHA256 + "\n",
        " " + JOHN_SMITH_EMAIL_SHA256,
        "john_smith@gmail.com",
        "",
    ],
)
def test_is_sha256_hex_rejects_everything_else(value: str) -> None:
    assert not is_sha256_hex(value)


# --- email --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["john_smith@gmail.com", "  John_Smith@Gmail.COM\t", "\nJOHN_SMITH@GMAIL.COM "],
)
def test_normalise_email_trims_and_lowercases(raw: str) -> None:
    assert normalise_email(raw) == "john_smith@gmail.com"


def test_normalise_email_keeps_plus_tags_and_dots() -> None:
    # TikTok documents no Gmail dot or +tag removal, so the local part is left alone.
    assert normalise_email("J.Smith+shop@Example.co.uk") == "j.smith+shop@example.co.uk"


@pytest.mark.parametrize(
    "raw", [None, "", "   ", "john", "john@", "@gmail.com", "john@gmail", "john@.com", "john@com."]
)
def test_normalise_email_rejects_what_is_obviously_not_an_email(raw: str | None) -> None:
    assert normalise_email(raw) is None


# --- phone --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 (0)20 7031 3000", None, "+442070313000"),  # the trunk (0) must go
        ("+44 20 7031 3000", "US", "+442070313000"),  # a + number ignores the region
        ("020 7031 3000", "GB", "+442070313000"),
        ("020 7031 3000", "gb", "+442070313000"),
        ("07911 123456", "GB", "+447911123456"),
        ("(650) 555-1212", "US", "+16505551212"),
        ("650.555.1212", "US", "+16505551212"),
        ("+1 650 555 1212", None, "+16505551212"),
        ("(416) 555-0199", "CA", "+14165550199"),
        ("0044 20 7031 3000", None, "+442070313000"),  # 00 international prefix
        ("0033 1 23 45 67 89", "DE", "+33123456789"),
        ("011 44 20 7031 3000", "US", "+442070313000"),  # US international prefix
        ("  +33 1 23 45 67 89  ", None, "+33123456789"),
    ],
)
def test_normalise_phone_gives_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("020 7031 3000", None),  # national format, no country: never guess
        ("6505551212", None),
        ("(650) 555-1212", "GBR"),  # not an alpha-2 region
        ("555-1212", "US"),  # too short for the US
        ("+1 123 456 7890", None),  # area codes never start with 1
        ("+1 650 555 1212 1212", None),  # too long
        ("+44 20 7031", None),
        ("not a phone", "US"),
        ("", "US"),
        ("   ", "GB"),
        (None, "US"),
    ],
)
def test_normalise_phone_returns_none_for_invalid_numbers(
    raw: str | None, region: str | None
) -> None:
    assert normalise_phone(raw, region) is None


# --- external id --------------------------------------------------------------------------


def test_normalise_external_id_trims_but_keeps_case() -> None:
    assert normalise_external_id("  Cust-AbC42 \n") == "Cust-AbC42"


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_normalise_external_id_empty_is_none(raw: str | None) -> None:
    assert normalise_external_id(raw) is None


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John", "john"),
        ("  SMITH ", "smith"),
        ("Zoë", "zoë"),
        ("Zoe\u0308", "zoë"),  # decomposed e + combining diaeresis: same as composed
        ("Müller", "müller"),
        ("José María", "josémaría"),
        ("Mary-Jane", "maryjane"),
        ("O'Brien", "obrien"),
        ("Ｊｏｈｎ", "john"),  # full-width letters
        ("李", "李"),
        ("Иван", "иван"),
    ],
)
def test_normalise_name(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", ".", "-'"])
def test_normalise_name_empty_is_none(raw: str | None) -> None:
    assert normalise_name(raw) is None


# --- zip ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94035", "US", "94035"),
        ("94035-1234", "US", "94035"),
        ("94035 1234", "us", "94035"),
        ("940351234", "US", "94035"),
        ("00901-1234", "PR", "00901"),  # Puerto Rico uses USPS ZIP codes
        ("SW1A 1AA", "GB", "sw1a1aa"),
        ("sw1a1aa", "GB", "sw1a1aa"),
        ("K1A 0B1", "CA", "k1a0b1"),
        ("01310-100", "BR", "01310100"),
        ("100-0001", "JP", "1000001"),
        ("12345-6789", None, "123456789"),  # without a country, no US rule
        ("75008", "FR", "75008"),
    ],
)
def test_normalise_zip(raw: str, country: str | None, expected: str) -> None:
    assert normalise_zip(raw, country) == expected


@pytest.mark.parametrize("raw", [None, "", " - "])
def test_normalise_zip_empty_is_none(raw: str | None) -> None:
    assert normalise_zip(raw, "US") is None


# --- city, state, country -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("New York", "newyork"),
        ("St. Louis", "stlouis"),
        ("São Paulo", "saopaulo"),
        ("München", "munchen"),
        ("İstanbul", "istanbul"),
        ("Łódź", "łodz"),  # Ł is its own letter, not an L with an accent
        ("東京", "東京"),
        ("Москва", "москва"),
        ("ひらがな", "ひらがな"),  # the dakuten on が is part of the letter, not an accent
    ],
)
def test_format_city(raw: str, expected: str) -> None:
    assert format_city(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "  ", "--"])
def test_format_city_empty_is_none(raw: str | None) -> None:
    assert format_city(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"), [("CA", "ca"), (" ny ", "ny"), ("Québec", "quebec"), ("", None)]
)
def test_format_state(raw: str, expected: str | None) -> None:
    assert format_state(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US", "us"),
        (" gb ", "gb"),
        ("United States", None),
        ("USA", None),
        ("", None),
        (None, None),
    ],
)
def test_format_country(raw: str | None, expected: str | None) -> None:
    assert format_country(raw) == expected


# --- locale -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("en-US", "en-US"),
        ("en_US", "en-US"),
        ("en-us", "en-US"),
        (" EN_us ", "en-US"),
        ("en", "en"),
        ("pt-br", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("sr_Latn_RS", "sr-Latn-RS"),
    ],
)
def test_format_locale(raw: str, expected: str) -> None:
    assert format_locale(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "C", "english", "en-", "en_US.UTF-8", "e1"])
def test_format_locale_rejects_malformed(raw: str | None) -> None:
    assert format_locale(raw) is None


# --- user_data ----------------------------------------------------------------------------


def test_user_data_hashes_personal_fields_and_formats_the_rest() -> None:
    shopper = Shopper(
        email="  John_Smith@Gmail.com ",
        phone="(650) 555-1212",
        customer_id=" 7012345 ",
        first_name="Zoë",
        last_name="Müller-Lüdenscheidt",
        zip_code="94035-1234",
        city="São Paulo",
        state="CA",
        country_code="US",
        ip=" 203.0.113.4 ",
        user_agent=" Mozilla/5.0 (iPhone) ",
        locale="en_us",
    )

    user = user_data(shopper, ClickIds(ttclid=" E.C.P.abc123 ", ttp=" 2ZxQ-ttp ", gclid="g"))

    assert user == {
        "email": JOHN_SMITH_EMAIL_SHA256,
        "phone": US_PHONE_SHA256,  # national format, region from the address country
        "external_id": _sha("7012345"),
        "first_name": ZOE_SHA256,
        "last_name": _sha("müllerlüdenscheidt"),
        "zip_code": _sha("94035"),
        "city": "saopaulo",
        "state": "ca",
        "country": "us",
        "ttclid": "E.C.P.abc123",  # TikTok's own click ids only: no gclid
        "ttp": "2ZxQ-ttp",
        "ip": "203.0.113.4",
        "user_agent": "Mozilla/5.0 (iPhone)",
        "locale": "en-US",
    }


def test_user_data_passes_already_hashed_values_through_lowercased() -> None:
    hashed = JOHN_SMITH_EMAIL_SHA256.upper()
    shopper = Shopper(
        email=f" {hashed} ",
        phone=hashed,
        customer_id=hashed,
        first_name=hashed,
        last_name=hashed,
        zip_code=hashed,
    )

    user = user_data(shopper, ClickIds())

    for field in ("email", "phone", "external_id", "first_name", "last_name", "zip_code"):
        assert user[field] == JOHN_SMITH_EMAIL_SHA256, field


def test_user_data_leaves_out_fields_that_normalise_to_nothing() -> None:
    shopper = Shopper(
        email="not-an-email",
        phone="020 7031 3000",  # no address country to read a national number with
        customer_id="   ",
        first_name="-",
        last_name="",
        zip_code=" ",
        city="  ",
        state="",
        country_code="Narnia",
        ip="",
        user_agent="   ",
        locale="nonsense!",
    )

    assert user_data(shopper, ClickIds(ttclid="  ", ttp="")) == {}


def test_user_data_uses_the_address_country_for_national_phone_numbers() -> None:
    user = user_data(Shopper(phone="020 7031 3000", country_code="gb"), ClickIds())

    assert user["phone"] == _sha("+442070313000")
