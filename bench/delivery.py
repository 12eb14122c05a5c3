"""Delivery: events per second ONE ``connector worker`` process delivers to a local TikTok.

N pending events are bulk-inserted (the payload ``record_events`` stores for
``tests.support.make_order``), then one delivery is requested and the clock runs until the
outbox holds N ``delivered`` rows. Batch size comes from ``TIKTOK_BATCH_SIZE``; batch size 1
is the naive one-request-per-event approach, done by our worker, and a plain ``requests``
loop (no database at all) shows what one request per event costs at best.

TikTok is a separate process (``bench/standin_server.py``) whose CPU is counted apart:
``strict`` is the test suite's validating stand-in, ``lean`` a sink that only answers. Both
share the machine's two cores with the worker, so the table also gives the worker's own CPU
and the rate that CPU alone would allow.

    .venv/bin/python bench/delivery.py                          # SQLite, 20,000 events
    .venv/bin/python bench/delivery.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/delivery.py --smoke                  # CI: a few seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    PIXEL,
    SECRET,
    TOKEN,
    CpuMeter,
    Outbox,
    PySpy,
    Stack,
    StandIn,
    bench_database,
    cleanest,
    cpu_seconds,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
    start_standin,
    start_worker,
    stop_process,
    wait_for_quiet,
    wait_for_rq_worker,
)
from sqlalchemy import insert  # noqa: E402

from connector.destinations import DestinationConfig  # noqa: E402
from connector.destinations.tiktok import DESTINATION as TIKTOK  # noqa: E402
from connector.destinations.tiktok.client import TRACK_PATH, build_body  # noqa: E402
from connector.events import ConversionEvent  # noqa: E402
from connector.jobs import request_delivery  # noqa: E402
from connector.mapping import EventOptions, plan_event  # noqa: E402
from connector.models import EventStatus, OutboxEvent, utcnow  # noqa: E402
from connector.privacy import split_network_signals  # noqa: E402
from connector.stores import add_store, set_destination  # noqa: E402
from tests.support import make_order  # noqa: E402

TARGET_RATE = 20_000.0  # events/s per worker on PostgreSQL, batch 500, lean (issue 13)
TARGET_GAIN = 20.0  # over one request per event
FIRST_EVENT_ID = 7_000_000_000_000
HISTORY_EVENT_ID = 8_000_000_000_000


@dataclass
class Run:
    """One drain: who sent, how many, how long, and the CPU each party used."""

    standin: str
    method: str
    events: int
    seconds: float
    requests: int
    sender_cpu: float
    standin_cpu: float
    foreign_cores: float
    database_cpu: float = 0.0
    workers: int = 1

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_bound_rate(self) -> float:
        """Events/s if the sender had a core to itself: events over its CPU seconds."""
        return self.events / self.sender_cpu if self.sender_cpu else 0.0


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        runs = run(Path(tmp), args)
    report(args, runs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--events", type=int, default=20_000, help="events per batched run")
    parser.add_argument(
        "--per-event-events", type=int, default=2_000, help="events for batch size 1 and the loop"
    )
    parser.add_argument("--batch-sizes", default="1,50,500")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="delivered events already in the table (30-day retention keeps them)",
    )
    parser.add_argument("--standins", default="strict,lean", help="strict, lean or both")
    parser.add_argument(
        "--max-qps",
        default="0",
        help="DESTINATION_MAX_QPS for the worker: 0 (default here) measures capacity; the "
        "connector's own default, 20 requests/s, caps batch 1 at 20 events/s by design",
    )
    parser.add_argument("--quiet-timeout", type=float, default=900.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per drain")
    parser.add_argument(
        "--attempts", type=int, default=3, help="re-measure a row others disturbed, up to N"
    )
    parser.add_argument(
        "--workers",
        default="",
        help="e.g. 1,2,4: also drain --stores stores' TikTok destinations with that many "
        "worker processes (one worker delivers for a destination at a time, so workers "
        "scale over destinations), at the largest batch size, lean stand-in only",
    )
    parser.add_argument("--stores", type=int, default=4, help="stores for --workers runs")
    parser.add_argument("--py-spy", help="path to py-spy: profile the worker while it drains")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.per_event_events, args.quiet_timeout = 500, 100, 0.0
        args.attempts = 1
        args.standins = "strict"
    args.sizes = [int(size) for size in args.batch_sizes.split(",") if size]
    args.worker_counts = [int(n) for n in args.workers.split(",") if n]
    return args


def run(tmp: Path, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    database = args.bench_database if args.database_url else None
    with running_redis(tmp) as redis:
        for kind in args.standins.split(","):
            standin = start_standin(kind, tmp / f"standin-{kind}.log")
            try:
                wait_for_quiet(database, timeout=args.quiet_timeout)
                runs.append(
                    cleanest(
                        args.attempts,
                        partial(requests_loop, standin, args.per_event_events, database),
                        lambda r: r.foreign_cores,
                    )
                )
                _progress(runs[-1])
                for size in args.sizes:
                    events = args.per_event_events if size == 1 else args.events
                    runs.append(
                        cleanest(
                            args.attempts,
                            partial(drain, tmp, args, redis, standin, size, events),
                            lambda r: r.foreign_cores,
                        )
                    )
                    _progress(runs[-1])
                if kind == "lean":
                    for workers in args.worker_counts:
                        runs.append(
                            cleanest(
                                args.attempts,
                                partial(drain_many, tmp, args, redis, standin, workers),
                                lambda r: r.foreign_cores,
                            )
                        )
                        _progress(runs[-1])
            finally:
                standin.stop()
    return runs


# -- the payload -------------------------------------------------------------------------------


def event_payloads(count: int, first: int = FIRST_EVENT_ID) -> list[dict]:
    """What ``record_events`` stores for ``make_order`` orders, with distinct ids."""
    event = plan_event(make_order("0"), TIKTOK, EventOptions(), test_mode=False)
    assert event is not None
    template = event.event.to_json()
    payloads = []
    for offset in range(count):
        order_id = str(first + offset)
        payloads.append({**template, "event_id": order_id, "order_id": order_id})
    return payloads


def preload(
    stack: Stack,
    count: int,
    history: int = 0,
    first: int = FIRST_EVENT_ID,
    store_id: str | None = None,
) -> None:
    """Insert ``history`` delivered events (what retention keeps for 30 days), then ``count``
    due, pending ones (event ids from ``first``), for the stack's store or ``store_id``, in a
    few statements (one commit)."""
    now = utcnow() - timedelta(seconds=1)
    store = store_id or stack.store_id
    history_payloads = event_payloads(history, HISTORY_EVENT_ID)
    rows = _rows(store, history_payloads, EventStatus.DELIVERED, now)
    rows += _rows(store, event_payloads(count, first), EventStatus.PENDING, now)
    with stack.services.db.session() as session:
        for start in range(0, len(rows), 1000):
            session.execute(insert(OutboxEvent), rows[start : start + 1000])
        session.commit()


def _rows(store_id: str, payloads: list[dict], status: EventStatus, now: datetime) -> list[dict]:
    """The rows ``record_events`` writes: the payload, the IP and user agent apart, and the
    event as TikTok is sent it (a delivered row holds neither of the last two)."""
    pending = status != EventStatus.DELIVERED
    split = [
        (*split_network_signals(payload, TIKTOK), _as_sent(payload) if pending else None)
        for payload in payloads
    ]
    return [
        {
            "store_id": store_id,
            "destination": "tiktok",
            "event_name": payload["event_name"],
            "event_id": payload["event_id"],
            "source_topic": "orders/create",
            "status": status,
            "payload": payload,
            "network": network if pending else None,
            "wire": wire,
            "event_time": payload["event_time"],
            "click_source": payload["click_source"],
            "received_at": now,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for payload, network, wire in split
    ]


def _as_sent(payload: dict) -> str:
    return orjson.dumps(TIKTOK.event_element(ConversionEvent.from_json(payload))).decode()


# -- the measurements --------------------------------------------------------------------------


def requests_loop(standin: StandIn, count: int, database: str | None) -> Run:
    """The naive approach at its best: one ``requests`` POST per event, no database."""
    config = DestinationConfig(standin.base_url, PIXEL, TOKEN, None, 10.0)
    events = [ConversionEvent.from_json(payload) for payload in event_payloads(count)]
    session = requests.Session()
    standin_before, cpu_before = standin.cpu_seconds(), time.process_time()
    with CpuMeter(database) as meter:
        for event in events:
            answer = session.post(
                config.api_base + TRACK_PATH,
                json=build_body(config, [event]),
                headers={"Access-Token": TOKEN},
                timeout=10,
            )
            if answer.json().get("code") != 0:
                raise SystemExit(f"stand-in refused an event: {answer.text}")
    return Run(
        standin=standin.kind,
        method="requests loop",
        events=count,
        seconds=meter.seconds,
        requests=count,
        sender_cpu=time.process_time() - cpu_before,
        standin_cpu=standin.cpu_seconds() - standin_before,
        foreign_cores=meter.foreign_cores,
    )


def drain(
    tmp: Path,
    args: argparse.Namespace,
    redis,  # type: ignore[no-untyped-def]
    standin: StandIn,
    batch_size: int,
    count: int,
) -> Run:
    """One worker drains ``count`` pre-loaded events at ``batch_size`` per request."""
    database = args.bench_database if args.database_url else None
    log = tmp / f"worker-{standin.kind}-{batch_size}.log"
    with bench_database(tmp, args.database_url, args.bench_database) as database_url:
        _flush(redis.url)
        stack = prepare_stack(tmp, database_url, redis, standin.base_url)
        # The sweep would start the drain on its own; the bench starts it, so push it away.
        worker = start_worker(
            stack.env,
            log,
            TIKTOK_BATCH_SIZE=str(batch_size),
            SWEEP_INTERVAL_SECONDS="3600",
            DESTINATION_MAX_QPS=args.max_qps,
        )
        outbox = Outbox(database_url)
        try:
            wait_for_rq_worker(stack)
            preload(stack, count, args.history)
            wait_for_quiet(database, timeout=args.quiet_timeout)
            worker_before, standin_before = cpu_seconds(worker.pid), standin.cpu_seconds()
            spy = PySpy(
                args.py_spy,
                worker.pid,
                tmp.parent / f"py-spy-delivery-{standin.kind}-{batch_size}.txt",
                f"connector worker, batch {batch_size}, {standin.kind} stand-in",
            )
            with spy, CpuMeter(database) as meter:
                request_delivery(stack.services, stack.destination_id)
                _wait_delivered(outbox, count + args.history, args.timeout, worker)
            requests_made = outbox.requests()
            polling = _backends(outbox)
            worker_cpu = cpu_seconds(worker.pid) - worker_before
            standin_cpu = standin.cpu_seconds() - standin_before
        finally:
            stop_process(worker)
            outbox.close()
            stack.services.db.dispose()
    return _drained(
        standin, f"worker, batch {batch_size}", count, meter, requests_made, polling,
        worker_cpu, standin_cpu,
    )  # fmt: skip


def drain_many(
    tmp: Path,
    args: argparse.Namespace,
    redis,  # type: ignore[no-untyped-def]
    standin: StandIn,
    workers: int,
) -> Run:
    """``workers`` worker processes drain ``args.events`` pending events of each of
    ``args.stores`` stores (one TikTok destination each) at the largest batch size.

    One worker delivers for a destination at a time (``connector.jobs``' Redis lock), so
    workers scale over destinations, as in a deployment serving many stores."""
    database = args.bench_database if args.database_url else None
    batch_size = max(args.sizes)
    count = args.events * args.stores
    with bench_database(tmp, args.database_url, args.bench_database) as database_url:
        _flush(redis.url)
        stack = prepare_stack(tmp, database_url, redis, standin.base_url)
        destinations = [(stack.store_id, stack.destination_id)]
        for n in range(1, args.stores):
            store = add_store(
                stack.services, platform="shopify", domain=f"bench-{n}.myshopify.com",
                webhook_secret=SECRET,
            )  # fmt: skip
            values = {"pixel_code": PIXEL, "access_token": TOKEN}
            row = set_destination(stack.services, store.id, kind="tiktok", values=values)
            destinations.append((store.id, row.id))
        processes = [
            start_worker(
                stack.env,
                tmp / f"worker-many-{workers}-{n}.log",
                TIKTOK_BATCH_SIZE=str(batch_size),
                SWEEP_INTERVAL_SECONDS="3600",
                DESTINATION_MAX_QPS=args.max_qps,
            )
            for n in range(workers)
        ]
        outbox = Outbox(database_url)
        try:
            _wait_for_workers(stack, workers)
            for n, (store_id, _) in enumerate(destinations):
                preload(stack, args.events, first=FIRST_EVENT_ID + n * 10**9, store_id=store_id)
            wait_for_quiet(database, timeout=args.quiet_timeout)
            before = [cpu_seconds(p.pid) for p in processes]
            standin_before = standin.cpu_seconds()
            with CpuMeter(database) as meter:
                for _, destination_id in destinations:
                    request_delivery(stack.services, destination_id)
                _wait_delivered(outbox, count, args.timeout, *processes)
            requests_made = outbox.requests()
            polling = _backends(outbox)
            worker_cpu = sum(cpu_seconds(p.pid) - b for p, b in zip(processes, before, strict=True))
            standin_cpu = standin.cpu_seconds() - standin_before
        finally:
            for process in processes:
                stop_process(process)
            outbox.close()
            stack.services.db.dispose()
    method = f"{workers} worker{'s' if workers > 1 else ''}, {args.stores} stores"
    return _drained(
        standin, method, count, meter, requests_made, polling, worker_cpu, standin_cpu, workers
    )


def _drained(  # type: ignore[no-untyped-def]
    standin, method, count, meter, requests_made, polling, worker_cpu, standin_cpu, workers=1
) -> Run:
    """The row of a drain by ``connector worker`` processes; the database's CPU leaves out the
    backends that polled the outbox for the bench (``polling``)."""
    return Run(
        standin=standin.kind,
        method=method,
        events=count,
        seconds=meter.seconds,
        requests=requests_made,
        sender_cpu=worker_cpu,
        standin_cpu=standin_cpu,
        foreign_cores=meter.foreign_cores,
        database_cpu=meter.cpu_of(meter.database_pids - polling),
        workers=workers,
    )


def _backends(outbox: Outbox) -> set[int]:
    """The PostgreSQL backend of the bench's own polling connection, whose count(*) every
    20 ms (about 12 us of server CPU per delivered event) is not the worker's doing."""
    if outbox.engine.dialect.name != "postgresql":
        return set()
    from sqlalchemy import text

    with outbox.engine.connect() as connection:
        return {int(connection.execute(text("SELECT pg_backend_pid()")).scalar() or 0)}


def _wait_for_workers(stack: Stack, count: int, timeout: float = 60.0) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    while len(Worker.all(connection=stack.services.redis)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} workers did not register with Redis")
        time.sleep(0.05)


def _wait_delivered(outbox: Outbox, count: int, timeout: float, *workers) -> None:  # type: ignore[no-untyped-def]
    """Poll until no row is pending (cheap), then check they were all delivered (once)."""
    deadline = time.monotonic() + timeout
    while outbox.any_pending():
        if any(worker.poll() is not None for worker in workers):
            raise SystemExit("a worker stopped before delivering everything")
        if time.monotonic() > deadline:
            raise SystemExit(f"not all {count} events were delivered within {timeout:.0f} s")
        time.sleep(0.02)
    delivered = outbox.count(EventStatus.DELIVERED)
    if delivered < count:
        raise SystemExit(f"only {delivered} of {count} events were delivered")


def _flush(url: str) -> None:
    from redis import Redis

    client = Redis.from_url(url)
    client.flushall()
    client.close()


# -- the report --------------------------------------------------------------------------------


def _progress(result: Run) -> None:
    print(
        f"  {result.standin:<7} {result.method:<18} {result.rate:8.0f} events/s",
        file=sys.stderr,
        flush=True,
    )


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"delivery: {database}; payload of tests.support.make_order (1 line item); "
        f"DESTINATION_MAX_QPS={args.max_qps}; {args.history:,} delivered rows already stored"
    )
    rows = []
    for result in runs:
        per_event = _per_event_rate(runs, result.standin)
        rows.append(
            [
                result.standin,
                result.method,
                result.events,
                result.seconds,
                result.rate,
                result.rate / result.workers,
                f"{result.rate / per_event:.1f}x" if per_event else "-",
                result.requests,
                result.sender_cpu,
                result.cpu_bound_rate,
                result.standin_cpu / result.events * 1000,
                result.sender_cpu / result.events * 1e6,
                result.database_cpu / result.events * 1e6,
                f"{result.foreign_cores:.2f}",
            ]
        )
    print_table(
        [
            "TikTok",
            "sender",
            "events",
            "seconds",
            "events/s",
            "per worker",
            "vs batch 1",
            "requests",
            "sender CPU s",
            "events/CPU s",
            "TikTok CPU ms/event",
            "sender CPU us/event",
            "PG CPU us/event",
            "others",
        ],
        rows,
    )
    verdicts(runs)


def _per_event_rate(runs: list[Run], standin: str) -> float:
    return next(
        (r.rate for r in runs if r.standin == standin and r.method == "worker, batch 1"), 0.0
    )


def verdicts(runs: list[Run]) -> None:
    for standin in dict.fromkeys(r.standin for r in runs):
        workers = [r for r in runs if r.standin == standin and r.method.startswith("worker")]
        if not workers:
            continue
        best = max(workers, key=lambda r: r.rate)
        for many in (r for r in runs if r.standin == standin and "stores" in r.method):
            cores = (many.sender_cpu + many.database_cpu + many.standin_cpu) / many.seconds
            print(
                f"{standin}: {many.method}: {many.rate:,.0f} events/s, "
                f"{many.rate / many.workers:,.0f} per worker; workers, database and stand-in "
                f"used {cores:.2f} of the machine's cores"
            )
        per_event = _per_event_rate(runs, standin)
        gain = best.rate / per_event if per_event else 0.0
        print(
            f"{standin}: best {best.method}, {best.rate:,.0f} events/s "
            f"(target >= {TARGET_RATE:,.0f}: {'met' if best.rate >= TARGET_RATE else 'MISSED'}); "
            f"{gain:.1f}x one request per event "
            f"(target >= {TARGET_GAIN:.0f}x: {'met' if gain >= TARGET_GAIN else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
