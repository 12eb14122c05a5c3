from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.destinations.tiktok import DESTINATION as TIKTOK
from connector.events import Checkout, ClickIds, LineItem, Order, Shopper, UnreadablePayload
from connector.mapping import EventOptions, build_event, plan_event
from connector.models import OutboxEvent
from platforms.shopify.parse import parse_checkout, parse_order, read_webhook
from tests.platforms.mutations import LEAKABLE, mutations
from tests.support import fixture_bytes, shopify_headers

FIXTURES = Path(__file__).parent / "fixtures"

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
LANDING_TTCLID = "E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW"
CART_ATTRIBUTE_TTCLID = "E.C.P.CpQBcartAttr7Hj2Kl9Mn4Pq6Rs8Tu1Vw3"
TTP = "2gKx7TqW4mZr9LbVn3PcY8sHdJf"
CHECKOUT_TOKEN = "b1946ac92492d2347c6235b4d2611184"
CART_TOKEN = "eeafa272cebfd4b22385bc4b645e762c"
BEYOND_FLOAT_PRODUCT_ID = "9007199254740993"  # 2**53 + 1: a float would make it ...992
BEYOND_FLOAT_VARIANT_ID = "9007199254740995"


def load(name: str) -> dict[str, Any]:
    """The fixture as the webhook view will see it: Python's json on the exact bytes."""
    return json.loads((FIXTURES / name).read_bytes())


def jon_snowe_items(price: Decimal = Decimal("199.00")) -> tuple[LineItem, ...]:
    return (
        LineItem("632910392", "808950810", "IPOD2008PINK", "IPod Nano - 8GB", price, 1, "Apple"),
        LineItem(
            BEYOND_FLOAT_PRODUCT_ID,
            BEYOND_FLOAT_VARIANT_ID,
            "IPOD2008BLUE",
            "IPod Nano - 8GB",
            price,
            1,
            "Apple",
        ),
    )


EXPECTED_ORDERS_CREATE = Order(
    order_id="820982911946154508",
    triggers=frozenset({"created"}),
    occurred_at=datetime(2024, 5, 14, 14, 21, 33, tzinfo=UTC),
    currency="USD",
    total=Decimal("388.00"),
    subtotal=Decimal("378.00"),
    items=jon_snowe_items(),
    shopper=Shopper(
        email="jon@example.com",
        phone="+16135550142",
        customer_id="115310627314723954",
        first_name="Jon",
        last_name="Snowe",
        zip_code="40202",
        city="Louisville",
        state="KY",
        country_code="US",
        ip="203.0.113.42",
        user_agent=IPHONE_SAFARI,
        locale="en-US",
    ),
    clicks=ClickIds(ttclid=LANDING_TTCLID, ttp=TTP, source="landing_site"),
    # Only the origin: the order status URL's path and query hold the order page's key.
    page_url="https://toys-example.myshopify.com/",
    referrer="https://www.tiktok.com/",
    is_test=False,
    checkout_token=CHECKOUT_TOKEN,
    cart_token=CART_TOKEN,
    skip_reason=None,
)


def test_orders_create() -> None:
    order = parse_order(load("orders_create.json"), "orders/create")

    assert order == EXPECTED_ORDERS_CREATE
    assert order.order_id == "820982911946154508"
    assert order.items[1].product_id == BEYOND_FLOAT_PRODUCT_ID
    assert str(order.total) == "388.00" and str(order.subtotal) == "378.00"
    assert order.occurred_at.utcoffset() == timedelta(0)


def test_orders_paid_is_the_same_order_at_its_paid_moment() -> None:
    order = parse_order(load("orders_paid.json"), "orders/paid")

    assert order.triggers == frozenset({"paid"})
    assert order == replace(EXPECTED_ORDERS_CREATE, triggers=frozenset({"paid"}))


def test_orders_create__guest_checkout() -> None:
    order = parse_order(load("orders_create__guest_checkout.json"), "orders/create")

    assert order.order_id == "820982911946154601"
    assert order.shopper == Shopper(
        email="guest.buyer@example.com",
        phone="+16135550177",
        customer_id=None,
        first_name="Gus",
        last_name="Guest",
        zip_code="40507",
        city="Lexington",
        state="KY",
        country_code="US",
        ip="203.0.113.42",
        user_agent=IPHONE_SAFARI,
        locale="en-US",
    )
    assert order.clicks == ClickIds()
    assert order.referrer is None


def test_orders_create__no_phone() -> None:
    order = parse_order(load("orders_create__no_phone.json"), "orders/create")

    assert order.order_id == "820982911946154602"
    assert order.shopper == replace(EXPECTED_ORDERS_CREATE.shopper, phone=None)


def test_orders_create__national_phone() -> None:
    order = parse_order(load("orders_create__national_phone.json"), "orders/create")

    assert order.order_id == "820982911946154603"
    assert order.shopper == Shopper(
        email="olivia.brook@example.com",
        phone="020 7946 0958",
        customer_id="115310627314723954",
        first_name="Olivia",
        last_name="Brook",
        zip_code="SW1A 1AA",
        city="London",
        state=None,
        country_code="GB",
        ip="203.0.113.42",
        user_agent=IPHONE_SAFARI,
        locale="en-GB",
    )
    assert (order.currency, order.total, order.subtotal) == (
        "GBP",
        Decimal("388.00"),
        Decimal("378.00"),
    )
    assert [item.price for item in order.items] == [Decimal("199.00"), Decimal("199.00")]


def test_orders_create__multi_currency_reports_what_the_shopper_paid() -> None:
    payload = load("orders_create__multi_currency.json")
    order = parse_order(payload, "orders/create")

    assert (payload["currency"], payload["total_price"]) == ("USD", "388.00")
    assert order.order_id == "820982911946154604"
    assert order.currency == "EUR"
    assert (order.total, order.subtotal) == (Decimal("357.95"), Decimal("348.73"))
    assert order.items == jon_snowe_items(Decimal("183.59"))
    assert order.clicks == ClickIds(
        ttclid="E.C.P.Cs0BzQ1Xk9pR2vT7wY4aB6dF8hJ0lN3", ttp=None, source="landing_site"
    )
    assert (order.shopper.country_code, order.shopper.locale) == ("DE", "de")


def test_orders_create__non_ascii_names() -> None:
    raw = (FIXTURES / "orders_create__non_ascii_names.json").read_bytes()
    order = parse_order(json.loads(raw), "orders/create")

    assert "Zoë Müller".encode() in raw, "the fixture must carry raw UTF-8, not \\u escapes"
    assert order.order_id == "820982911946154605"
    assert order.shopper == Shopper(
        email="zoe.muller@example.com",
        phone="+5511955550123",
        customer_id="115310627314723954",
        first_name="Zoë",
        last_name="Müller",
        zip_code="01310-100",
        city="São Paulo",
        state="SP",
        country_code="BR",
        ip="203.0.113.42",
        user_agent=IPHONE_SAFARI,
        locale="pt-BR",
    )
    assert [(i.name, i.brand, i.sku) for i in order.items] == [
        ("Café Crème – Édition Spéciale", "Torréfaction Zoë", "CAFE-CREME-250"),
        ("Caneca Cerâmica", "Ateliê São João", "CANECA-AZUL"),
    ]
    assert order.currency == "BRL"
    assert order.clicks == ClickIds()


def test_orders_create__pos_is_skipped_with_a_reason() -> None:
    order = parse_order(load("orders_create__pos.json"), "orders/create")

    assert order.order_id == "820982911946154606"
    assert order.skip_reason == "point of sale order"
    assert order.shopper == Shopper()
    assert (order.total, order.subtotal) == (Decimal("398.00"), Decimal("398.00"))
    assert (order.page_url, order.checkout_token, order.cart_token) == (None, None, None)
    assert order.clicks == ClickIds()


def test_orders_create__test() -> None:
    order = parse_order(load("orders_create__test.json"), "orders/create")

    assert order.order_id == "820982911946154607"
    assert order.is_test is True
    assert order.skip_reason is None


def test_orders_create__bot_user_agent_is_passed_through_for_the_bot_filter() -> None:
    order = parse_order(load("orders_create__bot_user_agent.json"), "orders/create")

    assert order.order_id == "820982911946154608"
    assert (order.shopper.user_agent, order.shopper.ip) == (GOOGLEBOT, "66.249.66.1")
    assert order.skip_reason is None


EXPECTED_CHECKOUTS_CREATE = Checkout(
    token=CHECKOUT_TOKEN,
    cart_token=CART_TOKEN,
    occurred_at=datetime(2024, 5, 14, 14, 18, 2, tzinfo=UTC),
    currency="USD",
    total=Decimal("398.00"),
    subtotal=Decimal("398.00"),
    items=jon_snowe_items(),
    shopper=Shopper(
        email="jon@example.com",
        phone="+16135550142",
        customer_id="115310627314723954",
        first_name="Jon",
        last_name="Snowe",
        zip_code="40202",
        city="Louisville",
        state="KY",
        country_code="US",
        locale="en-US",
    ),
    clicks=ClickIds(ttclid=CART_ATTRIBUTE_TTCLID, ttp=TTP, source="note_attributes"),
    page_url="https://toys-example.myshopify.com/",  # abandoned_checkout_url's origin only
    referrer="https://www.tiktok.com/",
    is_test=False,
)


def test_checkouts_create() -> None:
    assert parse_checkout(load("checkouts_create.json")) == EXPECTED_CHECKOUTS_CREATE


def test_checkouts_update_keeps_the_token_and_start_time() -> None:
    checkout = parse_checkout(load("checkouts_update.json"))

    assert checkout == replace(
        EXPECTED_CHECKOUTS_CREATE,
        total=Decimal("607.00"),
        subtotal=Decimal("597.00"),
        items=(
            EXPECTED_CHECKOUTS_CREATE.items[0],
            replace(EXPECTED_CHECKOUTS_CREATE.items[1], quantity=2),
        ),
    )


def test_app_uninstalled_is_not_an_order() -> None:
    payload = load("app_uninstalled.json")

    assert (payload["id"], payload["myshopify_domain"]) == (548380009, "toys-example.myshopify.com")
    with pytest.raises(ValueError, match="'app/uninstalled' is not an order topic"):
        parse_order(payload, "app/uninstalled")


def test_carts_create_is_neither_an_order_nor_a_checkout() -> None:
    payload = load("carts_create.json")

    assert payload["line_items"][0]["variant_id"] == 704912205188288575
    with pytest.raises(ValueError, match="not an order topic"):
        parse_order(payload, "carts/create")
    with pytest.raises(ValueError, match="no currency"):
        parse_checkout(payload)


def test_every_fixture_email_is_obviously_fake() -> None:
    emails = set()
    for path in FIXTURES.glob("*.json"):
        emails |= set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", path.read_text(encoding="utf-8")))
    assert emails
    assert {e for e in emails if not e.endswith("@example.com")} == set()


def test_processed_at_wins_over_created_at_and_created_at_is_the_fallback() -> None:
    payload = load("orders_create.json")
    payload["processed_at"] = "2024-05-14T18:00:00+02:00"
    assert parse_order(payload, "orders/create").occurred_at == datetime(
        2024, 5, 14, 16, tzinfo=UTC
    )

    payload["processed_at"] = None
    payload["created_at"] = "2024-05-14T10:21:33Z"
    assert parse_order(payload, "orders/create").occurred_at == datetime(
        2024, 5, 14, 10, 21, 33, tzinfo=UTC
    )


def test_draft_orders_are_skipped_with_a_reason() -> None:
    payload = load("orders_create.json")
    payload["source_name"] = "shopify_draft_order"
    assert parse_order(payload, "orders/create").skip_reason == "draft order"


def test_note_attribute_ttclid_beats_the_landing_site() -> None:
    payload = load("orders_create.json")
    payload["note_attributes"].append({"name": "_ttclid", "value": CART_ATTRIBUTE_TTCLID})
    assert parse_order(payload, "orders/create").clicks == ClickIds(
        ttclid=CART_ATTRIBUTE_TTCLID, ttp=TTP, source="note_attributes"
    )


def test_address_fields_come_from_one_address_billing_first() -> None:
    payload = load("orders_create.json")
    payload["shipping_address"].update(first_name="Sam", city="Frankfort", zip="40601")
    payload["billing_address"].update(first_name="Jon", city=None)
    shopper = parse_order(payload, "orders/create").shopper
    assert (shopper.first_name, shopper.city, shopper.zip_code) == ("Jon", None, "40202")

    payload["billing_address"] = None
    shopper = parse_order(payload, "orders/create").shopper
    assert (shopper.first_name, shopper.city, shopper.zip_code) == ("Sam", "Frankfort", "40601")

    payload["shipping_address"] = None
    shopper = parse_order(payload, "orders/create").shopper
    assert (shopper.first_name, shopper.city, shopper.zip_code, shopper.state) == (
        None,
        "Ottawa",
        "K2H7A8",
        "ON",
    )


def test_string_ids_are_accepted() -> None:
    payload = load("orders_create.json")
    payload["id"] = "820982911946154508"
    payload["customer"]["id"] = "115310627314723954"
    order = parse_order(payload, "orders/create")
    assert (order.order_id, order.shopper.customer_id) == (
        "820982911946154508",
        "115310627314723954",
    )


def test_shop_currency_is_used_when_there_are_no_money_sets() -> None:
    payload = load("orders_create__multi_currency.json")
    del payload["total_price_set"], payload["subtotal_price_set"]
    for line in payload["line_items"]:
        del line["price_set"]
    order = parse_order(payload, "orders/create")
    assert (order.currency, order.total, order.subtotal) == (
        "USD",
        Decimal("388.00"),
        Decimal("378.00"),
    )
    assert [item.price for item in order.items] == [Decimal("199.00"), Decimal("199.00")]


def without(key: str) -> dict[str, Any]:
    payload = load("orders_create.json")
    del payload[key]
    return payload


def with_values(**values: Any) -> dict[str, Any]:
    payload = load("orders_create.json")
    payload.update(values)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (without("id"), "'id' is missing"),
        (with_values(id=820982911946154508.0), "'id' is missing or not an integer"),
        (with_values(id=""), "'id' is missing"),
        (with_values(id="8" * 65), "'id' is missing or not an integer or string id"),
        (with_values(id=10**5000), "'id' is missing or not an integer or string id"),
        (with_values(id="8209829\x0011946"), "'id' is missing or not an integer or string id"),
        (with_values(currency=None, total_price_set=None), "no currency"),
        (with_values(currency="US Dollar", total_price_set=None), "no currency"),
        (with_values(total_price="12,50", total_price_set=None), "'total_price' is missing or"),
        (with_values(total_price="NaN", total_price_set=None), "not a finite, sane amount"),
        (with_values(total_price="1e30", total_price_set=None), "not a finite, sane amount"),
        (with_values(total_price=1e308, total_price_set=None), "not a finite, sane amount"),
        (with_values(total_price="-1.00", total_price_set=None), "not a finite, sane amount"),
        (with_values(total_price=10**5000, total_price_set=None), "not a finite, sane amount"),
        (with_values(total_price=None, total_price_set=None), "'total_price' is missing"),
        ([], "the body is not a JSON object"),
    ],
)
def test_orders_without_id_currency_or_total_are_unreadable(payload: Any, message: str) -> None:
    with pytest.raises(UnreadablePayload, match=re.escape(message)) as raised:
        parse_order(payload, "orders/create")
    assert str(raised.value).startswith("Shopify order payload: ")
    assert "12,50" not in str(raised.value) and "example.com" not in str(raised.value)


def test_unreadable_carries_the_order_id_when_it_was_read() -> None:
    with pytest.raises(UnreadablePayload) as raised:
        read_webhook("orders/create", with_values(currency=None, total_price_set=None))
    assert raised.value.resource_id == "820982911946154508"

    with pytest.raises(UnreadablePayload) as raised:
        read_webhook("orders/create", with_values(id=[820982911946154508]))
    assert raised.value.resource_id is None


def test_a_bad_presentment_total_falls_back_to_the_shop_currency() -> None:
    payload = load("orders_create__multi_currency.json")
    payload["total_price_set"]["presentment_money"]["amount"] = "357,95"
    order = parse_order(payload, "orders/create")
    assert (order.currency, order.total, order.subtotal) == (
        "USD",
        Decimal("388.00"),
        Decimal("378.00"),
    )
    assert [item.price for item in order.items] == [Decimal("199.00"), Decimal("199.00")]
    assert order.notes == (
        "'total_price_set.presentment_money' is missing or unusable: every amount is in the"
        " shop currency",
    )


def test_amounts_with_only_a_shop_side_are_converted_at_the_orders_own_rate() -> None:
    payload = load("orders_create__presentment_partial.json")
    assert "presentment_money" not in payload["subtotal_price_set"]
    assert "presentment_money" not in payload["line_items"][1]["price_set"]

    order = parse_order(payload, "orders/create")

    rate = Decimal("357.95") / Decimal("388.00")
    assert (order.order_id, order.currency, order.total) == (
        "820982911946154610",
        "EUR",
        Decimal("357.95"),
    )
    assert order.subtotal == Decimal("378.00") * rate
    assert [item.price for item in order.items] == [Decimal("183.59"), Decimal("199.00") * rate]
    assert order.notes == (
        "an amount without 'presentment_money' was converted from the shop currency at the"
        " order's own rate (total_price_set)",
    )
    event = build_event(
        order, TIKTOK, EventOptions(), name="CompletePayment", event_id="x", order_id="x"
    )
    assert (event.currency, event.value) == ("EUR", 357.95)
    assert [c.price for c in event.contents] == [183.59, 183.59]


def test_without_a_rate_the_whole_order_is_in_the_shop_currency_never_mixed() -> None:
    payload = load("orders_create__presentment_total_only.json")
    assert set(payload["total_price_set"]) == {"presentment_money"}

    order = parse_order(payload, "orders/create")

    assert (order.order_id, order.currency, order.total, order.subtotal) == (
        "820982911946154611",
        "USD",
        Decimal("388.00"),
        Decimal("378.00"),
    )
    assert [item.price for item in order.items] == [Decimal("199.00"), Decimal("199.00")]
    assert order.notes == (
        "some amounts have no 'presentment_money' and 'total_price_set' gives no rate: every"
        " amount is in the shop currency",
    )


def test_without_a_rate_or_a_shop_total_unconvertible_amounts_count_as_missing() -> None:
    payload = load("orders_create__presentment_total_only.json")
    del payload["total_price"]

    order = parse_order(payload, "orders/create")

    assert (order.currency, order.total, order.subtotal, order.items) == (
        "EUR",
        Decimal("357.95"),
        Decimal("357.95"),
        (),
    )
    assert order.notes == (
        "'subtotal_price' is missing or unusable: the total is used as subtotal",
        "a line item without a usable 'price' was left out of contents",
    )


def test_a_presentment_currency_without_money_sets_is_noted() -> None:
    payload = load("checkouts_create.json")
    payload["presentment_currency"] = "EUR"

    checkout = parse_checkout(payload)

    assert (checkout.currency, checkout.total) == ("USD", Decimal("398.00"))
    assert checkout.notes == (
        "'total_price_set.presentment_money' is missing or unusable: every amount is in the"
        " shop currency",
    )
    assert parse_checkout(load("checkouts_create.json")).notes == ()


def test_a_line_without_a_price_is_left_out_and_the_order_still_read() -> None:
    payload = load("orders_create__line_without_price.json")
    assert payload["line_items"][2]["price"] is None

    order = parse_order(payload, "orders/create")

    assert order == replace(EXPECTED_ORDERS_CREATE, order_id="820982911946154612")
    assert order.notes == ("a line item without a usable 'price' was left out of contents",)


@pytest.mark.parametrize("price", ["1e30", "NaN", "Infinity", "-5", 1e308, 10**40, [], "abc"])
def test_a_line_with_an_insane_price_is_left_out(price: Any) -> None:
    payload = load("orders_create.json")
    payload["line_items"][0]["price"] = price
    for side in payload["line_items"][0]["price_set"].values():
        side["amount"] = price

    order = parse_order(payload, "orders/create")

    assert order.items == EXPECTED_ORDERS_CREATE.items[1:]
    assert order.notes == ("a line item without a usable 'price' was left out of contents",)


@pytest.mark.parametrize(
    ("value", "read"), [(2, 2), ("2", 2), (" 3 ", 3), (2.0, 2), ("2.0", 2), (0, 0)]
)
def test_whole_number_quantities_are_read_whatever_their_json_type(value: Any, read: int) -> None:
    payload = load("orders_create.json")
    payload["line_items"][0]["quantity"] = value
    order = parse_order(payload, "orders/create")
    assert order.items[0].quantity == read
    assert order.notes == ()


@pytest.mark.parametrize("value", [None, 2.5, "1.5", -1, "-1", "two", True, 2**31, []])
def test_a_line_without_a_whole_quantity_is_left_out(value: Any) -> None:
    payload = load("orders_create.json")
    payload["line_items"][0]["quantity"] = value
    order = parse_order(payload, "orders/create")
    assert order.items == EXPECTED_ORDERS_CREATE.items[1:]
    assert order.notes == (
        "a line item whose 'quantity' is not a whole number from 0 was left out of contents",
    )


@pytest.mark.parametrize(
    ("line_items", "note"),
    [
        ({"id": 1}, "'line_items' is not a list: the event has no contents"),
        ([["not", "an", "object"]], "a line item that is not an object was left out of contents"),
    ],
)
def test_line_items_that_are_not_objects_leave_no_contents(line_items: Any, note: str) -> None:
    order = parse_order(with_values(line_items=line_items), "orders/create")
    assert (order.items, order.notes, order.total) == ((), (note,), Decimal("388.00"))


def test_an_unusable_subtotal_is_replaced_by_the_total() -> None:
    order = parse_order(with_values(subtotal_price="n/a", subtotal_price_set=None), "orders/create")
    assert (order.total, order.subtotal) == (Decimal("388.00"), Decimal("388.00"))
    assert order.notes == (
        "'subtotal_price' is missing or unusable: the total is used as subtotal",
    )


def test_processed_at_without_an_offset_falls_back_to_created_at() -> None:
    payload = load("orders_create__processed_at_without_offset.json")
    assert payload["processed_at"] == "2024-05-14T10:21:33"

    order = parse_order(payload, "orders/create")

    assert order == replace(EXPECTED_ORDERS_CREATE, order_id="820982911946154609")
    assert order.occurred_at == datetime(2024, 5, 14, 14, 21, 33, tzinfo=UTC)
    assert order.notes == (
        "'processed_at' is not an ISO 8601 date-time with a UTC offset: the time is 'created_at'",
    )


@pytest.mark.parametrize(
    ("values", "occurred_at", "note"),
    [
        (
            {"processed_at": "yesterday"},
            datetime(2024, 5, 14, 14, 21, 33, tzinfo=UTC),
            "'processed_at' is not an ISO 8601 date-time with a UTC offset: the time is"
            " 'created_at'",
        ),
        (
            {"processed_at": "2024-05-14T10:21:33", "created_at": None},
            datetime(2024, 5, 14, 10, 21, 33, tzinfo=UTC),
            "no time with a UTC offset: 'processed_at' was read as UTC",
        ),
        (
            {"processed_at": "9999-12-31T23:59:59-14:00", "created_at": "2024-05-14T10:21:33"},
            datetime(2024, 5, 14, 10, 21, 33, tzinfo=UTC),
            "no time with a UTC offset: 'created_at' was read as UTC",
        ),
    ],
)
def test_order_time_fallbacks(values: dict[str, Any], occurred_at: datetime, note: str) -> None:
    order = parse_order(with_values(**values), "orders/create")
    assert (order.occurred_at, order.notes) == (occurred_at, (note,))


def test_with_no_usable_time_the_order_is_timed_when_read() -> None:
    before = datetime.now(UTC)
    order = parse_order(with_values(processed_at=None, created_at=[]), "orders/create")
    assert before <= order.occurred_at <= datetime.now(UTC)
    assert order.notes == (
        "no usable 'processed_at' or 'created_at': the time the order was read is used",
    )


@pytest.mark.parametrize("token", [["b1946ac9"], "t" * 256, "tab\tinside", 12.5])
def test_an_unusable_checkout_token_is_dropped_with_a_note(token: Any) -> None:
    order = parse_order(with_values(checkout_token=token), "orders/create")
    assert order.checkout_token is None
    assert order.notes == ("'checkout_token' is not a usable token: ignored",)


def test_nested_garbage_in_optional_fields_is_ignored() -> None:
    order = parse_order(
        with_values(
            customer=[{"id": 1}],
            billing_address="Main Street",
            client_details=7,
            note_attributes={"name": "_ttclid"},
            landing_site=["/?ttclid=x"],
            order_status_url="http://[::1",
            referring_site={"url": "https://www.tiktok.com/"},
            source_name=["pos"],
            test="yes",
        ),
        "orders/create",
    )
    assert (order.total, order.items, order.notes) == (
        Decimal("388.00"),
        EXPECTED_ORDERS_CREATE.items,
        (),
    )
    assert (order.page_url, order.referrer, order.skip_reason, order.is_test) == (
        None,
        None,
        None,
        False,
    )


@pytest.mark.parametrize("topic", ["orders/updated", "checkouts/create", ""])
def test_other_topics_are_not_orders(topic: str) -> None:
    with pytest.raises(ValueError, match="is not an order topic"):
        parse_order(load("orders_create.json"), topic)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("token", None, "Shopify checkout payload: 'token' is missing"),
        ("token", "t" * 256, "Shopify checkout payload: 'token' is missing"),
        ("currency", None, "Shopify checkout payload: no currency"),
        ("total_price", "NaN", "Shopify checkout payload: 'total_price' is missing or not"),
    ],
)
def test_checkouts_without_token_currency_or_total_are_unreadable(
    key: str, value: Any, message: str
) -> None:
    payload = load("checkouts_create.json")
    payload[key] = value
    with pytest.raises(UnreadablePayload, match=re.escape(message)) as raised:
        read_webhook("checkouts/create", payload)
    assert raised.value.resource_id == (None if key == "token" else CHECKOUT_TOKEN)


def test_a_checkout_without_a_usable_created_at_is_timed_by_updated_at() -> None:
    payload = load("checkouts_update.json")
    payload["created_at"] = "not a date"
    checkout = parse_checkout(payload)
    assert checkout.occurred_at == datetime.fromisoformat(payload["updated_at"])
    assert checkout.notes == (
        "'created_at' is not an ISO 8601 date-time with a UTC offset: the time is 'updated_at'",
    )


ORIGINAL_FIXTURES = {
    "orders_create.json": "orders/create",
    "orders_paid.json": "orders/paid",
    "orders_create__bot_user_agent.json": "orders/create",
    "orders_create__guest_checkout.json": "orders/create",
    "orders_create__multi_currency.json": "orders/create",
    "orders_create__national_phone.json": "orders/create",
    "orders_create__no_phone.json": "orders/create",
    "orders_create__non_ascii_names.json": "orders/create",
    "orders_create__pos.json": "orders/create",
    "orders_create__test.json": "orders/create",
    "checkouts_create.json": "checkouts/create",
    "checkouts_update.json": "checkouts/update",
}
"""The fixtures shaped as Shopify documents its bodies, and their topics."""


@pytest.mark.parametrize(("name", "topic"), ORIGINAL_FIXTURES.items())
def test_bodies_shaped_as_shopify_documents_them_read_without_a_note(name: str, topic: str) -> None:
    source = read_webhook(topic, load(name))
    assert source is not None and source.notes == ()


UNREADABLE_FIELDS = ("'id'", "'token'", "no currency", "'total_price'", "not a JSON object")
"""What alone may make a body unreadable: no id (token), no currency, no total."""


def deeply_nested(depth: int) -> Any:
    value: Any = "1.00"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        [],
        "orders",
        7,
        None,
        {},
        {"id": {"id": 1}},
        {"id": 1, "currency": "USD", "total_price": deeply_nested(50_000)},
        {
            "id": 1,
            "currency": "USD",
            "total_price": "1.00",
            "line_items": deeply_nested(50_000),
            "note_attributes": [{"name": "_ttclid", "value": deeply_nested(50_000)}],
            "customer": {"default_address": deeply_nested(50_000)},
        },
    ],
    ids=["list", "string", "number", "null", "empty", "object-id", "deep-total", "deep-fields"],
)
@pytest.mark.parametrize("topic", ["orders/create", "checkouts/update"])
def test_nasty_bodies_are_a_model_or_unreadable(body: Any, topic: str) -> None:
    assert_reads_or_is_unreadable(topic, body, "table")


@pytest.mark.parametrize(("name", "topic"), ORIGINAL_FIXTURES.items())
def test_mutated_real_bodies_are_a_model_or_unreadable_never_anything_else(
    name: str, topic: str
) -> None:
    for change, body in mutations(load(name), count=120, seed=name):
        assert_reads_or_is_unreadable(topic, body, change)


def assert_reads_or_is_unreadable(topic: str, body: Any, change: str) -> None:
    """read_webhook gives an order or checkout that maps to a sendable event, or raises
    UnreadablePayload for a missing id, currency or total; no value shows in what it says."""
    try:
        source = read_webhook(topic, body)
    except UnreadablePayload as exc:
        assert any(field in exc.reason for field in UNREADABLE_FIELDS), (change, exc.reason)
        assert not any(value in exc.reason for value in LEAKABLE), (change, exc.reason)
        return
    except Exception as exc:  # the failure names the mutation that caused it
        pytest.fail(f"{change}: {type(exc).__name__}: {exc}")
    assert isinstance(source, Order | Checkout), change
    assert not any(value in note for note in source.notes for value in LEAKABLE), change
    trigger = "paid" if isinstance(source, Order) and "paid" in source.triggers else "created"
    planned = plan_event(source, TIKTOK, EventOptions(order_trigger=trigger), test_mode=True)
    assert planned is not None, change
    json.dumps(planned.event.to_json(), allow_nan=False)


def stored_notes(services: Any) -> dict[str, str | None]:
    with services.db.session() as session:
        return {e.event_id: e.parse_notes for e in session.scalars(select(OutboxEvent))}


@pytest.mark.postgres
def test_a_leniently_read_webhook_is_accepted_with_its_notes_on_the_event(
    client: Any, services: Any, shopify_store: str
) -> None:
    for name in (
        "orders_create__processed_at_without_offset.json",
        "orders_create__presentment_partial.json",
        "orders_create__line_without_price.json",
    ):
        body = fixture_bytes("shopify", name)
        answer = client.post(
            "/webhooks/shopify", data=body, headers=shopify_headers("orders/create", body)
        )
        assert (answer.status_code, answer.json["status"]) == (200, "accepted"), answer.json

    assert stored_notes(services) == {
        "820982911946154609": "'processed_at' is not an ISO 8601 date-time with a UTC offset:"
        " the time is 'created_at'",
        "820982911946154610": "an amount without 'presentment_money' was converted from the shop"
        " currency at the order's own rate (total_price_set)",
        "820982911946154612": "a line item without a usable 'price' was left out of contents",
    }


@pytest.mark.postgres
def test_control_characters_in_free_text_do_not_stop_the_order_being_stored(
    client: Any, services: Any, shopify_store: str
) -> None:
    payload = load("orders_create.json")
    payload["line_items"][0]["title"] = "IPod\x00Nano"
    payload["client_details"]["user_agent"] = "Mozilla/5.0\x00\x1b[31m"
    payload["referring_site"] = "https://www.tiktok.com/\x00"
    payload["billing_address"]["first_name"] = "Jon\x00"
    body = json.dumps(payload).encode()

    answer = client.post(
        "/webhooks/shopify", data=body, headers=shopify_headers("orders/create", body)
    )

    assert (answer.status_code, answer.json["status"]) == (200, "accepted"), answer.json
    assert stored_notes(services) == {"820982911946154508": None}
