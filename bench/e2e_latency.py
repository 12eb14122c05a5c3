"""End-to-end latency: from a Shopify webhook's 200 to the TikTok stand-in's receipt.

Runs the connector as deployed (``connector web``: gunicorn; a ``connector worker``; a real
Redis; SQLite or the PostgreSQL server you name) against the TikTok stand-in in its own
process, posts signed order webhooks at a fixed offered rate (an open loop: request i leaves
at start + i/rate whatever the earlier ones did, from several sender threads), and prints
webhook response times and the delay from each webhook's 200 to the stand-in's receipt of
its event. Both ends read CLOCK_MONOTONIC, which is one clock for all processes on Linux.
A negative delay means the event reached TikTok before the store saw its 200.

    .venv/bin/python bench/e2e_latency.py --orders 12000 --rate 200     # 60 s at 200/s
    .venv/bin/python bench/e2e_latency.py --orders 20 --rate 20         # the CI smoke size
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    FIRST_ORDER_ID,
    WEBHOOK_PATH,
    CpuMeter,
    OrderBodies,
    WebConfig,
    bench_database,
    children_of,
    percentile,
    pick_port,
    prepare_stack,
    print_machine,
    print_table,
    read_receipts,
    running_redis,
    start_connector_web,
    start_standin,
    start_worker,
    stop_process,
    wait_for_http,
    wait_for_quiet,
    wait_for_rq_worker,
    webhook_headers,
)

TARGET_P50_MS = 250.0
TARGET_P99_MS = 1000.0


@dataclass
class Sent:
    """What the senders saw: when each order's 200 came back, and how late they ran."""

    answered: dict[str, float] = field(default_factory=dict)
    response_ms: list[float] = field(default_factory=list)
    failures: Counter[int] = field(default_factory=Counter)
    max_slip_ms: float = 0.0
    first_sent: float = float("inf")
    cpu: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def achieved_rate(self) -> float:
        """Webhooks answered 200 per second, from the first send to the last answer."""
        if not self.answered:
            return 0.0
        return len(self.answered) / max(1e-9, max(self.answered.values()) - self.first_sent)


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        sent, receipts, meter, standin_totals = run(Path(tmp), args)
    report(args, sent, receipts, meter, standin_totals)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="webhooks per second")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--line-items", type=int, default=8, help="8 lines ~ 13 KB body")
    parser.add_argument("--senders", type=int, default=8, help="sender threads")
    parser.add_argument("--web", default="sync:2", help="gunicorn setting: sync:N or gthread:NxT")
    parser.add_argument("--standin", choices=("strict", "lean"), default="strict")
    parser.add_argument("--quiet-timeout", type=float, default=0.0)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 20 orders at 20/s")
    args = parser.parse_args()
    if args.smoke:
        args.orders, args.rate = 20, 20.0
    return args


def run(
    tmp: Path, args: argparse.Namespace
) -> tuple[Sent, dict[str, list[float]], CpuMeter, dict[str, int]]:
    receipts_path = tmp / "receipts.txt"
    log = tmp / "processes.log"
    database = args.bench_database if args.database_url else None
    with (
        running_redis(tmp) as redis,
        bench_database(tmp, args.database_url, args.bench_database) as database_url,
    ):
        standin = start_standin(args.standin, log, receipts_path)
        stack = prepare_stack(tmp, database_url, redis, standin.base_url)
        port = pick_port()
        processes = [
            start_connector_web(stack.env, WebConfig.parse(args.web), port, log),
            start_worker(stack.env, log),
        ]
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            wait_for_rq_worker(stack)
            wait_for_quiet(database, timeout=args.quiet_timeout)
            web_pids = [processes[0].pid, *children_of(processes[0].pid)]
            with CpuMeter(database) as meter:
                sent = send(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", args)
                wait_for_receipts(receipts_path, set(sent.answered), timeout=60.0)
            sent.cpu = {
                "web": meter.cpu_of(web_pids),
                "worker": meter.cpu_of([processes[1].pid]),
                "TikTok stand-in": meter.cpu_of([standin.process.pid]),
                "senders (this process)": meter.cpu_of([os.getpid()]),
                "Redis": meter.cpu_of([redis.process.pid]),
                "PostgreSQL": meter.cpu_of(meter.database_pids),
            }
        finally:
            for process in processes:
                stop_process(process)
            totals = standin.stop()
            stack.services.db.dispose()
    return sent, all_receipts(receipts_path), meter, totals


def send(url: str, args: argparse.Namespace) -> Sent:
    """Open loop: sender k posts orders k, k+S, k+2S... each at its scheduled time."""
    bodies = OrderBodies(args.line_items)
    sent = Sent()
    start = time.monotonic() + 0.2
    threads = [
        threading.Thread(target=sender, args=(url, bodies, k, args, start, sent), daemon=True)
        for k in range(args.senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


def sender(
    url: str, bodies: OrderBodies, k: int, args: argparse.Namespace, start: float, sent: Sent
) -> None:
    session = requests.Session()
    for i in range(k, args.orders, args.senders):
        due = start + i / args.rate
        time.sleep(max(0.0, due - time.monotonic()))
        order_id = FIRST_ORDER_ID + i
        body, signature = bodies.signed(order_id)
        began = time.monotonic()
        try:
            answer = session.post(url, data=body, headers=webhook_headers(signature), timeout=10)
            status = answer.status_code
        except requests.RequestException:
            status = 0
        answered = time.monotonic()
        with sent.lock:
            sent.max_slip_ms = max(sent.max_slip_ms, (began - due) * 1000)
            sent.first_sent = min(sent.first_sent, began)
            if status == 200:
                sent.answered[str(order_id)] = answered
                sent.response_ms.append((answered - began) * 1000)
            else:
                sent.failures[status] += 1


def wait_for_receipts(path: Path, expected: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expected <= set(read_receipts(path)):
            return
        time.sleep(0.25)


def all_receipts(path: Path) -> dict[str, list[float]]:
    """event_id -> every time the stand-in received it (more than one is a duplicate)."""
    seen: dict[str, list[float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            event_id, _, stamp = line.partition(" ")
            seen.setdefault(event_id, []).append(float(stamp))
    return seen


def report(
    args: argparse.Namespace,
    sent: Sent,
    receipts: dict[str, list[float]],
    meter: CpuMeter,
    standin_totals: dict[str, int],
) -> None:
    latency_ms = [
        (receipts[order_id][0] - answered) * 1000
        for order_id, answered in sent.answered.items()
        if order_id in receipts
    ]
    duplicates = sum(len(times) - 1 for times in receipts.values())
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"e2e: {database}; {args.orders} orders offered at {args.rate:g}/s "
        f"({args.orders / args.rate:.0f} s), gunicorn {args.web}, {args.standin} stand-in; "
        f"accepted {len(sent.answered)}, delivered {len(latency_ms)}, duplicates {duplicates}, "
        f"TikTok requests {standin_totals.get('requests', '?')}; "
        f"achieved {sent.achieved_rate:.0f}/s (senders fell up to {sent.max_slip_ms:,.0f} ms "
        f"behind schedule); our CPU {meter.our_cores:.2f} cores, "
        f"others {meter.foreign_cores:.2f}"
    )
    rows = [
        _row("webhook response (send -> 200)", sent.response_ms),
        _row("200 -> TikTok receipt", latency_ms),
    ]
    print_table(["measure", "p50 ms", "p99 ms", "max ms"], rows)
    if sent.cpu and meter.seconds:
        split = ", ".join(
            f"{name} {seconds / meter.seconds:.2f}" for name, seconds in sent.cpu.items() if seconds
        )
        print(f"cores used: {split}")
    verdict(args, sent, latency_ms)


def _row(name: str, values: list[float]) -> list[object]:
    if not values:
        return [name, "-", "-", "-"]
    return [name, percentile(values, 50), percentile(values, 99), max(values)]


def verdict(args: argparse.Namespace, sent: Sent, latency_ms: list[float]) -> None:
    if sent.achieved_rate < 0.95 * args.rate:
        print(
            f"the offered {args.rate:g}/s was not reached ({sent.achieved_rate:.0f}/s): the "
            "connector is saturated, and the latencies below are at that rate"
        )
    if latency_ms:
        p50, p99 = percentile(latency_ms, 50), percentile(latency_ms, 99)
        print(
            f"targets at {args.rate:g}/s: p50 {p50:.0f} ms (< {TARGET_P50_MS:.0f}: "
            f"{'met' if p50 < TARGET_P50_MS else 'MISSED'}), p99 {p99:.0f} ms "
            f"(< {TARGET_P99_MS:.0f}: {'met' if p99 < TARGET_P99_MS else 'MISSED'})"
        )
    if sent.failures:
        raise SystemExit(f"webhooks not accepted, by HTTP status: {dict(sent.failures)}")
    if len(latency_ms) != args.orders:
        raise SystemExit(f"only {len(latency_ms)} of {args.orders} orders were delivered")


if __name__ == "__main__":
    main()
