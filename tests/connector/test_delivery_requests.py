"""Recording asks for delivery once per destination, in one Redis round trip, and only when no
job is waiting (``connector.jobs.request_deliveries``)."""

from __future__ import annotations

from connector.jobs import WANTED_KEY, deliver_destination, request_deliveries
from connector.pipeline import record_events
from tests.support import connect_meta, connect_tiktok, make_order


def queued(services) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    return sorted(tuple(job.args) for job in services.queue.get_jobs())


def test_an_order_for_two_destinations_enqueues_one_job_each_then_none(services, shopify_store):
    tiktok = connect_tiktok(services, shopify_store)
    meta = connect_meta(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order("1"))
    assert queued(services) == sorted([(tiktok,), (meta,)])
    assert services.redis.exists(WANTED_KEY.format(tiktok), WANTED_KEY.format(meta)) == 2
    record_events(services, shopify_store, "orders/create", make_order("2"))
    assert len(queued(services)) == 2  # both jobs still waiting: nothing more to ask


def test_a_destination_whose_job_started_is_asked_again(services, shopify_store):
    tiktok = connect_tiktok(services, shopify_store)
    meta = connect_meta(services, shopify_store)
    assert request_deliveries(services, [tiktok, meta])
    services.redis.delete(WANTED_KEY.format(tiktok))  # what deliver_destination does first
    services.queue.empty()
    assert request_deliveries(services, [tiktok, meta])
    [job] = services.queue.get_jobs()
    assert (job.func, tuple(job.args)) == (deliver_destination, (tiktok,))


def test_redis_down_is_not_an_error(services, shopify_store):
    tiktok = connect_tiktok(services, shopify_store)
    meta = connect_meta(services, shopify_store)
    broken = services.__class__(
        settings=services.settings.with_overrides(redis_url="redis://127.0.0.1:1/0"),
        db=services.db,
        cipher=services.cipher,
        destinations=services.destinations,
    )
    assert request_deliveries(broken, [tiktok, meta]) is False
