"""Reconciliation: how long ``connector stores reconcile`` takes for N orders a store never sent.

A WooCommerce store stand-in (``tests/standins/woocommerce.py``, the test suite's strict one,
in this process's threads) holds N paid orders that no webhook brought; one run reads them in
pages of 100 with the store's REST keys and records each through the webhook's pipeline
(``record_events``: map, hash, one INSERT per destination, one commit, a delivery request to
Redis). Then a second run reads the same N again, which is the cost of every later run over
orders already recorded (each insert does nothing). No worker runs: delivery is measured by
``delivery.py``.

The stand-in serves from the same process, so its JSON encoding shares the GIL and the CPU
with the run: the figure is an upper bound on what a real store's answers would cost us.

    .venv/bin/python bench/reconcile.py                        # SQLite, 10,000 orders
    .venv/bin/python bench/reconcile.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/reconcile.py --smoke                # CI: 300 orders, a few seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    PIXEL,
    TOKEN,
    bench_database,
    count_events,
    print_machine,
    print_table,
    running_redis,
)

from connector.config import load_settings  # noqa: E402
from connector.db import upgrade_database  # noqa: E402
from connector.models import utcnow  # noqa: E402
from connector.reconcile import ReconcileSummary, reconcile_store  # noqa: E402
from connector.services import Services, build_services  # noqa: E402
from connector.stores import add_store, set_destination  # noqa: E402
from platforms.woocommerce.connect import StoreKeys, save_keys  # noqa: E402
from tests.standins.woocommerce import WooCommerceStandIn  # noqa: E402
from tests.support import fixture_bytes  # noqa: E402

KEY, SECRET = "ck_bench", "cs_bench"
FIRST_ORDER_ID = 100_000
ORDER_FIXTURE = "order_created__processing.json"


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        first, again = run(Path(tmp), args)
    rows = [
        (name, s.orders_seen, s.inserted, s.duplicates, seconds, s.orders_seen / seconds)
        for name, s, seconds in (("first run", *first), ("run again", *again))
    ]
    print_table(["run", "orders", "inserted", "duplicates", "seconds", "orders/s"], rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="300 orders, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.orders = 300
    return args


def run(
    tmp: Path, args: argparse.Namespace
) -> tuple[tuple[ReconcileSummary, float], tuple[ReconcileSummary, float]]:
    """Both runs over one store, database, Redis and stand-in; checks every order landed."""
    store = WooCommerceStandIn({KEY: (SECRET, "read")}).start()
    try:
        with (
            running_redis(tmp) as redis,
            bench_database(tmp, args.database_url, args.bench_database) as url,
        ):
            services = connected_services(tmp, url, redis.url)
            store_id = woocommerce_store(services, store.base_url)
            fill(store, args.orders)
            since = utcnow() - timedelta(hours=1)
            first = timed(services, store_id, since)
            again = timed(services, store_id, since)
            assert count_events(url) == args.orders, "not every order was recorded"
            services.db.dispose()
            return first, again
    finally:
        store.stop()


def connected_services(tmp: Path, database_url: str, redis_url: str) -> Services:
    env = {
        "CONNECTOR_INSTANCE_PATH": str(tmp / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "bench-secret-key",
    }
    settings = load_settings(env)
    upgrade_database(settings.database_url)
    return build_services(settings)


def woocommerce_store(services: Services, url: str) -> str:
    """A store as ``connect-woocommerce`` leaves it, with its TikTok destination."""
    store = add_store(services, platform="woocommerce", domain="bench.example", webhook_secret="s")
    save_keys(services, store.id, StoreKeys(url, KEY, SECRET))
    set_destination(
        services,
        store.id,
        kind="tiktok",
        values={"pixel_code": PIXEL, "access_token": TOKEN},
    )
    return store.id


def fill(store: WooCommerceStandIn, count: int) -> None:
    """``count`` paid orders placed a few minutes ago, each a distinct id."""
    template = json.loads(fixture_bytes("woocommerce", ORDER_FIXTURE))
    placed = (utcnow() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    for key in ("date_created", "date_created_gmt", "date_paid", "date_paid_gmt"):
        template[key] = placed
    for order_id in range(FIRST_ORDER_ID, FIRST_ORDER_ID + count):
        store.put_order({**template, "id": order_id, "number": str(order_id)})


def timed(services: Services, store_id: str, since) -> tuple[ReconcileSummary, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    summary = reconcile_store(services, store_id, since=since)
    elapsed = time.perf_counter() - started
    assert summary.error is None, summary.error
    return summary, elapsed


if __name__ == "__main__":
    main()
