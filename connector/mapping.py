"""Orders and checkouts become conversion events, following each destination's options.

The ``event_id`` formula is a public contract: the browser pixel must send the same id for
the same action so the ad platform deduplicates the two (TikTok merges pixel and server
events with the same event name and ``event_id`` within 48 hours, per its "Event
deduplication" help article). Orders use the order id; checkouts the checkout token.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connector.bots import is_bot
from connector.events import Basket, Checkout, Content, ConversionEvent, LineItem, Order
from connector.identity import hash_user

PURCHASE_EVENT_NAMES = ("CompletePayment", "Purchase", "PlaceAnOrder")
ORDER_TRIGGERS = ("created", "paid")
VALUE_BASES = ("total", "subtotal")
CONTENT_ID_SOURCES = ("variant", "sku", "product")
# ISO 4217 currencies with three minor digits (List One, 2026).
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


@dataclass(frozen=True)
class EventOptions:
    """What a merchant chose for one destination; stored as JSON on the destination row."""

    purchase_event: str = "CompletePayment"
    order_trigger: str = "created"
    value_basis: str = "total"
    content_id: str = "variant"
    send_initiate_checkout: bool = True
    # Test orders (Shopify's bogus gateway, a WooCommerce order marked test) are sent only
    # when a test event code is set, so they land in TikTok's "Test events" and never count
    # as conversions; False keeps them out even then.
    send_test_orders: bool = True
    limited_data_use: bool = False

    def __post_init__(self) -> None:
        _check_choice("purchase_event", self.purchase_event, PURCHASE_EVENT_NAMES)
        _check_choice("order_trigger", self.order_trigger, ORDER_TRIGGERS)
        _check_choice("value_basis", self.value_basis, VALUE_BASES)
        _check_choice("content_id", self.content_id, CONTENT_ID_SOURCES)
        for name in ("send_initiate_checkout", "send_test_orders", "limited_data_use"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EventOptions:
        """Options from stored JSON, ignoring keys an older or newer version wrote."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class PlannedEvent:
    """An event to record, and why it will not be sent if it will not."""

    event: ConversionEvent
    skip_reason: str | None = None


def plan_event(
    source: Order | Checkout, options: EventOptions, *, test_mode: bool
) -> PlannedEvent | None:
    """The event this order or checkout means for a destination, or None to ignore it.

    None means the merchant's options say this moment sends nothing (an ``orders/create``
    when purchases are sent on payment, a checkout with checkout events off): nothing is
    recorded. A skip reason means the event is recorded but never sent, so it is visible.
    """
    if isinstance(source, Order):
        if options.order_trigger not in source.triggers:
            return None
        name, event_id, order_id = options.purchase_event, source.order_id, source.order_id
    else:
        if not options.send_initiate_checkout:
            return None
        name, event_id, order_id = "InitiateCheckout", source.token, None
    event = build_event(source, options, name=name, event_id=event_id, order_id=order_id)
    return PlannedEvent(event, skip_reason(source, options, test_mode=test_mode))


def build_event(
    source: Basket, options: EventOptions, *, name: str, event_id: str, order_id: str | None
) -> ConversionEvent:
    """The neutral event: hashed user data, value and currency that agree, contents."""
    value = source.subtotal if options.value_basis == "subtotal" else source.total
    return ConversionEvent(
        event_name=name,
        event_id=event_id,
        event_time=int(source.occurred_at.timestamp()),
        user=hash_user(source.shopper, ttclid=source.clicks.ttclid, ttp=source.clicks.ttp),
        value=_money(value, source.currency),
        currency=source.currency.upper(),
        contents=tuple(
            _content(item, options.content_id, source.currency) for item in source.items
        ),
        order_id=order_id,
        page_url=source.page_url,
        referrer=source.referrer,
        limited_data_use=options.limited_data_use,
        click_source=source.clicks.source,
    )


def skip_reason(source: Order | Checkout, options: EventOptions, *, test_mode: bool) -> str | None:
    """Why this event must be recorded but not sent, in words a merchant understands."""
    if isinstance(source, Order) and source.skip_reason:
        return source.skip_reason
    if source.is_test and not test_mode:
        return "test order: set a TikTok test event code to send test orders"
    if source.is_test and not options.send_test_orders:
        return "test order: sending test orders is switched off in the settings"
    if is_bot(source.shopper.user_agent):
        return "bot user agent"
    return None


def _content(item: LineItem, id_source: str, currency: str) -> Content:
    """A contents entry; the id falls back to another identifier when the chosen one is empty."""
    preferred = {"variant": item.variant_id, "sku": item.sku, "product": item.product_id}
    candidates = (preferred[id_source], item.variant_id, item.product_id, item.sku)
    content_id = next((c for c in candidates if c), "")
    return Content(
        content_id=content_id,
        name=item.name,
        price=_money(item.price, currency),
        quantity=item.quantity,
        brand=item.brand,
        category=item.category,
    )


def _money(amount: Decimal, currency: str) -> float:
    """Rounded half up to the currency's minor unit; float only at the very end, for JSON.

    Two decimals for most currencies (whole-unit ones such as JPY are already whole), three
    for the dinar-style currencies ISO 4217 gives three minor digits.
    """
    places = Decimal("0.001") if currency.upper() in THREE_DECIMAL_CURRENCIES else Decimal("0.01")
    return float(amount.quantize(places, rounding=ROUND_HALF_UP))


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
