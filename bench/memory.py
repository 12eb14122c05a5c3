"""Memory and growth: RSS of the web and worker processes after N events; storage per event.

Runs the connector as deployed (``connector web`` and ``connector worker``, a real Redis,
SQLite or PostgreSQL) with the lean TikTok sink, sends N signed order webhooks from sender
processes, and at each checkpoint records the resident memory of every gunicorn worker and of
the RQ worker (RSS, and PSS/USS, which do not count shared library pages twice), Redis's
``used_memory`` and key count, and the database's size. After the last checkpoint it waits
for the outbox to drain and measures again: what is left then is what the connector keeps.

    .venv/bin/python bench/memory.py                    # 100,000 events, SQLite
    .venv/bin/python bench/memory.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/memory.py --smoke            # CI: 1,000 events
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    FIRST_ORDER_ID,
    WEBHOOK_PATH,
    Memory,
    OrderBodies,
    Outbox,
    WebConfig,
    bench_database,
    children_of,
    database_bytes,
    memory_of,
    pick_port,
    prepare_stack,
    print_machine,
    print_table,
    redis_memory,
    running_redis,
    start_connector_web,
    start_standin,
    start_worker,
    stop_process,
    wait_for_http,
    wait_for_rq_worker,
    webhook_headers,
)

from connector.config import load_settings  # noqa: E402
from connector.models import EventStatus  # noqa: E402
from connector.retention import purge_expired  # noqa: E402
from connector.services import build_services  # noqa: E402

MB = 1024 * 1024
TARGET_WEB_MB = 150
TARGET_WORKER_MB = 200


@dataclass
class Sample:
    """One checkpoint: what was sent and delivered, and what each part holds."""

    label: str
    accepted: int
    delivered: int
    web: list[Memory]
    worker: Memory
    redis_bytes: int
    redis_keys: int
    database_bytes: int


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        samples, rows_kept = run(Path(tmp), args)
    report(args, samples, rows_kept)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=int, default=5)
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--line-items", type=int, default=8, help="8 lines ~ 13 KB body")
    parser.add_argument("--web", default="sync:2", help="gunicorn setting: sync:N or gthread:NxT")
    parser.add_argument("--senders", type=int, default=4, help="sender processes")
    parser.add_argument("--warmup", type=int, default=200, help="orders before the baseline")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.checkpoints, args.senders, args.warmup = 400, 2, 2, 50
    return args


def run(tmp: Path, args: argparse.Namespace) -> tuple[list[Sample], int]:
    log = tmp / "processes.log"
    samples: list[Sample] = []
    with (
        running_redis(tmp) as redis,
        bench_database(tmp, args.database_url, args.bench_database) as database_url,
    ):
        standin = start_standin("lean", log)
        stack = prepare_stack(tmp, database_url, redis, standin.base_url)
        port = pick_port()
        web = start_connector_web(stack.env, WebConfig.parse(args.web), port, log)
        worker = start_worker(stack.env, log)
        outbox = Outbox(database_url)
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        probe = Probe(web.pid, worker.pid, redis, database_url, outbox)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            wait_for_rq_worker(stack)
            accepted = send(url, args, FIRST_ORDER_ID - args.warmup, args.warmup)
            wait_drained(outbox, accepted, 60)
            samples.append(probe.sample("warm", accepted))
            step = args.events // args.checkpoints
            for index in range(args.checkpoints):
                accepted += send(url, args, FIRST_ORDER_ID + index * step, step)
                samples.append(probe.sample(f"{accepted - args.warmup:,}", accepted))
                _progress(samples[-1])
            wait_drained(outbox, accepted, 600)
            samples.append(probe.sample("drained", accepted))
            rows_kept = outbox.count()
            purge_all(stack.env)
            samples.append(probe.sample("purged", accepted))
        finally:
            stop_process(web)
            stop_process(worker)
            standin.stop()
            outbox.close()
            stack.services.db.dispose()
    return samples, rows_kept


class Probe:
    """Reads every figure of a checkpoint."""

    def __init__(self, web_pid: int, worker_pid: int, redis, database_url: str, outbox: Outbox):  # type: ignore[no-untyped-def]
        self.web_pid, self.worker_pid = web_pid, worker_pid
        self.redis, self.database_url, self.outbox = redis, database_url, outbox

    def sample(self, label: str, accepted: int) -> Sample:
        redis_bytes, redis_keys = redis_memory(self.redis)
        return Sample(
            label=label,
            accepted=accepted,
            delivered=self.outbox.count(EventStatus.DELIVERED),
            web=[memory_of(pid) for pid in children_of(self.web_pid)],
            worker=memory_of(self.worker_pid),
            redis_bytes=redis_bytes,
            redis_keys=redis_keys,
            database_bytes=database_bytes(self.database_url),
        )


def send(url: str, args: argparse.Namespace, first_id: int, count: int) -> int:
    """Post ``count`` orders from ``args.senders`` processes; returns how many got a 200."""
    share = -(-count // args.senders)
    ranges = [
        (url, args.line_items, first_id + k * share, min(share, count - k * share))
        for k in range(args.senders)
        if count - k * share > 0
    ]
    with ProcessPoolExecutor(len(ranges)) as pool:
        accepted = sum(pool.map(post_range, *zip(*ranges, strict=True)))
    if accepted != count:
        raise SystemExit(f"only {accepted} of {count} webhooks were accepted")
    return accepted


def post_range(url: str, line_items: int, first_id: int, count: int) -> int:
    """One sender process: sign and post orders first_id..first_id+count-1."""
    bodies = OrderBodies(line_items)
    session = requests.Session()
    accepted = 0
    for order_id in range(first_id, first_id + count):
        body, signature = bodies.signed(order_id)
        answer = session.post(url, data=body, headers=webhook_headers(signature), timeout=30)
        accepted += answer.status_code == 200
    return accepted


def purge_all(env: dict[str, str]) -> None:
    """The worker's hourly retention task, with a retention of 0 days: every delivered row
    goes, which is where storage returns to once rows outlive EVENT_RETENTION_DAYS."""
    services = build_services(load_settings({**env, "EVENT_RETENTION_DAYS": "0"}))
    try:
        purge_expired(services)
    finally:
        services.db.dispose()


def wait_drained(outbox: Outbox, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while outbox.count(EventStatus.DELIVERED) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the outbox did not drain to {count} delivered in {timeout:.0f} s")
        time.sleep(0.2)


def _progress(sample: Sample) -> None:
    web = max((m.rss for m in sample.web), default=0) / MB
    print(
        f"  {sample.label:>9} events: web {web:.0f} MB, worker {sample.worker.rss / MB:.0f} MB",
        file=sys.stderr,
        flush=True,
    )


def report(args: argparse.Namespace, samples: list[Sample], rows_kept: int) -> None:
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"memory: {database}; {args.events:,} order webhooks (+{args.warmup} warm-up), "
        f"gunicorn {args.web}, lean TikTok sink"
    )
    rows = [
        [
            sample.label,
            sample.delivered,
            max((m.rss for m in sample.web), default=0) / MB,
            max((m.pss for m in sample.web), default=0) / MB,
            sample.worker.rss / MB,
            sample.worker.pss / MB,
            sample.redis_bytes / MB,
            sample.redis_keys,
            sample.database_bytes / MB,
        ]
        for sample in samples
    ]
    print_table(
        [
            "after events",
            "delivered",
            "web RSS MB",
            "web PSS MB",
            "worker RSS MB",
            "worker PSS MB",
            "Redis MB",
            "Redis keys",
            "DB MB",
        ],
        rows,
    )
    per_event(args, samples, rows_kept)


def per_event(args: argparse.Namespace, samples: list[Sample], rows_kept: int) -> None:
    warm, last, purged = samples[0], samples[-2], samples[-1]
    events = last.accepted - warm.accepted
    database = (last.database_bytes - warm.database_bytes) / events
    redis = (last.redis_bytes - warm.redis_bytes) / events
    peak_redis = max(s.redis_bytes for s in samples) - warm.redis_bytes
    web = max(m.rss for m in last.web) / MB
    worker = last.worker.rss / MB
    print(
        f"per event: database {database:,.0f} bytes; Redis {redis:,.0f} bytes once drained "
        f"(peak {peak_redis / max(events, 1):,.1f} bytes/event while sending); "
        f"rows kept after drain: {rows_kept:,} of {last.accepted:,}"
    )
    print(
        f"retention: after purge_expired with EVENT_RETENTION_DAYS=0 the database holds "
        f"{purged.database_bytes / MB:.1f} MB (was {last.database_bytes / MB:.1f} MB); with the "
        f"default 30 days it levels off at 30 days of events, e.g. "
        f"{database * 30 * 1000 / MB:,.0f} MB for a store with 1,000 orders a day"
    )
    print(
        f"targets: web worker {web:.0f} MB (< {TARGET_WEB_MB}: "
        f"{'met' if web < TARGET_WEB_MB else 'MISSED'}), RQ worker {worker:.0f} MB "
        f"(< {TARGET_WORKER_MB}: {'met' if worker < TARGET_WORKER_MB else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
