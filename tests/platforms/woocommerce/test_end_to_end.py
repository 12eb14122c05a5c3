"""The whole WooCommerce path with real parts: ``connect-woocommerce`` against the store
stand-in, the store's signed deliveries to the live app, a real ``connector worker``, and the
strict TikTok stand-in at the end.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from connector.models import OutboxEvent
from tests.platforms.woocommerce.helpers import connect_args, order, output
from tests.support import TIKTOK_TOKEN, WorkerProcess, connect_tiktok, wait_until

pytestmark = pytest.mark.postgres

GUEST = "order_created__guest_with_ttclid_meta.json"  # order 1191, _ttclid and _ttp in meta


@pytest.fixture
def live_worker(settings, live_server, tmp_path):  # type: ignore[no-untyped-def]
    """A worker whose APP_URL is the live app's: its periodic webhook check must find the
    webhooks healthy, not re-point them to the test settings' placeholder address."""
    process = WorkerProcess(settings.with_overrides(app_url=live_server), tmp_path / "w.log")
    yield process.start()
    process.stop()


def test_a_connected_store_order_reaches_tiktok_once_with_its_meta_ttclid(
    connector, woo, live_server, services, tiktok, live_worker
):
    out = output(connector(*connect_args(woo.base_url), app_url=live_server))
    connect_tiktok(services, out["store_id"])
    unpaid = {"date_paid": None, "date_paid_gmt": None}
    deliveries = [
        *woo.trigger("order.created", order(GUEST, status="pending", **unpaid)),
        *woo.trigger("order.updated", order(GUEST, status="on-hold", **unpaid)),
        *woo.trigger("order.updated", order(GUEST, status="processing")),
        *woo.trigger("order.updated", order(GUEST, status="completed")),
    ]
    assert [d.status_code for d in deliveries] == [200] * 4, live_worker.log()

    [event] = tiktok.wait_for_events(1)
    time.sleep(1.0)  # anything extra would arrive now
    assert tiktok.accepted_event_ids() == ["1191"]
    assert event["event"] == "CompletePayment"
    assert event["user"]["ttclid"] == "E.C.P.CsUBguestMeta5Hj8Kl2Mn6Pq9Rs3Tu7Vw0"
    assert event["user"]["ttp"] == "2hVd8PkN3sQw6ZtRb1LmY4xGcFj"
    assert event["properties"]["currency"] == "EUR"
    assert tiktok.batches[0].headers["Access-Token"] == TIKTOK_TOKEN
    row = wait_until(lambda: delivered_event(services))
    assert (row.event_id, row.source_topic, row.click_source) == (
        "1191",
        "order.updated",
        "order_meta",
    )
    assert {w.status for w in woo.webhooks()} == {"active"}


def delivered_event(services) -> OutboxEvent | None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalars(
            select(OutboxEvent).where(OutboxEvent.status == "delivered")
        ).one_or_none()
