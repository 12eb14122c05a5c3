from __future__ import annotations

import dataclasses

import pytest

from connector.clicks import (
    ATTRIBUTE_KEYS,
    CAPTURED_COOKIES,
    CAPTURED_URL_PARAMETERS,
    MAX_CLICK_ID_LENGTH,
    clean_click_id,
    clean_meta_cookie,
    click_ids_from_attributes,
    click_ids_from_url,
    fbc_from_fbclid,
    resolve_click_ids,
    ttclid_from_url,
    url_parameter,
)
from connector.events import ClickIds

TTCLID = "E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW"


@pytest.mark.parametrize(
    "url",
    [
        f"https://shop.example.com/products/x?ttclid={TTCLID}&utm_source=tiktok",
        f"/products/x?ttclid={TTCLID}&utm_source=tiktok",
        f"/?utm_source=tiktok&ttclid={TTCLID}",
        f"/?ttclid={TTCLID}#reviews",
        f"/?ttclid=%20{TTCLID}%20",
        f"/?ttclid=&ttclid={TTCLID}",
    ],
)
def test_ttclid_from_url_finds_the_query_parameter(url: str) -> None:
    assert ttclid_from_url(url) == TTCLID


def test_ttclid_from_url_decodes_percent_escapes() -> None:
    assert ttclid_from_url("/?ttclid=E.C.P.a%2Bb%3Dc") == "E.C.P.a+b=c"


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "/",
        "/products/x?utm_source=tiktok",
        "/products/x#ttclid=abc",
        "ttclid=abc",
        "/?TTCLID=abc",
        "/?ttclid=",
        "http://[::1/?ttclid=abc",
        "%%%?&&==",
        f"/?ttclid={'a' * (MAX_CLICK_ID_LENGTH + 1)}",
        "/?ttclid=abc%0Adef",
        12345,
    ],
)
def test_ttclid_from_url_tolerates_garbage(url: object) -> None:
    assert ttclid_from_url(url) is None  # type: ignore[arg-type]


def test_clean_click_id_trims_and_keeps_the_value_otherwise() -> None:
    assert clean_click_id("  E.C.P.Ab-_=+/ x  ") == "E.C.P.Ab-_=+/ x"


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", 42, ["abc"], "a" * (MAX_CLICK_ID_LENGTH + 1), "ab\x00c", "ab\x1bc", "a\x85b"],
)
def test_clean_click_id_rejects_absurd_values(value: object) -> None:
    assert clean_click_id(value) is None


def test_clean_click_id_accepts_the_maximum_length() -> None:
    value = "a" * MAX_CLICK_ID_LENGTH
    assert clean_click_id(value) == value


@pytest.mark.parametrize("key", ["ttclid", "_ttclid", "tiktok_ttclid"])
def test_click_ids_from_attributes_reads_every_ttclid_key(key: str) -> None:
    clicks = click_ids_from_attributes({key: TTCLID}, "note_attributes")
    assert clicks == ClickIds(ttclid=TTCLID, ttp=None, source="note_attributes")


@pytest.mark.parametrize("key", ["_ttp", "ttp"])
def test_click_ids_from_attributes_reads_every_ttp_key(key: str) -> None:
    clicks = click_ids_from_attributes({key: " 2gKx7TqW4mZr9LbVn3PcY8sHdJf "}, "order_meta")
    assert clicks == ClickIds(ttclid=None, ttp="2gKx7TqW4mZr9LbVn3PcY8sHdJf", source=None)


def test_click_ids_from_attributes_prefers_keys_in_order_and_skips_unusable_values() -> None:
    attrs = {"tiktok_ttclid": "third", "_ttclid": "second", "ttclid": "  ", "ttp": "b", "_ttp": "a"}
    expected = ClickIds(ttclid="second", ttp="a", source="order_meta")
    assert click_ids_from_attributes(attrs, "order_meta") == expected


def test_click_ids_from_attributes_ignores_other_keys_and_non_strings() -> None:
    attrs = {"TTCLID": "x", "gift_note": "hi", "_ttclid": ["x"], "_ttp": {"v": 1}}
    assert click_ids_from_attributes(attrs, "note_attributes") == ClickIds()


def test_resolve_click_ids_first_ttclid_wins_with_its_source() -> None:
    first = ClickIds(ttclid=None, ttp="ttp-1", source=None)
    second = ClickIds(ttclid="ttclid-2", ttp="ttp-2", source="landing_site")
    third = ClickIds(ttclid="ttclid-3", ttp=None, source="note_attributes")
    expected = ClickIds(ttclid="ttclid-2", ttp="ttp-1", source="landing_site")
    assert resolve_click_ids(first, second, third) == expected


def test_resolve_click_ids_takes_ttp_from_a_later_candidate() -> None:
    first = ClickIds(ttclid="ttclid-1", ttp=None, source="note_attributes")
    second = ClickIds(ttclid=None, ttp="ttp-2", source=None)
    expected = ClickIds(ttclid="ttclid-1", ttp="ttp-2", source="note_attributes")
    assert resolve_click_ids(first, second) == expected


def test_resolve_click_ids_of_nothing_is_empty() -> None:
    assert resolve_click_ids() == ClickIds()
    assert resolve_click_ids(ClickIds(), ClickIds()) == ClickIds()


# -- every platform's click ids and cookies ----------------------------------------------------

FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"  # Meta's example
FBC = f"fb.1.1554763741205.{FBCLID}"
FBP = "fb.1.1596403881668.1116446470"  # Meta's example _fbp
GCLID = "Cj0KCQiA5NSdBhDfARIsALzs2EDwnWc6Mf7LwVq4"
GBRAID = "0AAAAAoK1kZx9gbraidExample"
WBRAID = "CjkKCQiA5NSdBhDfwbraidExample"
EVERY_ID = ClickIds(
    ttclid=TTCLID,
    ttp="2gKx7TqW4mZr9LbVn3PcY8sHdJf",
    fbclid=FBCLID,
    fbc=FBC,
    fbp=FBP,
    gclid=GCLID,
    gbraid=GBRAID,
    wbraid=WBRAID,
)


def test_the_captured_names_cover_every_click_id_field_once() -> None:
    reported = [*CAPTURED_URL_PARAMETERS, *CAPTURED_COOKIES.values()]
    fields = [name for name in ClickIds.__dataclass_fields__ if name != "source"]
    assert sorted(reported) == sorted(fields) == sorted(ATTRIBUTE_KEYS)


def test_click_ids_from_url_reads_every_ad_platforms_parameter() -> None:
    url = (
        f"/products/x?utm_source=ads&ttclid={TTCLID}&fbclid={FBCLID}&gclid={GCLID}"
        f"&gbraid={GBRAID}&wbraid={WBRAID}"
    )
    assert click_ids_from_url(url, "landing_site") == ClickIds(
        ttclid=TTCLID,
        fbclid=FBCLID,
        gclid=GCLID,
        gbraid=GBRAID,
        wbraid=WBRAID,
        source="landing_site",
    )


@pytest.mark.parametrize("name", CAPTURED_URL_PARAMETERS)
def test_any_one_url_parameter_is_a_click_with_its_source(name: str) -> None:
    clicks = click_ids_from_url(f"https://shop.example.com/?{name}=%20Abc-123_x%20", "landing_site")
    assert getattr(clicks, name) == "Abc-123_x"
    assert clicks.source == "landing_site"


@pytest.mark.parametrize(
    "url",
    [None, "/", "/?utm_source=google", "/?GCLID=abc", "/?_fbc=fb.1.1.x", "http://[::1/?gclid=a"],
)
def test_click_ids_from_url_without_a_click_is_empty_and_names_no_source(url: object) -> None:
    assert click_ids_from_url(url, "landing_site") == ClickIds()  # type: ignore[arg-type]


def test_url_parameter_keeps_case_and_characters() -> None:
    assert url_parameter("/?fbclid=IwAR2F4-Db_x%2B", "fbclid") == "IwAR2F4-Db_x+"
    assert url_parameter("/?gclid=abc", "fbclid") is None


@pytest.mark.parametrize(
    ("field", "keys"),
    [
        ("fbclid", ["fbclid", "_fbclid"]),
        ("gclid", ["gclid", "_gclid"]),
        ("gbraid", ["gbraid", "_gbraid"]),
        ("wbraid", ["wbraid", "_wbraid"]),
        ("fbc", ["_fbc", "fbc"]),
        ("fbp", ["_fbp", "fbp"]),
    ],
)
def test_click_ids_from_attributes_reads_every_key_of_every_field(
    field: str, keys: list[str]
) -> None:
    for key in keys:
        clicks = click_ids_from_attributes({key: f" {getattr(EVERY_ID, field)} "}, "order_meta")
        assert getattr(clicks, field) == getattr(EVERY_ID, field), key


def test_click_ids_from_attributes_reads_everything_at_once() -> None:
    attrs = {
        "_ttclid": TTCLID,
        "_ttp": EVERY_ID.ttp,
        "_fbclid": FBCLID,
        "_fbc": FBC,
        "_fbp": FBP,
        "_gclid": GCLID,
        "_gbraid": GBRAID,
        "_wbraid": WBRAID,
    }
    expected = dataclasses.replace(EVERY_ID, source="order_meta")
    assert click_ids_from_attributes(attrs, "order_meta") == expected


def test_cookies_alone_name_no_source_but_a_meta_click_does() -> None:
    cookies = click_ids_from_attributes({"_fbp": FBP, "_ttp": "t"}, "order_meta")
    assert cookies == ClickIds(ttp="t", fbp=FBP, source=None)
    click = click_ids_from_attributes({"_fbc": FBC}, "note_attributes")
    assert click == ClickIds(fbc=FBC, source="note_attributes")


@pytest.mark.parametrize(
    "value", ["abc", "fb.1.x.abc", "fb.12.1.abc", "fb.1.1", "fb.1.1.", "xfb.1.1.a"]
)
def test_meta_cookies_not_in_metas_format_are_ignored(value: str) -> None:
    assert clean_meta_cookie(value) is None
    assert click_ids_from_attributes({"_fbc": value, "_fbp": value}, "order_meta") == ClickIds()


@pytest.mark.parametrize(
    "value", [FBC, FBP, "fb.2.1657051589577.IwZXh0bgNhZW0CMTAAAR-uK_5w", f"{FBP}.AQEAAQMB"]
)
def test_meta_cookies_in_metas_format_are_kept_as_sent(value: str) -> None:
    assert clean_meta_cookie(f"  {value} ") == value


def test_fbc_from_fbclid_is_metas_documented_format() -> None:
    assert fbc_from_fbclid(FBCLID, 1554763741205) == FBC
    assert clean_meta_cookie(fbc_from_fbclid(FBCLID, 1554763741205)) == FBC


def test_resolve_click_ids_takes_each_field_from_the_first_candidate_with_it() -> None:
    attributes = ClickIds(ttp="ttp-attr", fbp=FBP, source=None)
    stored = ClickIds(fbc=FBC, gclid="gclid-stored", source="stored_checkout_token")
    landing = ClickIds(ttclid="ttclid-landing", gclid="gclid-landing", source="landing_site")
    assert resolve_click_ids(attributes, stored, landing) == ClickIds(
        ttclid="ttclid-landing",
        ttp="ttp-attr",
        fbc=FBC,
        fbp=FBP,
        gclid="gclid-stored",
        source="stored_checkout_token",
    )


def test_resolve_click_ids_source_is_the_first_candidate_with_any_click() -> None:
    first = ClickIds(wbraid="w", source="note_attributes")
    second = ClickIds(ttclid="t", source="landing_site")
    assert resolve_click_ids(first, second).source == "note_attributes"
