"""``connector worker``: an RQ worker for delivery jobs, plus periodic work in a thread.

It is a SimpleWorker (no fork per job): a job reuses the process's database pool, HTTP
connections and cipher, which is what makes batched delivery fast. A worker killed mid-job
loses nothing: the leased rows are handed out again by the sweep when the lease expires.
"""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import RedisError
from rq import SimpleWorker

from connector.jobs import sweep, use_services
from connector.plugins import PeriodicTask, load_store_platforms
from connector.reconcile import reconcile_task
from connector.retention import purge_expired
from connector.services import Services

logger = logging.getLogger(__name__)

PERIODIC_LOCK_KEY = "connector:periodic:{}"
RETENTION_EVERY_SECONDS = 3600.0


def run_worker(services: Services, *, burst: bool = False) -> None:
    """Work the delivery queue until stopped (SIGTERM finishes the current job first)."""
    use_services(services)
    stop = threading.Event()
    tasks = periodic_tasks(services)
    runner = threading.Thread(target=run_periodic, args=(services, tasks, stop), daemon=True)
    runner.start()
    try:
        worker = SimpleWorker([services.queue], connection=services.redis)
        worker.work(burst=burst, with_scheduler=False, logging_level="INFO")
    finally:
        stop.set()


def periodic_tasks(services: Services) -> list[PeriodicTask]:
    """The sweep, retention, reconciliation with the stores' APIs, then whatever each store
    platform asks to run periodically."""
    tasks = [
        PeriodicTask("sweep", services.settings.sweep_interval_seconds, sweep),
        PeriodicTask("retention", RETENTION_EVERY_SECONDS, purge_expired),
        reconcile_task(services),
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
    try:
        return bool(services.redis.set(PERIODIC_LOCK_KEY.format(task.name), 1, nx=True, px=ttl_ms))
    except RedisError:
        return False  # no Redis, no queue: the next period tries again


def _run_task(services: Services, task: PeriodicTask) -> None:
    try:
        task.run(services)
    except Exception:  # periodic work must outlive a database or network blip
        logger.exception("periodic.failed task=%s", task.name)
