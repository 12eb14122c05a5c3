"""Retention: old final events and attempts are deleted; pending and recent ones are kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.delivery import deliver_pending
from connector.models import Attempt, OutboxEvent, utcnow
from connector.pipeline import record_events
from connector.retention import purge_expired
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
        session.commit()

    assert purge_expired(services) == {"events": 1, "attempts": 1, "unreadable": 0}

    with services.db.session() as session:
        left = set(session.scalars(select(OutboxEvent.event_id)))
        attempts = session.scalars(select(Attempt)).all()
    assert left == {"new-delivered", "old-pending"}
    assert attempts == []
    assert purge_expired(services) == {"events": 0, "attempts": 0, "unreadable": 0}
