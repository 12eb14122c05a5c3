"""Where a delivery worker's time goes: one drain, in-process, under cProfile.

N pending TikTok events are preloaded (as ``bench/delivery.py`` does), then
``deliver_pending`` drains them in this process against the lean stand-in (its own process).
The table splits the worker's wall time into SQL round trips (time inside the driver's
``execute``), the HTTP request, JSON and the rest, from cProfile's cumulative times; CPU
seconds of this process and of the bench database's PostgreSQL backend are given apart.

    .venv/bin/python bench/profile_delivery.py \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test --bench-database bench
    .venv/bin/python bench/profile_delivery.py --smoke
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    CpuMeter,
    Stack,
    bench_database,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
    start_standin,
)
from delivery import preload  # noqa: E402

from connector.delivery import deliver_pending  # noqa: E402
from connector.worker import tune_garbage_collector  # noqa: E402

# (label, predicate on a cProfile function key (file, line, name)): cumulative time of the
# outermost matching frames. Order matters only for the printout.
STAGES = {
    "SQL (driver execute, fetch)": lambda f, n: (
        ("psycopg" in f and n in ("execute", "executemany", "fetchall", "_fetch_gen"))
        or ("sqlite3" in f and n == "execute")
        or n in ("<method 'execute' of 'sqlite3.Cursor' objects>",)
    ),
    "HTTP (requests.Session.request)": lambda f, n: "requests/sessions.py" in f and n == "request",
    "JSON encode (json.dumps)": lambda f, n: f.endswith("json/__init__.py") and n == "dumps",
    "JSON decode (json.loads)": lambda f, n: f.endswith("json/__init__.py") and n == "loads",
    "ConversionEvent.from_json": lambda f, n: "connector/events.py" in f and n == "from_json",
}


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-profile-delivery-") as folder:
        tmp = Path(folder)
        standin = start_standin("lean", tmp / "standin.log")
        try:
            with (
                running_redis(tmp) as redis,
                bench_database(tmp, args.database_url, args.bench_database) as url,
            ):
                stack = prepare_stack(
                    tmp,
                    url,
                    redis,
                    standin.base_url,
                    TIKTOK_BATCH_SIZE=str(args.batch),
                    DESTINATION_MAX_QPS="0",
                )
                # Warm-up: imports, connections, statement caches; then the collector set
                # as `connector worker` sets it.
                preload(stack, args.batch)
                deliver_pending(stack.services, stack.destination_id)
                tune_garbage_collector()
                database = args.bench_database if args.database_url else None
                plain = drain(stack, args, database, first=8_000_000_000_000)
                profile = cProfile.Profile(time.process_time)  # CPU, not waits
                profiled = drain(stack, args, database, 9_000_000_000_000, profile)
                stack.services.db.dispose()
        finally:
            standin.stop()
    show(args, plain, profiled, profile)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--top", type=int, default=30, help="functions to list by own time")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.top = 1_000, 10
    return args


@dataclass
class Drain:
    seconds: float
    cpu: float
    database_cpu: float
    others: float


def drain(
    stack: Stack,
    args: argparse.Namespace,
    database: str | None,
    first: int,
    profile: cProfile.Profile | None = None,
) -> Drain:
    """Preload ``args.events`` rows, then deliver them all in this process."""
    preload(stack, args.events, first=first)
    with CpuMeter(database) as meter:
        cpu_before = time.process_time()
        if profile:
            profile.enable()
        report = deliver_pending(stack.services, stack.destination_id, time_budget=3600)
        if profile:
            profile.disable()
        cpu = time.process_time() - cpu_before
    assert report.delivered == args.events, report
    return Drain(meter.seconds, cpu, meter.cpu_of(meter.database_pids), meter.foreign_cores)


def show(
    args: argparse.Namespace, plain: Drain, profiled: Drain, profile: cProfile.Profile
) -> None:
    n = args.events
    print(f"batch {args.batch}, {n:,} events, lean stand-in; others {plain.others:.2f} cores")
    rows = [
        ["drain (wall)", plain.seconds, plain.seconds / n * 1e6, n / plain.seconds],
        ["worker CPU", plain.cpu, plain.cpu / n * 1e6, n / plain.cpu],
        ["database backend CPU", plain.database_cpu, plain.database_cpu / n * 1e6, "-"],
    ]
    print_table(["without profiler", "seconds", "us/event", "events/s"], rows)
    stats = pstats.Stats(profile)
    rows = [["drain (wall)", profiled.seconds, profiled.seconds / n * 1e6, n / profiled.seconds]]
    for label, match in STAGES.items():
        seconds = _outermost(stats, match)
        rows.append([label, seconds, seconds / n * 1e6, "-"])
    rows.append(["worker CPU", profiled.cpu, profiled.cpu / n * 1e6, "-"])
    print(f"under cProfile (others {profiled.others:.2f} cores)")
    print_table(["part", "seconds", "us/event", "events/s"], rows)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


def _outermost(stats: pstats.Stats, match) -> float:  # type: ignore[no-untyped-def]
    """Cumulative seconds of matching functions, not counting matches called by matches."""
    table = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for key, (_, _, _, cumulative, callers) in table.items():
        if not match(key[0], key[2]):
            continue
        nested = sum(
            caller_stats[3]
            for caller, caller_stats in callers.items()
            if match(caller[0], caller[2])
        )
        total += cumulative - nested
    return total


if __name__ == "__main__":
    main()
