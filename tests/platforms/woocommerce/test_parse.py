from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select

from connector.destinations.tiktok import DESTINATION as TIKTOK
from connector.events import ClickIds, LineItem, Order, Shopper, UnreadablePayload
from connector.mapping import EventOptions, plan_event
from connector.models import OutboxEvent
from platforms.woocommerce.parse import PAID_STATUSES, is_paid, parse_order, read_webhook
from tests.platforms.mutations import LEAKABLE, mutations
from tests.support import fixture_bytes, woocommerce_headers

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
    page_url="https://shop.example.com/",  # the shop's home, from the order's REST links
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
        (with_values(id="1" * 65), "'id' is missing or not a positive integer"),
        (without("currency"), "no currency"),
        (with_values(currency="dollars"), "no currency"),
        (with_values(total="54,30"), "'total' is missing or not a finite, sane amount"),
        (with_values(total=None), "'total' is missing or not a finite, sane amount"),
        (with_values(total="-1.00"), "'total' is missing or not a finite, sane amount"),
        (with_values(total="1e30"), "'total' is missing or not a finite, sane amount"),
        (with_values(total="NaN"), "'total' is missing or not a finite, sane amount"),
        (with_values(total=10**40), "'total' is missing or not a finite, sane amount"),
        (with_values(status=None, date_paid_gmt=None), "'status' is missing and there is no"),
        ([], "the body is not a JSON object"),
    ],
)
def test_paid_orders_without_id_currency_or_total_are_unreadable(
    payload: Any, message: str
) -> None:
    with pytest.raises(UnreadablePayload, match=re.escape(message)) as raised:
        read_webhook("order.created", payload)
    assert str(raised.value).startswith("WooCommerce order payload: ")
    assert "54,30" not in str(raised.value) and "example.com" not in str(raised.value)


def test_unreadable_carries_the_order_id_when_it_was_read() -> None:
    with pytest.raises(UnreadablePayload) as raised:
        read_webhook("order.updated", with_values(total="1e30"))
    assert raised.value.resource_id == "1187"

    with pytest.raises(UnreadablePayload) as raised:
        read_webhook("order.updated", with_values(id="one", total=None))
    assert raised.value.resource_id is None


def test_paid_or_not_is_decided_before_anything_else_is_read() -> None:
    payload = load("order_created__pending_unreadable_money.json")
    assert (payload["status"], payload["total"], payload["currency"]) == ("pending", "", "")

    assert read_webhook("order.created", payload) is None
    for status in ("on-hold", "cancelled", "failed", "checkout-draft"):
        assert read_webhook("order.updated", {**payload, "status": status}) is None
    with pytest.raises(UnreadablePayload, match="no currency"):
        read_webhook("order.updated", {**payload, "status": "processing"})


def test_other_topics_and_unpaid_orders_are_nothing_to_send() -> None:
    assert read_webhook("order.deleted", load("order_created__processing.json")) is None
    assert read_webhook("product.created", []) is None
    assert read_webhook("order.created", load("order_created__pending.json")) is None
    assert read_webhook("order.updated", load("order_updated__on_hold.json")) is None
    assert read_webhook("order.updated", load("order_updated__cancelled.json")) is None
    assert read_webhook("order.created", load("order_created__processing.json")) == (
        EXPECTED_PROCESSING
    )


def test_a_quantity_sent_as_a_string_is_read() -> None:
    payload = load("order_created__quantity_string.json")
    assert payload["line_items"][0]["quantity"] == "2"

    order = read_webhook("order.created", payload)

    assert order == replace(EXPECTED_PROCESSING, order_id="1192")
    assert order is not None and order.notes == ()


def test_a_fractional_quantity_leaves_the_line_out() -> None:
    payload = load("order_created__decimal_quantity.json")
    assert payload["line_items"][2]["quantity"] == 1.5

    order = read_webhook("order.created", payload)

    assert order == replace(
        EXPECTED_PROCESSING,
        order_id="1193",
        items=EXPECTED_PROCESSING.items[:2],
        subtotal=Decimal("18.00"),
    )
    assert order is not None and order.total == Decimal("54.30")
    assert order.notes == (
        "a line item whose 'quantity' is not a whole number from 0 was left out of contents",
    )


def test_a_line_without_price_or_subtotal_is_left_out_and_the_order_sent() -> None:
    payload = load("order_created__line_without_price.json")
    assert (payload["line_items"][2]["price"], payload["line_items"][2]["subtotal"]) == (None, "")

    order = read_webhook("order.created", payload)

    assert order == replace(
        EXPECTED_PROCESSING,
        order_id="1194",
        items=EXPECTED_PROCESSING.items[:2],
        subtotal=Decimal("18.00"),
    )
    assert order is not None
    assert order.notes == (
        "a line item without a usable 'price' or 'subtotal' was left out of contents",
    )


def test_without_gmt_dates_the_local_date_is_read_as_utc_with_a_note() -> None:
    payload = load("order_created__no_gmt_dates.json")
    assert payload["date_created_gmt"] is None and payload["date_paid_gmt"] is None

    order = read_webhook("order.created", payload)

    assert order == replace(
        EXPECTED_PROCESSING,
        order_id="1196",
        occurred_at=datetime(2024, 5, 14, 12, 21, 33, tzinfo=UTC),
    )
    assert order is not None
    assert order.notes == (
        "'date_created_gmt' is missing or unusable: 'date_created', the site's local time,"
        " was read as UTC",
    )


@pytest.mark.parametrize(
    ("line", "price", "subtotal", "note"),
    [
        ({"price": None}, Decimal("3.00"), Decimal("6.00"), None),
        (
            {"price": "three"},
            Decimal("3.00"),
            Decimal("6.00"),
            "a line item's 'price' is unusable: its subtotal over quantity is used",
        ),
        (
            {"subtotal": None},
            Decimal("3"),
            Decimal("6"),
            "a line item without a usable 'subtotal' counts as price times quantity",
        ),
        (
            {"subtotal": "1e30"},
            Decimal("3"),
            Decimal("6"),
            "a line item without a usable 'subtotal' counts as price times quantity",
        ),
    ],
)
def test_a_line_price_or_subtotal_is_derived_from_the_other(
    line: dict[str, Any], price: Decimal, subtotal: Decimal, note: str | None
) -> None:
    order = parse_order(with_line(**line))
    assert order.items[0].price == price
    assert order.subtotal == subtotal + Decimal("36.95")
    assert order.notes == ((note,) if note else ())


@pytest.mark.parametrize(
    ("line_items", "note"),
    [
        ("none", "'line_items' is not a list: the event has no contents"),
        ([["a", "list"]], "a line item that is not an object was left out of contents"),
    ],
)
def test_line_items_that_are_not_objects_leave_no_contents(line_items: Any, note: str) -> None:
    order = parse_order(with_values(line_items=line_items))
    assert (order.items, order.subtotal, order.total, order.notes) == (
        (),
        Decimal("0"),
        Decimal("54.30"),
        (note,),
    )


@pytest.mark.parametrize(
    ("values", "occurred_at", "note"),
    [
        (
            {"date_created_gmt": "14/05/2024"},
            datetime(2024, 5, 14, 12, 21, 33, tzinfo=UTC),
            "'date_created_gmt' is missing or unusable: 'date_created', the site's local time,"
            " was read as UTC",
        ),
        (
            {"date_created_gmt": None, "date_created": "2024-05-14T12:21:33-04:00"},
            datetime(2024, 5, 14, 16, 21, 33, tzinfo=UTC),
            None,
        ),
    ],
)
def test_order_time_fallbacks(
    values: dict[str, Any], occurred_at: datetime, note: str | None
) -> None:
    order = parse_order(with_values(**values))
    assert (order.occurred_at, order.notes) == (occurred_at, (note,) if note else ())


def test_with_no_usable_date_the_order_is_timed_when_read() -> None:
    before = datetime.now(UTC)
    order = parse_order(with_values(date_created_gmt=None, date_created=["2024"]))
    assert before <= order.occurred_at <= datetime.now(UTC)
    assert order.notes == (
        "no usable 'date_created_gmt' or 'date_created': the time the order was read is used",
    )


def test_a_missing_status_with_a_payment_date_is_paid_with_a_note() -> None:
    order = read_webhook("order.updated", without("status"))
    assert order is not None and order.triggers == PAID
    assert order.notes == (
        "'status' is missing: the order counts as paid because 'date_paid_gmt' is set",
    )


def test_nested_garbage_in_optional_fields_is_ignored() -> None:
    order = parse_order(
        with_values(
            billing=["john.doe@example.com"],
            customer_id={"id": 12},
            meta_data={"key": "ttclid"},
            customer_ip_address=19851100023,
            customer_user_agent=None,
        )
    )
    assert (order.total, order.items, order.notes, order.clicks) == (
        Decimal("54.30"),
        EXPECTED_PROCESSING.items,
        (),
        ClickIds(),
    )
    assert order.shopper == Shopper()


ORIGINAL_FIXTURES = [
    "order_created__processing.json",
    "order_created__pending.json",
    "order_created__guest_with_ttclid_meta.json",
    "order_updated__completed.json",
    "order_updated__on_hold.json",
    "order_updated__cancelled.json",
]
"""The fixtures shaped as the WooCommerce REST API documents an order."""


@pytest.mark.parametrize("name", ORIGINAL_FIXTURES)
def test_bodies_shaped_as_woocommerce_documents_them_read_without_a_note(name: str) -> None:
    assert parse_order(load(name)).notes == ()


UNREADABLE_FIELDS = ("'id'", "no currency", "'total'", "'status'", "not a JSON object")
"""What alone may make a body unreadable: no id, no currency, no total, no way to tell paid."""


def deeply_nested(depth: int) -> Any:
    value: Any = "1.00"
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    "body",
    [
        [],
        "order",
        7,
        None,
        {},
        {"status": ["processing"]},
        {"id": 1, "status": "processing", "currency": "USD", "total": deeply_nested(50_000)},
        {
            "id": 1,
            "status": "completed",
            "currency": "USD",
            "total": "1.00",
            "line_items": [deeply_nested(50_000)],
            "meta_data": [{"key": "_ttclid", "value": deeply_nested(50_000)}],
            "billing": deeply_nested(50_000),
        },
    ],
    ids=["list", "string", "number", "null", "empty", "list-status", "deep-total", "deep-fields"],
)
def test_nasty_bodies_are_an_order_nothing_or_unreadable(body: Any) -> None:
    assert_reads_or_is_unreadable(body, "table")


@pytest.mark.parametrize("name", ORIGINAL_FIXTURES)
def test_mutated_real_bodies_are_an_order_nothing_or_unreadable_never_anything_else(
    name: str,
) -> None:
    for change, body in mutations(load(name), count=150, seed=name):
        assert_reads_or_is_unreadable(body, change)


def assert_reads_or_is_unreadable(body: Any, change: str) -> None:
    """read_webhook gives a paid order that maps to a sendable event, None for an unpaid one,
    or raises UnreadablePayload for the few fields that allow it; no value shows in what it
    says."""
    try:
        order = read_webhook("order.updated", body)
    except UnreadablePayload as exc:
        assert any(field in exc.reason for field in UNREADABLE_FIELDS), (change, exc.reason)
        assert not any(value in exc.reason for value in LEAKABLE), (change, exc.reason)
        return
    except Exception as exc:  # the failure names the mutation that caused it
        pytest.fail(f"{change}: {type(exc).__name__}: {exc}")
    if order is None:
        return
    assert order.triggers == PAID, change
    assert not any(value in note for note in order.notes for value in LEAKABLE), change
    planned = plan_event(order, TIKTOK, EventOptions(), test_mode=True)
    assert planned is not None, change
    json.dumps(planned.event.to_json(), allow_nan=False)


@pytest.mark.postgres
def test_webhooks_read_leniently_are_accepted_with_their_notes_and_unpaid_ones_ignored(
    client: Any, services: Any, woocommerce_store: tuple[str, str]
) -> None:
    store_id, secret = woocommerce_store
    answers = {}
    for name in (
        "order_created__quantity_string.json",
        "order_created__decimal_quantity.json",
        "order_created__pending_unreadable_money.json",
    ):
        body = fixture_bytes("woocommerce", name)
        answer = client.post(
            f"/webhooks/woocommerce/{store_id}",
            data=body,
            headers=woocommerce_headers("order.created", body, secret),
        )
        answers[name] = (answer.status_code, answer.json["status"])

    assert answers == {
        "order_created__quantity_string.json": (200, "accepted"),
        "order_created__decimal_quantity.json": (200, "accepted"),
        "order_created__pending_unreadable_money.json": (200, "ignored"),
    }
    with services.db.session() as session:
        stored = {e.event_id: e.parse_notes for e in session.scalars(select(OutboxEvent))}
    assert stored == {
        "1192": None,
        "1193": "a line item whose 'quantity' is not a whole number from 0 was left out of"
        " contents",
    }


@pytest.mark.parametrize(
    "links",
    [None, {}, {"self": []}, {"self": [{"href": "ftp://x/wp-json/"}]}, {"self": [{"href": 5}]}],
)
def test_an_order_without_usable_rest_links_has_no_page(links) -> None:
    payload = load("order_created__processing.json")
    payload["_links"] = links
    order = read_webhook("order.created", payload)
    assert order is not None and order.page_url is None
