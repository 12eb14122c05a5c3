"""Backpressure: one worker per destination, a request pace, and a cool-down when TikTok
throttles, so a burst neither trips TikTok's limits nor hogs the workers."""

from __future__ import annotations

import time

from connector.delivery import deliver_pending
from connector.jobs import COOLDOWN_KEY, DELIVERING_KEY, deliver_destination, use_services
from connector.pipeline import record_events
from tests.support import connect_tiktok, make_order


def record(services, store_id: str, n: int) -> None:
    for i in range(n):
        record_events(services, store_id, "orders/create", make_order(str(9000 + i)))


def test_requests_are_paced_per_destination(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    services.settings = services.settings.with_overrides(batch_size=1, max_requests_per_second=8)
    record(services, shopify_store, 5)
    started = time.monotonic()
    report = deliver_pending(services, destination_id)
    assert report.delivered == 5
    assert time.monotonic() - started >= 4 / 8, "5 requests at 8/s take at least half a second"


def test_a_throttled_destination_stops_and_cools_down(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    services.settings = services.settings.with_overrides(batch_size=2)
    record(services, shopify_store, 6)
    tiktok.fail_next(1, code=40100, http_status=429, retry_after=90)
    use_services(services)
    result = deliver_destination(destination_id)
    assert result["requests"] == 1, "nothing more is sent to a destination that throttles"
    ttl = services.redis.pttl(COOLDOWN_KEY.format(destination_id))
    assert 80_000 < ttl <= 90_000
    assert deliver_destination(destination_id) == {"skipped": "cooling down"}
    assert len(tiktok.batches) == 1


def test_only_one_worker_delivers_for_a_destination(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    record(services, shopify_store, 3)
    use_services(services)
    other_worker = services.redis.lock(DELIVERING_KEY.format(destination_id), timeout=10)
    assert other_worker.acquire(blocking=False)
    assert deliver_destination(destination_id) == {"skipped": "another worker is delivering"}
    assert tiktok.batches == []
    other_worker.release()
    assert deliver_destination(destination_id)["delivered"] == 3
