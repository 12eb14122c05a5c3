"""The log of a first connection says webhooks were created, not repaired (issue 15)."""

from __future__ import annotations

import logging

from platforms.woocommerce.connect import StoreAddress, connect_store
from tests.platforms.woocommerce.helpers import CONSUMER_KEY, CONSUMER_SECRET


def test_a_first_connection_logs_creation(live_services, woo, caplog):
    with caplog.at_level(logging.INFO, logger="platforms.woocommerce.connect"):
        report = connect_store(
            live_services, StoreAddress.parse(woo.base_url), CONSUMER_KEY, CONSUMER_SECRET
        )
    store_id = report["store_id"]
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if m.startswith("woocommerce.webhook.")] == [
        f"woocommerce.webhook.created store={store_id} topic={w['topic']} webhook={w['id']}"
        for w in report["webhooks"]
    ]
    assert all(record.levelno == logging.INFO for record in caplog.records)
