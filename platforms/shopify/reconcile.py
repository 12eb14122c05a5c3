"""Shopify's side of reconciliation: the orders changed since a time, read back from the
GraphQL Admin API, each as the order its webhook would have brought.

**Mapping.** Each ``Order`` node is rewritten into the REST shape of an ``orders/create``
webhook body (:func:`rest_shaped`) and read by the webhook's own reader,
:func:`platforms.shopify.parse.read_webhook`. So a reconciled order gets the same
``order_id`` (the numeric ``legacyResourceId``, the ``event_id`` a webhook gives), the same
choice of presentment or shop money and the same leniency as its webhook, and a fix to the
reader fixes both: there is one mapping to keep right, not two that drift apart. What
GraphQL lacks stays empty: the browser's user agent (REST ``client_details.user_agent`` has
no GraphQL field), and the landing page comes from the order's last visit
(``customerJourneySummary``), which Shopify may still be attributing for an order minutes old.

**Query.** ``orders(first, after, sortKey: UPDATED_AT, query: "updated_at:>='<ISO>'")``,
oldest change first and paged by cursor (https://shopify.dev/docs/api/admin-graphql/latest/
queries/orders; dates quoted as the search syntax requires,
https://shopify.dev/docs/api/usage/search-syntax). ``>=`` rather than ``>`` so an order
changed in the same second as the checkpoint is read again rather than missed; the events'
``event_id`` makes the second reading add nothing. An order with more lines than a page holds
has the rest read with ``order(id) { lineItems(after) }``.

**Scopes.** ``read_orders`` reads the last 60 days of orders; older ones need
``read_all_orders`` (https://shopify.dev/docs/api/admin-graphql/latest/objects/Order).
``Order.customer`` needs ``read_customers`` and a line's ``variant`` and ``product`` need
``read_products``, and Shopify fails the whole query over a field the token may not read
("Access denied for customer field. Required access: `read_customers`"). So the token's
scopes are read first (``currentAppInstallation.accessScopes``) and those fields are asked
for only when granted; without them the customer id and the line's product and variant ids
stay empty (content ids fall back to the SKU). Email, phone, names and addresses need
Shopify's approval for protected customer data, as the webhooks do.

**Cost.** Shopify charges each query its requested cost (objects 1, a connection 2 plus
``first`` times its node) from a bucket per app and store that refills at ``restoreRate``
points a second, refunds the difference to the actual cost, and answers ``THROTTLED`` when
the bucket is short; a single query may cost at most 1,000
(https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits). A page is
:data:`ORDERS_PER_PAGE` orders with :data:`LINES_PER_ORDER` lines (550 points requested, 750
with the product fields). Before each call the bucket, as its last ``throttleStatus`` said
and refilled since, must hold the call's requested cost, else we wait; a ``THROTTLED``
answer is waited out and retried. The first call of a query shape cannot be foreseen (its
cost is known once charged), so it may be throttled once when the bucket is low.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.events import Order, UnreadablePayload
from connector.models import ShopifyToken, Store, utcnow
from connector.plugins import FetchedOrder, FetchError, NoApiAccess
from connector.services import Services
from platforms.shopify.admin_api import AccessRevoked, AdminApiError, Throttled, graphql_answer
from platforms.shopify.parse import read_webhook
from platforms.shopify.tokens import TokenError, admin_base_url

ORDERS_PER_PAGE = 10
LINES_PER_ORDER = 10
MORE_LINES_PER_PAGE = 100
MAX_THROTTLED_RETRIES = 8
MAX_WAIT_SECONDS = 60.0

PAID_STATUSES = frozenset({"PAID", "PARTIALLY_REFUNDED", "REFUNDED"})
"""``displayFinancialStatus`` values of an order that was paid, for which Shopify sent
``orders/paid`` (a refund comes after the payment)."""

SCOPES = "query appScopes { currentAppInstallation { accessScopes { handle } } }"

LINE_FIELDS = """
  sku name title quantity vendor
  originalUnitPriceSet {
    shopMoney { amount currencyCode } presentmentMoney { amount currencyCode }
  }
"""
PRODUCT_FIELDS = "variant { legacyResourceId } product { legacyResourceId }"

ORDER_FIELDS = """
  id legacyResourceId createdAt processedAt updatedAt cancelledAt
  currencyCode presentmentCurrencyCode displayFinancialStatus
  totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
  subtotalPriceSet {
    shopMoney { amount currencyCode } presentmentMoney { amount currencyCode }
  }
  email phone clientIp customerLocale sourceName test statusPageUrl checkoutToken cartToken
  billingAddress { %(address)s }
  shippingAddress { %(address)s }
  customAttributes { key value }
  customerJourneySummary {
    firstVisit { landingPage referrerUrl } lastVisit { landingPage referrerUrl }
  }
  lineItems(first: %(lines)d) {
    pageInfo { hasNextPage endCursor }
    nodes { %(line)s }
  }
  %(customer)s
"""
ADDRESS_FIELDS = "firstName lastName zip city province provinceCode countryCodeV2 phone"

ORDERS = """
query reconcileOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { %s }
  }
}
"""

MORE_LINES = """
query orderLines($id: ID!, $after: String) {
  order(id: $id) {
    lineItems(first: %d, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { %s }
    }
  }
}
"""


def fetch_orders(services: Services, store: Store, since: datetime) -> Iterator[FetchedOrder]:
    """Every order of ``store`` created or updated at or after ``since`` (naive UTC), oldest
    change first, as :class:`~connector.plugins.FetchedOrder`: ``orders/create`` for each,
    and ``orders/paid`` too for one that was paid (a store may send its purchases on
    payment).

    Raises:
        NoApiAccess: the store has no token to read with.
        FetchError: a revoked token, or an answer we cannot use.
    """
    _require_access(services, store)
    reader = _OrderReader(services, store, admin_base_url(store.domain, _override(services)))
    try:
        for node in reader.changed_since(since):
            yield from _fetched(node)
    except AccessRevoked:
        raise FetchError(
            f"Shopify refused the connector's access to {store.domain} (HTTP 401): the app was "
            "uninstalled or its access revoked. Reinstall the app from the Shopify admin "
            "(a custom-app store: reconnect it with a new Admin API token)"
        ) from None
    except TokenError as exc:
        raise FetchError(str(exc)) from None
    except AdminApiError as exc:
        raise FetchError(
            f"Shopify's Admin API could not list {store.domain}'s orders: {exc}"
        ) from None


def rest_shaped(node: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL ``Order`` node in the REST shape of its ``orders/create`` webhook body, the
    fields :mod:`platforms.shopify.parse` reads (field by field: REST ``id`` is
    ``legacyResourceId``, ``browser_ip`` is ``clientIp``, ``note_attributes`` are
    ``customAttributes`` as ``{name, value}``, ``order_status_url`` is ``statusPageUrl``, a
    line's ``price`` is its ``originalUnitPriceSet``, ``*_set`` are ``MoneyBag``s)."""
    visit = _visit(node.get("customerJourneySummary"))
    return {
        "id": node.get("legacyResourceId"),
        "created_at": node.get("createdAt"),
        "processed_at": node.get("processedAt"),
        "updated_at": node.get("updatedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "currency": node.get("currencyCode"),
        "presentment_currency": node.get("presentmentCurrencyCode"),
        **_money("total_price", node.get("totalPriceSet")),
        **_money("subtotal_price", node.get("subtotalPriceSet")),
        "line_items": [_line_item(line) for line in _nodes(node.get("lineItems"))],
        "email": node.get("email"),
        "phone": node.get("phone"),
        "customer": _with_id(node.get("customer")),
        "billing_address": _address(node.get("billingAddress")),
        "shipping_address": _address(node.get("shippingAddress")),
        "browser_ip": node.get("clientIp"),
        "customer_locale": node.get("customerLocale"),
        "landing_site": visit.get("landingPage"),
        "referring_site": visit.get("referrerUrl"),
        "note_attributes": [
            {"name": attribute.get("key"), "value": attribute.get("value")}
            for attribute in node.get("customAttributes") or []
            if isinstance(attribute, dict)
        ],
        "source_name": node.get("sourceName"),
        "test": node.get("test"),
        "order_status_url": node.get("statusPageUrl"),
        "checkout_token": node.get("checkoutToken"),
        "cart_token": node.get("cartToken"),
    }


def _require_access(services: Services, store: Store) -> None:
    with services.db.session() as session:
        installed = session.get(ShopifyToken, store.id) is not None
    if not installed and not store.access_token_encrypted:
        raise NoApiAccess(
            "the store has no Shopify Admin API token, so its orders cannot be read back: "
            "install the app on it from the Shopify admin"
        )


def _override(services: Services) -> str | None:
    return services.settings.shopify_admin_base_url


def _fetched(node: dict[str, Any]) -> Iterator[FetchedOrder]:
    """``orders/create`` for the node, and ``orders/paid`` when it was paid; one that cannot
    be read is yielded with the reason (naming the field and the order id), so the run
    counts it and moves on."""
    rest = rest_shaped(node)
    topics = ["orders/create"]
    if node.get("displayFinancialStatus") in PAID_STATUSES:
        topics.append("orders/paid")
    updated_at = _naive_utc(node.get("updatedAt")) or utcnow()
    for topic in topics:
        try:
            order = read_webhook(topic, rest)
        except UnreadablePayload as exc:
            reason = f"order {exc.resource_id or '?'}: {exc.reason}"
            yield FetchedOrder(
                topic=topic, order=None, updated_at=updated_at, unreadable=reason, body=rest
            )
            return
        if isinstance(order, Order):
            yield FetchedOrder(topic=topic, order=order, updated_at=updated_at)


@dataclass
class _CostGate:
    """The store's cost bucket as Shopify last reported it, to wait before a call that it
    cannot pay for yet rather than be throttled."""

    available: float | None = None
    maximum: float | None = None
    restore_rate: float = 0.0
    reported_at: float = field(default_factory=time.monotonic)

    def note(self, cost: dict[str, Any] | None) -> None:
        """The bucket as an answer reported it. Shopify measured it before answering, so
        counting the refill from when the answer came errs on the side of waiting."""
        status = (cost or {}).get("throttleStatus") or {}
        try:
            self.available = float(status["currentlyAvailable"])
            self.maximum = float(status["maximumAvailable"])
            self.restore_rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        self.reported_at = time.monotonic()

    def wait_for(self, cost: float) -> None:
        if self.available is None or self.restore_rate <= 0:
            return
        needed = min(cost, self.maximum or cost) + 1  # Shopify rounds what it reports
        refilled = self.available + (time.monotonic() - self.reported_at) * self.restore_rate
        if refilled < needed:
            time.sleep(min((needed - refilled) / self.restore_rate, MAX_WAIT_SECONDS))


@dataclass
class _OrderReader:
    """Pages of orders for one store, each call waiting for the cost bucket first."""

    services: Services
    store: Store
    admin_base: str
    gate: _CostGate = field(default_factory=_CostGate)
    requested: dict[str, float] = field(default_factory=dict)
    """The requested cost Shopify last charged for each query, to wait for before the next."""

    def changed_since(self, since: datetime) -> Iterator[dict[str, Any]]:
        granted = self._scopes()
        line = LINE_FIELDS + (PRODUCT_FIELDS if _has(granted, "read_products") else "")
        fields = ORDER_FIELDS % {
            "address": ADDRESS_FIELDS,
            "lines": LINES_PER_ORDER,
            "line": line,
            "customer": "customer { legacyResourceId }" if _has(granted, "read_customers") else "",
        }
        query, more_lines = ORDERS % fields, MORE_LINES % (MORE_LINES_PER_PAGE, line)
        search = f"updated_at:>='{_utc_text(since)}'"
        after = None
        while True:
            variables = {"first": ORDERS_PER_PAGE, "after": after, "query": search}
            page = self._data(query, variables)["orders"]
            for node in page["nodes"]:
                yield self._with_every_line(node, more_lines)
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    def _scopes(self) -> set[str]:
        data = self._data(SCOPES, {})
        return {scope["handle"] for scope in data["currentAppInstallation"]["accessScopes"]}

    def _with_every_line(self, node: dict[str, Any], query: str) -> dict[str, Any]:
        """The node with all its lines, read on when there are more than one page holds."""
        lines = node["lineItems"]
        after = lines["pageInfo"]["endCursor"]
        more = lines["pageInfo"]["hasNextPage"]
        while more:
            page = self._data(query, {"id": node["id"], "after": after})["order"]["lineItems"]
            lines["nodes"].extend(page["nodes"])
            more, after = page["pageInfo"]["hasNextPage"], page["pageInfo"]["endCursor"]
        return node

    def _data(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of one call, paid for from the bucket (throttled calls retried)."""
        for attempt in range(MAX_THROTTLED_RETRIES):
            self.gate.wait_for(self.requested.get(query, 0.0))
            try:
                body = graphql_answer(
                    self.services, self.store.id, self.admin_base, query, variables
                )
            except Throttled as exc:
                self._note_cost(query, exc.cost)
                if exc.cost is None:  # a bare 429: nothing says how long, so back off
                    time.sleep(min(2.0**attempt, MAX_WAIT_SECONDS))
                continue
            self._note_cost(query, (body.get("extensions") or {}).get("cost"))
            if body.get("errors") or not isinstance(body.get("data"), dict):
                messages = "; ".join(_messages(body.get("errors")))
                raise AdminApiError(f"Shopify refused the query: {messages}")
            return body["data"]
        raise AdminApiError(f"Shopify throttled {MAX_THROTTLED_RETRIES} calls in a row")

    def _note_cost(self, query: str, cost: dict[str, Any] | None) -> None:
        self.gate.note(cost)
        requested = (cost or {}).get("requestedQueryCost")
        if isinstance(requested, int | float):
            self.requested[query] = float(requested)


def _has(granted: set[str], scope: str) -> bool:
    """A ``write_`` scope includes its ``read_`` one."""
    return scope in granted or scope.replace("read_", "write_", 1) in granted


def _messages(errors: object) -> list[str]:
    if not isinstance(errors, list):
        return [str(errors)]
    return [str(e.get("message")) if isinstance(e, dict) else str(e) for e in errors]


def _nodes(connection: object) -> list[dict[str, Any]]:
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    return [node for node in nodes or [] if isinstance(node, dict)]


def _money(name: str, bag: object) -> dict[str, Any]:
    """``name`` (the shop-money amount) and ``name_set`` from a ``MoneyBag``; nothing when
    Shopify gave no bag, so the reader sees the field missing as in a webhook without it."""
    if not isinstance(bag, dict):
        return {}
    sides = {
        rest: {"amount": money.get("amount"), "currency_code": money.get("currencyCode")}
        for rest, graphql in (
            ("shop_money", "shopMoney"),
            ("presentment_money", "presentmentMoney"),
        )
        if isinstance(money := bag.get(graphql), dict)
    }
    return {name: sides.get("shop_money", {}).get("amount"), f"{name}_set": sides}


def _line_item(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "product_id": (_with_id(line.get("product")) or {}).get("id"),
        "variant_id": (_with_id(line.get("variant")) or {}).get("id"),
        "sku": line.get("sku"),
        "title": line.get("title"),
        "name": line.get("name"),
        "quantity": line.get("quantity"),
        "vendor": line.get("vendor"),
        **_money("price", line.get("originalUnitPriceSet")),
    }


def _with_id(resource: object) -> dict[str, Any] | None:
    """``{id}`` from a resource's ``legacyResourceId``: the numeric id REST shows."""
    if not isinstance(resource, dict) or resource.get("legacyResourceId") is None:
        return None
    return {"id": resource["legacyResourceId"]}


def _address(address: object) -> dict[str, Any] | None:
    if not isinstance(address, dict):
        return None
    return {
        "first_name": address.get("firstName"),
        "last_name": address.get("lastName"),
        "zip": address.get("zip"),
        "city": address.get("city"),
        "province": address.get("province"),
        "province_code": address.get("provinceCode"),
        "country_code": address.get("countryCodeV2"),
        "phone": address.get("phone"),
    }


def _visit(summary: object) -> dict[str, Any]:
    """The visit the order was placed in (the last one, or the only one)."""
    if not isinstance(summary, dict):
        return {}
    for name in ("lastVisit", "firstVisit"):
        if isinstance(visit := summary.get(name), dict):
            return visit
    return {}


def _utc_text(moment: datetime) -> str:
    """``2026-12-03T10:00:00Z``; a naive time is UTC (the plugin contract)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%SZ")


def _naive_utc(value: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).replace(tzinfo=None)
