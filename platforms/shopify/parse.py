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

What varies legitimately, and how it is read: leniently, with a parse note on the event in
words a merchant can read (naming the field, never a value), because a verified webhook we
refuse is an order lost (Shopify retries the same body "8 times over 4 hours" and then
gives up, https://shopify.dev/changelog/updates-to-webhook-retry-mechanism).

* The time: ``processed_at`` when it has an offset, else ``created_at`` (Shopify's own test
  notifications send ``processed_at: null``); a time without an offset is read as UTC only
  when there is no other; with no usable time at all, the time the body is read.
* Money: the presentment side when ``total_price_set.presentment_money`` is there. An amount
  whose presentment side is missing (no matching ``subtotal_price_set`` or line
  ``price_set``, as in bodies from older API versions) is converted from its shop side at the
  order's own rate, presentment total over shop total. When that rate cannot be had, or the
  total has no usable presentment side, every amount is the shop currency's: one event never
  mixes currencies. A ``subtotal_price`` that cannot be read is replaced by the total.
* Lines: ``line_items`` may be absent; a line without a usable price or whole quantity is
  left out of ``contents`` and the order is still sent.
* Tokens and ids of other resources that are not usable are dropped (ids are strings of at
  most a column's width, integers kept exact).

A body is unreadable (:class:`~connector.events.UnreadablePayload`, kept by the webhook for
``events reprocess``) only without an id (a token for checkouts), a currency or a total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from connector.clicks import click_ids_from_attributes, click_ids_from_url, resolve_click_ids
from connector.events import Checkout, ClickIds, LineItem, Order, Shopper, UnreadablePayload
from connector.lenient import (
    MAX_ID_CHARS,
    MAX_TOKEN_CHARS,
    amount,
    as_object,
    currency_code,
    first_text,
    identifier,
    iso_time,
    line_fields,
    text,
)

ORDER_TOPIC_TRIGGERS: dict[str, frozenset[str]] = {
    "orders/create": frozenset({"created"}),
    "orders/paid": frozenset({"paid"}),
}
"""Which moment of an order each order topic represents (see :attr:`Order.triggers`)."""

CONVERSION_TOPICS = frozenset({*ORDER_TOPIC_TRIGGERS, "checkouts/create", "checkouts/update"})
"""The topics that can become conversion events; every other one is acknowledged and ignored."""

SKIP_REASONS_BY_SOURCE_NAME: dict[str, str] = {
    "pos": "point of sale order",
    "shopify_draft_order": "draft order",
}
"""Orders not placed by a shopper in the online store: no ad click can have led to them."""

PRESENTMENT, SHOP = "presentment_money", "shop_money"


def read_webhook(topic: str, payload: dict[str, Any]) -> Order | Checkout | None:
    """The order or checkout a verified conversion webhook means; None for other topics.

    Raises:
        UnreadablePayload: no usable id (token), currency or total; the reason names the
            field, and the order id or checkout token comes with it when it could be read.
    """
    if topic not in CONVERSION_TOPICS:
        return None
    if topic in ORDER_TOPIC_TRIGGERS:
        return parse_order(payload, topic)
    return parse_checkout(payload)


def parse_order(payload: dict[str, Any], topic: str) -> Order:
    """An ``orders/create`` or ``orders/paid`` body as an :class:`Order`.

    Raises:
        UnreadablePayload: no usable id, currency or total.
        ValueError: ``topic`` is not an order topic (a caller's mistake, not the body's).
    """
    triggers = _order_triggers(topic)
    body = _body(payload, "order")
    order_id = _required_id(body, "id", "order", MAX_ID_CHARS)
    notes: list[str] = []
    basket = _basket_fields(body, "order", order_id, notes)
    occurred_at = _event_time(body, ("processed_at", "created_at"), "order", notes)
    checkout_token = _token(body, "checkout_token", notes)
    cart_token = _token(body, "cart_token", notes)
    return Order(
        order_id=order_id,
        triggers=triggers,
        occurred_at=occurred_at,
        **basket,
        page_url=_shop_origin(body.get("order_status_url")),
        is_test=body.get("test") is True,
        checkout_token=checkout_token,
        cart_token=cart_token,
        skip_reason=SKIP_REASONS_BY_SOURCE_NAME.get(text(body.get("source_name")) or ""),
        notes=_unique(notes),
    )


def parse_checkout(payload: dict[str, Any]) -> Checkout:
    """A ``checkouts/create`` or ``checkouts/update`` body as a :class:`Checkout`.

    ``occurred_at`` is ``created_at`` for both topics: the event is "checkout started", sent
    once per token, so later updates must not move its time (``updated_at`` stands in, with
    a note, only when ``created_at`` cannot be read). ``page_url`` is the shop's origin
    only: the one URL in the body, ``abandoned_checkout_url``, carries a key that reopens the
    checkout with the shopper's details, so its path and query are dropped (Meta requires a
    page for website events, ``event_source_url``).

    Raises:
        UnreadablePayload: no usable token, currency or total.
    """
    body = _body(payload, "checkout")
    token = _required_id(body, "token", "checkout", MAX_TOKEN_CHARS)
    notes: list[str] = []
    basket = _basket_fields(body, "checkout", token, notes)
    occurred_at = _event_time(body, ("created_at", "updated_at"), "checkout", notes)
    cart_token = _token(body, "cart_token", notes)
    return Checkout(
        token=token,
        cart_token=cart_token,
        occurred_at=occurred_at,
        **{**basket, "page_url": _shop_origin(body.get("abandoned_checkout_url"))},
        notes=_unique(notes),
    )


def _order_triggers(topic: str) -> frozenset[str]:
    try:
        return ORDER_TOPIC_TRIGGERS[topic]
    except KeyError:
        expected = ", ".join(ORDER_TOPIC_TRIGGERS)
        raise ValueError(f"Shopify topic {topic!r} is not an order topic ({expected})") from None


def _basket_fields(
    body: dict[str, Any], kind: str, resource_id: str, notes: list[str]
) -> dict[str, Any]:
    """The fields orders and checkouts share, all money in one currency."""
    pricing, total = _pricing(body, kind, resource_id, notes)
    subtotal = pricing.amount(body, "subtotal_price", notes)
    if subtotal is None:
        notes.append("'subtotal_price' is missing or unusable: the total is used as subtotal")
    click_candidates = _click_candidates(body)
    return {
        "currency": pricing.currency,
        "total": total,
        "subtotal": total if subtotal is None else subtotal,
        "items": _line_items(body.get("line_items"), pricing, notes),
        "shopper": _shopper(body),
        "clicks": resolve_click_ids(*click_candidates),
        "click_candidates": click_candidates,
        "referrer": text(body.get("referring_site")),
    }


@dataclass(frozen=True)
class _Pricing:
    """The one currency every amount of an event is reported in, and how each is read.

    ``rate`` turns a shop-currency amount into the presentment currency for an amount whose
    presentment side is missing; it is None in shop-currency pricing, and None in
    presentment pricing when Shopify gave no shop side of the total to derive it from.
    """

    currency: str
    shop_currency: str | None
    presentment: bool
    rate: Decimal | None = None

    def amount(self, container: dict[str, Any], field: str, notes: list[str]) -> Decimal | None:
        """``field`` of ``container`` in :attr:`currency`, or None when it has none."""
        if not self.presentment:
            return _shop_side(container, field, self.shop_currency)
        presented = _side(container, field, PRESENTMENT, self.currency)
        if presented is not None:
            return presented
        shop = _shop_side(container, field, self.shop_currency)
        if shop is None or self.rate is None:
            return None
        if self.rate != 1:
            notes.append(
                "an amount without 'presentment_money' was converted from the shop currency"
                " at the order's own rate (total_price_set)"
            )
        return amount(shop * self.rate)

    def lacks_rate_for(self, container: dict[str, Any], field: str) -> bool:
        """Whether ``field`` only has a shop side, which this pricing cannot convert."""
        return (
            self.rate is None
            and _side(container, field, PRESENTMENT, self.currency) is None
            and _shop_side(container, field, self.shop_currency) is not None
        )


def _pricing(
    body: dict[str, Any], kind: str, resource_id: str, notes: list[str]
) -> tuple[_Pricing, Decimal]:
    """How the event's amounts are read, and its total.

    The presentment side of the total decides the currency. An amount that has only a shop
    side is converted at the total's rate; when there is no rate (``total_price_set`` has no
    shop side), the whole event is in the shop currency rather than mix two, unless there is
    no shop currency or total to fall back to: then such an amount counts as missing.
    """
    total_set = as_object(body.get("total_price_set"))
    shop_currency = currency_code(body.get("currency")) or currency_code(
        as_object(total_set.get(SHOP)).get("currency_code")
    )
    shop_total = _shop_side(body, "total_price", shop_currency)
    presentment = as_object(total_set.get(PRESENTMENT))
    presentment_currency = currency_code(presentment.get("currency_code"))
    presentment_total = amount(presentment.get("amount"))
    if presentment_currency and presentment_total is not None:
        pricing = _Pricing(
            presentment_currency,
            shop_currency,
            presentment=True,
            rate=_rate(
                presentment_currency,
                presentment_total,
                shop_currency,
                _side(body, "total_price", SHOP, shop_currency),
            ),
        )
        if (
            shop_currency is None
            or shop_total is None
            or not any(
                pricing.lacks_rate_for(container, field) for container, field in _priced(body)
            )
        ):
            return pricing, presentment_total
        notes.append(
            "some amounts have no 'presentment_money' and 'total_price_set' gives no rate:"
            " every amount is in the shop currency"
        )
    elif presentment or currency_code(body.get("presentment_currency")) not in (
        None,
        shop_currency,
    ):
        notes.append(
            "'total_price_set.presentment_money' is missing or unusable: every amount is in"
            " the shop currency"
        )
    if shop_currency is None:
        raise _unreadable(
            kind, "no currency: 'currency' is missing or not an ISO 4217 code", resource_id
        )
    if shop_total is None:
        raise _unreadable(
            kind, "'total_price' is missing or not a finite, sane amount", resource_id
        )
    return _Pricing(shop_currency, shop_currency, presentment=False), shop_total


def _rate(
    presentment_currency: str,
    presentment_total: Decimal,
    shop_currency: str | None,
    shop_money_total: Decimal | None,
) -> Decimal | None:
    """Presentment units per shop unit, from the two sides Shopify gives of the order's own
    total (``total_price_set``); None when it gives only one, or a shop side of 0."""
    if presentment_currency == shop_currency:
        return Decimal(1)
    if not shop_money_total:
        return None
    return presentment_total / shop_money_total


def _priced(body: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every amount an event reads besides the total: the subtotal and each line's price."""
    lines = body.get("line_items")
    return [(body, "subtotal_price")] + [
        (line, "price")
        for line in (lines if isinstance(lines, list) else ())
        if isinstance(line, dict)
    ]


def _side(container: dict[str, Any], field: str, side: str, currency: str | None) -> Decimal | None:
    """``<field>_set.<side>.amount`` when that side is in ``currency``."""
    money = as_object(as_object(container.get(f"{field}_set")).get(side))
    if currency is None or currency_code(money.get("currency_code")) != currency:
        return None
    return amount(money.get("amount"))


def _shop_side(container: dict[str, Any], field: str, shop_currency: str | None) -> Decimal | None:
    """The shop-currency amount: ``<field>_set.shop_money``, else the plain ``field``, which
    Shopify gives in the shop currency."""
    from_set = _side(container, field, SHOP, shop_currency)
    return from_set if from_set is not None else amount(container.get(field))


def _line_items(value: object, pricing: _Pricing, notes: list[str]) -> tuple[LineItem, ...]:
    """The lines that can be reported; the others are left out with a note."""
    if value is None:
        return ()
    if not isinstance(value, list):
        notes.append("'line_items' is not a list: the event has no contents")
        return ()
    lines = (_line_item(line, pricing, notes) for line in value)
    return tuple(line for line in lines if line is not None)


def _line_item(raw: object, pricing: _Pricing, notes: list[str]) -> LineItem | None:
    fields = line_fields(raw, notes)
    if fields is None:
        return None
    line, count = fields
    price = pricing.amount(line, "price", notes)
    if price is None:
        notes.append("a line item without a usable 'price' was left out of contents")
        return None
    return LineItem(
        product_id=identifier(line.get("product_id")),
        variant_id=identifier(line.get("variant_id")),
        sku=text(line.get("sku")),
        name=text(line.get("title")) or text(line.get("name")),
        price=price,
        quantity=count,
        brand=text(line.get("vendor")),
    )


def _shopper(body: dict[str, Any]) -> Shopper:
    """Who bought. Address fields all come from one address (billing, else shipping, else the
    customer's default) so a name is never paired with someone else's city."""
    customer = as_object(body.get("customer"))
    billing = as_object(body.get("billing_address"))
    shipping = as_object(body.get("shipping_address"))
    address = billing or shipping or as_object(customer.get("default_address"))
    client = as_object(body.get("client_details"))
    return Shopper(
        email=first_text(body.get("email"), body.get("contact_email"), customer.get("email")),
        phone=first_text(
            body.get("phone"), billing.get("phone"), shipping.get("phone"), customer.get("phone")
        ),
        customer_id=identifier(customer.get("id")),
        first_name=text(address.get("first_name")),
        last_name=text(address.get("last_name")),
        zip_code=text(address.get("zip")),
        city=text(address.get("city")),
        state=first_text(address.get("province_code"), address.get("province")),
        country_code=text(address.get("country_code")),
        ip=first_text(body.get("browser_ip"), client.get("browser_ip")),
        user_agent=text(client.get("user_agent")),
        locale=text(body.get("customer_locale")),
    )


def _click_candidates(body: dict[str, Any]) -> tuple[ClickIds, ClickIds]:
    """Cart attributes first (written by storefront code on purpose: ``ttclid``, ``_ttp``,
    ``fbclid``, ``_fbc``, ``_fbp``, ``gclid``, ``gbraid``, ``wbraid``...), then the landing
    page's click ids (best effort: it is the landing page of the session Shopify attributes).
    Stored click records go between the two (:func:`connector.clicks.with_stored_clicks`)."""
    from_attributes = click_ids_from_attributes(
        _note_attributes(body.get("note_attributes")), "note_attributes"
    )
    from_landing = click_ids_from_url(body.get("landing_site"), "landing_site")
    return from_attributes, from_landing


def _note_attributes(value: object) -> dict[str, Any]:
    """``[{name, value}, ...]`` as a mapping; when a name repeats, the first entry wins."""
    attributes: dict[str, Any] = {}
    for entry in value if isinstance(value, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            attributes.setdefault(entry["name"], entry.get("value"))
    return attributes


def _event_time(
    body: dict[str, Any], fields: tuple[str, ...], kind: str, notes: list[str]
) -> datetime:
    """The first of ``fields`` with a UTC offset, as an aware UTC datetime.

    Shopify always sends an offset, so a time without one is a guess: it is read as UTC only
    when no field has an offset. With no usable time at all, the time the body is read (a
    webhook arrives seconds after the order; the note says the time is approximate).
    """
    times = {field: iso_time(body.get(field)) for field in fields}
    for position, field in enumerate(fields):
        when = times[field]
        if when is not None and when.tzinfo is not None:
            notes.extend(
                f"'{skipped}' is {_time_problem(body.get(skipped))}: the time is '{field}'"
                for skipped in fields[:position]
            )
            return when
    naive = next((field for field in fields if times[field] is not None), None)
    if naive is not None:
        notes.append(f"no time with a UTC offset: '{naive}' was read as UTC")
        return times[naive].replace(tzinfo=UTC)
    listed = " or ".join(f"'{field}'" for field in fields)
    notes.append(f"no usable {listed}: the time the {kind} was read is used")
    return datetime.now(UTC)


def _time_problem(value: object) -> str:
    if value is None or value == "":
        return "missing"
    return "not an ISO 8601 date-time with a UTC offset"


def _token(body: dict[str, Any], field: str, notes: list[str]) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        return None
    token = identifier(value)
    if token is None:
        notes.append(f"'{field}' is not a usable token: ignored")
    return token


def _required_id(body: dict[str, Any], field: str, kind: str, max_chars: int) -> str:
    ident = identifier(body.get(field), max_chars)
    if ident is None:
        raise _unreadable(kind, f"'{field}' is missing or not an integer or string id", None)
    return ident


def _body(payload: object, kind: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _unreadable(kind, "the body is not a JSON object", None)
    return payload


def _unreadable(kind: str, problem: str, resource_id: str | None) -> UnreadablePayload:
    return UnreadablePayload(f"Shopify {kind} payload: {problem}", resource_id)


def _unique(notes: list[str]) -> tuple[str, ...]:
    """Each note once, in the order first said (three lines without a price: one note)."""
    return tuple(dict.fromkeys(notes))


def _shop_origin(url: object) -> str | None:
    """``https://host/`` of a URL, dropping a path and query that may hold access keys."""
    try:
        parts = urlsplit(text(url) or "")
        host = parts.hostname
    except ValueError:  # an invalid IPv6 host, for one
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return f"{parts.scheme}://{host}/"
