"""The worker's periodic work (one run per period across workers, errors survived), the
connection its dequeue waits on, and one log line per Redis outage."""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import ConnectionError as RedisConnectionError

from connector.jobs import sweep
from connector.pipeline import record_events
from connector.plugins import PeriodicTask
from connector.worker import RedisOutage, delivery_worker, periodic_tasks, run_periodic
from tests.support import connect_tiktok, make_order


def run_for(services, tasks, seconds: float, runners: int = 1) -> None:
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_periodic, args=(services, tasks, stop)) for _ in range(runners)
    ]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


def test_two_workers_run_a_task_once_per_period(services):
    runs = []
    task = PeriodicTask("count", 0.25, lambda _services: runs.append(time.monotonic()))
    run_for(services, [task], 1.2, runners=2)
    # About 5 periods in 1.2 s: two workers without the lock would make about 10 runs.
    assert 3 <= len(runs) <= 7, runs


def test_a_failing_task_does_not_stop_the_others(services):
    calls = {"bad": 0, "good": 0}

    def bad(_services):
        calls["bad"] += 1
        raise RuntimeError("boom")

    def good(_services):
        calls["good"] += 1

    run_for(services, [PeriodicTask("bad", 0.1, bad), PeriodicTask("good", 0.1, good)], 0.6)
    assert calls["bad"] >= 2 and calls["good"] >= 2


def test_the_sweep_is_always_scheduled(services):
    assert periodic_tasks(services)[0].name == "sweep"


def test_the_sweep_replaces_a_job_a_dying_worker_took(services, shopify_store):
    """A worker that took the delivery job and died before starting it leaves the "wanted"
    flag set for a minute; the sweep must not wait that minute out."""
    destination_id = connect_tiktok(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order("1"))
    queue = services.queue
    assert queue.count == 1
    queue.empty()  # the job is gone with its worker; its flag stays
    assert sweep(services) == 1 and queue.count == 0  # a fresh flag is trusted
    time.sleep(services.settings.sweep_interval_seconds + 0.1)
    assert sweep(services) == 1 and queue.count == 1
    assert queue.jobs[0].args == (destination_id,)


def test_the_dequeue_waits_on_a_socket_that_outlasts_it_even_after_the_periodic_thread(
    services,
):
    """The periodic thread's client keeps its short timeout, and a socket it opened before
    the RQ worker existed is never the one RQ's blocking dequeue waits on."""
    services.redis.ping()  # the periodic thread usually reaches Redis first
    worker = delivery_worker(services)
    assert socket_timeout(worker.connection) > worker.dequeue_timeout
    assert socket_timeout(services.redis) == 5


def socket_timeout(redis) -> float | None:
    """The timeout of the socket the client's next command would use."""
    pool = redis.connection_pool
    connection = pool.get_connection()
    pool.release(connection)
    return connection.socket_timeout


def test_a_redis_outage_lets_one_line_through_until_redis_answers_a_later_command():
    outage = RedisOutage()

    def line(message: str, error: Exception | None = None) -> bool:
        exc_info = (type(error), error, None) if error else None
        record = logging.LogRecord("rq.worker", logging.ERROR, "", 0, message, (), exc_info)
        return outage.filter(record)

    asked_before = time.monotonic()
    assert line("Worker w: could not connect to Redis instance: %s retrying in %d seconds...")
    assert not line("Worker w: found an unhandled exception, quitting...", RedisConnectionError())
    assert not line("Worker w: could not connect to Redis instance: %s retrying in 2 seconds")
    assert line("Worker w: started with PID 1")
    outage.answered(asked_before)  # an answer to a command sent before the outage began
    assert not line("Worker w: could not connect to Redis instance: %s")
    outage.answered(time.monotonic())
    assert line("Worker w: could not connect to Redis instance: %s")
