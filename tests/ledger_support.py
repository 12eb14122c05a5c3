"""A store with a mix of purchases for the recovered-conversions ledger's tests: delivered and
not, receipts "reported" and "blocked" and none, several currencies, browsers and days; and
the ledger's numbers computed the slow, obvious way from the tables, to compare with."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select

from connector.events import Content, ConversionEvent
from connector.models import EventStatus, OutboxEvent, PixelReceipt, utcnow
from connector.services import Services


@dataclass(frozen=True)
class Purchase:
    order_id: str
    value: float
    currency: str = "USD"
    status: str = EventStatus.DELIVERED
    receipt: str | None = None  # "reported", "blocked" or None
    browser: str | None = "Chrome"
    device: str | None = "desktop"
    days_ago: float = 1.0
    event_name: str = "CompletePayment"
    destination: str = "tiktok"


MIX = (
    Purchase("1001", 120.00, receipt="reported", browser="Safari", device="mobile"),
    Purchase("1002", 80.50, receipt="blocked", browser="Chrome", device="desktop"),
    Purchase("1003", 45.25, receipt="blocked", browser="Firefox", device="desktop", days_ago=3),
    Purchase("1004", 60.00, receipt=None, browser="Safari", device="mobile", days_ago=3),
    Purchase("1005", 99.99, receipt="reported", browser=None, device=None, days_ago=5),
    Purchase("1006", 30.00, currency="EUR", receipt="blocked", browser="TikTok in-app",
             device="mobile", days_ago=2),
    Purchase("1007", 25.00, receipt=None, browser="Chrome", device="tablet", days_ago=2),
    Purchase("1008", 70.00, receipt="blocked", status=EventStatus.FAILED, days_ago=2),
    Purchase("1009", 15.00, receipt=None, status=EventStatus.PENDING, days_ago=0.1),
    Purchase("1010", 50.00, receipt="reported", status=EventStatus.SKIPPED, days_ago=1),
    Purchase("1011", 10.00, receipt="blocked", event_name="Purchase", days_ago=4),
    # Outside the 30-day window, or not a TikTok purchase: never counted.
    Purchase("0900", 500.00, receipt="blocked", days_ago=40),
    Purchase("1012", 33.00, receipt="blocked", destination="meta", event_name="Purchase"),
    Purchase("1013", 21.00, receipt=None, event_name="InitiateCheckout"),
)  # fmt: skip
"""Within 30 days, TikTok purchases: 8 delivered (2 reported, 4 blocked, 2 without receipt),
one failed, one pending, one skipped."""

STRAY_RECEIPTS = (("tiktok", "no-such-order", "blocked"), ("meta", "1001", "blocked"))
"""Receipts that match no TikTok purchase of the window."""


def seed(  # type: ignore[no-untyped-def]
    services: Services, store_id: str, purchases=MIX, *, strays: bool = True
) -> None:
    """Insert the purchases as outbox rows (payloads as the pipeline stores them) and their
    receipts, plus :data:`STRAY_RECEIPTS` unless ``strays`` is false. Every other row leaves
    the value and currency columns empty, as rows recorded before they existed do, so both
    ways the ledger reads money are counted."""
    now = utcnow()
    events, receipts = [], []
    for index, p in enumerate(purchases):
        received = now - timedelta(days=p.days_ago)
        event = ConversionEvent(
            event_name=p.event_name,
            event_id=p.order_id,
            event_time=int((received - timedelta(minutes=2)).timestamp()),
            user={"email": "0" * 64},
            value=p.value,
            currency=p.currency,
            contents=(Content("42", "Tee", p.value, 1),),
            order_id=p.order_id,
        )
        events.append(
            {
                "store_id": store_id,
                "destination": p.destination,
                "event_name": p.event_name,
                "event_id": p.order_id,
                "source_topic": "orders/create",
                "source": "webhook",
                "status": p.status,
                "payload": event.to_json(),
                "event_time": event.event_time,
                "received_at": received,
                "next_attempt_at": received,
                "delivered_at": received if p.status == EventStatus.DELIVERED else None,
                "browser": p.browser,
                "device": p.device,
                "value": None if index % 2 else event.value,
                "currency": None if index % 2 else event.currency,
            }
        )
        if p.receipt:
            receipts.append((p.destination, p.order_id, p.receipt, received))
    for pixel, event_id, outcome in STRAY_RECEIPTS if strays else ():
        receipts.append((pixel, event_id, outcome, now - timedelta(days=1)))
    with services.db.session() as session:
        session.execute(insert(OutboxEvent), events)
        for pixel, event_id, outcome, received in receipts:
            session.add(
                PixelReceipt(
                    store_id=store_id,
                    pixel=pixel,
                    event_id=event_id,
                    outcome=outcome,
                    received_at=received,
                )
            )
        session.commit()


def forget_receipts(services: Services) -> None:
    """The test database is emptied between tests, but not of receipts (tests/conftest.py
    predates them): start each ledger test without any."""
    with services.db.session() as session:
        session.execute(delete(PixelReceipt))
        session.commit()


@dataclass
class Expected:
    """The ledger's numbers, computed row by row in Python from the two tables."""

    delivered: int = 0
    reported: int = 0
    recovered: int = 0
    unreceipted: int = 0
    delivered_value: dict[str, float] | None = None
    reported_value: dict[str, float] | None = None
    recovered_value: dict[str, float] | None = None
    unreceipted_value: dict[str, float] | None = None
    by_browser: dict[str, tuple[int, int]] | None = None  # browser -> (delivered, blocked)
    by_day: dict[str, tuple[int, int]] | None = None
    outcomes: dict[str, str] | None = None  # order id -> browser outcome, every purchase


def expected(services: Services, store_id: str, days: int = 30) -> Expected:
    """What a direct reading of the tables says, independently of connector.recovered."""
    since = utcnow() - timedelta(days=days)
    purchase_names = set(services.destinations["tiktok"].event_names["purchase"])
    with services.db.session() as session:
        rows = (
            session.execute(
                select(OutboxEvent).where(
                    OutboxEvent.store_id == store_id, OutboxEvent.destination == "tiktok"
                )
            )
            .scalars()
            .all()
        )
        receipts = {
            r.event_id: r.outcome
            for r in session.scalars(
                select(PixelReceipt).where(
                    PixelReceipt.store_id == store_id, PixelReceipt.pixel == "tiktok"
                )
            )
        }
    result = Expected(
        delivered_value=defaultdict(float),
        reported_value=defaultdict(float),
        recovered_value=defaultdict(float),
        unreceipted_value=defaultdict(float),
        by_browser=defaultdict(lambda: (0, 0)),
        by_day=defaultdict(lambda: (0, 0)),
        outcomes={},
    )
    for row in rows:
        if row.event_name not in purchase_names or row.received_at < since:
            continue
        outcome = receipts.get(row.event_id, "no receipt")
        result.outcomes[row.event_id] = outcome
        if row.status != EventStatus.DELIVERED:
            continue
        value, currency = row.payload["value"], row.payload["currency"]
        result.delivered += 1
        result.delivered_value[currency] += value
        blocked = int(outcome == "blocked")
        if outcome == "reported":
            result.reported += 1
            result.reported_value[currency] += value
        elif blocked:
            result.recovered += 1
            result.recovered_value[currency] += value
        else:
            result.unreceipted += 1
            result.unreceipted_value[currency] += value
        browser = row.browser or "unknown"
        count, blocks = result.by_browser[browser]
        result.by_browser[browser] = (count + 1, blocks + blocked)
        day = row.received_at.date().isoformat()
        count, blocks = result.by_day[day]
        result.by_day[day] = (count + 1, blocks + blocked)
    return result
