"""Send one test event through the whole path: mapping, outbox, delivery, TikTok's answer.

The event is a made-up order sent with the destination's test event code (required here),
so it shows in TikTok Events Manager's "Test events" tab and never counts as a conversion.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connector.delivery import deliver_pending
from connector.events import LineItem, Order, Shopper
from connector.models import Attempt, Destination, Event
from connector.pipeline import record_events
from connector.services import Services
from connector.stores import StoreError, find_destination


def send_test_event(services: Services, store_id: str) -> dict[str, Any]:
    """Record and deliver a test purchase now; return its final state and TikTok's answer."""
    destination = _tiktok_destination(services, store_id)
    order = _test_order()
    record_events(services, store_id, "connector/test-event", order)
    deliver_pending(services, destination.id, time_budget=services.settings.http_timeout_seconds)
    with services.db.session() as session:
        event = session.scalar(
            select(Event).where(Event.store_id == store_id, Event.event_id == order.order_id)
        )
        attempt = session.scalar(
            select(Attempt)
            .where(Attempt.destination_id == destination.id)
            .order_by(Attempt.id.desc())
            .limit(1)
        )
    return {
        "event_id": order.order_id,
        "status": event.status if event else "not recorded",
        "tiktok_code": attempt.code if attempt else None,
        "tiktok_message": attempt.message if attempt else None,
        "request_id": attempt.request_id if attempt else None,
        "error": event.last_error if event else None,
    }


def _tiktok_destination(services: Services, store_id: str) -> Destination:
    with services.db.session() as session:
        destination = find_destination(session, store_id, "tiktok")
    if destination is None:
        raise StoreError(f"store {store_id} has no TikTok pixel: run `connector tiktok set` first")
    if not destination.test_event_code:
        raise StoreError(
            "set a test event code first (TikTok Events Manager > your pixel > Test events), "
            "with `connector tiktok set ... --test-event-code CODE`, so the test is not counted"
        )
    if destination.paused_reason:
        raise StoreError(f"the TikTok destination is paused: {destination.paused_reason}")
    return destination


def _test_order() -> Order:
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
        shopper=Shopper(email="test@example.com"),
        # Not a store's test order: the destination's test event code, which this path
        # requires, is what keeps it out of the conversions, whatever the test-order option.
        is_test=False,
        order_id="test-" + secrets.token_hex(6),
        triggers=frozenset({"created", "paid"}),
    )
