"""The floor under a delivery worker: the least a claim, request and record loop costs here.

The connector's worker does more than this (metrics, outcomes by kind, sessions, the
destination's checks), so what this loop costs per event is what no change to
``connector.delivery`` alone can go below: the TikTok events are read from PostgreSQL with
a row-lock claim, turned into ``ConversionEvent``s, into TikTok's body by the real
``build_body`` and into JSON, posted to the lean stand-in and recorded delivered with the
same UPDATE the worker writes. Each stage's CPU is measured apart (``time.process_time``).

The payloads are parsed and the body written by orjson, as the worker does; ``--json stdlib``
uses the standard library's ``json`` instead, to show what orjson is worth.

    .venv/bin/python bench/delivery_floor.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
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

from connector.destinations import DestinationConfig  # noqa: E402
from connector.destinations.tiktok.client import TRACK_PATH, build_body  # noqa: E402
from connector.events import ConversionEvent  # noqa: E402
from connector.worker import tune_garbage_collector  # noqa: E402

CLAIM = text(
    "SELECT id, payload::text AS payload, network::text AS network FROM events "
    "WHERE store_id = :store AND destination = 'tiktok' "
    "AND status = 'pending' AND next_attempt_at <= now() "
    "AND (lease_expires_at IS NULL OR lease_expires_at < now()) "
    "ORDER BY next_attempt_at LIMIT :size FOR NO KEY UPDATE SKIP LOCKED"
)
RECORD = text(
    "UPDATE events SET status = 'delivered', attempts = attempts + 1, last_code = 0, "
    "request_id = :request_id, delivered_at = now(), network = NULL WHERE id = ANY(:ids)"
)
STAGES = ("claim (SQL, rows)", "JSON parse, ConversionEvent.from_json", "build_body",
          "JSON encode", "POST", "record (SQL)")  # fmt: skip


def main() -> None:
    args = parse_args()
    if not args.database_url:
        raise SystemExit("--database-url: the floor is PostgreSQL's (row-lock claim, jsonb)")
    codec = choose_json(args.json)
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
                costs, meter = drain(stack, standin.base_url, args.batch, codec)
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
    print(f"floor: batch {args.batch}, {n:,} events, JSON by {args.json}; "
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
    parser.add_argument("--json", choices=("stdlib", "orjson"), default="orjson")
    return parser.parse_args()


def choose_json(kind: str) -> tuple[Callable[[str], Any], Callable[[Any], bytes]]:
    """The payload parser and the body encoder."""
    if kind == "stdlib":
        return json.loads, lambda body: json.dumps(body).encode()
    return orjson.loads, orjson.dumps


def event_of(payload: str, network: str | None, loads: Callable[[str], Any]) -> ConversionEvent:
    """The event to send, as the worker rebuilds it: payload, IP and user agent put back."""
    event = ConversionEvent.from_json(loads(payload))
    if network:
        event.user.update(loads(network))
    return event


def drain(
    stack: Any,
    base_url: str,
    batch: int,
    codec: tuple[Callable[[str], Any], Callable[[Any], bytes]],
) -> tuple[dict[str, float], CpuMeter]:
    loads, dumps = codec
    tune_garbage_collector()  # as `connector worker` sets it
    costs = dict.fromkeys(STAGES, 0.0)
    config = DestinationConfig(base_url, PIXEL, TOKEN, None, 10.0)
    http = requests.Session()
    headers = {"Access-Token": TOKEN, "Content-Type": "application/json"}
    database = stack.services.db.engine.url.database
    with stack.services.db.engine.connect() as connection, CpuMeter(database) as meter:
        while True:
            clock = time.process_time()
            rows = connection.execute(CLAIM, {"store": stack.store_id, "size": batch}).all()
            clock = _add(costs, STAGES[0], clock)
            if not rows:
                connection.rollback()
                break
            events = [event_of(row.payload, row.network, loads) for row in rows]
            clock = _add(costs, STAGES[1], clock)
            body = build_body(config, events)
            clock = _add(costs, STAGES[2], clock)
            data = dumps(body)
            clock = _add(costs, STAGES[3], clock)
            answer = http.post(base_url + TRACK_PATH, data=data, headers=headers, timeout=10)
            request_id = answer.json()["request_id"]
            clock = _add(costs, STAGES[4], clock)
            ids = [row.id for row in rows]
            connection.execute(RECORD, {"ids": ids, "request_id": request_id})
            connection.commit()
            _add(costs, STAGES[5], clock)
    return costs, meter


def _add(costs: dict[str, float], stage: str, since: float) -> float:
    now = time.process_time()
    costs[stage] += now - since
    return now


if __name__ == "__main__":
    main()
