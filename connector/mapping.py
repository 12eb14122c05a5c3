"""Orders and checkouts become conversion events, one per destination, following its options.

The ``event_id`` formula is a public contract, the same for every destination: the browser
tag must send the same id for the same action so the ad platform deduplicates the two (TikTok
and Meta merge browser and server events with the same event name and ``event_id`` within 48
hours, per their deduplication guides; Google's tag sends it as the transaction id). Orders
use the order id; checkouts the checkout token.

What differs per destination is drawn from its package: the event name its platform knows
(``Destination.event_names``) and the shopper's user data, normalised and hashed by its rules
(``Destination.user_data``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connector.bots import is_bot
from connector.consent import ConsentDecision
from connector.destinations import Destination
from connector.events import Basket, Checkout, Content, ConversionEvent, LineItem, Order
from connector.signals import carries

ORDER_TRIGGERS = ("created", "paid")
VALUE_BASES = ("total", "subtotal")
CONTENT_ID_SOURCES = ("variant", "sku", "product")
# ISO 4217 currencies with three minor digits (List One, 2026).
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


@dataclass(frozen=True)
class EventOptions:
    """What a merchant chose for one destination; stored as JSON on the destination row.

    ``purchase_event`` is one of the destination's purchase names (``None``: its default);
    :func:`check_event_name` checks it against the destination, which these options do not know.
    """

    purchase_event: str | None = None
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


def check_event_name(destination: Destination, options: EventOptions) -> None:
    """Raise ValueError when the chosen purchase name is not one the destination knows."""
    names = destination.event_names.get("purchase", ())
    if options.purchase_event is not None and options.purchase_event not in names:
        _check_choice("purchase_event", options.purchase_event, names)


def plan_event(
    source: Order | Checkout,
    destination: Destination,
    options: EventOptions,
    *,
    test_mode: bool,
    consent: ConsentDecision | None = None,
) -> PlannedEvent | None:
    """The event this order or checkout means for a destination, or None to ignore it.

    None means this moment sends nothing to it (an ``orders/create`` when purchases are sent
    on payment, a checkout with checkout events off, or a platform without checkout events):
    nothing is recorded. A skip reason means the event is recorded but never sent, so it is
    visible. ``consent`` is the store's consent policy applied to the shopper's choice
    (:func:`connector.consent.decide`; None for a test event, which no shopper made): it may
    hold the event back or ask for limited data use, on top of the destination's own option.
    """
    names = destination.event_names
    if isinstance(source, Order):
        if options.order_trigger not in source.triggers or "purchase" not in names:
            return None
        name = options.purchase_event or names["purchase"][0]
        event_id, order_id = source.order_id, source.order_id
    else:
        if not options.send_initiate_checkout or "checkout" not in names:
            return None
        name, event_id, order_id = names["checkout"][0], source.token, None
    event = build_event(
        source, destination, options, name=name, event_id=event_id, order_id=order_id
    )
    reason = skip_reason(source, options, test_mode=test_mode, test_hint=destination.test_hint)
    if consent is None:
        return PlannedEvent(event, reason)
    if consent.limited_data_use:
        event = replace(event, limited_data_use=True)
    return PlannedEvent(event, reason or consent.held_back)


def build_event(
    source: Basket,
    destination: Destination,
    options: EventOptions,
    *,
    name: str,
    event_id: str,
    order_id: str | None,
) -> ConversionEvent:
    """The event for one destination: its user data, value and currency that agree, contents.

    ``click_source`` is kept only when the destination's own click id is in its user data,
    so diagnostics say where *its* clicks come from.
    """
    value = source.subtotal if options.value_basis == "subtotal" else source.total
    event_time = int(source.occurred_at.timestamp())
    user = destination.user_data(source.shopper, source.clicks, event_time)
    own_click = carries(user, destination.signal_keys, "click_id")
    return ConversionEvent(
        event_name=name,
        event_id=event_id,
        event_time=event_time,
        user=user,
        value=_money(value, source.currency),
        currency=source.currency.upper(),
        contents=tuple(
            _content(item, options.content_id, source.currency) for item in source.items
        ),
        order_id=order_id,
        page_url=source.page_url,
        referrer=source.referrer,
        limited_data_use=options.limited_data_use,
        click_source=source.clicks.source if own_click else None,
    )


def skip_reason(
    source: Order | Checkout, options: EventOptions, *, test_mode: bool, test_hint: str
) -> str | None:
    """Why this event must be recorded but not sent, in words a merchant understands;
    ``test_hint`` is the destination's way to get test orders in."""
    if isinstance(source, Order) and source.skip_reason:
        return source.skip_reason
    if source.is_test and not test_mode:
        return f"test order: {test_hint}"
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


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
