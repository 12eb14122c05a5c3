"""WooCommerce ``order.created`` / ``order.updated`` webhook bodies as a neutral :class:`Order`.

A WooCommerce webhook body for an order is the REST API v3 order, built when the delivery runs
(not when the event fired), so an ``order.created`` can already be paid and several updates
collapse into one snapshot. We therefore decide from the snapshot's state, not from the topic.
Field meanings are from the REST API v3 docs, "Order properties"
(woocommerce/woocommerce-rest-api-docs, source/includes/wp-api-v3/_orders.md):

* ``status``: pending, processing, on-hold, completed, cancelled, refunded, failed, trash.
* ``date_created_gmt`` / ``date_paid_gmt``: "as GMT", ISO 8601 *without* an offset
  (``"2017-03-22T19:28:02"``); ``date_created`` is in the site's timezone, which the body does
  not state.
* ``total`` ("Grand total") and line ``subtotal`` are strings; line ``price`` is a number.
* ``customer_id``: "User ID who owns the order. 0 for guests."
* ``customer_ip_address``, ``customer_user_agent``: the shopper's browser at checkout.
* ``meta_data [{id, key, value}]``: where checkout code stores a ``_ttclid`` / ``_ttp``.

Errors are :class:`ValueError` with messages that name the field, never a value.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.clicks import click_ids_from_attributes
from connector.events import ClickIds, LineItem, Order, Shopper, UnreadablePayload

PAID_STATUSES = frozenset({"processing", "completed"})
"""Statuses WooCommerce gives an order once payment is complete."""

UNPAID_FINAL_STATUSES = frozenset({"cancelled", "failed", "refunded", "trash"})
"""Statuses where an order is not a purchase, even if it carries a payment date."""

ORDER_TRIGGERS_WHEN_PAID = frozenset({"created", "paid"})
"""A paid WooCommerce order is both moments at once: there is no separate "paid" webhook."""


def parse_order(payload: dict[str, Any]) -> Order:
    """An order webhook body as an :class:`Order`.

    ``triggers`` is empty while the order is not paid (pending, on-hold, failed, cancelled...):
    the caller ignores it, and a later ``order.updated`` snapshot brings it in once paid.

    Raises:
        ValueError: a missing or malformed id, status, currency, amount or date.
    """
    if not isinstance(payload, dict):
        raise _invalid("the body is not a JSON object")
    items = _line_items(payload.get("line_items"))
    return Order(
        order_id=_required_id(payload.get("id")),
        triggers=_triggers(payload),
        occurred_at=_created_at(payload),
        currency=_currency(payload.get("currency")),
        total=_decimal(payload.get("total"), "total"),
        subtotal=sum((subtotal for _, subtotal in items), Decimal("0")),
        items=tuple(item for item, _ in items),
        shopper=_shopper(payload),
        clicks=_clicks(payload.get("meta_data")),
    )


def is_paid(status: str, date_paid_gmt: object) -> bool:
    """Paid when the status says so, or when a payment date is set on an order that was not
    since cancelled, failed, refunded or trashed (an on-hold order can carry one)."""
    if status in PAID_STATUSES:
        return True
    return bool(date_paid_gmt) and status not in UNPAID_FINAL_STATUSES


def _triggers(payload: dict[str, Any]) -> frozenset[str]:
    status = payload.get("status")
    if not isinstance(status, str) or not status.strip():
        raise _invalid("'status' is missing")
    return (
        ORDER_TRIGGERS_WHEN_PAID
        if is_paid(status.strip(), payload.get("date_paid_gmt"))
        else frozenset()
    )


def _created_at(payload: dict[str, Any]) -> datetime:
    """``date_created_gmt``; else ``date_created``, read as UTC too: the body does not give the
    site's timezone, and a few hours off is better than dropping the purchase."""
    if payload.get("date_created_gmt"):
        return _utc_time(payload["date_created_gmt"], "date_created_gmt")
    if payload.get("date_created"):
        return _utc_time(payload["date_created"], "date_created")
    raise _invalid("'date_created_gmt' is missing")


def _utc_time(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise _invalid(f"'{field}' is not a string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(f"'{field}' is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _line_items(value: object) -> list[tuple[LineItem, Decimal]]:
    """Each line with its ``subtotal`` (before discounts, without tax), which the order
    subtotal adds up: the body has no order-level subtotal field."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(line, dict) for line in value):
        raise _invalid("'line_items' is not a list of objects")
    return [_line_item(line) for line in value]


def _line_item(line: dict[str, Any]) -> tuple[LineItem, Decimal]:
    subtotal = _decimal(line.get("subtotal"), "line_items[].subtotal")
    quantity = _quantity(line.get("quantity"))
    item = LineItem(
        product_id=_optional_id(line.get("product_id")),
        variant_id=_optional_id(line.get("variation_id")),
        sku=_text(line.get("sku")),
        name=_name(line.get("name")),
        price=_line_price(line.get("price"), subtotal, quantity),
        quantity=quantity,
    )
    return item, subtotal


def _line_price(price: object, subtotal: Decimal, quantity: int) -> Decimal:
    """The unit price: ``price`` (a JSON number, read through its shortest text form so 12.99
    stays 12.99), else ``subtotal / quantity``."""
    if price is not None and price != "":
        return _decimal(price, "line_items[].price")
    if quantity > 0:
        return subtotal / quantity
    raise _invalid("a line item has neither 'price' nor a positive 'quantity'")


def _name(value: object) -> str | None:
    """Product names come HTML-escaped from the REST API (``"Ship Your Idea &ndash; ..."``)."""
    text = _text(value)
    return html.unescape(text) if text else None


def _shopper(payload: dict[str, Any]) -> Shopper:
    billing = payload.get("billing") if isinstance(payload.get("billing"), dict) else {}
    return Shopper(
        email=_text(billing.get("email")),
        phone=_text(billing.get("phone")),
        customer_id=_optional_id(payload.get("customer_id")),
        first_name=_text(billing.get("first_name")),
        last_name=_text(billing.get("last_name")),
        zip_code=_text(billing.get("postcode")),
        city=_text(billing.get("city")),
        state=_text(billing.get("state")),
        country_code=_text(billing.get("country")),
        ip=_text(payload.get("customer_ip_address")),
        user_agent=_text(payload.get("customer_user_agent")),
    )


def _clicks(meta_data: object) -> ClickIds:
    """Click ids a checkout snippet saved as order meta (``_ttclid``, ``ttclid``, ``_ttp``)."""
    meta: dict[str, Any] = {}
    for entry in meta_data if isinstance(meta_data, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            meta.setdefault(entry["key"], entry.get("value"))
    return click_ids_from_attributes(meta, "order_meta")


def _decimal(value: object, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(f"'{field}' is missing or not a decimal amount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _invalid(f"'{field}' is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise _invalid(f"'{field}' is not a finite, non-negative amount")
    return amount


def _quantity(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _invalid("a line item 'quantity' is missing or not a whole number")


def _currency(value: object) -> str:
    code = _text(value)
    if code and len(code) == 3 and code.isascii() and code.isalpha():
        return code.upper()
    raise _invalid("no currency: 'currency' is missing or not an ISO 4217 code")


def _required_id(value: object) -> str:
    ident = _optional_id(value)
    if ident is None:
        raise _invalid("'id' is missing or not a positive integer")
    return ident


def _optional_id(value: object) -> str | None:
    """A positive integer id as a string; 0 (WooCommerce's "none": guest customer, simple
    product without variation, deleted product) and anything else give None."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    return None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _invalid(problem: str) -> ValueError:
    return ValueError(f"WooCommerce order payload: {problem}")


ORDER_TOPICS = frozenset({"order.created", "order.updated"})
"""The topics that can become purchases; every other one is acknowledged and ignored."""


def read_webhook(topic: str, payload: dict[str, Any]) -> Order | None:
    """The paid order a verified webhook means; None for other topics and unpaid orders.

    Raises :class:`~connector.events.UnreadablePayload` naming the field when the body cannot
    be read, with the order id when one is there.
    """
    if topic not in ORDER_TOPICS:
        return None
    try:
        order = parse_order(payload)
    except ValueError as exc:
        raise UnreadablePayload(str(exc), _resource_id(payload)) from None
    return order if order.triggers else None


def _resource_id(payload: dict[str, Any]) -> str | None:
    """The order id, when it can be read, to find the kept body by."""
    value = payload.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return str(value)[:255] or None
