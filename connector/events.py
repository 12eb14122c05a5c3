"""The neutral models every store platform parses into and every destination sends from.

A platform package (``platforms/<store>/``) turns a verified webhook into an :class:`Order` or a
:class:`Checkout`. Those carry raw shopper data and live only in memory, for the length of one
webhook request. :mod:`connector.mapping` turns them into one :class:`ConversionEvent` per
destination, whose ``user`` holds only what that destination's rules make of the shopper
(SHA-256 hashes of personal data): that is what the outbox stores and what destinations send,
so raw email or phone never reach the database or a log.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

_T = TypeVar("_T")


class UnreadablePayload(ValueError):
    """A verified webhook body that cannot become an order or checkout.

    ``reason`` names the field and what is wrong with it; ``resource_id`` is the order id or
    checkout token when one could be read, so the kept body can be found by it.
    """

    def __init__(self, reason: str, resource_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resource_id = resource_id


@dataclass(frozen=True)
class LineItem:
    """One product line of an order or checkout, as the store reports it."""

    product_id: str | None
    variant_id: str | None
    sku: str | None
    name: str | None
    price: Decimal
    quantity: int
    brand: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Shopper:
    """Who bought, raw as the store sent it. Never stored: it is hashed by connector.identity."""

    email: str | None = None
    phone: str | None = None
    customer_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip_code: str | None = None
    city: str | None = None
    state: str | None = None
    country_code: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None


CLICK_ID_FIELDS = ("ttclid", "ttp", "fbclid", "fbc", "fbp", "gclid", "gbraid", "wbraid")
"""Every ad click identifier and browser cookie the connector captures, in one record."""

CLICK_IDS = frozenset({"ttclid", "fbclid", "fbc", "gclid", "gbraid", "wbraid"})
"""The fields that identify an ad click (the others are browser cookies): their source is
what ``ClickIds.source`` names."""


@dataclass(frozen=True)
class ClickIds:
    """Ad click identifiers and ad platform cookies found for a purchase, and where.

    Captured once for every platform: TikTok's ``ttclid`` and ``_ttp`` cookie, Meta's
    ``fbclid`` (kept as it came from a landing URL; Meta's destination turns it into ``fbc``)
    and its ``_fbc``/``_fbp`` cookies, Google's ``gclid``, ``gbraid`` and ``wbraid``. Each
    destination reads the ones it uses (:attr:`connector.destinations.Destination.click_ids`).
    ``source`` names the place the first click id came from (``note_attributes``,
    ``landing_site``, ``order_meta``...), so diagnostics can tell a merchant where clicks come
    from.
    """

    ttclid: str | None = None
    ttp: str | None = None
    fbclid: str | None = None
    fbc: str | None = None
    fbp: str | None = None
    gclid: str | None = None
    gbraid: str | None = None
    wbraid: str | None = None
    source: str | None = None

    def has_click(self) -> bool:
        """True when any ad click identifier (not only a cookie) is here."""
        return any(getattr(self, name) for name in CLICK_IDS)


@dataclass(frozen=True)
class Consent:
    """The shopper's consent choices as the storefront captured them; None is unknown.

    ``marketing`` is consent to marketing cookies and tracking (Shopify's Customer Privacy
    ``marketingAllowed``, the WP Consent API's ``marketing`` category); ``analytics`` the
    analytics/statistics one; ``sale_of_data`` False means the shopper opted out of the sale
    or sharing of personal data (US state laws: CCPA/CPRA), which ad platforms serve with
    limited data use. ``source`` says where it was found (``order_meta``,
    ``stored_checkout_token``...). What each state means for an event is the store's policy
    (:mod:`connector.consent`).
    """

    marketing: bool | None = None
    analytics: bool | None = None
    sale_of_data: bool | None = None
    source: str | None = None

    def known(self) -> bool:
        """True when any choice is known."""
        return any(v is not None for v in (self.marketing, self.analytics, self.sale_of_data))


@dataclass(frozen=True)
class Basket:
    """What an order and a checkout have in common: money, lines, shopper, page, click ids.

    ``occurred_at`` must be timezone-aware: it becomes ``event_time``, when the shopper acted,
    not when we send. Money is :class:`~decimal.Decimal`, never float, because stores send
    strings like ``"199.99"``.

    ``click_candidates`` are the places ``clicks`` was resolved from, in priority order, the
    best-effort ones last; the pipeline slots stored click records in after the first one
    (:func:`connector.clicks.with_stored_clicks`). They are not part of equality: two
    baskets with the same resolved ``clicks`` are the same.
    """

    occurred_at: datetime
    currency: str
    total: Decimal
    subtotal: Decimal
    items: tuple[LineItem, ...]
    shopper: Shopper
    clicks: ClickIds = field(default_factory=ClickIds)
    page_url: str | None = None
    referrer: str | None = None
    is_test: bool = False
    consent: Consent = field(default_factory=Consent)
    click_candidates: tuple[ClickIds, ...] = field(default=(), compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)
    """What had to be read leniently (a time without an offset, a line without a price...),
    in words for the merchant; kept on the event row as its parse notes."""


@dataclass(frozen=True)
class Order(Basket):
    """A placed order.

    ``triggers`` says which moments this delivery represents: ``"created"`` (Shopify
    ``orders/create``), ``"paid"`` (Shopify ``orders/paid``), or both (a WooCommerce order that
    is already paid). A destination option picks which moment sends the purchase event.
    ``skip_reason`` is set by the platform for orders that must never be sent (point of sale,
    for instance); they are recorded as ``skipped`` so the merchant sees why.
    """

    order_id: str = ""
    triggers: frozenset[str] = frozenset({"created"})
    checkout_token: str | None = None
    cart_token: str | None = None
    skip_reason: str | None = None


@dataclass(frozen=True)
class Checkout(Basket):
    """A started checkout, identified by its token (which is also its ``event_id``)."""

    token: str = ""
    cart_token: str | None = None


@dataclass(frozen=True)
class Content:
    """One entry of an event's ``contents``; ``content_id`` is always a string."""

    content_id: str
    name: str | None
    price: float
    quantity: int
    brand: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class ConversionEvent:
    """One conversion for one destination; what its outbox row stores as JSON.

    Everything but ``user`` and ``event_name`` is the same for every destination of an order.
    ``user`` is the destination's own matching signals, normalised and hashed by its rules
    (:meth:`connector.destinations.Destination.user_data`), keyed as it chooses: never raw
    email or phone. ``event_name`` is the name the destination's platform knows.
    """

    event_name: str
    event_id: str
    event_time: int
    user: dict[str, Any]
    value: float
    currency: str
    contents: tuple[Content, ...]
    content_type: str = "product"
    order_id: str | None = None
    page_url: str | None = None
    referrer: str | None = None
    limited_data_use: bool = False
    click_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict, the inverse of :meth:`from_json`.

        Built from the instances' own ``__dict__`` rather than ``dataclasses.asdict``, whose
        recursive deep copy cost a tenth of a webhook's CPU (bench/profile_webhook.py); every
        field is an immutable scalar, the flat ``user`` dict, or ``contents``, handled here.
        """
        data = dict(self.__dict__)
        data["contents"] = [dict(c.__dict__) for c in self.contents]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversionEvent:
        """Rebuild an event from what :meth:`to_json` stored.

        A delivery rebuilds every event it sends, so this fills the instances' ``__dict__``
        directly instead of calling the frozen dataclasses' ``__init__``, which sets each
        field through ``object.__setattr__`` (3.4 us against 1 us an event). The stored keys
        are the fields, as :meth:`to_json` wrote them; a key that is not a field is refused,
        as ``__init__`` would refuse it.
        """
        fields = dict(data)
        fields["contents"] = tuple(_filled(Content, c) for c in fields["contents"])
        return _filled(cls, fields)


def _filled(kind: type[_T], fields: dict[str, Any]) -> _T:
    """An instance of the frozen dataclass ``kind`` holding ``fields``, defaults for the rest."""
    instance = object.__new__(kind)
    defaults = _FIELD_DEFAULTS[kind]
    if fields.keys() != defaults.keys():  # not every field, as to_json writes them
        odd = (fields.keys() - defaults.keys()) or (_REQUIRED[kind] - fields.keys())
        if odd:
            raise TypeError(f"{kind.__name__}: field {sorted(odd)[0]!r} unknown or missing")
        instance.__dict__.update(defaults)
    instance.__dict__.update(fields)
    return instance


_FIELD_DEFAULTS: dict[type, dict[str, Any]] = {
    kind: {f.name: f.default for f in fields(kind)} for kind in (Content, ConversionEvent)
}
"""Each rebuilt dataclass's fields and their defaults (MISSING where there is none)."""
_REQUIRED = {
    kind: {name for name, default in defaults.items() if default is MISSING}
    for kind, defaults in _FIELD_DEFAULTS.items()
}
