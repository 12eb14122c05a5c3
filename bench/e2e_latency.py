"""End-to-end latency: from a Shopify webhook's 200 to the TikTok stand-in's receipt.

Runs the connector as deployed (gunicorn web process, a ``connector worker`` process, a real
Redis, SQLite or the database you name) against the local TikTok stand-in, posts signed order
webhooks at a fixed rate, and prints webhook response times and delivery latency.

    .venv/bin/python bench/e2e_latency.py --orders 500 --rate 50
    .venv/bin/python bench/e2e_latency.py --orders 20 --rate 20      # the CI smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.config import load_settings  # noqa: E402
from connector.db import upgrade_database  # noqa: E402
from connector.embedded_redis import free_port, start_redis  # noqa: E402
from connector.services import build_services  # noqa: E402
from connector.stores import add_store, set_destination  # noqa: E402
from tests.standins.tiktok import TikTokStandIn  # noqa: E402
from tests.support import sign  # noqa: E402

SHOP = "bench-store.myshopify.com"
SECRET = "bench-secret"
ORDER_FIXTURE = ROOT / "tests/platforms/shopify/fixtures/orders_create.json"


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="webhooks per second")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    return parser.parse_args()


def run(tmp: Path, args: argparse.Namespace) -> None:
    redis = start_redis(tmp / "redis", persist=False)
    tiktok = TikTokStandIn({"bench-token": {"CBENCHPIXEL"}}).start()
    port = free_port()
    env = {
        **os.environ,
        "CONNECTOR_INSTANCE_PATH": str(tmp / "instance"),
        "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
        "REDIS_URL": redis.url,
        "SECRET_KEY": "bench",
        "TIKTOK_API_BASE": tiktok.base_url,
        "PORT": str(port),
    }
    settings = load_settings(env)
    upgrade_database(settings.database_url)
    services = build_services(settings)
    store = add_store(services, platform="shopify", domain=SHOP, webhook_secret=SECRET)
    set_destination(
        services,
        store.id,
        kind="tiktok",
        pixel_code="CBENCHPIXEL",
        access_token="bench-token",
        test_event_code=None,
    )
    log = (tmp / "processes.log").open("wb")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "connector.cli", command],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        for command in ("web", "worker")
    ]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        response_ms, latency_ms = measure(f"http://127.0.0.1:{port}", tiktok, args)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        tiktok.stop()
        redis.stop()
    report(args, response_ms, latency_ms)


def measure(base: str, tiktok: TikTokStandIn, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    template = json.loads(ORDER_FIXTURE.read_bytes())
    first_seen: dict[str, float] = {}
    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(tiktok, first_seen, done), daemon=True)
    watcher.start()
    answered: dict[str, float] = {}
    response_ms = []
    session = requests.Session()
    interval = 1.0 / args.rate
    start = time.perf_counter()
    for i in range(args.orders):
        order_id = str(5_000_000_000_000 + i)
        body = order_body(template, order_id)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Hmac-Sha256": sign(SECRET, body),
        }
        sent = time.perf_counter()
        answer = session.post(f"{base}/webhooks/shopify", data=body, headers=headers, timeout=10)
        answered[order_id] = time.perf_counter()
        response_ms.append((answered[order_id] - sent) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"webhook answered {answer.status_code}: {answer.text}")
        time.sleep(max(0.0, start + (i + 1) * interval - time.perf_counter()))
    tiktok.wait_for_events(args.orders, timeout=60)
    time.sleep(0.05)
    done.set()
    latency_ms = [(first_seen[k] - answered[k]) * 1000 for k in answered if k in first_seen]
    return response_ms, latency_ms


def order_body(template: dict, order_id: str) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    order = dict(template, id=int(order_id), processed_at=now, created_at=now)
    return json.dumps(order).encode()


def watch(tiktok: TikTokStandIn, first_seen: dict[str, float], done: threading.Event) -> None:
    """Note when each event id first reaches the stand-in (polled every millisecond)."""
    while not done.is_set():
        now = time.perf_counter()
        for event_id in tiktok.accepted_event_ids():
            first_seen.setdefault(event_id, now)
        time.sleep(0.001)


def wait_for_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def report(args: argparse.Namespace, response_ms: list[float], latency_ms: list[float]) -> None:
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"orders: {args.orders} at {args.rate:g}/s; delivered: {len(latency_ms)}")
    print(f"{'measure':<32}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, values in (("webhook response", response_ms), ("200 -> TikTok receipt", latency_ms)):
        print(f"{name:<32}{pct(values, 50):>10.1f}{pct(values, 99):>10.1f}{max(values):>10.1f}")
    if len(latency_ms) != args.orders:
        raise SystemExit("some orders were not delivered")


def pct(values: list[float], p: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[p - 1]
        if len(values) > 1
        else values[0]
    )


if __name__ == "__main__":
    main()
