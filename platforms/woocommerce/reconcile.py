"""Reconciliation for WooCommerce: the orders changed since a time, read with the store's keys.

``GET /wp-json/wc/v3/orders`` with ``modified_after``, ``dates_are_gmt=true``, ``per_page=100``
and ``page=N`` until ``X-WP-TotalPages``. From WooCommerce's code
(``WC_REST_CRUD_Controller::get_collection_params`` and the orders controller,
``includes/rest-api/Controllers/Version3``): ``per_page`` is at most 100, anything else is
answered 400 ``rest_invalid_param``; ``modified_after`` (WooCommerce 5.8+) is a date-time
compared with the order's modification time, in the site's timezone unless ``dates_are_gmt``
is true, so it is always sent, with the time in UTC; ``status`` defaults to ``any``.

The list is ordered by id, not by modification time: page numbers over a list sorted by
modification time shift whenever an order is edited while it is being read (the edited order
jumps to the end and the one at the next page boundary is never seen), and merchants edit
orders all day. Sorted by id an edited order keeps its place, and a new one comes last.

Each order in the list is the REST v3 order, which is exactly the body of an order webhook
(``WC_Webhook::build_payload`` uses the same controller), so it is read by the webhook's own
reader; an order that is not paid yet means nothing, as its webhook would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from connector.models import Store
from connector.plugins import FetchedOrder, FetchError, NoApiAccess
from connector.services import Services
from connector.stores import StoreError
from platforms.woocommerce.connect import load_keys
from platforms.woocommerce.parse import read_webhook
from platforms.woocommerce.rest import PAGE_SIZE, RestError, WooCommerceClient

TOPIC = "order.updated"
"""The webhook a reconciled order stands for: whatever it missed, its latest state."""
RECONNECT = (
    "connect the store with REST API keys (WooCommerce > Settings > Advanced > REST API > Add"
    " key, Read/Write): `connector stores connect-woocommerce --url URL --consumer-key CK"
    " --consumer-secret CS`"
)


def fetch_orders(services: Services, store: Store, since: datetime) -> Iterator[FetchedOrder]:
    """Every order of ``store`` changed after ``since`` (naive UTC), by id.

    Raises :class:`NoApiAccess` for a store added by hand, :class:`FetchError` when the store
    cannot be read (keys revoked, site down), with what to do.
    """
    client = _client(services, store)
    params = {
        "modified_after": since.replace(microsecond=0).isoformat(),
        "dates_are_gmt": "true",
        "orderby": "id",
        "order": "asc",
        "per_page": PAGE_SIZE,
    }
    page, pages = 1, 1
    while page <= pages:
        orders, pages = _page(client, {**params, "page": page})
        for body in orders:
            yield _fetched(body, since)
        page += 1


def _client(services: Services, store: Store) -> WooCommerceClient:
    if not store.access_token_encrypted:
        raise NoApiAccess(
            "no REST API keys: this store was added by hand, so the connector cannot ask it for"
            f" orders whose webhook never came; {RECONNECT}"
        )
    try:
        return load_keys(services, store).client()
    except StoreError as exc:  # keys on file that no configured key decrypts
        raise FetchError(f"the store's REST API keys cannot be read: {exc}") from None


def _page(client: WooCommerceClient, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    try:
        return client.orders_page(params)
    except RestError as exc:
        message = f"cannot list the store's orders: {exc}"
        if exc.reason == "keys-refused":
            message += f"; if the keys were revoked, {RECONNECT}"
        raise FetchError(message) from None


def _fetched(body: dict[str, Any], since: datetime) -> FetchedOrder:
    """The order as its webhook would have brought it; never raises for its content."""
    updated_at = _modified_at(body) or since
    try:
        order = read_webhook(TOPIC, body)
    except Exception as exc:  # the webhook reader's contract: any error means unreadable
        reason = getattr(exc, "reason", type(exc).__name__)
        return FetchedOrder(
            TOPIC, None, updated_at, unreadable=f"order {_id(body)}: {reason}", body=body
        )
    return FetchedOrder(TOPIC, order, updated_at)


def _modified_at(body: dict[str, Any]) -> datetime | None:
    """``date_modified_gmt`` (ISO 8601 without an offset, in GMT) as naive UTC."""
    value = body.get("date_modified_gmt")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _id(body: dict[str, Any]) -> str:
    value = body.get("id")
    return str(value)[:32] if isinstance(value, int | str) else "without an id"
