"""Claim and outcome designs for PostgreSQL delivery, statement by statement.

The delivery worker claims a batch of the outbox and later writes its outcome. This drains N
pending TikTok rows with each design's two statements alone (no HTTP, no Python beyond the
driver) and reports the PostgreSQL backend's CPU per event, which the database spends
whatever the worker does, the wall time of each statement, and how many outcomes PostgreSQL
wrote as heap-only updates (no index entry):

- ``lease``: ``UPDATE events SET lease... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
  RETURNING ...``, committed; the outcome clears it (the design before issue 13).
- ``lock``: ``SELECT ... FOR NO KEY UPDATE SKIP LOCKED`` on ``events`` in a transaction held
  until the outcome commits: nothing is written to claim (issue 13's first two rounds).
- ``lock-partial``: the same with the claim index partial (pending rows only) and
  ``ix_events_status`` dropped: fewer index entries per outcome.
- ``queue-lease``: a narrow queue table whose rows are leased, joined to the events; the
  outcome updates the events and deletes the queue rows; the events keep their indexes.
- ``queue``: what ``connector.delivery`` does now (migration 0009): the queue rows locked, as
  ``lock`` locks events; no index of ``events`` names what an outcome changes, and the table
  keeps room in its pages (fillfactor 80), so every outcome can be a heap-only update.

The older designs are rebuilt on the current schema: their indexes on ``events`` made again
and its fillfactor put back to 100 before the rows are loaded.

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

DESIGNS = ("lease", "lock", "lock-partial", "queue-lease", "queue")
DUE = (
    "store_id = %(store)s AND destination = 'tiktok' AND next_attempt_at <= now() "
    "AND (lease_expires_at IS NULL OR lease_expires_at < now())"
)
COLUMNS = "id, wire, event_time, attempts, received_at, give_up_at"
QUEUE_DUE = (
    "FROM pending_events q JOIN events e ON e.id = q.event_id WHERE q.store_id = %(store)s "
    "AND q.destination = 'tiktok' AND q.next_attempt_at <= now() AND e.status = 'pending' "
    "AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now())"
)
CLAIMS = {
    "lease": f"UPDATE events SET lease_token = 'bench', lease_expires_at = now() + interval "
    f"'120 s' WHERE id IN (SELECT id FROM events WHERE status = 'pending' AND {DUE} ORDER BY "
    f"next_attempt_at LIMIT %(size)s FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}",
    "lock": f"SELECT {COLUMNS} FROM events WHERE status = 'pending' AND {DUE} ORDER BY "
    f"next_attempt_at LIMIT %(size)s FOR NO KEY UPDATE SKIP LOCKED",
    "queue-lease": "WITH c AS (UPDATE events SET lease_token = 'bench', lease_expires_at = "
    "now() + interval '120 s' WHERE id IN (SELECT q.event_id "
    f"{QUEUE_DUE} ORDER BY q.next_attempt_at LIMIT %(size)s FOR UPDATE OF q SKIP LOCKED) "
    f"RETURNING {COLUMNS}) SELECT * FROM c",
    "queue": f"SELECT e.id, e.wire, e.event_time, e.attempts, e.received_at, e.give_up_at "
    f"{QUEUE_DUE} ORDER BY q.next_attempt_at LIMIT %(size)s FOR NO KEY UPDATE OF q SKIP LOCKED",
}
CLAIMS["lock-partial"] = CLAIMS["lock"]
COMMITS_CLAIM = ("lease", "queue-lease")
OUTCOME = (  # what connector.delivery writes for a delivered batch
    "UPDATE events SET status = 'delivered', last_error = NULL, last_code = 0, "
    "lease_token = NULL, lease_expires_at = NULL, attempts = attempts + 1, "
    "request_id = 'bench', delivered_at = now(), network = NULL, wire = NULL "
    "WHERE id = ANY(%(ids)s)"
)
DEQUEUE = "DELETE FROM pending_events WHERE event_id = ANY(%(ids)s)"
OLD_INDEXES = [
    "CREATE INDEX ix_events_claim ON events (store_id, destination, status, next_attempt_at)",
    "CREATE INDEX ix_events_status ON events (status, next_attempt_at)",
]
OLD_TABLE = ["ALTER TABLE events RESET (fillfactor)"]  # before the rows are loaded
BEFORE_LOAD = {design: OLD_TABLE for design in ("lease", "lock", "lock-partial")}
AFTER_LOAD = {
    "lease": OLD_INDEXES,
    "lock": OLD_INDEXES,
    "lock-partial": [
        "CREATE INDEX ix_events_claim ON events (store_id, destination, next_attempt_at) "
        "WHERE status = 'pending'"
    ],
    "queue-lease": OLD_INDEXES,
}


def main() -> None:
    args = parse_args()
    if not args.database_url:
        raise SystemExit("--database-url: these are PostgreSQL's designs")
    print_machine(args.database_url)
    rows = []
    for design in args.designs.split(","):
        rows.append(measure(args, design))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} us/event", file=sys.stderr, flush=True)
    print(f"{args.events:,} events, batch {args.batch}; CPU of the PostgreSQL backend")
    header = ["design", "PG CPU us/event", "claim us/event", "outcome us/event", "heap-only"]
    print_table([*header, "others"], rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    return parser.parse_args()


def measure(args: argparse.Namespace, design: str) -> list[object]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-claims-") as folder,
        running_redis(Path(folder)) as redis,
        bench_database(Path(folder), args.database_url, args.bench_database) as url,
    ):
        stack = prepare_stack(Path(folder), url, redis, "http://127.0.0.1:9")
        conninfo = url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for statement in BEFORE_LOAD.get(design, []):
                conn.execute(statement)
        preload(stack, args.events)
        stack.services.db.dispose()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for statement in AFTER_LOAD.get(design, []):
                conn.execute(statement)
            conn.execute("VACUUM ANALYZE events")
            conn.execute("VACUUM ANALYZE pending_events")
        with psycopg.connect(conninfo) as conn:
            claiming, recording, meter = drain(conn, design, stack.store_id, args.batch)
            conn.execute("SELECT pg_stat_force_next_flush()")  # when this backend goes idle
            conn.commit()
        time.sleep(0.5)
        with psycopg.connect(conninfo) as conn:
            heap_only, updated = conn.execute(
                "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'events'"
            ).fetchone() or (0, 0)
    n = args.events
    return [
        design,
        meter.cpu_of(meter.database_pids) / n * 1e6,
        claiming / n * 1e6,
        recording / n * 1e6,
        f"{heap_only}/{updated}" if updated else "-",
        f"{meter.foreign_cores:.2f}",
    ]


def drain(conn: psycopg.Connection, design: str, store: str, batch: int):  # type: ignore[no-untyped-def]
    """Claim and record every pending row with the design's statements; the seconds each
    took and the CPU meter."""
    claim, params = CLAIMS[design], {"store": store, "size": batch}
    claiming = recording = 0.0
    with CpuMeter(conn.info.dbname) as meter:
        while True:
            started = time.perf_counter()
            rows = conn.execute(claim, params).fetchall()
            if design in COMMITS_CLAIM:
                conn.commit()
            claiming += time.perf_counter() - started
            if not rows:
                conn.rollback()
                break
            started = time.perf_counter()
            ids = [row[0] for row in rows]
            conn.execute(OUTCOME, {"ids": ids})
            conn.execute(DEQUEUE, {"ids": ids})
            conn.commit()
            recording += time.perf_counter() - started
    return claiming, recording, meter


if __name__ == "__main__":
    main()
