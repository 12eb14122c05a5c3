"""Where one Shopify order webhook's CPU goes, stage by stage, in-process.

The ingest benchmark says how many webhooks per second gunicorn accepts; this says what each
one costs and in which part of our code, so a change can be judged before a full run. It
times (in CPU seconds of this process, so other load on the machine hardly matters) the
stages ``POST /webhooks/shopify`` goes through, then the whole request through Flask's test
client; the difference is Flask and Werkzeug (the test client is a good deal heavier than
gunicorn; metrics and the log line cost microseconds). Redis and the database are real
(SQLite, or PostgreSQL with ``--database-url``).

Every benchmark order has the same user agent, so the bot check is a cache hit there; a
second table times it on user agents it has not seen (each shopper's TikTok in-app agent
names the device and app version), for crawlerdetect as shipped and for ``connector.bots``.

    .venv/bin/python bench/profile_webhook.py                  # 1,000 webhooks, SQLite
    .venv/bin/python bench/profile_webhook.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/profile_webhook.py --smoke
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    FIRST_ORDER_ID,
    ORDER_TOPIC,
    SHOP,
    WEBHOOK_PATH,
    CpuMeter,
    OrderBodies,
    bench_database,
    prepare_stack,
    print_machine,
    print_table,
    running_redis,
    webhook_headers,
)

from app import create_app  # noqa: E402
from connector.config import load_settings  # noqa: E402
from connector.destinations.tiktok import DESTINATION as TIKTOK  # noqa: E402
from connector.mapping import EventOptions, plan_event  # noqa: E402
from connector.pipeline import record_events  # noqa: E402
from connector.services import Services  # noqa: E402
from connector.stores import webhook_secrets  # noqa: E402
from connector.web.intake import (  # noqa: E402
    find_store,
    parse_json_object,
    signature_matches,
    webhook_connection,
)
from platforms.shopify.parse import parse_order  # noqa: E402

STAGES = (
    "connection (kept by the thread, autocommit)",
    "find_store (remembered)",
    "webhook_secrets (Fernet decrypt, memoised)",
    "signature_matches (HMAC)",
    "parse_json_object (json.loads)",
    "parse_order",
    "plan_event (map, hash, bot check)",
    "record_events (one read, plan, one INSERT, Redis)",
)


USER_AGENTS = {
    "iPhone Safari": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    ),
    "TikTok in-app, iOS": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/21E236 musical_ly_34.1.0 JsSdk/2.0 NetType/WIFI "
        "Channel/App Store ByteLocale/en Region/US isDarkMode/0 WKWebView/1 "
        "RevealType/Dialog BytedanceWebview/d8a21c6 FalconTag/"
    ),
    "TikTok in-app, Android": (
        "Mozilla/5.0 (Linux; Android 13; SM-S918B Build/TP1A.220624.014; wv) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.210 Mobile "
        "Safari/537.36 trill_330403 JsSdk/1.0 NetType/WIFI Channel/googleplay "
        "AppName/musical_ly app_version/33.4.3 ByteLocale/en ByteFullLocale/en Region/US "
        "AppId/1233 Spark/1.4.8.3-bugfix AppVersion/33.4.3 BytedanceWebview/d8a21c6"
    ),
    "Googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}


def main() -> None:
    args = parse_args()
    print_machine(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        stages, whole, server = measure(Path(tmp), args)
    report(args, stages, whole, server)
    report_bot_check(max(20, args.webhooks // 5))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--line-items", type=int, default=8)
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: SQLite)")
    parser.add_argument("--bench-database", default="bench")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    if args.smoke:
        args.webhooks = 50
    return args


def measure(tmp: Path, args: argparse.Namespace) -> tuple[dict[str, float], float, float]:
    """CPU seconds per stage over ``args.webhooks`` webhooks, for whole requests, and what
    Redis and the PostgreSQL backend spent serving those whole requests."""
    database = args.bench_database if args.database_url else None
    with (
        running_redis(tmp) as redis,
        bench_database(tmp, args.database_url, args.bench_database) as database_url,
    ):
        stack = prepare_stack(tmp, database_url, redis, "http://127.0.0.1:9")
        app = create_app(load_settings(stack.env))
        logging.disable(logging.INFO)  # the migrations' logging setup would print every request
        services: Services = app.extensions["connector"]
        bodies = OrderBodies(args.line_items)
        client = app.test_client()

        def whole_request(order_id: int) -> None:
            body, signature = bodies.signed(order_id)
            answer = client.post(WEBHOOK_PATH, data=body, headers=webhook_headers(signature))
            if answer.status_code != 200:
                raise SystemExit(f"webhook answered {answer.status_code}: {answer.text}")

        warm = FIRST_ORDER_ID - 1000
        for order_id in range(warm, warm + min(100, args.webhooks)):
            whole_request(order_id)
        # Alternate the two measurements in rounds, so load that comes and goes on the
        # machine weighs on both alike.
        stages = dict.fromkeys(STAGES, 0.0)
        whole = server = 0.0
        rounds = max(1, min(10, args.webhooks // 10))
        share = args.webhooks // rounds
        for round_index in range(rounds):
            first = FIRST_ORDER_ID + round_index * share
            with CpuMeter(database) as meter:
                whole += _cpu(lambda i, first=first: whole_request(first + i), share)
            server += meter.cpu_of(pid for pid in meter.deltas if pid != os.getpid())
            with app.app_context():
                timed = staged(services, bodies, first + 10_000_000, share)
            for stage, spent in timed.items():
                stages[stage] += spent
        args.webhooks = rounds * share
        stack.services.db.dispose()
        services.db.dispose()
    return stages, whole, server


def staged(services: Services, bodies: OrderBodies, first: int, count: int) -> dict[str, float]:
    """The handler's stages, in its order, each timed on its own (new order ids)."""
    spent = dict.fromkeys(STAGES, 0.0)
    for offset in range(count):
        body, signature = bodies.signed(first + offset)
        clock = time.process_time()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.process_time()
            spent[stage] += now - clock
            clock = now

        with webhook_connection() as connection:
            lap(STAGES[0])
            store = find_store(connection, "shopify", domain=SHOP)
            lap(STAGES[1])
            assert store is not None and store.remembered
            secrets = webhook_secrets(services, store.webhook_secret_encrypted, None)
            lap(STAGES[2])
            if not signature_matches(secrets, body, signature):
                raise SystemExit("signature mismatch")
            lap(STAGES[3])
            payload = parse_json_object(body)
            lap(STAGES[4])
            assert payload is not None
            order = parse_order(payload, ORDER_TOPIC)
            lap(STAGES[5])
            plan_event(order, TIKTOK, EventOptions(), test_mode=False)
            lap(STAGES[6])
            record_events(
                services,
                store.id,
                ORDER_TOPIC,
                order,
                connection=connection,
                verified_with=store.identity,
            )
        lap(STAGES[7])
    return spent


def _cpu(work: Callable[[int], None], count: int) -> float:
    started = time.process_time()
    for index in range(count):
        work(index)
    return time.process_time() - started


def report(args: argparse.Namespace, stages: dict[str, float], whole: float, server: float) -> None:
    per = 1000 / args.webhooks
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"webhook CPU by stage: {database}, {args.webhooks} orders/create webhooks of "
        f"{args.line_items} lines, CPU ms of this process per webhook"
    )
    staged_total = sum(stages.values())
    rows: list[list[object]] = [[name, f"{spent * per:.3f}"] for name, spent in stages.items()]
    rows.append(["sum of the stages (plan_event counted twice)", f"{staged_total * per:.3f}"])
    rows.append(["whole request through Flask's test client", f"{whole * per:.3f}"])
    rest = whole - staged_total + stages[STAGES[6]]
    rows.append(
        ["Flask, Werkzeug, metrics, logging (whole - stages + plan_event)", f"{rest * per:.3f}"]
    )
    rows.append(["Redis and PostgreSQL server processes, per whole request", f"{server * per:.3f}"])
    print_table(["stage", "CPU ms"], rows)
    ceiling = 2000 / ((whole + server) * per)
    print(f"=> at most {ceiling:,.0f} webhooks/s on 2 cores, before gunicorn and the client")


def report_bot_check(count: int) -> None:
    """CPU per bot check on user agents never seen before (a number appended to each)."""
    from crawlerdetect import CrawlerDetect

    from connector.bots import IndexedDetector

    detectors = {
        "crawlerdetect": CrawlerDetect(),
        "connector.bots": IndexedDetector(CrawlerDetect()),
    }
    for detector in detectors.values():
        detector.is_crawler("warm-up: compiles the patterns")
    print(f"bot check on {count:,} unseen user agents of each kind, CPU ms per check")
    rows = []
    for name, agent in USER_AGENTS.items():
        agents = [f"{agent} {n}" for n in range(count)]
        spent = [_cpu(partial(_check, detector, agents), count) for detector in detectors.values()]
        rows.append([name, *(f"{seconds / count * 1000:.3f}" for seconds in spent)])
    print_table(["user agent", *detectors], rows)


def _check(detector: Any, agents: list[str], index: int) -> None:
    detector.is_crawler(agents[index])


if __name__ == "__main__":
    main()
