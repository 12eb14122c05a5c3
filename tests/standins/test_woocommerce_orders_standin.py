"""The WooCommerce stand-in's order list is as strict as WooCommerce: a reconciliation test that
passes against it must not pass by sending what a real store would refuse or misread."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.standins.woocommerce import WooCommerceStandIn

KEY, SECRET = "ck_orders", "cs_orders"


@pytest.fixture(scope="module")
def woo_module() -> Iterator[WooCommerceStandIn]:
    stand_in = WooCommerceStandIn({KEY: (SECRET, "read_write")}).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def woo(woo_module: WooCommerceStandIn) -> WooCommerceStandIn:
    woo_module.reset()
    return woo_module


def orders(woo: WooCommerceStandIn, auth: tuple[str, str] = (KEY, SECRET), **params: Any):
    return requests.get(f"{woo.base_url}/wp-json/wc/v3/orders", params=params, auth=auth, timeout=5)


def put(woo: WooCommerceStandIn, order_id: int, minutes_ago: float) -> None:
    modified = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    woo.put_order({"id": order_id, "status": "processing"}, modified=modified)


def test_pages_come_with_totals_and_past_the_last_page_an_empty_list(woo):
    for order_id in range(1, 8):
        put(woo, order_id, 10)
    first = orders(woo, per_page=3, page=1, orderby="id", order="asc")
    assert [o["id"] for o in first.json()] == [1, 2, 3]
    assert (first.headers["X-WP-Total"], first.headers["X-WP-TotalPages"]) == ("7", "3")
    assert [o["id"] for o in orders(woo, per_page=3, page=3, orderby="id", order="asc").json()] == [
        7
    ]
    assert orders(woo, per_page=3, page=4).json() == []


def test_modified_after_is_strict_and_by_default_in_the_sites_time(woo):
    woo.site_offset = timedelta(hours=-5)  # a store in New York: local = UTC - 5 h
    put(woo, 1, 60)
    put(woo, 2, 1)
    cutoff = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    assert [o["id"] for o in orders(woo, modified_after=cutoff, dates_are_gmt="true").json()] == [2]
    assert orders(woo, modified_after=cutoff).json() == []  # compared with local times
    exactly = woo.orders()[1]["date_modified_gmt"]
    assert orders(woo, modified_after=exactly, dates_are_gmt=1).json() == []


@pytest.mark.parametrize(
    ("params", "name", "reason"),
    [
        (
            {"per_page": 101},
            "per_page",
            "per_page must be between 1 (inclusive) and 100 (inclusive).",
        ),
        ({"page": 0}, "page", "page must be >= 1."),
        ({"modified_after": "yesterday"}, "modified_after", "Invalid date."),
        ({"modified_after": "2026-12-01"}, "modified_after", "Invalid date."),
        ({"dates_are_gmt": "yes"}, "dates_are_gmt", "dates_are_gmt is not of type boolean."),
        ({"order": "up"}, "order", "order is not one of asc, and desc."),
        ({"modifed_after": "2026-12-01T00:00:00"}, "modifed_after", None),
    ],
)
def test_bad_parameters_are_refused_as_wordpress_refuses_them(woo, params, name, reason):
    answer = orders(woo, **params)
    assert answer.status_code == 400
    body = answer.json()
    assert (body["code"], body["message"]) == (
        "rest_invalid_param",
        f"Invalid parameter(s): {name}",
    )
    assert reason is None or body["data"]["params"][name] == reason


def test_a_revoked_key_cannot_list_orders(woo):
    put(woo, 1, 1)
    woo.revoke(KEY)
    answer = orders(woo)
    assert answer.status_code == 401
    assert answer.json()["code"] == "woocommerce_rest_cannot_view"
