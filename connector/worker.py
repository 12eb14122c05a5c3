"""``connector worker``: an RQ worker for delivery jobs, plus periodic work in a thread.

It is a SimpleWorker (no fork per job): a job reuses the process's database pool, HTTP
connections and cipher, which is what makes batched delivery fast. A worker killed mid-job
loses nothing: the leased rows are handed out again by the sweep when the lease expires.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker

from connector.followup import follow_up_task
from connector.jobs import sweep, use_services
from connector.plugins import PeriodicTask, load_store_platforms
from connector.reconcile import reconcile_task
from connector.retention import purge_expired
from connector.services import Services, connect_redis

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.job import Job

logger = logging.getLogger(__name__)

PERIODIC_LOCK_KEY = "connector:periodic:{}"
RETENTION_EVERY_SECONDS = 3600.0
RECONNECT_AT_MOST_EVERY_SECONDS = 5.0
RQ_REDIS_ERROR = "could not connect to Redis instance"
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
# Objects allocated (less those freed) before the collector looks at the youngest generation;
# CPython's default is 700 (https://docs.python.org/3/library/gc.html#gc.set_threshold).
YOUNG_GENERATION_THRESHOLD = 50_000


class RedisOutage(logging.Filter):
    """One log line per Redis outage instead of one per reconnection attempt.

    RQ logs "could not connect to Redis instance" at every retry of its dequeue loop and of its
    pubsub thread (every 2 s): a 45 s outage wrote 29 ERROR lines; a job cut short by the
    outage adds its traceback. On RQ's worker logger this lets the first of these through and
    drops the others until the periodic thread, which uses Redis at least every sweep
    interval, finds it answering and says so (:meth:`answered`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.since: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        cause = record.exc_info[1] if record.exc_info else None
        if RQ_REDIS_ERROR not in str(record.msg) and not isinstance(cause, REDIS_DOWN):
            return True
        first = self.since is None
        if first:
            self.since = time.monotonic()
        return first

    def answered(self, asked_at: float) -> None:
        """Redis answered a command sent at ``asked_at`` (monotonic): if that was after the
        outage's first line, the outage is over."""
        since = self.since
        if since is not None and asked_at > since:
            logger.info("redis.reachable after %.0f s without it", time.monotonic() - since)
            self.since = None


REDIS_OUTAGE = RedisOutage()


class DeliveryWorker(SimpleWorker):
    """RQ's SimpleWorker, riding out a Redis outage instead of quitting.

    RQ (3.0) waits out a Redis outage only in its wait for a job, where it retries and logs;
    a connection error anywhere else in its loop ends the worker process: its maintenance (at
    start, then every 10 minutes), its state and heartbeat, a job's bookkeeping. Those steps
    are skipped here while Redis is down, so the loop comes back to the wait. A job cut short
    this way loses nothing: its events are in the database, where the sweep finds them.
    """

    # RQ doubles its wait between reconnections up to a minute by default; a connection
    # attempt costs nothing, and this way delivery resumes within seconds of Redis.
    max_connection_wait_time = RECONNECT_AT_MOST_EVERY_SECONDS

    def check_for_suspension(self, burst: bool) -> None:
        with suppress(*REDIS_DOWN):
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        with suppress(*REDIS_DOWN):
            super().run_maintenance_tasks()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        with suppress(*REDIS_DOWN):
            super().set_state(state, pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        with suppress(*REDIS_DOWN):
            super().heartbeat(timeout, pipeline)

    def execute_job(self, job: Job, queue: Queue) -> None:
        with suppress(*REDIS_DOWN):
            super().execute_job(job, queue)


def run_worker(services: Services, *, burst: bool = False) -> None:
    """Work the delivery queue until stopped (SIGTERM finishes the current job first)."""
    use_services(services)
    tune_garbage_collector()
    stop = threading.Event()
    tasks = periodic_tasks(services)
    runner = threading.Thread(target=run_periodic, args=(services, tasks, stop), daemon=True)
    runner.start()
    logging.getLogger("rq.worker").addFilter(REDIS_OUTAGE)
    try:
        delivery_worker(services).work(burst=burst, with_scheduler=False, logging_level="INFO")
    finally:
        stop.set()


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off a delivery's hot path.

    A batch of 500 events holds some 15,000 small containers (payload dicts, events, the
    request body) at once. At CPython's default threshold the collector ran about twenty
    times a batch, promoted the batch's objects towards the oldest generation and so set off
    full collections over every object the process holds: 10 to 16 us of a worker's CPU per
    delivered event, a quarter of it (``bench/delivery_floor.py``). Reference counting frees
    these objects; cycles are rare here. So the objects made at start are frozen out of
    collections (``gc.freeze``), and the youngest generation is collected only after 50,000
    net allocations, by when a batch has come and gone: at most a few MB held a little longer.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def delivery_worker(services: Services) -> DeliveryWorker:
    """The RQ worker, on a Redis client of its own for its blocking dequeue.

    RQ waits for a job with BLPOP for up to ``worker_ttl - 15`` seconds (405 by default) and
    raises the socket timeout of the client it is given above that (rq 3.0,
    ``BaseWorker._set_connection``), but only for sockets opened afterwards. Sharing
    ``services.redis`` with the periodic thread, which usually opens a socket first, left
    BLPOP on a 5 s socket in many starts: it timed out, RQ logged an ERROR and backed off for
    up to a minute while orders waited; and RQ's raised timeout would have let a Redis outage
    stall the sweep. This client has no timeout of its own, so RQ sizes it for every socket.
    """
    connection = connect_redis(services.settings.redis_url, socket_timeout=None)
    queue = Queue(services.settings.queue_name, connection=connection)
    return DeliveryWorker([queue], connection=connection)


def periodic_tasks(services: Services) -> list[PeriodicTask]:
    """The sweep, retention, reconciliation with the stores' APIs, then whatever each store
    platform asks to run periodically."""
    tasks = [
        PeriodicTask("sweep", services.settings.sweep_interval_seconds, sweep),
        PeriodicTask("retention", RETENTION_EVERY_SECONDS, purge_expired),
        reconcile_task(services),
        follow_up_task(),
    ]
    for platform in load_store_platforms():
        tasks.extend(platform.periodic)
    return tasks


def run_periodic(services: Services, tasks: list[PeriodicTask], stop: threading.Event) -> None:
    """Run each task when due, if no other worker ran it this period; never dies of an error."""
    next_run = dict.fromkeys((task.name for task in tasks), 0.0)
    while not stop.is_set():
        for task in tasks:
            if time.monotonic() >= next_run[task.name]:
                next_run[task.name] = time.monotonic() + task.every_seconds
                if _claim_period(services, task):
                    _run_task(services, task)
        wait = min(next_run.values()) - time.monotonic()
        stop.wait(max(0.05, wait))


def _claim_period(services: Services, task: PeriodicTask) -> bool:
    """A Redis lock a little shorter than the period, so one worker runs the task per period."""
    ttl_ms = max(50, int(task.every_seconds * 1000 * 0.8))
    asked_at = time.monotonic()
    try:
        claimed = services.redis.set(PERIODIC_LOCK_KEY.format(task.name), 1, nx=True, px=ttl_ms)
    except RedisError:
        return False  # no Redis, no queue: the next period tries again
    REDIS_OUTAGE.answered(asked_at)
    return bool(claimed)


def _run_task(services: Services, task: PeriodicTask) -> None:
    try:
        task.run(services)
    except Exception:  # periodic work must outlive a database or network blip
        logger.exception("periodic.failed task=%s", task.name)
