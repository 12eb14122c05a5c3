"""GET /metrics: webhooks, deliveries and the outbox in Prometheus text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from connector.delivery import deliver_pending
from tests.support import connect_tiktok, fixture_bytes, fresh, shopify_headers


def samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_webhooks_deliveries_and_outbox_are_counted(client, services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    body = fresh(fixture_bytes("shopify", "orders_create.json"))
    for _ in range(2):
        client.post("/webhooks/shopify", data=body, headers=shopify_headers("orders/create", body))
    forged = shopify_headers("orders/create", body, secret="forged")
    client.post("/webhooks/shopify", data=body, headers=forged)

    before = samples(client)
    webhook = (
        "connector_webhooks_total",
        (("platform", "shopify"), ("result", "{}"), ("topic", "{}")),
    )

    def webhooks(result: str, topic: str) -> float:
        name, labels = webhook
        key = (name, (("platform", "shopify"), ("result", result), ("topic", topic)))
        return before.get(key, 0.0)

    assert webhooks("accepted", "orders/create") == 1
    assert webhooks("duplicate", "orders/create") == 1
    assert webhooks("bad-hmac", "") == 1
    pending = ("connector_events", (("destination", "tiktok"), ("status", "pending")))
    assert before[pending] == 1
    assert before[("connector_queue_depth", ())] == 1

    deliver_pending(services, destination_id)
    after = samples(client)
    delivered = (
        "connector_delivery_requests_total",
        (("code", "0"), ("destination", "tiktok"), ("outcome", "delivered")),
    )
    assert after[delivered] == 1
    assert after[("connector_events", (("destination", "tiktok"), ("status", "delivered")))] == 1
    assert after[("connector_delivery_batch_size_count", (("destination", "tiktok"),))] == 1
    assert after[("connector_delivery_latency_seconds_count", (("destination", "tiktok"),))] == 1
