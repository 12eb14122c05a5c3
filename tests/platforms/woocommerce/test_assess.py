"""Which webhooks are ours and what is wrong with them: the pure part of the check."""

from __future__ import annotations

from typing import Any

import pytest

from platforms.woocommerce.connect import StoreAddress, assess_webhooks, webhook_name

STORE = "st_0123456789abcdef"
URL = f"https://connector.example/webhooks/woocommerce/{STORE}"


def hook(webhook_id: int, topic: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": webhook_id,
        "name": fields.pop("name", "Order webhook"),
        "topic": topic,
        "status": fields.pop("status", "active"),
        "delivery_url": fields.pop("delivery_url", URL),
        **fields,
    }


def summary(webhooks: list[dict[str, Any]]) -> list[tuple[str, int | None, tuple[str, ...]]]:
    states = assess_webhooks(webhooks, store_id=STORE, url=URL)
    return [(s.topic, s.webhook["id"] if s.webhook else None, s.problems) for s in states]


def test_healthy_webhooks_have_no_problems():
    assert summary([hook(1, "order.created"), hook(2, "order.updated")]) == [
        ("order.created", 1, ()),
        ("order.updated", 2, ()),
    ]


def test_ours_by_url_by_path_or_by_name_and_nothing_else():
    webhooks = [
        hook(
            1, "order.created", delivery_url=f"https://old.example/x/webhooks/woocommerce/{STORE}/"
        ),
        hook(
            2, "order.updated", delivery_url="https://erp.example/h", name=webhook_name("o", STORE)
        ),
        hook(3, "order.created", delivery_url="https://erp.example/h"),  # someone else's
        hook(4, "order.created", delivery_url=f"{URL}x"),  # another store's id, longer
    ]
    assert summary(webhooks) == [
        ("order.created", 1, ("points_elsewhere",)),
        ("order.updated", 2, ("points_elsewhere",)),
    ]


def test_the_healthiest_of_duplicates_is_chosen():
    webhooks = [
        hook(1, "order.created", status="disabled"),
        hook(2, "order.created", delivery_url=f"https://old.example/webhooks/woocommerce/{STORE}"),
        hook(3, "order.created", status="active"),
        hook(4, "order.updated", status="paused"),
    ]
    assert summary(webhooks) == [("order.created", 3, ()), ("order.updated", 4, ("paused",))]


def test_one_of_ours_on_an_unused_topic_stands_in_for_a_missing_one():
    webhooks = [hook(1, "order.deleted", status="disabled"), hook(2, "order.updated")]
    assert summary(webhooks) == [
        ("order.created", 1, ("wrong_topic", "disabled")),
        ("order.updated", 2, ()),
    ]
    assert summary([hook(1, "order.created")])[1] == ("order.updated", None, ("missing",))


@pytest.mark.parametrize(
    ("url", "base_url", "domain"),
    [
        ("https://Shop.Example/", "https://shop.example", "shop.example"),
        (" https://shop.example/store/ ", "https://shop.example/store", "shop.example/store"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("https://[::1]:8443/wp", "https://[::1]:8443/wp", "[::1]:8443/wp"),
    ],
)
def test_store_addresses(url, base_url, domain):
    address = StoreAddress.parse(url)
    assert (address.base_url, address.domain) == (base_url, domain)


@pytest.mark.parametrize(
    "url",
    ["shop.example", "ftp://shop.example", "https://", "https://u:p@x.example", "http://x:99999"],
)
def test_what_is_not_a_store_address(url):
    with pytest.raises(ValueError, match="must be the store's address"):
        StoreAddress.parse(url)
