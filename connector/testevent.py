"""Send one test event through the whole path: mapping, outbox, delivery, the platform's answer.

The event is a made-up order. A destination whose platform has test event codes
(``test_mode == "code"``: TikTok, Meta) sends it with the code (required here), so it shows in
the platform's "Test events" tab and never counts as a conversion; the event goes through the
outbox like any order. A platform without them (``"validate"``: Google's Data Manager API)
is asked to validate the request without recording it (``validateOnly``), so nothing is
stored as delivered: the answer is the test.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connector.delivery import deliver_pending, destination_config, in_flight
from connector.destinations import Destination, Outcome
from connector.events import LineItem, Order, Shopper
from connector.mapping import EventOptions, plan_event
from connector.models import Attempt, EventStatus, OutboxEvent, Store, StoreDestination
from connector.pipeline import record_events
from connector.services import Services
from connector.stores import StoreError, find_destination

TEST_USER_AGENT = "Mozilla/5.0 (compatible; ConnectorTestEvent/1.0)"
"""The test order's browser. A real order carries its shopper's user agent, and Meta refuses a
website event without one (``client_user_agent``, "required for website events", Customer
Information Parameters,
https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters);
a made-up order has no shopper, so it names itself instead of posing as a real browser."""


def send_test_event(services: Services, store_id: str, kind: str) -> dict[str, Any]:
    """Send a test purchase to the store's ``kind`` destination now; return the outcome and
    the platform's answer (its code, message and request id)."""
    api = services.destinations.get(kind)
    if api is None:
        raise StoreError(
            f"no destination {kind!r}: choose one of {', '.join(services.destinations)}"
        )
    row = _destination(services, store_id, api)
    order = _test_order(_store_page(services, store_id))
    if api.test_mode == "validate":
        return _validate_only(services, api, row, order)
    record_events(services, store_id, "connector/test-event", order, only=kind)
    deliver_pending(services, row.id, time_budget=services.settings.http_timeout_seconds)
    event = _settled_event(services, store_id, kind, order.order_id)
    with services.db.session() as session:
        attempt = session.scalar(
            select(Attempt)
            .where(Attempt.destination_id == row.id)
            .order_by(Attempt.id.desc())
            .limit(1)
        )
    return {
        "destination": kind,
        "event_id": order.order_id,
        "status": event.status if event else "not recorded",
        "code": attempt.code if attempt else None,
        "message": attempt.message if attempt else None,
        "request_id": attempt.request_id if attempt else None,
        "error": event.last_error if event else None,
    }


def _settled_event(
    services: Services, store_id: str, kind: str, event_id: str
) -> OutboxEvent | None:
    """The test event's row once no worker is sending it, or as it stands at the timeout.

    The recorded event is also queued for the workers, and one of them may claim it before
    this request does: then the answer comes from that worker's send, so wait until no worker
    holds it (delivered, failed, or pending a retry with the platform's answer).
    """
    deadline = time.monotonic() + services.settings.http_timeout_seconds
    while True:
        with services.db.session() as session:
            event = session.scalar(
                select(OutboxEvent).where(
                    OutboxEvent.store_id == store_id,
                    OutboxEvent.destination == kind,
                    OutboxEvent.event_id == event_id,
                )
            )
            held = event is not None and in_flight(session, event.id)
        if not held or time.monotonic() > deadline:
            return event
        time.sleep(0.1)


def _validate_only(
    services: Services, api: Destination, row: StoreDestination, order: Order
) -> dict[str, Any]:
    """Build the order's event as it would be sent and have the platform validate it."""
    options = EventOptions.from_json(row.options)
    planned = plan_event(order, api, options, test_mode=True)
    if planned is None:
        raise StoreError(f"this store's {api.label} options send no purchase events")
    config = destination_config(services, row, api, validate_only=True)
    result = api.send(services.http, config, [planned.event])
    return {
        "destination": api.kind,
        "event_id": order.order_id,
        "status": EventStatus.DELIVERED if result.outcome is Outcome.DELIVERED else "refused",
        "validate_only": True,
        "code": result.code,
        "message": result.message,
        "request_id": result.request_id,
        "error": None if result.outcome is Outcome.DELIVERED else result.message,
    }


def _destination(services: Services, store_id: str, api: Destination) -> StoreDestination:
    with services.db.session() as session:
        row = find_destination(session, store_id, api.kind)
    if row is None:
        raise StoreError(
            f"store {store_id} has no {api.label} destination: run "
            f"`connector destinations set {store_id} {api.kind}` first"
        )
    if api.test_mode == "code" and not row.test_event_code:
        raise StoreError(
            f"set a test event code first ({api.label}'s Events Manager > Test events), with "
            f"`connector destinations set {store_id} {api.kind} --test-event-code CODE`, so "
            "the test is not counted"
        )
    if row.paused_reason:
        raise StoreError(f"the {api.label} destination is paused: {row.paused_reason}")
    return row


def _store_page(services: Services, store_id: str) -> str | None:
    """The store's own storefront address, the page a real order of it names.

    A real order's ``page_url`` is the shop's origin (a Shopify order's ``order_status_url``
    is on the storefront's primary domain; a WooCommerce order's site is where the store lives,
    folder included), and Meta refuses a website event without one (``event_source_url``,
    https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event).
    The store row keeps that host: the primary domain a Shopify shop is served from when it is
    not the ``*.myshopify.com`` one, else the registered domain. The row keeps no scheme;
    storefronts are served over HTTPS.
    """
    with services.db.session() as session:
        store = session.get(Store, store_id)
        if store is None:
            return None
        host = next(iter(store.storefront_domains or ()), None) or store.domain
    return f"https://{host}/"


def _test_order(page_url: str | None) -> Order:
    """A made-up paid order as the store would send it, on the store's own page."""
    return Order(
        occurred_at=datetime.now(UTC),
        currency="USD",
        total=Decimal("10.00"),
        subtotal=Decimal("10.00"),
        items=(
            LineItem(
                product_id="test-product",
                variant_id="test-variant",
                sku="TEST-SKU",
                name="Connector test product",
                price=Decimal("10.00"),
                quantity=1,
            ),
        ),
        shopper=Shopper(email="test@example.com", user_agent=TEST_USER_AGENT),
        # Not a store's test order: the destination's test event code, which this path
        # requires, or validation without recording is what keeps it out of the conversions,
        # whatever the test-order option.
        is_test=False,
        order_id="test-" + secrets.token_hex(6),
        triggers=frozenset({"created", "paid"}),
        page_url=page_url,
    )
