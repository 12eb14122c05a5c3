"""WooCommerce ``order.created`` / ``order.updated`` webhook bodies as a neutral :class:`Order`.

A WooCommerce webhook body for an order is the REST API v3 order, built when the delivery runs
(not when the event fired), so an ``order.created`` can already be paid and several updates
collapse into one snapshot. We therefore decide from the snapshot's state, not from the topic.
Field meanings are from the REST API v3 docs, "Order properties"
(woocommerce/woocommerce-rest-api-docs, source/includes/wp-api-v3/_orders.md):

* ``status``: pending, processing, on-hold, completed, cancelled, refunded, failed, trash
  (and any status a plugin registers).
* ``date_created_gmt`` / ``date_paid_gmt``: "as GMT", ISO 8601 *without* an offset
  (``"2017-03-22T19:28:02"``); ``date_created`` is in the site's timezone, which the body does
  not state.
* ``total`` ("Grand total") and line ``subtotal`` are strings; line ``price`` is a number;
  line ``quantity`` is an integer.
* ``customer_id``: "User ID who owns the order. 0 for guests."
* ``customer_ip_address``, ``customer_user_agent``: the shopper's browser at checkout.
* ``meta_data [{id, key, value}]``: where checkout code stores click ids and ad cookies
  (``_ttclid``, ``_ttp``, ``_fbclid``, ``_fbc``, ``_fbp``, ``_gclid``, ``_gbraid``, ``_wbraid``)
  and the WordPress plugin the shopper's consent (``_tcc_consent_marketing``...).

What varies legitimately, and how it is read: leniently, with a parse note on the event in
words a merchant can read (naming the field, never a value). WooCommerce never retries a
refused delivery and disables the webhook after a run of them (``WC_Webhook::failed_delivery``,
woocommerce/woocommerce, includes/class-wc-webhook.php), so a refusal loses this order and
risks every later one.

* Paid or not is decided first, from ``status`` and ``date_paid_gmt`` alone: an unpaid order
  (pending, on-hold, cancelled...) is ignored whatever its other fields hold, since a later
  snapshot brings it in once paid.
* Extensions send a quantity as ``"2"`` or ``2.0``: read as the whole number it is. A line
  whose quantity is not a whole number from 0 (unit-of-measure plugins sell ``1.5``), or that
  has neither a usable ``price`` nor a ``subtotal`` to derive one from, is left out of
  ``contents`` and the order is still sent; the order subtotal adds up the lines kept.
* Without ``date_created_gmt``, ``date_created`` is read as UTC (a few hours off rather than
  the purchase dropped); without either, the time the body is read.

A paid order is unreadable (:class:`~connector.events.UnreadablePayload`, kept by the webhook
for ``events reprocess``) only without an id, a currency or a total; any order is when its
``status`` is missing and no payment date says it is paid.
"""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from connector.clicks import click_ids_from_attributes
from connector.events import Consent, LineItem, Order, Shopper, UnreadablePayload
from connector.lenient import (
    MAX_ID_CHARS,
    amount,
    as_object,
    currency_code,
    identifier,
    iso_time,
    line_fields,
    text,
)

ORDER_TOPICS = frozenset({"order.created", "order.updated"})
"""The topics that can become purchases; every other one is acknowledged and ignored."""

PAID_STATUSES = frozenset({"processing", "completed"})
"""Statuses WooCommerce gives an order once payment is complete."""

UNPAID_FINAL_STATUSES = frozenset({"cancelled", "failed", "refunded", "trash"})
"""Statuses where an order is not a purchase, even if it carries a payment date."""

ORDER_TRIGGERS_WHEN_PAID = frozenset({"created", "paid"})
"""A paid WooCommerce order is both moments at once: there is no separate "paid" webhook."""


def read_webhook(topic: str, payload: dict[str, Any]) -> Order | None:
    """The paid order a verified webhook means; None for other topics and unpaid orders.

    Raises:
        UnreadablePayload: the order is paid but has no usable id, currency or total, or
            its status is missing and nothing says it was paid; the reason names the field,
            with the order id when it could be read.
    """
    if topic not in ORDER_TOPICS:
        return None
    body = _body(payload)
    if not _is_paid_order(body):
        return None
    return parse_order(body)


def parse_order(payload: dict[str, Any]) -> Order:
    """An order webhook body as an :class:`Order`.

    ``triggers`` is empty while the order is not paid (pending, on-hold, failed, cancelled...):
    the caller ignores it, and a later ``order.updated`` snapshot brings it in once paid.

    Raises:
        UnreadablePayload: no usable id, currency or total, or no status to tell whether the
            order is paid.
    """
    body = _body(payload)
    triggers = ORDER_TRIGGERS_WHEN_PAID if _is_paid_order(body) else frozenset()
    order_id = _order_id(body)
    if order_id is None:
        raise _unreadable("'id' is missing or not a positive integer", None)
    currency = currency_code(body.get("currency"))
    if currency is None:
        raise _unreadable("no currency: 'currency' is missing or not an ISO 4217 code", order_id)
    total = amount(body.get("total"))
    if total is None:
        raise _unreadable("'total' is missing or not a finite, sane amount", order_id)
    notes = _status_notes(body)
    items, subtotal = _line_items(body.get("line_items"), total, notes)
    occurred_at = _created_at(body, notes)
    meta = _meta(body.get("meta_data"))
    return Order(
        order_id=order_id,
        triggers=triggers,
        occurred_at=occurred_at,
        currency=currency,
        total=total,
        subtotal=subtotal,
        items=items,
        shopper=_shopper(body),
        clicks=click_ids_from_attributes(meta, "order_meta"),
        consent=_consent(meta),
        page_url=_site_url(body.get("_links")),
        notes=tuple(dict.fromkeys(notes)),
    )


def _site_url(links: object) -> str | None:
    """The shop's address, from the REST links every order body carries
    (``_links.self[0].href`` = ``https://shop.example/wp-json/wc/v3/orders/1187``).

    A WooCommerce order knows no page; its shop's home page is the truest ``page_url`` there
    is, and Meta requires one for website events (``event_source_url``, Meta's Server Event
    Parameters, https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event).
    The thank-you page's address would carry the order key, which lets anyone view the order.
    """
    self_links = links.get("self") if isinstance(links, dict) else None
    first = self_links[0] if isinstance(self_links, list) and self_links else None
    href = first.get("href") if isinstance(first, dict) else None
    if not isinstance(href, str) or "/wp-json/" not in href:
        return None
    site = href.split("/wp-json/", 1)[0]
    return site + "/" if site.startswith(("https://", "http://")) and len(site) < 500 else None


def is_paid(status: str, date_paid_gmt: object) -> bool:
    """Paid when the status says so, or when a payment date is set on an order that was not
    since cancelled, failed, refunded or trashed (an on-hold order can carry one)."""
    if status in PAID_STATUSES:
        return True
    return text(date_paid_gmt) is not None and status not in UNPAID_FINAL_STATUSES


def _is_paid_order(body: dict[str, Any]) -> bool:
    """:func:`is_paid` for a body; without a status, a payment date alone says paid.

    Raises:
        UnreadablePayload: no status and no payment date: whether to send it cannot be told,
            so the body is kept rather than guessed either way.
    """
    status = text(body.get("status"))
    if status is None and text(body.get("date_paid_gmt")) is None:
        raise _unreadable(
            "'status' is missing and there is no 'date_paid_gmt': whether the order is paid"
            " cannot be told",
            _order_id(body),
        )
    return is_paid(status or "", body.get("date_paid_gmt"))


def _status_notes(body: dict[str, Any]) -> list[str]:
    if text(body.get("status")) is None:
        return ["'status' is missing: the order counts as paid because 'date_paid_gmt' is set"]
    return []


def _created_at(body: dict[str, Any], notes: list[str]) -> datetime:
    """``date_created_gmt``; else ``date_created``, read as UTC too: the body does not give the
    site's timezone, and a few hours off is better than dropping the purchase."""
    gmt = iso_time(body.get("date_created_gmt"))
    if gmt is not None:
        return gmt.replace(tzinfo=UTC) if gmt.tzinfo is None else gmt
    local = iso_time(body.get("date_created"))
    if local is not None and local.tzinfo is not None:
        return local
    if local is not None:
        notes.append(
            "'date_created_gmt' is missing or unusable: 'date_created', the site's local time,"
            " was read as UTC"
        )
        return local.replace(tzinfo=UTC)
    notes.append(
        "no usable 'date_created_gmt' or 'date_created': the time the order was read is used"
    )
    return datetime.now(UTC)


def _line_items(
    value: object, total: Decimal, notes: list[str]
) -> tuple[tuple[LineItem, ...], Decimal]:
    """The lines that can be reported, and the order subtotal: the sum of their
    ``subtotal`` (before discounts, without tax), since the body has no order-level one."""
    if value is None:
        return (), Decimal(0)
    if not isinstance(value, list):
        notes.append("'line_items' is not a list: the event has no contents")
        return (), Decimal(0)
    lines = [line for line in (_line_item(line, notes) for line in value) if line is not None]
    subtotal = amount(sum((line_subtotal for _, line_subtotal in lines), Decimal(0)))
    if subtotal is None:
        notes.append("the line items' subtotals do not add up to a sane amount: the total is used")
        subtotal = total
    return tuple(item for item, _ in lines), subtotal


def _line_item(raw: object, notes: list[str]) -> tuple[LineItem, Decimal] | None:
    """A line with its subtotal, or None (and a note) when it cannot be reported."""
    fields = line_fields(raw, notes)
    if fields is None:
        return None
    line, count = fields
    subtotal = amount(line.get("subtotal"))
    price = _line_price(line.get("price"), subtotal, count, notes)
    if price is None:
        notes.append("a line item without a usable 'price' or 'subtotal' was left out of contents")
        return None
    if subtotal is None:
        subtotal = amount(price * count)
        if subtotal is None:
            notes.append("a line item whose price times quantity is not sane was left out")
            return None
        notes.append("a line item without a usable 'subtotal' counts as price times quantity")
    item = LineItem(
        product_id=_positive_id(line.get("product_id")),
        variant_id=_positive_id(line.get("variation_id")),
        sku=text(line.get("sku")),
        name=_name(line.get("name")),
        price=price,
        quantity=count,
    )
    return item, subtotal


def _line_price(
    value: object, subtotal: Decimal | None, count: int, notes: list[str]
) -> Decimal | None:
    """The unit price: ``price`` (a JSON number, read through its shortest text form so 12.99
    stays 12.99), else ``subtotal / quantity``."""
    price = amount(value)
    if price is not None:
        return price
    if value is not None and value != "":
        notes.append("a line item's 'price' is unusable: its subtotal over quantity is used")
    if subtotal is None or count == 0:
        return None
    return amount(subtotal / count)


def _name(value: object) -> str | None:
    """Product names come HTML-escaped from the REST API (``"Ship Your Idea &ndash; ..."``)."""
    name = text(value)
    return html.unescape(name) if name else None


def _shopper(body: dict[str, Any]) -> Shopper:
    billing = as_object(body.get("billing"))
    return Shopper(
        email=text(billing.get("email")),
        phone=text(billing.get("phone")),
        customer_id=_positive_id(body.get("customer_id")),
        first_name=text(billing.get("first_name")),
        last_name=text(billing.get("last_name")),
        zip_code=text(billing.get("postcode")),
        city=text(billing.get("city")),
        state=text(billing.get("state")),
        country_code=text(billing.get("country")),
        ip=text(body.get("customer_ip_address")),
        user_agent=text(body.get("customer_user_agent")),
    )


def _meta(meta_data: object) -> dict[str, Any]:
    """Order meta by key, the first entry of a repeated key winning. The WordPress plugin (or
    a checkout snippet) saves click ids and ad cookies there (``_ttclid``, ``_ttp``,
    ``_fbclid``, ``_fbc``, ``_fbp``, ``_gclid``, ``_gbraid``, ``_wbraid``:
    :data:`connector.clicks.ATTRIBUTE_KEYS`) and the shopper's consent (:func:`_consent`)."""
    meta: dict[str, Any] = {}
    for entry in meta_data if isinstance(meta_data, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            meta.setdefault(entry["key"], entry.get("value"))
    return meta


CONSENT_META = {
    "marketing": "_tcc_consent_marketing",
    "analytics": "_tcc_consent_analytics",
    "sale_of_data": "_tcc_consent_sale_of_data",
}
CONSENT_META_VALUES = {"granted": True, "denied": False}


def _consent(meta: dict[str, Any]) -> Consent:
    """The shopper's consent the WordPress plugin read from the WP Consent API at checkout
    (``wp_has_consent('marketing')``, ``'statistics'``) and saved as ``"granted"`` or
    ``"denied"``; absent or anything else is unknown. Its source is the plugin's
    ``_tcc_consent_source`` (``wp_consent_api``), else ``order_meta``."""
    found = {
        name: CONSENT_META_VALUES.get(value) if isinstance(value := meta.get(key), str) else None
        for name, key in CONSENT_META.items()
    }
    consent = Consent(**found)
    if not consent.known():
        return consent
    source = meta.get("_tcc_consent_source")
    return replace(consent, source=source if source == "wp_consent_api" else "order_meta")


def _order_id(body: dict[str, Any]) -> str | None:
    return _positive_id(body.get("id"))


def _positive_id(value: object) -> str | None:
    """A positive integer id as a string; 0 (WooCommerce's "none": guest customer, simple
    product without variation, deleted product) and anything else give None."""
    ident = identifier(value, MAX_ID_CHARS)
    if ident is None or not (ident.isascii() and ident.isdigit()) or int(ident) == 0:
        return None
    return str(int(ident))


def _body(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _unreadable("the body is not a JSON object", None)
    return payload


def _unreadable(problem: str, resource_id: str | None) -> UnreadablePayload:
    return UnreadablePayload(f"WooCommerce order payload: {problem}", resource_id)
