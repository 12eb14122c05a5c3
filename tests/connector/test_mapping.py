"""Orders and checkouts becoming conversion events (connector.mapping).

Covered: ``EventOptions`` validation and ``from_json``; ``plan_event`` choosing what an order or
checkout sends (order trigger, checkout on/off, event names, ``event_id``, ``event_time``),
the value basis, currency, ``content_id`` choice and fallback, money rounding, skip reasons
(platform reason, test orders, bots), limited data use and click source; and the
``ConversionEvent`` JSON round trip the outbox relies on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from connector.destinations import load_destinations
from connector.events import Checkout, ClickIds, Content, ConversionEvent, LineItem, Shopper
from connector.hashing import sha256_hex
from connector.mapping import EventOptions, check_event_name, plan_event
from tests.support import make_order

TIKTOK = load_destinations()["tiktok"]
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
TEST_ORDER_REASON = "test order: set a TikTok test event code to send test orders"


def make_checkout(token: str = "chk-token-1", **changes: object) -> Checkout:
    fields: dict[str, object] = {
        "occurred_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "currency": "eur",
        "total": Decimal("30.00"),
        "subtotal": Decimal("25.00"),
        "items": (
            LineItem(
                product_id="p-1",
                variant_id="v-1",
                sku="SKU-1",
                name="Mug",
                price=Decimal("12.50"),
                quantity=2,
            ),
        ),
        "shopper": Shopper(email="Buyer@Example.com", user_agent=IPHONE),
        "clicks": ClickIds(ttclid="E.C.P.checkout", source="cart_attributes"),
        "page_url": "https://shop.example/checkout",
        "token": token,
        "cart_token": "cart-1",
    }
    fields.update(changes)
    return Checkout(**fields)  # type: ignore[arg-type]


def plan(source, test_mode: bool = False, **options: object):  # type: ignore[no-untyped-def]
    chosen = EventOptions(**options)  # type: ignore[arg-type]
    check_event_name(TIKTOK, chosen)
    return plan_event(source, TIKTOK, chosen, test_mode=test_mode)


def event_of(source, **options: object) -> ConversionEvent:  # type: ignore[no-untyped-def]
    planned = plan(source, **options)
    assert planned is not None
    return planned.event


def item(**changes: object) -> LineItem:
    fields: dict[str, object] = {
        "product_id": "prod-1",
        "variant_id": "var-1",
        "sku": "SKU-1",
        "name": "Tee",
        "price": Decimal("10.00"),
        "quantity": 1,
    }
    fields.update(changes)
    return LineItem(**fields)  # type: ignore[arg-type]


# -- EventOptions --------------------------------------------------------------------------


def test_default_options():
    assert vars(EventOptions()) == {
        "purchase_event": None,  # the destination's default
        "order_trigger": "created",
        "value_basis": "total",
        "content_id": "variant",
        "send_initiate_checkout": True,
        "send_test_orders": True,
        "limited_data_use": False,
    }


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("order_trigger", "fulfilled"),
        ("value_basis", "net"),
        ("content_id", "barcode"),
    ],
)
def test_a_bad_choice_is_a_value_error_naming_the_option(option, value):
    with pytest.raises(ValueError) as error:
        EventOptions(**{option: value})
    assert str(error.value).startswith(f"{option} must be one of ")
    assert repr(value) in str(error.value)


def test_a_purchase_name_the_destination_does_not_know_is_a_value_error():
    with pytest.raises(ValueError) as error:
        check_event_name(TIKTOK, EventOptions(purchase_event="Checkout"))
    assert str(error.value).startswith("purchase_event must be one of CompletePayment, ")


def test_from_json_ignores_unknown_keys():
    options = EventOptions.from_json(
        {"purchase_event": "Purchase", "value_basis": "subtotal", "added_in_v9": True}
    )
    assert options == EventOptions(purchase_event="Purchase", value_basis="subtotal")


def test_from_json_of_nothing_is_the_defaults():
    assert EventOptions.from_json(None) == EventOptions()
    assert EventOptions.from_json({}) == EventOptions()


def test_from_json_still_validates_known_keys():
    with pytest.raises(ValueError, match="^order_trigger must be one of created, paid"):
        EventOptions.from_json({"order_trigger": "shipped"})


# -- which moment sends what ---------------------------------------------------------------


def test_created_order_sends_complete_payment_by_default():
    order = make_order("1001", triggers=frozenset({"created"}))
    planned = plan(order)
    assert planned is not None and planned.skip_reason is None
    assert planned.event.event_name == "CompletePayment"
    assert planned.event.event_id == "1001"
    assert planned.event.order_id == "1001"


def test_created_order_sends_nothing_when_purchases_go_on_payment():
    order = make_order("1001", triggers=frozenset({"created"}))
    assert plan(order, order_trigger="paid") is None


def test_paid_order_sends_when_purchases_go_on_payment():
    order = make_order("1002", triggers=frozenset({"paid"}))
    assert event_of(order, order_trigger="paid").event_id == "1002"
    assert plan(order, order_trigger="created") is None


def test_order_created_already_paid_sends_for_either_trigger():
    order = make_order("1003", triggers=frozenset({"created", "paid"}))
    assert event_of(order, order_trigger="created").event_id == "1003"
    assert event_of(order, order_trigger="paid").event_id == "1003"


@pytest.mark.parametrize("name", ["CompletePayment", "Purchase", "PlaceAnOrder"])
def test_purchase_event_name_is_the_merchants_choice(name):
    assert event_of(make_order("1"), purchase_event=name).event_name == name


def test_checkout_sends_initiate_checkout_with_the_token_as_event_id():
    planned = plan(make_checkout("chk-abc"), purchase_event="Purchase")
    assert planned is not None and planned.skip_reason is None
    assert planned.event.event_name == "InitiateCheckout"
    assert planned.event.event_id == "chk-abc"
    assert planned.event.order_id is None


def test_checkout_sends_nothing_when_checkout_events_are_off():
    assert plan(make_checkout(), send_initiate_checkout=False) is None


def test_checkout_events_off_does_not_stop_purchases():
    assert event_of(make_order("7"), send_initiate_checkout=False).event_name == ("CompletePayment")


# -- time, money, currency -----------------------------------------------------------------


def test_event_time_is_when_the_shopper_acted_in_unix_seconds():
    new_york_winter = timezone(timedelta(hours=-5))
    order = make_order("1", occurred_at=datetime(2024, 1, 15, 10, 0, 59, 999999, new_york_winter))
    assert event_of(order).event_time == 1705330859  # 2024-01-15T15:00:59Z


def test_event_time_of_a_checkout_in_another_zone():
    tokyo = timezone(timedelta(hours=9))
    checkout = make_checkout(occurred_at=datetime(2024, 1, 16, 0, 0, tzinfo=tokyo))
    assert event_of(checkout).event_time == 1705330800  # 2024-01-15T15:00:00Z


def test_value_is_the_order_total_by_default():
    event = event_of(make_order("1"))
    assert event.value == 59.90
    assert type(event.value) is float


def test_value_can_be_the_subtotal():
    assert event_of(make_order("1"), value_basis="subtotal").value == 49.90
    assert event_of(make_checkout(), value_basis="subtotal").value == 25.00


def test_currency_is_upper_cased():
    assert event_of(make_order("1", currency="usd")).currency == "USD"
    assert event_of(make_checkout()).currency == "EUR"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("10.005", 10.01),
        ("10.004", 10.0),
        ("0.015", 0.02),
        ("199.99", 199.99),
        ("1999.995", 2000.0),
    ],
)
def test_money_is_rounded_half_up_to_cents(amount, expected):
    order = make_order("1", total=Decimal(amount), items=(item(price=Decimal(amount)),))
    event = event_of(order)
    assert event.value == expected
    assert event.contents[0].price == expected


def test_yen_amounts_stay_whole():
    order = make_order(
        "1",
        currency="jpy",
        total=Decimal("3980"),
        subtotal=Decimal("3480"),
        items=(item(price=Decimal("1740"), quantity=2),),
    )
    event = event_of(order)
    assert (event.currency, event.value, event.contents[0].price) == ("JPY", 3980.0, 1740.0)


def test_three_decimal_currencies_keep_their_third_decimal():
    order = make_order(
        "1", currency="KWD", total=Decimal("12.345"), items=(item(price=Decimal("4.115")),)
    )
    event = event_of(order)
    assert (event.value, event.contents[0].price) == (12.345, 4.115)


# -- contents ------------------------------------------------------------------------------


def test_contents_carry_the_line_items():
    event = event_of(make_order("1"))
    assert event.contents == (
        Content(
            content_id="42345678901234",
            name="Black tee",
            price=24.95,
            quantity=2,
            brand="Demo Brand",
            category=None,
        ),
    )
    assert event.content_type == "product"


@pytest.mark.parametrize(
    ("source", "expected"),
    [("variant", "var-1"), ("sku", "SKU-1"), ("product", "prod-1")],
)
def test_content_id_is_the_chosen_identifier(source, expected):
    order = make_order("1", items=(item(),))
    assert event_of(order, content_id=source).contents[0].content_id == expected


@pytest.mark.parametrize(
    ("source", "missing", "expected"),
    [
        ("sku", {"sku": None}, "var-1"),
        ("sku", {"sku": ""}, "var-1"),
        ("variant", {"variant_id": None}, "prod-1"),
        ("product", {"product_id": None}, "var-1"),
        ("variant", {"variant_id": None, "product_id": None}, "SKU-1"),
        ("sku", {"sku": None, "variant_id": None}, "prod-1"),
    ],
)
def test_content_id_falls_back_when_the_chosen_one_is_missing(source, missing, expected):
    order = make_order("1", items=(item(**missing),))
    assert event_of(order, content_id=source).contents[0].content_id == expected


def test_each_line_keeps_its_own_fallback():
    lines = (item(sku="A"), item(sku=None, variant_id="var-2"))
    order = make_order("1", items=lines)
    assert [c.content_id for c in event_of(order, content_id="sku").contents] == ["A", "var-2"]


# -- skip reasons --------------------------------------------------------------------------


def test_a_normal_order_has_no_skip_reason():
    shopper = replace(make_order("1").shopper, user_agent=IPHONE)
    planned = plan(make_order("1", shopper=shopper))
    assert planned is not None and planned.skip_reason is None


def test_platform_skip_reason_is_kept():
    planned = plan(make_order("1", skip_reason="point of sale order"))
    assert planned is not None
    assert planned.skip_reason == "point of sale order"
    assert planned.event.event_id == "1", "a skipped event is still recorded in full"


def test_platform_skip_reason_wins_over_test_and_bot():
    shopper = replace(make_order("1").shopper, user_agent=GOOGLEBOT)
    order = make_order("1", skip_reason="point of sale order", is_test=True, shopper=shopper)
    assert plan(order).skip_reason == "point of sale order"


def test_test_order_is_skipped_outside_test_mode():
    assert plan(make_order("1", is_test=True)).skip_reason == TEST_ORDER_REASON


def test_test_order_is_sent_in_test_mode():
    assert plan(make_order("1", is_test=True), test_mode=True).skip_reason is None


def test_test_orders_switched_off_stay_out_even_in_test_mode():
    planned = plan(make_order("1", is_test=True), test_mode=True, send_test_orders=False)
    assert planned.skip_reason == "test order: sending test orders is switched off in the settings"
    assert plan(make_order("1"), test_mode=True, send_test_orders=False).skip_reason is None


def test_test_checkout_is_skipped_outside_test_mode():
    assert plan(make_checkout(is_test=True)).skip_reason == TEST_ORDER_REASON


def test_bot_order_is_skipped_even_in_test_mode():
    shopper = replace(make_order("1").shopper, user_agent=GOOGLEBOT)
    planned = plan(make_order("1", shopper=shopper), test_mode=True)
    assert planned.skip_reason == "bot user agent"


def test_bot_checkout_is_skipped():
    checkout = make_checkout(shopper=Shopper(user_agent=GOOGLEBOT))
    assert plan(checkout).skip_reason == "bot user agent"


def test_missing_user_agent_is_not_a_bot():
    shopper = replace(make_order("1").shopper, user_agent=None)
    assert plan(make_order("1", shopper=shopper)).skip_reason is None


# -- what else the event carries -----------------------------------------------------------


def test_limited_data_use_is_carried():
    assert event_of(make_order("1")).limited_data_use is False
    assert event_of(make_order("1"), limited_data_use=True).limited_data_use is True


def test_click_source_and_click_ids_are_carried():
    event = event_of(make_order("1"))
    assert event.click_source == "landing_site"
    assert (event.user["ttclid"], event.user["ttp"]) == ("E.C.P.test-click", "ttp-cookie-value")
    assert event_of(make_order("2", clicks=ClickIds())).click_source is None


def test_click_source_is_kept_only_for_the_destinations_own_click_id():
    google_click = ClickIds(gclid="Cj0KCQ-test", source="landing_site")
    event = event_of(make_order("3", clicks=google_click))
    assert event.click_source is None
    assert "gclid" not in event.user


def test_user_data_is_hashed():
    event = event_of(make_checkout())
    assert event.user["email"] == sha256_hex("buyer@example.com")
    assert event.user["user_agent"] == IPHONE


def test_page_and_referrer_are_carried():
    order = make_order("1", page_url="https://shop.example/p", referrer="https://tiktok.com/")
    event = event_of(order)
    assert (event.page_url, event.referrer) == ("https://shop.example/p", "https://tiktok.com/")


# -- JSON round trip -----------------------------------------------------------------------


def test_event_json_round_trip():
    event = event_of(make_order("1", page_url="https://shop.example/thanks"))
    stored = json.loads(json.dumps(event.to_json()))
    assert ConversionEvent.from_json(stored) == event


def test_checkout_event_json_round_trip():
    event = event_of(make_checkout(), limited_data_use=True)
    stored = json.loads(json.dumps(event.to_json()))
    assert ConversionEvent.from_json(stored) == event


def test_to_json_shape():
    data = event_of(make_order("1")).to_json()
    assert data["event_id"] == "1"
    assert data["contents"] == [
        {
            "content_id": "42345678901234",
            "name": "Black tee",
            "price": 24.95,
            "quantity": 2,
            "brand": "Demo Brand",
            "category": None,
        }
    ]
    assert data["user"]["email"] == sha256_hex("shopper@example.com")
