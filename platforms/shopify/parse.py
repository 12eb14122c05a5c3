"""Shopify order and checkout webhook bodies as neutral :class:`Order` and :class:`Checkout`.

Webhook bodies have the shape of the REST Admin API resources, which stay the reference for
field meanings even though the REST API itself is legacy (shopify.dev, "Order" resource,
https://shopify.dev/api/admin-rest/2024-10/resources/order). What this module relies on:

* ``id`` is a 64-bit integer. Python's ``json`` keeps integers exact, so ids are turned into
  strings straight from ``int``; a float id has already lost digits and is refused.
* ``currency`` is the *shop* currency and ``total_price`` / ``subtotal_price`` / line ``price``
  are strings in it; the ``*_set`` objects carry ``shop_money`` and ``presentment_money``, the
  latter in ``presentment_currency``, the currency the customer saw and paid in (GraphQL
  ``MoneyBag``: "presentmentMoney: amount in the customer's selected currency",
  https://shopify.dev/docs/api/admin-graphql/latest/objects/MoneyBag). We report the
  presentment amounts, so value and currency always agree with what the shopper paid.
* ``total_price`` is used rather than ``current_total_price``: the latter reflects later
  edits and refunds, while a purchase event reports what was bought.
* ``processed_at`` is "the date and time when an order was processed", the date shown on
  orders and in analytics (set into the past for imported orders); ``created_at`` is when
  Shopify created the record. Both are ISO 8601 with an offset.
* ``browser_ip`` and ``client_details {browser_ip, user_agent, ...}`` describe the browser
  that placed the order; ``customer`` may be absent ("apps should not depend on the existence
  of a customer object", e.g. POS orders); ``landing_site`` is the path and query of the page
  the buyer entered the shop on; ``note_attributes`` are ``[{name, value}]`` copied from cart
  attributes; ``test`` marks test orders; ``order_status_url`` is the order status page. Its
  path and query carry a key that opens the customer's order page, so only the shop's origin
  (``https://shop.example/``) is ever sent on as ``page.url``.
* ``source_name`` is ``"web"`` for the online store; ``"pos"`` and ``"shopify_draft_order"``
  are the values seen in real point-of-sale and draft-order payloads (Shopify documents the
  field but not a closed list of values).

Errors are :class:`ValueError` with messages that name the field, never a value, so they can
be logged and shown to the merchant without leaking personal data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from connector.clicks import click_ids_from_attributes, resolve_click_ids, ttclid_from_url
from connector.events import Checkout, ClickIds, LineItem, Order, Shopper, UnreadablePayload

ORDER_TOPIC_TRIGGERS: dict[str, frozenset[str]] = {
    "orders/create": frozenset({"created"}),
    "orders/paid": frozenset({"paid"}),
}
"""Which moment of an order each order topic represents (see :attr:`Order.triggers`)."""

SKIP_REASONS_BY_SOURCE_NAME: dict[str, str] = {
    "pos": "point of sale order",
    "shopify_draft_order": "draft order",
}
"""Orders not placed by a shopper in the online store: no ad click can have led to them."""

_MONEY_SIDES = ("presentment_money", "shop_money")


def parse_order(payload: dict[str, Any], topic: str) -> Order:
    """An ``orders/create`` or ``orders/paid`` body as an :class:`Order`.

    Raises:
        ValueError: unknown topic, or a missing or malformed id, currency, amount or date.
    """
    triggers = _order_triggers(topic)
    payload = _require_object(payload, "order")
    return Order(
        order_id=_required_id(payload.get("id"), "id", "order"),
        triggers=triggers,
        occurred_at=_order_time(payload),
        **_basket_fields(payload, "order"),
        page_url=_shop_origin(payload.get("order_status_url")),
        is_test=payload.get("test") is True,
        checkout_token=_text(payload.get("checkout_token")),
        cart_token=_text(payload.get("cart_token")),
        skip_reason=SKIP_REASONS_BY_SOURCE_NAME.get(_text(payload.get("source_name")) or ""),
    )


def parse_checkout(payload: dict[str, Any]) -> Checkout:
    """A ``checkouts/create`` or ``checkouts/update`` body as a :class:`Checkout`.

    ``occurred_at`` is ``created_at`` for both topics: the event is "checkout started", sent
    once per token, so later updates must not move its time. ``page_url`` stays None because
    the only URL in the body, ``abandoned_checkout_url``, carries a key that reopens the
    checkout with the shopper's details.

    Raises:
        ValueError: a missing or malformed token, currency, amount or date.
    """
    payload = _require_object(payload, "checkout")
    return Checkout(
        token=_required_id(payload.get("token"), "token", "checkout"),
        cart_token=_text(payload.get("cart_token")),
        occurred_at=_required_time(payload.get("created_at"), "created_at", "checkout"),
        **_basket_fields(payload, "checkout"),
    )


def _order_triggers(topic: str) -> frozenset[str]:
    try:
        return ORDER_TOPIC_TRIGGERS[topic]
    except KeyError:
        expected = ", ".join(ORDER_TOPIC_TRIGGERS)
        raise ValueError(f"Shopify topic {topic!r} is not an order topic ({expected})") from None


def _basket_fields(payload: dict[str, Any], kind: str) -> dict[str, Any]:
    """The fields orders and checkouts share, all money in one currency."""
    currency = _basket_currency(payload, kind)
    shop_currency = _currency_code(payload.get("currency"))
    return {
        "currency": currency,
        "total": _amount(payload, "total_price", currency, shop_currency, kind),
        "subtotal": _amount(payload, "subtotal_price", currency, shop_currency, kind),
        "items": _line_items(payload.get("line_items"), currency, shop_currency, kind),
        "shopper": _shopper(payload),
        "clicks": resolve_click_ids(*_click_candidates(payload)),
        "click_candidates": _click_candidates(payload),
        "referrer": _text(payload.get("referring_site")),
    }


def _basket_currency(payload: dict[str, Any], kind: str) -> str:
    """The presentment currency of the total when Shopify gives one, else the shop currency."""
    presentment = _object(_object(payload.get("total_price_set")).get("presentment_money"))
    currency = _currency_code(presentment.get("currency_code")) or _currency_code(
        payload.get("currency")
    )
    if currency is None:
        raise _invalid(kind, "no currency: 'currency' is missing or not an ISO 4217 code")
    return currency


def _amount(
    container: dict[str, Any], field: str, currency: str, shop_currency: str | None, kind: str
) -> Decimal:
    """``field`` in ``currency``: from ``<field>_set`` when a side of it is in that currency,
    else the plain shop-currency string when the shop currency is the one we report."""
    money_set = _object(container.get(f"{field}_set"))
    for side in _MONEY_SIDES:
        money = _object(money_set.get(side))
        if _currency_code(money.get("currency_code")) == currency:
            return _decimal(money.get("amount"), f"{field}_set.{side}.amount", kind)
    if currency == shop_currency and container.get(field) is not None:
        return _decimal(container.get(field), field, kind)
    raise _invalid(kind, f"'{field}' has no amount in the order currency {currency}")


def _line_items(
    value: object, currency: str, shop_currency: str | None, kind: str
) -> tuple[LineItem, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(line, dict) for line in value):
        raise _invalid(kind, "'line_items' is not a list of objects")
    return tuple(_line_item(line, currency, shop_currency, kind) for line in value)


def _line_item(
    line: dict[str, Any], currency: str, shop_currency: str | None, kind: str
) -> LineItem:
    return LineItem(
        product_id=_optional_id(line.get("product_id")),
        variant_id=_optional_id(line.get("variant_id")),
        sku=_text(line.get("sku")),
        name=_text(line.get("title")) or _text(line.get("name")),
        price=_amount(line, "price", currency, shop_currency, kind),
        quantity=_quantity(line.get("quantity"), kind),
        brand=_text(line.get("vendor")),
    )


def _shopper(payload: dict[str, Any]) -> Shopper:
    """Who bought. Address fields all come from one address (billing, else shipping, else the
    customer's default) so a name is never paired with someone else's city."""
    customer = _object(payload.get("customer"))
    billing = _object(payload.get("billing_address"))
    shipping = _object(payload.get("shipping_address"))
    address = billing or shipping or _object(customer.get("default_address"))
    client = _object(payload.get("client_details"))
    return Shopper(
        email=_first_text(
            payload.get("email"), payload.get("contact_email"), customer.get("email")
        ),
        phone=_first_text(
            payload.get("phone"), billing.get("phone"), shipping.get("phone"), customer.get("phone")
        ),
        customer_id=_optional_id(customer.get("id")),
        first_name=_text(address.get("first_name")),
        last_name=_text(address.get("last_name")),
        zip_code=_text(address.get("zip")),
        city=_text(address.get("city")),
        state=_first_text(address.get("province_code"), address.get("province")),
        country_code=_text(address.get("country_code")),
        ip=_first_text(payload.get("browser_ip"), client.get("browser_ip")),
        user_agent=_text(client.get("user_agent")),
        locale=_text(payload.get("customer_locale")),
    )


def _click_candidates(payload: dict[str, Any]) -> tuple[ClickIds, ClickIds]:
    """Cart attributes first (written by storefront code on purpose), then the landing page
    query string (best effort: it is the landing page of the session Shopify attributes).
    Stored click records go between the two (:func:`connector.clicks.with_stored_clicks`)."""
    from_attributes = click_ids_from_attributes(
        _note_attributes(payload.get("note_attributes")), "note_attributes"
    )
    landing_ttclid = ttclid_from_url(payload.get("landing_site"))
    from_landing = ClickIds(
        ttclid=landing_ttclid, source="landing_site" if landing_ttclid else None
    )
    return from_attributes, from_landing


def _note_attributes(value: object) -> dict[str, Any]:
    """``[{name, value}, ...]`` as a mapping; when a name repeats, the first entry wins."""
    attributes: dict[str, Any] = {}
    for entry in value if isinstance(value, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            attributes.setdefault(entry["name"], entry.get("value"))
    return attributes


def _order_time(payload: dict[str, Any]) -> datetime:
    if payload.get("processed_at"):
        return _required_time(payload["processed_at"], "processed_at", "order")
    return _required_time(payload.get("created_at"), "created_at", "order")


def _required_time(value: object, field: str, kind: str) -> datetime:
    """An aware UTC datetime. Shopify always sends an offset; a value without one is refused
    rather than guessed, since a wrong guess shifts the event by hours."""
    if not isinstance(value, str):
        raise _invalid(kind, f"'{field}' is missing or not a string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(kind, f"'{field}' is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise _invalid(kind, f"'{field}' has no UTC offset")
    return parsed.astimezone(UTC)


def _decimal(value: object, field: str, kind: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(kind, f"'{field}' is missing or not a decimal string")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _invalid(kind, f"'{field}' is not a decimal amount") from None
    if not amount.is_finite() or amount < 0:
        raise _invalid(kind, f"'{field}' is not a finite, non-negative amount")
    return amount


def _quantity(value: object, kind: str) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _invalid(kind, "a line item 'quantity' is missing or not a whole number")


def _required_id(value: object, field: str, kind: str) -> str:
    ident = _optional_id(value)
    if ident is None:
        raise _invalid(kind, f"'{field}' is missing or not an integer or string id")
    return ident


def _optional_id(value: object) -> str | None:
    """An id as a string, straight from ``int`` (exact at any size) or a string.

    Floats are refused: a 64-bit id that went through a float has lost its last digits.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _currency_code(value: object) -> str | None:
    code = _text(value)
    if code and len(code) == 3 and code.isascii() and code.isalpha():
        return code.upper()
    return None


def _require_object(payload: object, kind: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _invalid(kind, "the body is not a JSON object")
    return payload


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _first_text(*values: object) -> str | None:
    return next((t for t in map(_text, values) if t), None)


def _invalid(kind: str, problem: str) -> ValueError:
    return ValueError(f"Shopify {kind} payload: {problem}")


def _shop_origin(url: Any) -> str | None:
    """``https://host/`` of a URL, dropping a path and query that may hold access keys."""
    parts = urlsplit(_text(url) or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.hostname}/"


CONVERSION_TOPICS = frozenset({*ORDER_TOPIC_TRIGGERS, "checkouts/create", "checkouts/update"})
"""The topics that can become conversion events; every other one is acknowledged and ignored."""


def read_webhook(topic: str, payload: dict[str, Any]) -> Order | Checkout | None:
    """The order or checkout a verified conversion webhook means; None for other topics.

    Raises :class:`~connector.events.UnreadablePayload` naming the field when the body cannot
    be read, with the order id or checkout token when one is there.
    """
    if topic not in CONVERSION_TOPICS:
        return None
    try:
        if topic in ORDER_TOPIC_TRIGGERS:
            return parse_order(payload, topic)
        return parse_checkout(payload)
    except ValueError as exc:
        raise UnreadablePayload(str(exc), _resource_id(payload, topic)) from None


def _resource_id(payload: dict[str, Any], topic: str) -> str | None:
    """The order id or checkout token, when it can be read, to find the kept body by."""
    value = payload.get("id" if topic in ORDER_TOPIC_TRIGGERS else "token")
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return str(value)[:255] or None
