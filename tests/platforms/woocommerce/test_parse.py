from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from connector.events import ClickIds, LineItem, Order, Shopper
from platforms.woocommerce.parse import PAID_STATUSES, is_paid, parse_order

FIXTURES = Path(__file__).parent / "fixtures"

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
TIKTOK_IN_APP_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240505.004; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 "
    "trill_340101 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/trill app_version/34.1.1"
)
PAID = frozenset({"created", "paid"})
NOT_PAID: frozenset[str] = frozenset()


def load(name: str) -> dict[str, Any]:
    """The fixture as the webhook view will see it: Python's json on the exact bytes."""
    return json.loads((FIXTURES / name).read_bytes())


EXPECTED_PROCESSING = Order(
    order_id="1187",
    triggers=PAID,
    occurred_at=datetime(2024, 5, 14, 16, 21, 33, tzinfo=UTC),
    currency="USD",
    total=Decimal("54.30"),
    subtotal=Decimal("42.95"),
    items=(
        LineItem("93", None, None, "Woo Single #1", Decimal("3"), 2),
        LineItem(
            "22", "23", "Bar3", "Ship Your Idea – Color: Black, Size: M Test", Decimal("12"), 1
        ),
        LineItem("37", None, "MUG-NINJA", "Happy Ninja Mug", Decimal("24.95"), 1),
    ),
    shopper=Shopper(
        email="john.doe@example.com",
        phone="(415) 555-0123",
        customer_id="12",
        first_name="John",
        last_name="Doe",
        zip_code="94103",
        city="San Francisco",
        state="CA",
        country_code="US",
        ip="198.51.100.23",
        user_agent=CHROME_WINDOWS,
        locale=None,
    ),
    clicks=ClickIds(
        ttclid="E.C.P.CvgBwoo9Qx3Lm7Np2Rs5Tv8Xz1Bd4Fh6Jk0", ttp=None, source="order_meta"
    ),
    page_url=None,
    referrer=None,
    is_test=False,
    checkout_token=None,
    cart_token=None,
    skip_reason=None,
)


def test_order_created__processing() -> None:
    order = parse_order(load("order_created__processing.json"))

    assert order == EXPECTED_PROCESSING
    assert str(order.total) == "54.30" and str(order.subtotal) == "42.95"
    assert str(order.items[2].price) == "24.95", "a JSON number price keeps its decimal form"
    assert order.occurred_at.utcoffset() == timedelta(0)


def test_order_created__pending_is_not_paid_yet() -> None:
    order = parse_order(load("order_created__pending.json"))

    assert order.triggers == NOT_PAID
    assert order.order_id == "1188"
    assert order.occurred_at == datetime(2024, 5, 14, 16, 40, 2, tzinfo=UTC)
    assert order.clicks == ClickIds()


def test_order_updated__completed_is_the_processing_order_again() -> None:
    order = parse_order(load("order_updated__completed.json"))

    assert order == EXPECTED_PROCESSING


def test_order_updated__on_hold_is_not_paid_yet() -> None:
    order = parse_order(load("order_updated__on_hold.json"))

    assert (order.order_id, order.triggers) == ("1189", NOT_PAID)


def test_order_updated__cancelled_is_not_a_purchase_despite_its_payment_date() -> None:
    payload = load("order_updated__cancelled.json")
    order = parse_order(payload)

    assert payload["date_paid_gmt"] == "2024-05-13T12:11:12"
    assert (order.order_id, order.triggers) == ("1190", NOT_PAID)
    assert order.occurred_at == datetime(2024, 5, 13, 12, 11, 9, tzinfo=UTC)


def test_order_created__guest_with_ttclid_meta() -> None:
    order = parse_order(load("order_created__guest_with_ttclid_meta.json"))

    assert (order.order_id, order.triggers, order.currency) == ("1191", PAID, "EUR")
    assert order.clicks == ClickIds(
        ttclid="E.C.P.CsUBguestMeta5Hj8Kl2Mn6Pq9Rs3Tu7Vw0",
        ttp="2hVd8PkN3sQw6ZtRb1LmY4xGcFj",
        source="order_meta",
    )
    assert order.shopper == Shopper(
        email="ana.gomez@example.com",
        phone="+34 600 000 123",
        customer_id=None,
        first_name="Ana",
        last_name="Gómez",
        zip_code="41001",
        city="Sevilla",
        state="SE",
        country_code="ES",
        ip="2001:db8:85a3::8a2e:370:7334",
        user_agent=TIKTOK_IN_APP_ANDROID,
    )


def test_ping_is_a_form_encoded_webhook_id() -> None:
    raw = (FIXTURES / "ping.txt").read_bytes()

    assert raw == b"webhook_id=42"
    assert parse_qs(raw.decode()) == {"webhook_id": ["42"]}


def test_every_fixture_email_is_obviously_fake() -> None:
    emails = set()
    for path in FIXTURES.glob("*.json"):
        emails |= set(re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", path.read_text(encoding="utf-8")))
    assert emails
    assert {e for e in emails if not e.endswith("@example.com")} == set()


@pytest.mark.parametrize(
    ("status", "date_paid_gmt", "paid"),
    [
        ("processing", None, True),
        ("completed", None, True),
        ("on-hold", "2024-05-14T16:21:36", True),
        ("on-hold", None, False),
        ("pending", None, False),
        ("pending", "", False),
        ("checkout-draft", None, False),
        ("cancelled", "2024-05-14T16:21:36", False),
        ("failed", "2024-05-14T16:21:36", False),
        ("refunded", "2024-05-14T16:21:36", False),
        ("trash", "2024-05-14T16:21:36", False),
    ],
)
def test_is_paid(status: str, date_paid_gmt: str | None, paid: bool) -> None:
    assert is_paid(status, date_paid_gmt) is paid


def test_paid_statuses() -> None:
    assert PAID_STATUSES == frozenset({"processing", "completed"})


def test_date_created_is_the_fallback_and_is_read_as_utc() -> None:
    payload = load("order_created__processing.json")
    payload["date_created_gmt"] = None
    assert parse_order(payload).occurred_at == datetime(2024, 5, 14, 12, 21, 33, tzinfo=UTC)


def test_a_gmt_date_with_an_offset_is_converted_to_utc() -> None:
    payload = load("order_created__processing.json")
    payload["date_created_gmt"] = "2024-05-14T18:21:33+02:00"
    assert parse_order(payload).occurred_at == datetime(2024, 5, 14, 16, 21, 33, tzinfo=UTC)


def test_line_price_falls_back_to_subtotal_over_quantity() -> None:
    payload = load("order_created__processing.json")
    del payload["line_items"][0]["price"]
    order = parse_order(payload)
    assert str(order.items[0].price) == "3.00"
    assert order == EXPECTED_PROCESSING


def test_string_ids_are_accepted_and_zero_means_none() -> None:
    payload = load("order_created__processing.json")
    payload["id"] = "1187"
    payload["customer_id"] = "0"
    order = parse_order(payload)
    assert (order.order_id, order.shopper.customer_id) == ("1187", None)


def with_values(**values: Any) -> dict[str, Any]:
    payload = load("order_created__processing.json")
    payload.update(values)
    return payload


def without(key: str) -> dict[str, Any]:
    payload = load("order_created__processing.json")
    del payload[key]
    return payload


def with_line(**values: Any) -> dict[str, Any]:
    payload = load("order_created__processing.json")
    payload["line_items"][0].update(values)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (without("id"), "'id' is missing"),
        (with_values(id=0), "'id' is missing or not a positive integer"),
        (with_values(id=1187.0), "'id' is missing or not a positive integer"),
        (without("currency"), "no currency"),
        (with_values(currency="dollars"), "no currency"),
        (with_values(total="54,30"), "'total' is not a decimal amount"),
        (with_values(total=None), "'total' is missing or not a decimal amount"),
        (with_values(total="-1.00"), "'total' is not a finite, non-negative amount"),
        (with_values(date_created_gmt="14/05/2024"), "'date_created_gmt' is not an ISO 8601"),
        (with_values(date_created_gmt=None, date_created=None), "'date_created_gmt' is missing"),
        (without("status"), "'status' is missing"),
        (with_line(subtotal=None), "'line_items[].subtotal' is missing"),
        (with_line(quantity="2"), "'quantity' is missing or not a whole number"),
        (with_line(price=None, quantity=0), "neither 'price' nor a positive 'quantity'"),
        (with_values(line_items="none"), "'line_items' is not a list"),
        ([], "the body is not a JSON object"),
    ],
)
def test_invalid_orders_raise_an_actionable_value_error(payload: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        parse_order(payload)
    assert str(raised.value).startswith("WooCommerce order payload: ")
    assert "54,30" not in str(raised.value) and "example.com" not in str(raised.value)
