from __future__ import annotations

import pytest

from connector.clicks import (
    MAX_CLICK_ID_LENGTH,
    clean_click_id,
    click_ids_from_attributes,
    resolve_click_ids,
    ttclid_from_url,
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
    assert click_ids_from_attributes(attrs, "order_meta") == ClickIds("second", "a", "order_meta")


def test_click_ids_from_attributes_ignores_other_keys_and_non_strings() -> None:
    attrs = {"TTCLID": "x", "gift_note": "hi", "_ttclid": ["x"], "_ttp": {"v": 1}}
    assert click_ids_from_attributes(attrs, "note_attributes") == ClickIds()


def test_resolve_click_ids_first_ttclid_wins_with_its_source() -> None:
    first = ClickIds(ttclid=None, ttp="ttp-1", source=None)
    second = ClickIds(ttclid="ttclid-2", ttp="ttp-2", source="landing_site")
    third = ClickIds(ttclid="ttclid-3", ttp=None, source="note_attributes")
    assert resolve_click_ids(first, second, third) == ClickIds("ttclid-2", "ttp-1", "landing_site")


def test_resolve_click_ids_takes_ttp_from_a_later_candidate() -> None:
    first = ClickIds(ttclid="ttclid-1", ttp=None, source="note_attributes")
    second = ClickIds(ttclid=None, ttp="ttp-2", source=None)
    assert resolve_click_ids(first, second) == ClickIds("ttclid-1", "ttp-2", "note_attributes")


def test_resolve_click_ids_of_nothing_is_empty() -> None:
    assert resolve_click_ids() == ClickIds()
    assert resolve_click_ids(ClickIds(), ClickIds()) == ClickIds()
