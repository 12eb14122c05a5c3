"""Ingest: signed Shopify order webhooks per second the web process accepts, as deployed.

The web process is the Procfile's (``connector web``: gunicorn serving ``app:create_app()``)
with a real Redis and a fresh database per measurement; ``wrk`` sends signed ``orders/create``
bodies of a realistic size (about 14 KB with 8 lines), each with its own order id, so every
request inserts a row. In the same run and under the same gunicorn settings it measures the
ceilings: a bare WSGI endpoint and a bare Flask route (``bench/bare_app.py``), so the rate is
also a share of what the server stack alone can do. A worker may drain the outbox meanwhile
(``--worker on``, against the lean TikTok sink), which is what a one-box install does.

    .venv/bin/python bench/ingest.py                                   # SQLite, default configs
    .venv/bin/python bench/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest.py --configs sync:2,gthread:2x4 --duration 30 --worker both
    .venv/bin/python bench/ingest.py --smoke                           # CI: about 15 s
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    BENCH,
    FIRST_ORDER_ID,
    ORDER_TOPIC,
    SHOP,
    WEBHOOK_PATH,
    CpuMeter,
    OrderBodies,
    PySpy,
    Stack,
    WebConfig,
    bench_database,
    children_of,
    cleanest,
    count_events,
    pick_port,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
    start_bare_web,
    start_connector_web,
    start_standin,
    start_worker,
    stop_process,
    wait_for_http,
    wait_for_quiet,
    write_bodies_file,
)

TARGET_RATE = 1700.0  # webhooks/s on 2 vCPUs (RudderStack's published gateway figure)
TARGET_SHARE = 0.5  # of the bare endpoint's rate
WARMUP_IDS = FIRST_ORDER_ID + 1_000_000_000  # warm-up orders never collide with measured ones
DEFAULT_CONFIGS = "sync:2,sync:4,gthread:2x4,gthread:4x4"
TARGETS = ("bare", "flask", "connector")


@dataclass
class WrkResult:
    """What wrk measured for one target, plus what the database holds after it."""

    target: str
    config: WebConfig
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int
    socket_errors: int
    our_cores: float
    foreign_cores: float
    web_cpu: float = 0.0
    rows: int | None = None
    delivered: int | None = None
    log_errors: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def web_cpu_ms(self) -> float:
        """CPU the gunicorn processes spent per request: comparable even on a busy machine."""
        return self.web_cpu / self.requests * 1000 if self.requests else 0.0


def main() -> None:
    args = parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        results, body_size = run(Path(tmp), args)
    report(args, results, body_size)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench", help="database created for the run")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="sync:N and gthread:NxT list")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--line-items", type=int, default=8, help="8 lines ~ 14 KB body")
    parser.add_argument("--bodies", type=int, help="distinct orders (default 2,500/s x duration)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="bare,flask,connector")
    parser.add_argument(
        "--worker",
        choices=("off", "on", "both"),
        default="off",
        help="run `connector worker` (lean TikTok sink) during the connector measurement",
    )
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=900.0,
        help="wait this long for other processes to leave the CPU before each row",
    )
    parser.add_argument(
        "--attempts", type=int, default=3, help="re-measure a row others disturbed, up to N"
    )
    parser.add_argument("--py-spy", help="path to py-spy: profile the connector's web workers")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.configs, args.duration, args.warmup = "sync:2", 2.0, 1.0
        args.bodies, args.targets, args.connections = 6000, "bare,connector", 8
        args.quiet_timeout, args.attempts = 0.0, 1
    args.web_configs = [WebConfig.parse(text) for text in args.configs.split(",") if text]
    args.bodies = args.bodies or int(2500 * args.duration)
    return args


def run(tmp: Path, args: argparse.Namespace) -> tuple[list[WrkResult], int]:
    bodies = OrderBodies(args.line_items)
    measured, warmup = tmp / "bodies.txt", tmp / "warmup.txt"
    write_bodies_file(measured, bodies, FIRST_ORDER_ID, args.bodies)
    write_bodies_file(warmup, bodies, WARMUP_IDS, 1000)
    results: list[WrkResult] = []
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    worker_modes = {"off": [False], "on": [True], "both": [False, True]}[args.worker]
    with running_redis(tmp) as redis:
        for config in args.web_configs:
            for target in targets:
                for with_worker in worker_modes if target == "connector" else [False]:
                    result = cleanest(
                        args.attempts,
                        partial(
                            measure, tmp, args, config, target, with_worker, redis, measured, warmup
                        ),
                        lambda r: r.foreign_cores,
                    )
                    results.append(result)
                    print_progress(result)
    return results, bodies.size


def measure(
    tmp: Path,
    args: argparse.Namespace,
    config: WebConfig,
    target: str,
    with_worker: bool,
    redis,  # type: ignore[no-untyped-def]
    measured: Path,
    warmup: Path,
) -> WrkResult:
    """One target under one gunicorn setting: start, warm up, wrk, count, stop."""
    label = f"{target}+worker" if with_worker else target
    redis_flush(redis.url)
    log = tmp / f"{label}-{config.label.replace(' ', '_')}.log"
    with bench_database(tmp, args.database_url, args.bench_database) as database_url:
        standin = start_standin("lean", log) if with_worker else None
        base = standin.base_url if standin else "http://127.0.0.1:9"
        stack = prepare_stack(tmp, database_url, redis, base)
        port = pick_port()
        web = start_web(target, stack, config, port, log)
        worker = start_worker(stack.env, log) if with_worker else None
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            run_wrk(url, warmup, args, args.warmup)
            warmup_rows = count_events(database_url) if target == "connector" else 0
            spy = PySpy(
                args.py_spy if target == "connector" else None,
                web.pid,
                tmp.parent / f"py-spy-ingest-{label}-{config.label.replace(' ', '_')}.txt",
                f"gunicorn {config.label} serving {label}",
            )
            with spy:
                result = run_wrk(
                    url, measured, args, args.duration, target=label, config=config, web_pid=web.pid
                )
        finally:
            stop_process(web)
            if worker:
                stop_process(worker)
            if standin:
                standin.stop()
        if target == "connector":
            result.rows = count_events(database_url) - warmup_rows
            result.delivered = count_events(database_url, "delivered") if with_worker else None
        result.log_errors = count_log_errors(log)
        stack.services.db.dispose()
    return result


def start_web(
    target: str, stack: Stack, config: WebConfig, port: int, log: Path
) -> subprocess.Popen[bytes]:
    if target == "connector":
        return start_connector_web(stack.env, config, port, log)
    app = "bare_app:create_app()" if target == "bare" else "bare_app:create_flask_app()"
    return start_bare_web(stack.env, config, port, log, app=app)


def run_wrk(
    url: str,
    bodies: Path,
    args: argparse.Namespace,
    seconds: float,
    *,
    target: str = "warmup",
    config: WebConfig | None = None,
    web_pid: int | None = None,
) -> WrkResult:
    """wrk with bench/wrk_bodies.lua; the machine's busy CPU is sampled around it."""
    if seconds <= 0:
        return WrkResult(target, config or WebConfig(1), 0, 0, 0, 0, 0, 0, 0, 0, 0)
    threads = args.wrk_threads
    argv = [
        "wrk", "-t", str(threads), "-c", str(max(threads, args.connections)),
        "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(BENCH / "wrk_bodies.lua"), url,
        "--", str(bodies), SHOP, ORDER_TOPIC, str(threads),
    ]  # fmt: skip
    database = args.bench_database if args.database_url else None
    if config is not None:
        wait_for_quiet(database, timeout=args.quiet_timeout)
    web_pids = [web_pid, *children_of(web_pid)] if web_pid else []
    with CpuMeter(database) as meter:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300)
    match = re.search(r"^BENCH_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(match.group(1))
    socket_errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors"))
    return WrkResult(
        target=target,
        config=config or WebConfig(1),
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        status_errors=raw["status_errors"],
        socket_errors=socket_errors + raw["timeouts"],
        our_cores=meter.our_cores,
        foreign_cores=meter.foreign_cores,
        web_cpu=meter.cpu_of(web_pids),
    )


def redis_flush(url: str) -> None:
    """Each measurement starts from an empty Redis (ours, on its own port)."""
    from redis import Redis

    client = Redis.from_url(url)
    client.flushall()
    client.close()


def count_log_errors(log: Path) -> int:
    """gunicorn's ERROR/CRITICAL lines (a worker timeout, a crash) during the measurement."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(r"\[(?:ERROR|CRITICAL)\]", text))


def print_progress(result: WrkResult) -> None:
    print(
        f"  {result.config.label:<14} {result.target:<17} {result.rate:8.0f}/s "
        f"p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms",
        file=sys.stderr,
        flush=True,
    )


def report(args: argparse.Namespace, results: list[WrkResult], body_size: int) -> None:
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"ingest: {database}; {body_size / 1024:.1f} KB bodies ({args.line_items} lines), "
        f"{args.connections} connections, {args.duration:g} s per row after "
        f"{args.warmup:g} s warm-up; {args.bodies:,} distinct orders"
    )
    ceilings = {(r.config, r.target): r.rate for r in results}
    rows = []
    for result in results:
        bare = ceilings.get((result.config, "bare"))
        flask = ceilings.get((result.config, "flask"))
        rows.append(
            [
                result.config.label,
                result.target,
                result.rate,
                result.p50_ms,
                result.p99_ms,
                result.max_ms,
                result.web_cpu_ms,
                f"{result.our_cores:.2f}",
                f"{result.foreign_cores:.2f}",
                _share(result.rate, bare),
                _share(result.rate, flask),
                result.status_errors + result.socket_errors + result.log_errors,
                "-" if result.rows is None else result.rows,
                "-" if result.delivered is None else result.delivered,
            ]
        )
    print_table(
        [
            "gunicorn",
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "web CPU ms/req",
            "cores",
            "others",
            "/bare",
            "/flask",
            "errors",
            "rows",
            "delivered",
        ],
        rows,
    )
    verdicts(args, results)


def _share(rate: float, ceiling: float | None) -> str:
    return f"{rate / ceiling:.2f}" if ceiling else "-"


def verdicts(args: argparse.Namespace, results: list[WrkResult]) -> None:
    """Targets, and a failure exit when something was wrong (not when it was slow)."""
    connector = [r for r in results if r.target == "connector"]
    if connector:
        best = max(connector, key=lambda r: r.rate)
        bare = next((r.rate for r in results if r.target == "bare" and r.config == best.config), 0)
        share = (
            f"{best.rate / bare:.2f} of bare (target >= {TARGET_SHARE}: "
            f"{'met' if best.rate >= TARGET_SHARE * bare else 'MISSED'})"
            if bare
            else "no bare row to compare with"
        )
        print(
            f"best: {best.config.label}, {best.rate:,.0f} webhooks/s "
            f"(target >= {TARGET_RATE:,.0f}: {'met' if best.rate >= TARGET_RATE else 'MISSED'}); "
            f"{share}"
        )
    problems = []
    for result in results:
        if result.status_errors or result.socket_errors or result.log_errors:
            problems.append(f"{result.config.label} {result.target}: errors")
        if result.requests > args.bodies and result.target.startswith("connector"):
            problems.append(f"{result.config.label} {result.target}: ran out of distinct orders")
        if result.rows is not None and result.rows < result.requests:
            problems.append(f"{result.config.label} {result.target}: fewer rows than 200s")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
