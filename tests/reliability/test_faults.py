"""Fault injection with real processes: every accepted webhook is delivered, whatever breaks.

Each scenario prints its counts (see the summary table at the end of the run). Duplicates
are allowed only where delivery is unavoidably at-least-once (a worker killed after TikTok
accepted its batch but before it could record that), and are counted.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import select

from connector.models import OutboxEvent
from connector.services import build_services
from tests.reliability.rig import BATCH_OF, SIZE, Rig, order_ids
from tests.standins.tcpproxy import TcpProxy
from tests.support import wait_until

pytestmark = pytest.mark.prefer_postgres


def test_tiktok_down_for_a_while_then_back(rig: Rig, report):
    rig.start_web()
    rig.start_worker()
    rig.tiktok.go_down()
    try:
        rig.send(order_ids(0, SIZE))
        time.sleep(2.0)
        assert rig.tiktok.accepted_event_ids() == []
    finally:
        rig.tiktok.come_up()
    rig.wait_delivered()
    counts = report(rig.counts("TikTok down, then back"))
    assert counts.accepted == SIZE and counts.duplicates == 0


def test_rate_limits_and_server_errors(rig: Rig, report):
    rig.tiktok.set_random_faults(rate_limit=1 / 3, http_500=0.1, seed=11)
    rig.settings = rig.settings.with_overrides(batch_size=4)  # many requests, many faults
    rig.start_web()
    rig.start_worker()
    rig.send(order_ids(0, SIZE))
    rig.wait_delivered()
    codes = [batch.answer.get("code") for batch in rig.tiktok.batches]
    assert 40100 in codes, "the storm must really have happened"
    counts = report(rig.counts("40100 to 1/3, HTTP 500 to 1/10"))
    assert counts.duplicates == 0


def test_worker_killed_mid_batch(rig: Rig, report):
    rig.start_web()
    rig.send(order_ids(0, SIZE))  # stored; no worker yet, so they leave as one batch
    rig.tiktok.delay_seconds = 2.0
    worker = rig.start_worker()
    deadline = time.monotonic() + 10
    while not rig.tiktok.in_flight() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rig.tiktok.in_flight(), "the batch must be on its way when the worker dies"
    worker.kill()
    rig.tiktok.delay_seconds = 0
    rig.start_worker()
    rig.wait_delivered()
    report(rig.counts("worker SIGKILLed mid-batch"))


def test_redis_flushed_and_restarted_mid_run(rig: Rig, report):
    rig.start_web()
    rig.start_worker()
    half = SIZE // 2
    rig.tiktok.delay_seconds = 0.5  # keep work in flight and in the queue
    rig.send(order_ids(0, half))
    rig.restart_redis(flush=True)
    rig.send(order_ids(half, SIZE - half))
    rig.tiktok.delay_seconds = 0
    rig.wait_delivered()
    counts = report(rig.counts("Redis FLUSHALL + restart"))
    assert counts.accepted == SIZE, "a Redis outage must not cost a webhook its 200"


def test_web_restarted_under_load(rig: Rig, report):
    rig.start_web()
    rig.start_worker()
    ids = order_ids(0, SIZE)
    sender = threading.Thread(target=rig.send_until_accepted, args=(ids,))
    sender.start()
    time.sleep(0.3)
    rig.stop_web()
    rig.start_web()
    sender.join()
    rig.wait_delivered()
    counts = report(rig.counts("web restarted under load"))
    assert counts.accepted == SIZE


def test_database_briefly_unavailable(rig: Rig, report, backend):
    if backend != "postgresql":
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): the outage is a cut TCP connection")
    url = urlsplit(rig.settings.database_url)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 5432).start()
    netloc = url.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    proxied = urlunsplit(url._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))
    rig.settings = rig.settings.with_overrides(database_url=proxied)
    try:
        rig.start_web()
        rig.start_worker()
        third = max(1, SIZE // 3)
        rig.send(order_ids(0, third))
        proxy.cut()
        refused = rig.send(order_ids(third, third))
        assert set(refused.values()) == {503}, refused
        proxy.restore()
        assert stored_event_ids(rig) & set(refused) == set(), "nothing half-written"
        rig.send_until_accepted(list(refused))  # Shopify retries a 503
        rig.send(order_ids(2 * third, SIZE - 2 * third))
        rig.wait_delivered()
    finally:
        proxy.cut()
    counts = report(rig.counts("database unavailable (503s)"))
    assert counts.accepted == SIZE


def stored_event(rig: Rig, event_id: str, *, status: str) -> OutboxEvent | None:
    services = build_services(rig.settings)
    try:
        with services.db.session() as session:
            query = select(OutboxEvent).where(
                OutboxEvent.event_id == event_id, OutboxEvent.status == status
            )
            return session.scalar(query)
    finally:
        services.db.dispose()


def stored_event_ids(rig: Rig) -> set[str]:
    services = build_services(rig.settings)
    try:
        with services.db.session() as session:
            return set(session.scalars(select(OutboxEvent.event_id)))
    finally:
        services.db.dispose()


def test_one_bad_event_in_a_batch_of_500(rig: Rig, report):
    rig.start_web()
    ids = order_ids(0, BATCH_OF)
    rig.send(ids)  # stored while no worker runs, so they leave together
    bad = ids[BATCH_OF // 3]
    rig.tiktok.reject_event_ids({bad})
    rig.start_worker()
    rig.answers[bad] = 0  # not expected at TikTok: counted apart below
    rig.wait_delivered()
    counts = report(rig.counts(f"one 40002 in a batch of {BATCH_OF}"))
    assert counts.delivered == BATCH_OF - 1
    event = wait_until(lambda: stored_event(rig, bad, status="failed"), timeout=10)
    assert event.last_code == 40002
    assert bad in event.last_error
    assert len(rig.tiktok.batches) <= 4, "the bad event is set aside, the rest sent at once"
