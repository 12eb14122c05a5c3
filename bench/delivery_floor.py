"""The floor under a delivery worker: the least a claim, request and record loop costs here.

The connector's worker does more than this (metrics, outcomes by kind, sessions, the
destination's checks), so what this loop costs per event is what no change to
``connector.delivery`` alone can go below: TikTok events are claimed from PostgreSQL with a
row lock, made into TikTok's request, posted to the lean stand-in and recorded delivered with
the UPDATE the worker writes. Each stage's CPU is measured apart (``time.process_time``).

``--from wire`` (the default, what the worker does) frames the events as stored when they were
recorded (``events.wire``); ``--from payload`` rebuilds each event from its payload and the IP
and user agent (``events.network``) and builds TikTok's body from the events, as the worker did
before events were stored as sent, to show what that costs.

    .venv/bin/python bench/delivery_floor.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    PIXEL,
    TOKEN,
    CpuMeter,
    bench_database,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
    start_standin,
)
from delivery import preload  # noqa: E402
from sqlalchemy import text  # noqa: E402

from connector.destinations import DestinationConfig, frame_elements  # noqa: E402
from connector.destinations.tiktok.client import TRACK_PATH, envelope, event_data  # noqa: E402
from connector.events import ConversionEvent  # noqa: E402
from connector.worker import tune_garbage_collector  # noqa: E402

DUE = (  # the delivery queue joined to its events (connector.queue)
    "FROM pending_events q JOIN events e ON e.id = q.event_id "
    "WHERE q.store_id = :store AND q.destination = 'tiktok' AND q.next_attempt_at <= now() "
    "AND e.status = 'pending' AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now()) "
    "ORDER BY q.next_attempt_at LIMIT :size FOR NO KEY UPDATE OF q SKIP LOCKED"
)
CLAIM = {  # the worker reads the payload only for a row without its event as sent
    "wire": text(
        "SELECT e.id, e.wire, CASE WHEN e.wire IS NULL THEN e.payload::text END AS payload, "
        f"CASE WHEN e.wire IS NULL THEN e.network::text END AS network {DUE}"
    ),
    "payload": text(f"SELECT e.id, e.payload::text AS payload, e.network::text AS network {DUE}"),
}
RECORD = (
    text(
        "UPDATE events SET status = 'delivered', attempts = attempts + 1, last_code = 0, "
        "request_id = :request_id, delivered_at = now(), network = NULL, wire = NULL "
        "WHERE id = ANY(:ids)"
    ),
    text("DELETE FROM pending_events WHERE event_id = ANY(:ids)"),
)
STAGES = ("claim (SQL, rows)", "the events as sent", "the request body", "POST", "record (SQL)")


def main() -> None:
    args = parse_args()
    if not args.database_url:
        raise SystemExit("--database-url: the floor is PostgreSQL's (row-lock claim)")
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-floor-") as folder:
        tmp = Path(folder)
        standin = start_standin("lean", tmp / "standin.log")
        try:
            with (
                running_redis(tmp) as redis,
                bench_database(tmp, args.database_url, args.bench_database) as url,
            ):
                stack = prepare_stack(tmp, url, redis, standin.base_url)
                preload(stack, args.events)
                costs, meter = drain(stack, standin.base_url, args.batch, args.source)
                stack.services.db.dispose()
        finally:
            standin.stop()
    n = args.events
    rows = [[stage, costs[stage] / n * 1e6] for stage in STAGES]
    worker = sum(costs.values())
    database = meter.cpu_of(meter.database_pids)
    rows.append(["worker CPU, all stages", worker / n * 1e6])
    rows.append(["PostgreSQL backend CPU", database / n * 1e6])
    rows.append(["wall (one thread, stages in turn)", meter.seconds / n * 1e6])
    print(f"floor: batch {args.batch}, {n:,} events, from {args.source}; "
          f"others {meter.foreign_cores:.2f} cores")  # fmt: skip
    print_table(["stage", "us/event"], rows)
    print(
        f"worker CPU alone allows {n / worker:,.0f} events/s; with the database's CPU in turn "
        f"{n / (worker + database):,.0f}/s; measured {n / meter.seconds:,.0f}/s"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--from", dest="source", choices=("wire", "payload"), default="wire")
    return parser.parse_args()


def as_sent(row: Any, source: str) -> bytes:
    """One event as TikTok is sent it: stored so, or rebuilt from its payload."""
    if source == "wire":
        return row.wire.encode()
    event = ConversionEvent.from_json(orjson.loads(row.payload))
    event.user.update(orjson.loads(row.network))
    return orjson.dumps(event_data(event))


def drain(stack: Any, base_url: str, batch: int, source: str) -> tuple[dict[str, float], CpuMeter]:
    tune_garbage_collector()  # as `connector worker` sets it
    costs = dict.fromkeys(STAGES, 0.0)
    claim = CLAIM[source]
    config = DestinationConfig(base_url, PIXEL, TOKEN, None, 10.0)
    http = requests.Session()
    headers = {"Access-Token": TOKEN, "Content-Type": "application/json"}
    database = stack.services.db.engine.url.database
    with stack.services.db.engine.connect() as connection, CpuMeter(database) as meter:
        while True:
            clock = time.process_time()
            rows = connection.execute(claim, {"store": stack.store_id, "size": batch}).all()
            clock = _add(costs, STAGES[0], clock)
            if not rows:
                connection.rollback()
                break
            elements = [as_sent(row, source) for row in rows]
            clock = _add(costs, STAGES[1], clock)
            body = frame_elements(envelope(config), "data", elements)
            clock = _add(costs, STAGES[2], clock)
            answer = http.post(base_url + TRACK_PATH, data=body, headers=headers, timeout=10)
            request_id = answer.json()["request_id"]
            clock = _add(costs, STAGES[3], clock)
            ids = [row.id for row in rows]
            for statement in RECORD:
                connection.execute(statement, {"ids": ids, "request_id": request_id})
            connection.commit()
            _add(costs, STAGES[4], clock)
    return costs, meter


def _add(costs: dict[str, float], stage: str, since: float) -> float:
    now = time.process_time()
    costs[stage] += now - since
    return now


if __name__ == "__main__":
    main()
