"""``connector worker``: an RQ worker for delivery jobs, plus the periodic sweep.

It is a SimpleWorker (no fork per job): a job reuses the process's database pool, HTTP
connections and cipher, which is what makes batched delivery fast. A worker killed mid-job
loses nothing: the leased rows are handed out again by the sweep when the lease expires.
"""

from __future__ import annotations

import logging
import threading

from rq import SimpleWorker

from connector.jobs import sweep, use_services
from connector.services import Services

logger = logging.getLogger(__name__)


def run_worker(services: Services, *, burst: bool = False) -> None:
    """Work the delivery queue until stopped (SIGTERM finishes the current job first)."""
    use_services(services)
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep_forever, args=(services, stop), daemon=True)
    sweeper.start()
    try:
        worker = SimpleWorker([services.queue], connection=services.redis)
        worker.work(burst=burst, with_scheduler=False, logging_level="INFO")
    finally:
        stop.set()


def _sweep_forever(services: Services, stop: threading.Event) -> None:
    """Run :func:`connector.jobs.sweep` every interval; errors are logged, never fatal."""
    while True:
        try:
            sweep(services)
        except Exception:  # the sweep must outlive a database or Redis blip
            logger.exception("sweep.failed")
        if stop.wait(services.settings.sweep_interval_seconds):
            return
