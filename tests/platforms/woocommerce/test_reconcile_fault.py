"""Fault: WooCommerce's webhook is disabled while half of 200 orders are placed. A real worker's
periodic reconciliation reads them back from the store, and TikTok gets all 200, each once.

Real parts throughout: ``connect-woocommerce`` against the store stand-in, its signed
deliveries to the live app, a ``connector worker`` process (which reconciles when it starts and
every ``RECONCILE_INTERVAL_SECONDS``), and the strict TikTok stand-in.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import func, select

from connector.models import OutboxEvent, Store, utcnow
from tests.platforms.woocommerce.helpers import connect_args, order, output
from tests.support import WorkerProcess, connect_tiktok, wait_until

pytestmark = pytest.mark.prefer_postgres

ORDERS = 200
FIRST_ID = 5001


def test_orders_placed_while_the_webhook_was_disabled_are_all_delivered_once(
    connector, woo, live_server, services, settings, tiktok, tmp_path
):
    store_id = output(connector(*connect_args(woo.base_url), app_url=live_server))["store_id"]
    connect_tiktok(services, store_id)
    order_ids = [str(order_id) for order_id in range(FIRST_ID, FIRST_ID + ORDERS)]
    delivered, missed = order_ids[: ORDERS // 2], order_ids[ORDERS // 2 :]

    for order_id in delivered:
        deliveries = woo.place_order(placed(order_id))
        assert [d.status_code for d in deliveries] == [200]
    for webhook in woo.webhooks():
        woo.disable(webhook.id)
    for order_id in missed:
        assert woo.place_order(placed(order_id)) == []  # WooCommerce sends nothing
    assert sources(services) == {"webhook": len(delivered)}

    worker = WorkerProcess(
        settings.with_overrides(app_url=live_server, reconcile_interval_seconds=2.0),
        tmp_path / "worker.log",
    ).start()
    try:
        tiktok.wait_for_events(ORDERS, timeout=60)
        all_sent_at = utcnow()
        wait_until(lambda: delivered_count(services) == ORDERS, timeout=30)
        # Another run reads all 200 again; anything it recorded twice would be sent now.
        wait_until(lambda: reconciled_at(services, store_id) > all_sent_at, timeout=30)
    finally:
        worker.stop()

    sent = Counter(tiktok.accepted_event_ids())
    assert sorted(sent) == sorted(order_ids), worker.log()
    assert set(sent.values()) == {1}
    assert sources(services) == {"webhook": len(delivered), "reconciled": len(missed)}


def placed(order_id: str) -> dict:
    """A paid order, as just placed."""
    return order("order_created__processing.json", id=int(order_id), number=order_id)


def sources(services) -> dict[str, int]:  # type: ignore[no-untyped-def]
    query = select(OutboxEvent.source, func.count()).group_by(OutboxEvent.source)
    with services.db.session() as session:
        return dict(session.execute(query).all())


def reconciled_at(services, store_id: str) -> datetime:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.get(Store, store_id).reconciled_at


def delivered_count(services) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).where(OutboxEvent.status == "delivered")
    with services.db.session() as session:
        return session.scalar(query)
