"""Claim and outcome designs for PostgreSQL delivery, statement by statement.

The delivery worker claims a batch of the outbox and later writes its outcome. This drains N
pending TikTok rows with each design's two statements alone (no HTTP, no Python beyond the
driver) and reports the PostgreSQL backend's CPU per event, which the database spends
whatever the worker does, and the wall time of each statement:

- ``lease``: ``UPDATE events SET lease... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
  RETURNING ...``, committed; the outcome clears it (the design before issue 13).
- ``queue``: a narrow queue table (event id, store, destination, due, lease) separate from
  the events; the claim leases queue rows and joins the events for their payloads; the
  outcome updates the events and deletes the queue rows.
- ``lock``: ``SELECT ... FOR NO KEY UPDATE SKIP LOCKED`` in a transaction held until the
  outcome commits: nothing is written to claim (what ``connector.delivery`` does now).
- ``lock-partial``: the same with the claim index partial (pending rows only) and
  ``ix_events_status`` dropped: fewer index entries per outcome.

Each is run with the outcome dropping the shopper's IP and user agent from the payload in
SQL (what delivery does) and without (``-noscrub``), to show that part's cost.

    .venv/bin/python bench/claim_designs.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    CpuMeter,
    bench_database,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
)
from delivery import preload  # noqa: E402

DESIGNS = ("lease", "queue", "lock", "lock-partial")
DUE = (
    "store_id = %(store)s AND destination = 'tiktok' AND next_attempt_at <= now() "
    "AND (lease_expires_at IS NULL OR lease_expires_at < now())"
)
COLUMNS = "id, payload, attempts, received_at, give_up_at"
CLAIMS = {
    "lease": f"UPDATE events SET lease_token = 'bench', lease_expires_at = now() + interval "
    f"'120 s' WHERE id IN (SELECT id FROM events WHERE status = 'pending' AND {DUE} ORDER BY "
    f"next_attempt_at LIMIT %(size)s FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}",
    "queue": f"WITH c AS (UPDATE queue SET lease_expires_at = now() + interval '120 s' WHERE "
    f"event_id IN (SELECT event_id FROM queue WHERE {DUE} ORDER BY next_attempt_at LIMIT "
    f"%(size)s FOR UPDATE SKIP LOCKED) RETURNING event_id) SELECT e.id, e.payload, e.attempts, "
    f"e.received_at, e.give_up_at FROM events e JOIN c ON e.id = c.event_id",
    "lock": f"SELECT {COLUMNS} FROM events WHERE status = 'pending' AND {DUE} ORDER BY "
    f"next_attempt_at LIMIT %(size)s FOR NO KEY UPDATE SKIP LOCKED",
}
CLAIMS["lock-partial"] = CLAIMS["lock"]
SCRUB = "payload = (payload::jsonb #- '{user,ip}' #- '{user,user_agent}')::json, "
OUTCOME = (
    "UPDATE events SET status = 'delivered', last_error = NULL, last_code = 0, "
    "lease_token = NULL, lease_expires_at = NULL, attempts = attempts + 1, "
    "request_id = 'bench', {scrub}delivered_at = now() WHERE id = ANY(%(ids)s)"
)
SETUP = {
    "queue": [
        "CREATE TABLE queue (event_id bigint PRIMARY KEY, store_id varchar(32), destination "
        "varchar(32), next_attempt_at timestamp, lease_expires_at timestamp)",
        "CREATE INDEX ix_queue_claim ON queue (store_id, destination, next_attempt_at)",
        "INSERT INTO queue SELECT id, store_id, destination, next_attempt_at, NULL FROM events "
        "WHERE status = 'pending'",
        "ANALYZE queue",
    ],
    "lock-partial": [
        "DROP INDEX ix_events_status",
        "DROP INDEX ix_events_claim",
        "CREATE INDEX ix_events_claim ON events (store_id, destination, next_attempt_at) "
        "WHERE status = 'pending'",
    ],
}


def main() -> None:
    args = parse_args()
    if not args.database_url:
        raise SystemExit("--database-url: these are PostgreSQL's designs")
    print_machine(args.database_url)
    rows = []
    for design in args.designs.split(","):
        for scrub in (True, False):
            rows.append(measure(args, design, scrub))
            print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} us/event", file=sys.stderr, flush=True)
    print(f"{args.events:,} events, batch {args.batch}; CPU of the PostgreSQL backend")
    print_table(["design", "PG CPU us/event", "claim us/event", "outcome us/event", "others"], rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    return parser.parse_args()


def measure(args: argparse.Namespace, design: str, scrub: bool) -> list[object]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-claims-") as folder,
        running_redis(Path(folder)) as redis,
        bench_database(Path(folder), args.database_url, args.bench_database) as url,
    ):
        stack = prepare_stack(Path(folder), url, redis, "http://127.0.0.1:9")
        preload(stack, args.events)
        stack.services.db.dispose()
        conninfo = url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(conninfo) as conn:
            for statement in SETUP.get(design, []):
                conn.execute(statement)
            conn.execute("ANALYZE events")
            conn.commit()
            claim, outcome = CLAIMS[design], OUTCOME.format(scrub=SCRUB if scrub else "")
            params = {"store": stack.store_id, "size": args.batch}
            claiming = recording = 0.0
            with CpuMeter(args.bench_database) as meter:
                while True:
                    started = time.perf_counter()
                    rows = conn.execute(claim, params).fetchall()
                    if design in ("lease", "queue"):
                        conn.commit()
                    claiming += time.perf_counter() - started
                    if not rows:
                        conn.rollback()
                        break
                    started = time.perf_counter()
                    ids = [row[0] for row in rows]
                    conn.execute(outcome, {"ids": ids})
                    if design == "queue":
                        conn.execute(
                            "DELETE FROM queue WHERE event_id = ANY(%(ids)s)", {"ids": ids}
                        )
                    conn.commit()
                    recording += time.perf_counter() - started
    n = args.events
    return [
        design if scrub else f"{design}-noscrub",
        meter.cpu_of(meter.database_pids) / n * 1e6,
        claiming / n * 1e6,
        recording / n * 1e6,
        f"{meter.foreign_cores:.2f}",
    ]


if __name__ == "__main__":
    main()
