"""A real ``connector worker`` stays prompt and quiet when idle, and rides out a Redis outage.

Each start idles longer than the 5 s socket timeout of the connection the periodic thread
shares, which RQ's blocking dequeue (BLPOP, up to 405 s) once reused in most starts: it timed
out, logged an ERROR and backed off, so a lone order waited up to a minute.

``WORKER_IDLE_STARTS`` (default 3) and ``WORKER_IDLE_SECONDS`` (default 7) make the first test
longer, e.g. ten starts after 60 s idle each, the issue's acceptance run.
"""

from __future__ import annotations

import os
import re
import time

from connector.embedded_redis import start_redis
from connector.pipeline import record_events
from connector.services import build_services
from tests.support import WorkerProcess, connect_tiktok, make_order, wait_until

STARTS = int(os.environ.get("WORKER_IDLE_STARTS", "3"))
IDLE_SECONDS = float(os.environ.get("WORKER_IDLE_SECONDS", "7"))
PROMPT_SECONDS = 2.0
LISTENING = "Listening on"
PROBLEM_LINE = re.compile(r"^.* (?:ERROR|WARNING) .*$", re.MULTILINE)
RQ_REDIS_ERROR = "could not connect to Redis instance"


def wait_listening(worker: WorkerProcess, starts: int) -> None:
    """Until the worker's log says its dequeue loop is listening for the ``starts``-th time."""
    wait_until(lambda: worker.log().count(LISTENING) >= starts, timeout=30)


def delivery_seconds(services, store_id, tiktok, order_id: str, delivered_before: int) -> float:
    """Record one order and time its arrival at the TikTok stand-in."""
    started = time.monotonic()
    record_events(services, store_id, "orders/create", make_order(order_id))
    tiktok.wait_for_events(delivered_before + 1, timeout=90)
    return time.monotonic() - started


def test_a_lone_order_after_an_idle_gap_leaves_at_once_on_every_start(
    services, shopify_store, tiktok, tmp_path
):
    connect_tiktok(services, shopify_store)
    worker = WorkerProcess(services.settings, tmp_path / "worker.log")
    latencies = []
    for start in range(1, STARTS + 1):
        worker.start()
        try:
            wait_listening(worker, start)
            time.sleep(IDLE_SECONDS)
            latencies.append(
                delivery_seconds(services, shopify_store, tiktok, f"idle-{start}", start - 1)
            )
        finally:
            worker.stop()
    print("seconds from order to TikTok, per start:", [round(s, 3) for s in latencies])
    assert PROBLEM_LINE.findall(worker.log()) == [], worker.log()
    assert max(latencies) < PROMPT_SECONDS, latencies


class Outage:
    """A Redis server of the test's own, which the test stops and starts on the same port."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.server = start_redis(folder, persist=False)

    def begin(self) -> None:
        self.server.stop()

    def end(self) -> None:
        self.server = start_redis(self.folder, port=self.server.port, persist=False)


def test_redis_outages_are_logged_once_each_and_orders_stored_during_them_are_delivered(
    services, shopify_store, tiktok, tmp_path
):
    """One outage while the worker waits for a job, one while a job runs; RQ quits on the
    second kind unless the worker rides it out. The worker waits for the server to be back."""
    redis = Outage(tmp_path / "redis")
    own = build_services(services.settings.with_overrides(redis_url=redis.server.url))
    connect_tiktok(own, shopify_store)
    worker = WorkerProcess(own.settings, tmp_path / "worker.log").start()
    try:
        wait_listening(worker, 1)
        time.sleep(1)  # past RQ's maintenance at start: the worker waits for a job
        redis.begin()
        time.sleep(3)  # RQ retries after 1 and 2 s, its pubsub thread every 2 s
        record_events(own, shopify_store, "orders/create", make_order("while-waiting"))
        redis.end()
        tiktok.wait_for_events(1, timeout=20)
        wait_until(lambda: worker.log().count("redis.reachable") == 1, timeout=10)

        tiktok.delay_seconds = 1.5
        record_events(own, shopify_store, "orders/create", make_order("in-the-job"))
        wait_until(tiktok.in_flight, timeout=10)
        redis.begin()
        record_events(own, shopify_store, "orders/create", make_order("while-working"))
        tiktok.wait_for_events(2, timeout=10)
        tiktok.delay_seconds = 0
        time.sleep(3)
        redis.end()
        tiktok.wait_for_events(3, timeout=20)
        wait_until(lambda: worker.log().count("redis.reachable") == 2, timeout=10)
        assert worker.process.poll() is None, "the worker rode out both outages"
    finally:
        worker.stop()
        redis.server.stop()
        own.db.dispose()
        print(worker.log())  # shown when the test fails
    assert tiktok.accepted_event_ids() == ["while-waiting", "in-the-job", "while-working"]
    assert len(PROBLEM_LINE.findall(worker.log())) == 2, "one line for each outage"
