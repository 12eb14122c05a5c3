"""The Shopify stand-in's GraphQL Admin API for reading orders: a small GraphQL executor over
the part of Shopify's schema reconciliation reads, with Shopify's cost and throttle model.

Why an executor rather than canned answers: reconciliation must fail here when it selects a
field Shopify does not have or its token may not read, pages wrongly, or ignores the cost
budget, as it would against a real store. Only the selection asked for is answered.

Evidence used:
  G1  ``orders(first, after, sortKey, reverse, query)`` is a cursor connection with
      ``pageInfo { hasNextPage endCursor }`` and ``nodes``; ``first`` above 250 is refused
      ("first cannot exceed 250", quoted from a real answer in community.shopify.com thread
      8456); ``sortKey: UPDATED_AT`` sorts by last change
      (shopify.dev/docs/api/admin-graphql/latest/queries/orders).
  G2  Search syntax: ``field:>value``/``:>=``; "Date values must be a string surrounded by
      quotes" (shopify.dev/docs/api/usage/search-syntax).
  G3  Cost: scalar 0, object 1, a connection 2 plus its ``first`` times the node's cost, a
      mutation 10; a single query may cost at most 1,000 (``MAX_COST_EXCEEDED``); a leaky
      bucket per app and store, refilled at ``restoreRate`` points a second; the requested
      cost is taken before the query runs and the difference to the actual cost refunded;
      every answer carries ``extensions.cost {requestedQueryCost, actualQueryCost,
      throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}}``; an empty bucket
      answers HTTP 200 with ``errors[{message: "Throttled", extensions: {code: THROTTLED}}]``
      and ``actualQueryCost`` null (shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits;
      the throttled body as quoted in community.shopify.com thread 8456).
  G4  Scopes: ``Order`` needs ``read_orders`` and shows only the last 60 days without
      ``read_all_orders`` (shopify.dev/docs/api/admin-graphql/latest/objects/Order);
      ``Order.customer`` needs ``read_customers`` and ``LineItem.variant``/``product`` need
      ``read_products``, and a denied field fails the query with "Access denied for customer
      field. Required access: `read_customers` access scope." (code ``ACCESS_DENIED``), as
      public apps report from real stores.
  G5  Field names: ``Order`` (legacyResourceId, createdAt, processedAt, updatedAt,
      cancelledAt, currencyCode, presentmentCurrencyCode, totalPriceSet, subtotalPriceSet,
      lineItems, email, phone, customer, billingAddress, shippingAddress, clientIp,
      customerLocale, customerJourneySummary, customAttributes, sourceName, test,
      statusPageUrl, displayFinancialStatus; checkoutToken and cartToken from 2026-07:
      shopify.dev/changelog/new-checkouttoken-field-added-to-the-order-object),
      ``MoneyBag {shopMoney presentmentMoney}``, ``MoneyV2 {amount currencyCode}``,
      ``MailingAddress {firstName lastName zip city province provinceCode countryCodeV2
      phone}``, ``CustomerVisit {landingPage referrerUrl}``, ``Attribute {key value}``,
      ``AppInstallation.accessScopes {handle}``.

Decided here, not confirmed by a source: cursors are opaque base64 of the sort key and id; the
cost of a list of objects (``customAttributes``) is 1; error wordings other than those quoted;
that an unparsable search query is refused (Shopify may ignore what it cannot read: stricter
here). Aliases, fragments and directives are not served.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

MAX_QUERY_COST = 1000
MAX_PAGE = 250
VISIBLE_DAYS = 60

# Type -> field -> (type of the field or None for a scalar, scope it needs, kind).
# kind: "object", "list" (list of objects) or "connection".
OBJ, LIST, CONN = "object", "list", "connection"
SCHEMA: dict[str, dict[str, tuple[str | None, str | None, str]]] = {
    "QueryRoot": {
        "orders": ("Order", "read_orders", CONN),
        "order": ("Order", "read_orders", OBJ),
        "currentAppInstallation": ("AppInstallation", None, OBJ),
        "webhookSubscriptions": ("WebhookSubscription", None, CONN),
    },
    "Order": {
        **dict.fromkeys(
            (
                "id legacyResourceId name createdAt processedAt updatedAt cancelledAt "
                "currencyCode presentmentCurrencyCode email phone clientIp customerLocale "
                "sourceName test statusPageUrl checkoutToken cartToken displayFinancialStatus"
            ).split(),
            (None, None, OBJ),
        ),
        "totalPriceSet": ("MoneyBag", None, OBJ),
        "subtotalPriceSet": ("MoneyBag", None, OBJ),
        "lineItems": ("LineItem", None, CONN),
        "customer": ("Customer", "read_customers", OBJ),
        "billingAddress": ("MailingAddress", None, OBJ),
        "shippingAddress": ("MailingAddress", None, OBJ),
        "customerJourneySummary": ("CustomerJourneySummary", None, OBJ),
        "customAttributes": ("Attribute", None, LIST),
    },
    "LineItem": {
        **dict.fromkeys("id name title sku quantity vendor".split(), (None, None, OBJ)),
        "originalUnitPriceSet": ("MoneyBag", None, OBJ),
        "variant": ("ProductVariant", "read_products", OBJ),
        "product": ("Product", "read_products", OBJ),
    },
    "MoneyBag": {"shopMoney": ("MoneyV2", None, OBJ), "presentmentMoney": ("MoneyV2", None, OBJ)},
    "MoneyV2": dict.fromkeys(("amount", "currencyCode"), (None, None, OBJ)),
    "MailingAddress": dict.fromkeys(
        "firstName lastName zip city province provinceCode countryCodeV2 phone".split(),
        (None, None, OBJ),
    ),
    "Customer": dict.fromkeys(("id", "legacyResourceId"), (None, None, OBJ)),
    "ProductVariant": dict.fromkeys(("id", "legacyResourceId"), (None, None, OBJ)),
    "Product": dict.fromkeys(("id", "legacyResourceId"), (None, None, OBJ)),
    "CustomerJourneySummary": {
        "ready": (None, None, OBJ),
        "firstVisit": ("CustomerVisit", None, OBJ),
        "lastVisit": ("CustomerVisit", None, OBJ),
    },
    "CustomerVisit": dict.fromkeys(("landingPage", "referrerUrl"), (None, None, OBJ)),
    "Attribute": dict.fromkeys(("key", "value"), (None, None, OBJ)),
    "AppInstallation": {"accessScopes": ("AccessScope", None, LIST)},
    "AccessScope": {"handle": (None, None, OBJ)},
    "WebhookSubscription": dict.fromkeys(("id", "topic"), (None, None, OBJ)),
    "PageInfo": dict.fromkeys(("hasNextPage", "endCursor"), (None, None, OBJ)),
}
CONNECTION_ARGS = {"first", "after"}
ORDERS_ARGS = {"first", "after", "sortKey", "reverse", "query"}
SEARCH = re.compile(
    r"updated_at:(>=?)'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))'"
)
TOKEN = re.compile(r'\s*(?:([A-Za-z_]\w*)|(\$[A-Za-z_]\w*)|("(?:[^"\\]|\\.)*")|(-?\d+)|(.))')


class QueryError(Exception):
    """A query Shopify would refuse as a whole; ``code`` is its ``extensions.code``."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Field:
    name: str
    args: dict[str, Any]
    selection: list[Field] | None


@dataclass
class Operation:
    kind: str
    variables: dict[str, bool]
    """Declared variable -> whether it is non-null (``!``)."""
    selection: list[Field]


# -- parsing -----------------------------------------------------------------------------------


def parse(query: str) -> Operation:
    """``query|mutation [Name] [($var: Type, ...)] { selection }``, or a bare ``{ ... }``."""
    tokens = [t for t in _tokens(query)]
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = peek()
        if token is None or (expected is not None and token != expected):
            raise QueryError(f"syntax error: expected {expected or 'more'}, got {token!r}")
        position += 1
        return token

    def value() -> Any:
        token = take()
        if token.startswith('"'):
            return json.loads(token)
        if token.lstrip("-").isdigit():
            return int(token)
        return token  # a $variable or an enum value

    def selection() -> list[Field]:
        take("{")
        fields = []
        while peek() != "}":
            name = take()
            if not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise QueryError(f"syntax error: unexpected {name!r} (aliases, fragments unserved)")
            args = {}
            if peek() == "(":
                take("(")
                while peek() != ")":
                    arg = take()
                    take(":")
                    args[arg] = value()
                    if peek() == ",":
                        take(",")
                take(")")
            fields.append(Field(name, args, selection() if peek() == "{" else None))
        take("}")
        return fields

    kind, declared = "query", {}
    if peek() in ("query", "mutation"):
        kind = take()
        if peek() not in ("(", "{"):
            take()  # the operation's name
        if peek() == "(":
            take("(")
            while peek() != ")":
                variable = take()
                take(":")
                type_name = take()
                if type_name == "[":
                    take()
                    take("]")
                non_null = peek() == "!"
                if non_null:
                    take("!")
                declared[variable] = non_null
                if peek() == ",":
                    take(",")
            take(")")
    operation = Operation(kind, declared, selection())
    if peek() is not None:
        raise QueryError(f"syntax error: unexpected {peek()!r} after the operation")
    return operation


def _tokens(query: str) -> list[str]:
    tokens, position = [], 0
    stripped = query.rstrip()
    while position < len(stripped):
        match = TOKEN.match(stripped, position)
        if match is None:  # only trailing whitespace is left
            break
        tokens.append(next(group for group in match.groups() if group is not None))
        position = match.end()
    return tokens


def bind(operation: Operation, variables: dict[str, Any]) -> None:
    """Replace ``$variables`` by their values; a missing non-null one is refused."""
    for name, non_null in operation.variables.items():
        if non_null and variables.get(name[1:]) is None:
            raise QueryError(f"Variable {name} of a non-null type was not provided")

    def substitute(fields: list[Field]) -> None:
        for item in fields:
            for arg, given in list(item.args.items()):
                if isinstance(given, str) and given.startswith("$"):
                    if given not in operation.variables:
                        raise QueryError(f"Variable {given} is used but not declared")
                    item.args[arg] = variables.get(given[1:])
            substitute(item.selection or [])

    substitute(operation.selection)


# -- cost ---------------------------------------------------------------------------------------


def requested_cost(operation: Operation) -> int:
    """What Shopify charges before running the query (G3)."""
    if operation.kind == "mutation":
        return 10
    return _cost(operation.selection, "QueryRoot")


def _cost(fields: list[Field], type_name: str) -> int:
    total = 0
    for item in fields:
        child, _scope, kind = SCHEMA[type_name].get(item.name, (None, None, OBJ))
        if child is None or item.selection is None:
            continue
        if kind == CONN:
            nodes = next((f for f in item.selection if f.name == "nodes"), None)
            node_cost = 1 + _cost(nodes.selection or [], child) if nodes else 0
            total += 2 + int(item.args.get("first") or 0) * node_cost
        else:
            total += 1 + _cost(item.selection, child)
    return total


def actual_cost(fields: list[Field], type_name: str, answer: dict[str, Any] | None) -> int:
    """The same rules, counting the nodes returned rather than those asked for."""
    total = 0
    for item in fields:
        child, _scope, kind = SCHEMA[type_name].get(item.name, (None, None, OBJ))
        value = (answer or {}).get(item.name)
        if child is None or item.selection is None or value is None:
            continue
        if kind == CONN:
            nodes = next((f for f in item.selection if f.name == "nodes"), None)
            total += 2 + sum(
                1 + actual_cost(nodes.selection or [], child, node)
                for node in (value.get("nodes") or [] if nodes else [])
            )
        elif kind == LIST:
            total += 1
        else:
            total += 1 + actual_cost(item.selection, child, value)
    return total


@dataclass
class Bucket:
    """One app-and-store cost bucket (G3)."""

    maximum: float
    restore_rate: float
    available: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def refill(self) -> None:
        now = time.monotonic()
        if self.available < 0:
            self.available = self.maximum
        self.available = min(
            self.maximum, self.available + (now - self.updated) * self.restore_rate
        )
        self.updated = now

    def status(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": round(self.available),
            "restoreRate": self.restore_rate,
        }


# -- execution ---------------------------------------------------------------------------------


@dataclass
class Context:
    """What one request may see: the shop's orders and subscriptions, the token's scopes."""

    orders: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    scopes: set[str]
    now: datetime


def execute(operation: Operation, context: Context) -> dict[str, Any]:
    """The ``data`` of a bound query; raises :class:`QueryError` for anything refused."""
    _check(operation.selection, "QueryRoot", context.scopes)
    data: dict[str, Any] = {}
    for item in operation.selection:
        if item.name == "orders":
            data["orders"] = _connection(item, "Order", _visible_orders(item, context), _by_change)
        elif item.name == "order":
            data["order"] = _order(item, context)
        elif item.name == "currentAppInstallation":
            scopes = [{"handle": handle} for handle in sorted(context.scopes)]
            data[item.name] = project(
                item.selection or [], "AppInstallation", {"accessScopes": scopes}
            )
        elif item.name == "webhookSubscriptions":
            by_id = sorted(context.subscriptions, key=_by_id)
            data[item.name] = _connection(item, "WebhookSubscription", by_id, _by_id)
    return data


def _check(fields: list[Field], type_name: str, scopes: set[str]) -> None:
    """Unknown fields and fields the token's scopes do not cover fail the whole query (G4)."""
    for item in fields:
        if item.name not in SCHEMA[type_name]:
            raise QueryError(f"Field '{item.name}' doesn't exist on type '{type_name}'")
        child, scope, kind = SCHEMA[type_name][item.name]
        if scope and not _granted(scope, scopes):
            raise QueryError(
                f"Access denied for {item.name} field. Required access: `{scope}` access scope.",
                "ACCESS_DENIED",
            )
        if child is None and item.selection is not None:
            raise QueryError(f"Selections can't be made on scalars ({type_name}.{item.name})")
        if child is not None and item.selection is None:
            raise QueryError(f"Field must have selections ({type_name}.{item.name})")
        if kind == CONN:
            _check_connection(item, child, scopes)
        elif child is not None:
            _check(item.selection or [], child, scopes)


def _check_connection(item: Field, child: str, scopes: set[str]) -> None:
    allowed = ORDERS_ARGS if item.name == "orders" else CONNECTION_ARGS
    if set(item.args) - allowed:
        raise QueryError(f"Field '{item.name}' doesn't accept argument {set(item.args) - allowed}")
    first = item.args.get("first")
    if not isinstance(first, int) or first < 1:
        raise QueryError(f"you must provide a positive `first` to paginate {item.name}")
    if first > MAX_PAGE:
        raise QueryError(f"first cannot exceed {MAX_PAGE}.")
    for part in item.selection or []:
        if part.name == "nodes":
            _check(part.selection or [], child, scopes)
        elif part.name == "pageInfo":
            _check(part.selection or [], "PageInfo", scopes)
        else:
            raise QueryError(f"Field '{part.name}' is not served on a connection here")


def _granted(scope: str, scopes: set[str]) -> bool:
    return scope in scopes or scope.replace("read_", "write_", 1) in scopes


def _visible_orders(item: Field, context: Context) -> list[dict[str, Any]]:
    """The shop's orders matching the search, within the token's history (G2, G4)."""
    if item.args.get("sortKey") != "UPDATED_AT" or item.args.get("reverse"):
        raise QueryError("reconciliation must sort by UPDATED_AT, oldest change first")
    match = SEARCH.fullmatch(str(item.args.get("query") or ""))
    if match is None:
        raise QueryError(f"Invalid search query: {item.args.get('query')!r}")
    comparator, since = match.group(1), _instant(match.group(2))
    oldest = context.now - timedelta(days=VISIBLE_DAYS)
    history = _granted("read_all_orders", context.scopes)
    return sorted(
        (
            order
            for order in context.orders
            if (history or _instant(order["createdAt"]) >= oldest)
            and (
                _instant(order["updatedAt"]) > since
                or (comparator == ">=" and _instant(order["updatedAt"]) == since)
            )
        ),
        key=_by_change,
    )


def _by_id(subscription: dict[str, Any]) -> str:
    return subscription["id"]


def _by_change(order: dict[str, Any]) -> tuple[float, int]:
    return _epoch(order["updatedAt"]), int(order["legacyResourceId"])


def _order(item: Field, context: Context) -> dict[str, Any] | None:
    if set(item.args) != {"id"}:
        raise QueryError("order takes exactly an id")
    wanted = str(item.args["id"])
    found = next((o for o in context.orders if o["id"] == wanted), None)
    return None if found is None else project(item.selection or [], "Order", found)


def _connection(item: Field, child: str, items: list[Any], key: Any) -> dict[str, Any]:
    """One page of ``items`` (already in order) after the ``after`` cursor (G1)."""
    after = item.args.get("after")
    if after is not None:
        try:
            position = json.loads(base64.b64decode(str(after)))
        except ValueError:
            raise QueryError(f"Invalid cursor for {item.name}: {after!r}") from None
        items = [i for i in items if list(_key(key, i)) > position]
    first = int(item.args["first"])
    page = items[:first]
    answer: dict[str, Any] = {}
    for part in item.selection or []:
        if part.name == "nodes":
            answer["nodes"] = [project(part.selection or [], child, node) for node in page]
        elif part.name == "pageInfo":
            end = _cursor(key, page[-1]) if page else None
            info = {"hasNextPage": len(items) > first, "endCursor": end}
            answer["pageInfo"] = project(part.selection or [], "PageInfo", info)
    return answer


def _key(key: Any, item: Any) -> tuple[Any, ...]:
    value = key(item)
    return value if isinstance(value, tuple) else (value,)


def _cursor(key: Any, item: Any) -> str:
    return base64.b64encode(json.dumps(list(_key(key, item))).encode()).decode()


def project(fields: list[Field], type_name: str, source: Any) -> Any:
    """Only the selected fields of ``source``, recursively (connections paged)."""
    if source is None:
        return None
    if isinstance(source, list):
        return [project(fields, type_name, entry) for entry in source]
    answer = {}
    for item in fields:
        child, _scope, kind = SCHEMA[type_name][item.name]
        value = source.get(item.name)
        if child is None:
            answer[item.name] = value
        elif kind == CONN:
            answer[item.name] = _connection(item, child, value or [], _position(value or []))
        else:
            answer[item.name] = project(item.selection or [], child, value)
    return answer


def _position(items: list[Any]) -> Any:
    return lambda entry: next(i for i, candidate in enumerate(items) if candidate is entry)


@lru_cache(maxsize=65536)
def _epoch(value: str) -> float:
    return _instant(value).timestamp()


@lru_cache(maxsize=65536)
def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


# -- the endpoint --------------------------------------------------------------------------------


@dataclass
class AdminGraphQL:
    """Answers the stand-in's ``graphql.json`` for the queries it serves through the executor,
    charging every call to the shop's bucket (G3)."""

    bucket_size: float = 2000.0
    restore_rate: float = 100.0
    buckets: dict[str, Bucket] = field(default_factory=dict)
    throttled: int = 0
    """How many calls were answered THROTTLED."""
    drain_before_calls: int = 0
    """So many next calls find the bucket empty, as when another process of the app spent it."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(
        self, shop: str, query: str, variables: dict[str, Any], context: Context
    ) -> dict[str, Any]:
        try:
            operation = parse(query)
            bind(operation, variables)
            cost = requested_cost(operation)
            if cost > MAX_QUERY_COST:
                raise QueryError(
                    f"Query cost is {cost}, which exceeds the single query max cost limit "
                    f"({MAX_QUERY_COST}).",
                    "MAX_COST_EXCEEDED",
                )
        except QueryError as exc:
            return {"errors": [_error(exc)]}
        with self.lock:
            bucket = self.buckets.setdefault(shop, Bucket(self.bucket_size, self.restore_rate))
            bucket.refill()
            if self.drain_before_calls > 0:
                self.drain_before_calls -= 1
                bucket.available = 0.0
            if bucket.available < cost:
                self.throttled += 1
                return {
                    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                    "extensions": {"cost": _cost_extension(cost, None, bucket)},
                }
            bucket.available -= cost
        try:
            data = execute(operation, context)
        except QueryError as exc:
            return {"errors": [_error(exc)], "extensions": {"cost": self._refund(shop, cost, 0)}}
        actual = actual_cost(operation.selection, "QueryRoot", data)
        return {"data": data, "extensions": {"cost": self._refund(shop, cost, actual)}}

    def _refund(self, shop: str, requested: int, actual: int) -> dict[str, Any]:
        with self.lock:
            bucket = self.buckets[shop]
            bucket.available = min(bucket.maximum, bucket.available + requested - actual)
            return _cost_extension(requested, actual, bucket)


def _cost_extension(requested: int, actual: int | None, bucket: Bucket) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": bucket.status(),
    }


def _error(exc: QueryError) -> dict[str, Any]:
    error: dict[str, Any] = {"message": str(exc)}
    if exc.code:
        error["extensions"] = {"code": exc.code}
    return error
