"""Three destinations on: what one store's orders cost to record and to deliver to TikTok,
Meta and Google at once.

N orders go through ``record_events`` (the webhook's own pipeline: each destination's user
data hashed by its rules, one outbox row per destination), then one ``connector worker``
process delivers all 3N rows to the strict stand-ins of the three platforms, which run in this
process's threads (their CPU is not the worker's). The table gives the recording rate with
three destinations, and per destination the events per second from the first request to its
last row delivered, with the worker's CPU over the whole drain.

    .venv/bin/python bench/destinations.py                        # SQLite, 5,000 orders
    .venv/bin/python bench/destinations.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/destinations.py --smoke                # CI: a few seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    PIXEL,
    TOKEN,
    CpuMeter,
    bench_database,
    cpu_seconds,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
    start_worker,
    stop_process,
)
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from connector.events import ClickIds  # noqa: E402
from connector.models import Attempt, EventStatus, OutboxEvent, StoreDestination  # noqa: E402
from connector.pipeline import record_events  # noqa: E402
from connector.standins.google import GoogleStandIn  # noqa: E402
from connector.standins.meta import MetaStandIn  # noqa: E402
from connector.standins.tiktok import TikTokStandIn  # noqa: E402
from connector.stores import set_destination  # noqa: E402
from tests.support import make_order  # noqa: E402

META_PIXEL, META_TOKEN = "123456789012345", "bench-meta-token"
CLIENT, SECRET = "bench.apps.googleusercontent.com", "bench-client-secret"
CUSTOMER, ACTION = "1234567890", "987654321"
PAGE = "https://bench-shop.myshopify.com/"
CLICKS = ClickIds(
    ttclid="E.C.P.bench", fbclid="IwAR-bench", gclid="Cj0-bench", source="landing_site"
)


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory() as folder:
        rows = run(Path(folder), args)
    print_table(["what", "events", "seconds", "events/s"], rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--orders", type=int, default=5_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes draining (one delivers for a destination at a time)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.orders, args.timeout = 60, 60.0
    return args


def run(tmp: Path, args: argparse.Namespace) -> list[list[object]]:
    tiktok = TikTokStandIn({TOKEN: {PIXEL}}).start()
    meta = MetaStandIn({META_TOKEN: {META_PIXEL}}).start()
    google = GoogleStandIn().start()
    google.register_client(CLIENT, SECRET)
    google.add_account(CUSTOMER, {ACTION})
    try:
        with running_redis(tmp) as redis, bench_database(tmp, args.database_url) as url:
            stack = prepare_stack(
                tmp,
                url,
                redis,
                tiktok.base_url,
                META_API_BASE=meta.base_url,
                GOOGLE_DATAMANAGER_API_BASE=google.base_url,
                GOOGLE_OAUTH_TOKEN_URL=google.token_url,
                GOOGLE_OAUTH_CLIENT_ID=CLIENT,
                GOOGLE_OAUTH_CLIENT_SECRET=SECRET,
            )
            alone = record(stack, args.orders, first=20_000_000, label="record (TikTok alone)")
            connect_meta_and_google(stack, google)
            recorded = record(stack, args.orders, first=10_000_000, label="record (3 destinations)")
            return [alone, recorded, *deliver(tmp, stack, args)]
    finally:
        for standin in (tiktok, meta, google):
            standin.stop()


def connect_meta_and_google(stack, google: GoogleStandIn) -> None:  # type: ignore[no-untyped-def]
    services = stack.services
    meta_values = {"pixel_id": META_PIXEL, "access_token": META_TOKEN}
    set_destination(services, stack.store_id, kind="meta", values=meta_values)
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    google_values = {"customer_id": CUSTOMER, "conversion_action": ACTION, "refresh_token": refresh}
    set_destination(services, stack.store_id, kind="google", values=google_values)


def record(stack, orders: int, *, first: int, label: str) -> list[object]:  # type: ignore[no-untyped-def]
    """The webhook's pipeline: one row per order and destination, each with its own hashes."""
    services = stack.services
    started = time.perf_counter()
    with services.db.engine.connect() as connection:
        for n in range(orders):
            order = make_order(str(first + n), clicks=CLICKS, page_url=PAGE)
            record_events(services, stack.store_id, "orders/create", order, connection=connection)
    seconds = time.perf_counter() - started
    return [label, orders, seconds, orders / seconds]


def deliver(tmp: Path, stack, args: argparse.Namespace) -> list[list[object]]:  # type: ignore[no-untyped-def]
    """``--workers`` workers (one by default) drain every destination (recording already
    queued their jobs). A destination's rate runs from its first request to its last row
    delivered; the workers' CPU includes their start-up (about a second of imports each)."""
    total = args.orders * (len(stack.services.destinations) + 1)  # + TikTok's alone
    workers = [start_worker(stack.env, tmp / f"worker-{n}.log") for n in range(args.workers)]
    database = make_url(stack.database_url).database if args.database_url else None
    try:
        deadline = time.monotonic() + args.timeout
        with CpuMeter(database) as meter:
            while _delivered(stack) < total:
                if time.monotonic() > deadline:
                    why = _why(stack)
                    raise SystemExit(f"only {_delivered(stack)} of {total} delivered: {why}")
                time.sleep(0.05)
        cpu = sum(cpu_seconds(worker.pid) for worker in workers)
    finally:
        for worker in workers:
            stop_process(worker)
    standins = meter.cpu_of([os.getpid()])
    print(
        f"while the worker drained: the stand-ins (this process) used {standins:.1f} CPU s, "
        f"PostgreSQL {meter.cpu_of(meter.database_pids):.1f} s, others "
        f"{meter.foreign_cores:.2f} cores, over {meter.seconds:.1f} s"
    )
    rows = []
    for kind in sorted(stack.services.destinations):
        count = args.orders * (2 if kind == "tiktok" else 1)
        seconds = _window(stack, StoreDestination.kind == kind)
        rows.append([f"deliver to {kind}", count, seconds, count / seconds])
    wall = _window(stack, StoreDestination.store_id == stack.store_id)
    rows.append(["deliver, all", total, wall, total / wall])
    rows.append([f"CPU seconds of {len(workers)} worker(s)", total, cpu, total / cpu if cpu else 0])
    return rows


def _delivered(stack) -> int:  # type: ignore[no-untyped-def]
    with stack.services.db.session() as session:
        return session.scalar(
            select(func.count()).where(OutboxEvent.status == EventStatus.DELIVERED)
        )


def _why(stack) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Rows by destination, status and last error, when a drain does not finish."""
    with stack.services.db.session() as session:
        return session.execute(
            select(
                OutboxEvent.destination, OutboxEvent.status, OutboxEvent.last_error, func.count()
            ).group_by(OutboxEvent.destination, OutboxEvent.status, OutboxEvent.last_error)
        ).all()


def _window(stack, which) -> float:  # type: ignore[no-untyped-def]
    """Seconds from the first request to these destinations to their last delivered row."""
    with stack.services.db.session() as session:
        first = session.scalar(
            select(func.min(Attempt.started_at))
            .join(StoreDestination, StoreDestination.id == Attempt.destination_id)
            .where(which)
        )
        last = session.scalar(
            select(func.max(OutboxEvent.delivered_at))
            .join(
                StoreDestination,
                (StoreDestination.kind == OutboxEvent.destination)
                & (StoreDestination.store_id == OutboxEvent.store_id),
            )
            .where(which)
        )
    return max((last - first).total_seconds(), 1e-6)


if __name__ == "__main__":
    main()
