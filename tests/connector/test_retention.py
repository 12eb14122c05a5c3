"""Retention: old final events and attempts are deleted; pending and recent ones are kept."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.delivery import deliver_pending
from connector.models import Attempt, OutboxEvent, PixelReceipt, utcnow
from connector.pipeline import record_events
from connector.retention import DATA_REQUESTS_FOLDER, purge_expired
from tests.support import connect_tiktok, make_order

pytestmark = pytest.mark.postgres


def test_old_final_rows_go_and_everything_else_stays(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    for order_id in ("old-delivered", "new-delivered"):
        record_events(services, shopify_store, "orders/create", make_order(order_id))
    deliver_pending(services, destination_id)
    record_events(services, shopify_store, "orders/create", make_order("old-pending"))
    long_ago = utcnow() - timedelta(days=31)
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id.in_(["old-delivered", "old-pending"]))
            .values(received_at=long_ago)
        )
        session.execute(update(Attempt).values(started_at=long_ago))
        for event_id, received_at in (("old-delivered", long_ago), ("new-delivered", utcnow())):
            session.add(
                PixelReceipt(
                    store_id=shopify_store,
                    pixel="tiktok",
                    event_id=event_id,
                    outcome="blocked",
                    received_at=received_at,
                )
            )
        session.commit()

    assert purge_expired(services) == {
        "events": 1,
        "attempts": 1,
        "unreadable": 0,
        "receipts": 1,
        "scrubbed": 0,  # delivered events lost the shopper's IP and user agent when delivered
        "data_requests": 0,
        "queue_strays": 0,  # the old pending event is in the delivery queue, as it should be
    }

    with services.db.session() as session:
        left = set(session.scalars(select(OutboxEvent.event_id)))
        attempts = session.scalars(select(Attempt)).all()
        receipts = set(session.scalars(select(PixelReceipt.event_id)))
    assert left == {"new-delivered", "old-pending"}
    assert receipts == {"new-delivered"}
    assert attempts == []
    assert not any(purge_expired(services).values())


def test_data_request_exports_go_after_30_days(services):
    folder = services.settings.instance_path / DATA_REQUESTS_FOLDER
    old, recent = folder / "st_old" / "key-1.json", folder / "st_recent" / "key-2.json"
    earlier_layout = folder / "st_old-3.json"
    for path in (old, recent, earlier_layout):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    thirty_one_days_ago = time.time() - 31 * 24 * 3600
    for path in (old, earlier_layout):
        os.utime(path, (thirty_one_days_ago, thirty_one_days_ago))
    os.utime(recent, (time.time() - 29 * 24 * 3600,) * 2)

    assert purge_expired(services)["data_requests"] == 2

    assert sorted(folder.rglob("*")) == [recent.parent, recent]  # no empty store folder left
