"""``connector demo``: watch orders travel from a store to TikTok without a store or a pixel.

A newcomer cannot see the connector work until a real shop and a live TikTok pixel are wired
up. The demo wires up local ones instead: it runs ``connector run`` (web and worker, bound to
127.0.0.1) on its own SQLite database under ``instance/demo/``, the strict TikTok stand-in the
test suite uses, and a Shopify custom-app store; it then sends signed webhooks through the real
``POST /webhooks/shopify`` route, waits until the worker has delivered or skipped each event,
and prints a login link to the merchant pages and a ``curl`` that sends one more order.
Nothing leaves the machine: TIKTOK_API_BASE points the worker at the stand-in, and the store
has no Admin API token, so nothing calls Shopify.

Shopify signs the raw body: ``X-Shopify-Hmac-Sha256`` is base64(HMAC-SHA256(secret, body))
(https://shopify.dev/docs/apps/build/webhooks/verify-deliveries); the topic and the shop come
in ``X-Shopify-Topic`` and ``X-Shopify-Shop-Domain``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import requests
from sqlalchemy import func, select

from connector.clitools import emit
from connector.config import ConfigError, load_settings
from connector.db import upgrade_database
from connector.embedded_redis import free_port
from connector.models import EventStatus, OutboxEvent, UnreadableWebhook
from connector.services import Services, build_services
from connector.standins.tiktok import TikTokStandIn
from connector.stores import add_store, find_store, set_destination
from connector.web.merchant.access import LOGIN_LINK_MINUTES, login_token

DEMO_SHOP = "connector-demo.myshopify.com"
DEMO_WEBHOOK_SECRET = "connector-demo-webhook-secret"  # local only: the store is make-believe
DEMO_TIKTOK_TOKEN = "demo-tiktok-access-token"
DEMO_PIXEL = "CDEMOPIXEL00000001"
FIXTURES = Path(__file__).parent
BOT_USER_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ISO_DATETIME = re.compile(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)([^"]*)"')
READY_SECONDS = 60.0
SETTLED_SECONDS = 90.0


@dataclass(frozen=True)
class DemoWebhook:
    """One webhook the demo sends, and what the merchant pages will say about it."""

    label: str
    topic: str
    body: bytes


@dataclass(frozen=True)
class DemoConnector:
    """The ``connector run`` child and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path


# -- webhooks ----------------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value of ``body``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def fresh_body(payload: dict[str, Any], minutes_ago: int = 2) -> bytes:
    """The payload as JSON bytes with every date moved to a few minutes ago: TikTok refuses
    events older than 7 days, and the shipped samples are older than that."""
    moment = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S")
    with_offset = lambda match: "+00:00" if match.group(2) else ""  # noqa: E731 - UTC, kept short
    text = ISO_DATETIME.sub(lambda m: f'"{moment}{with_offset(m)}"', json.dumps(payload))
    return text.encode()


def _sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _new_order(name: str, order_id: int, change: Callable[[dict[str, Any]], None]) -> bytes:
    """A shipped order sample under a new id (a repeated id would be a duplicate)."""
    payload = _sample(name)
    payload["id"] = order_id
    change(payload)
    return fresh_body(payload)


def _as_bot(payload: dict[str, Any]) -> None:
    payload["client_details"]["user_agent"] = BOT_USER_AGENT


def _as_test(payload: dict[str, Any]) -> None:
    payload["test"] = True  # Shopify's bogus gateway marks test orders so


def _unreadable(payload: dict[str, Any]) -> None:
    """No usable total: a signed body the connector keeps, lists and can read again later."""
    for key in [key for key in payload if "total_price" in key]:
        del payload[key]
    payload["total_price"] = "see invoice"


def _unchanged(payload: dict[str, Any]) -> None:
    return None


def demo_webhooks(serial: int) -> list[DemoWebhook]:
    """The webhooks of one demo run: each case the merchant pages explain, under fresh ids."""
    checkout = _sample("checkouts_create.json")
    checkout["id"], checkout["token"] = serial, secrets.token_hex(16)
    cases = [
        ("an order from a TikTok ad (click id and cookie)", "orders_create.json", _unchanged),
        ("a guest checkout order", "orders_create__guest_checkout.json", _unchanged),
        ("an order placed by a bot (skipped)", "orders_create.json", _as_bot),
        ("a test order (skipped: no test event code)", "orders_create.json", _as_test),
        ("an order without a readable total (kept unreadable)", "orders_create.json", _unreadable),
    ]
    webhooks = [DemoWebhook("a started checkout", "checkouts/create", fresh_body(checkout))]
    for index, (label, name, change) in enumerate(cases, start=1):
        body = _new_order(name, serial + index, change)
        webhooks.append(DemoWebhook(label, "orders/create", body))
    return webhooks


def send(url: str, webhook: DemoWebhook) -> dict[str, Any]:
    """POST one signed webhook as Shopify does; the connector's JSON answer."""
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": webhook.topic,
        "X-Shopify-Shop-Domain": DEMO_SHOP,
        "X-Shopify-Hmac-Sha256": sign(DEMO_WEBHOOK_SECRET, webhook.body),
        "X-Shopify-Webhook-Id": f"demo-{secrets.token_hex(8)}",
    }
    answer = requests.post(
        f"{url}/webhooks/shopify", data=webhook.body, headers=headers, timeout=10
    )
    if answer.status_code != 200:
        raise click.ClickException(f"the connector answered {answer.status_code}: {answer.text}")
    return answer.json()


def curl_command(url: str, body_file: Path) -> str:
    """One copy-paste command that signs ``body_file`` (one line of Python) and sends it."""
    python = (
        "import base64,hashlib,hmac,sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), "
        'open(sys.argv[2],"rb").read(), hashlib.sha256).digest()).decode())'
    )
    file = shlex.quote(str(body_file))
    signature = f"$(python3 -c {shlex.quote(python)} {DEMO_WEBHOOK_SECRET} {file})"
    return (
        f"curl -sS {url}/webhooks/shopify -H 'Content-Type: application/json' "
        f"-H 'X-Shopify-Topic: orders/create' -H 'X-Shopify-Shop-Domain: {DEMO_SHOP}' "
        f'-H "X-Shopify-Hmac-Sha256: {signature}" --data-binary @{file}'
    )


# -- the store and the processes ---------------------------------------------------------------


def demo_environment(instance: Path, port: int, tiktok_base: str) -> dict[str, str]:
    """The environment of the demo's connector: its own folder and database, loopback only,
    and TikTok's API at the stand-in (the web process sends test events, the worker orders)."""
    folder = instance / "demo"
    return dict(
        os.environ,
        CONNECTOR_INSTANCE_PATH=str(folder),
        DATABASE_URL=f"sqlite:///{folder / 'connector.sqlite3'}",
        PORT=str(port),
        HOST="127.0.0.1",
        APP_URL=f"http://127.0.0.1:{port}",
        TIKTOK_API_BASE=tiktok_base,
        TIKTOK_AUTH_URL=f"{tiktok_base}/marketing_api/auth",
    )


def ensure_demo_store(services: Services) -> str:
    """The demo store's id, registered on first use, its TikTok pixel at the stand-in."""
    with services.db.session() as session:
        store = find_store(session, platform="shopify", domain=DEMO_SHOP)
        store_id = store.id if store else None
    if store_id is None:
        store = add_store(
            services, platform="shopify", domain=DEMO_SHOP, webhook_secret=DEMO_WEBHOOK_SECRET
        )
        store_id = store.id
    set_destination(
        services,
        store_id,
        kind="tiktok",
        values={"pixel_code": DEMO_PIXEL, "access_token": DEMO_TIKTOK_TOKEN},
    )
    return store_id


def start_connector(env: dict[str, str], port: int) -> DemoConnector:
    """``connector run`` in a child process, its output in a log file under the demo folder."""
    log = Path(env["CONNECTOR_INSTANCE_PATH"]) / "connector.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "run", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    connector = DemoConnector(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_serving(connector)
    except BaseException:
        stop_connector(connector)
        raise
    return connector


def _wait_until_serving(connector: DemoConnector) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if connector.process.poll() is not None:
            raise click.ClickException(f"the connector stopped: see {connector.log}")
        try:
            requests.get(f"{connector.url}/healthz", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise click.ClickException(
        f"the connector did not start in {READY_SECONDS:.0f} s: see {connector.log}"
    )


def stop_connector(connector: DemoConnector) -> None:
    """SIGTERM: ``connector run`` stops its web server, worker and embedded Redis."""
    if connector.process.poll() is None:
        connector.process.terminate()
    connector.process.wait()


def wait_until_settled(services: Services, store_id: str, since: datetime, expected: int) -> dict:
    """Event counts by status once the ``expected`` events received since ``since`` are all
    delivered, skipped or failed (none pending)."""
    query = (
        select(OutboxEvent.status, func.count())
        .where(OutboxEvent.store_id == store_id, OutboxEvent.received_at >= since)
        .group_by(OutboxEvent.status)
    )
    deadline = time.monotonic() + SETTLED_SECONDS
    while True:
        with services.db.session() as session:
            counts = dict(session.execute(query).all())
        done = sum(n for status, n in counts.items() if status != EventStatus.PENDING)
        if done >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _accepted_by(stand_in: TikTokStandIn) -> int:
    """Events the stand-in took (answered with code 0): what reached "TikTok"."""
    batches = [batch for batch in stand_in.batches if batch.answer.get("code") == 0]
    return sum(len(batch.body["data"]) - len(batch.dropped) for batch in batches)


def _unreadable_count(services: Services, store_id: str) -> int:
    query = select(func.count()).where(UnreadableWebhook.store_id == store_id)
    with services.db.session() as session:
        return session.scalar(query) or 0


# -- the command -------------------------------------------------------------------------------


@click.command()
@click.option("--port", type=int, default=0, help="Port of the demo's connector (default: free).")
@click.option("--exit", "exit_after", is_flag=True, help="Stop after printing (for tests, CI).")
def demo(port: int, exit_after: bool) -> None:
    """See orders travel to a local TikTok stand-in; prints a login link to the pages."""
    try:
        instance = load_settings().instance_path
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    port = port or free_port()
    stand_in = TikTokStandIn({DEMO_TIKTOK_TOKEN: {DEMO_PIXEL}}).start()
    env = demo_environment(instance, port, stand_in.base_url)
    settings = load_settings(env)
    upgrade_database(settings.database_url)
    services = build_services(settings)
    store_id = ensure_demo_store(services)
    connector = start_connector(env, port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        summary = _play(services, store_id, connector, stand_in)
        emit(summary)
        _explain(summary)
        if not exit_after:
            _wait_for_stop(connector)
    except KeyboardInterrupt:
        pass
    finally:
        stop_connector(connector)
        stand_in.stop()
        services.db.dispose()


def _play(
    services: Services, store_id: str, connector: DemoConnector, stand_in: TikTokStandIn
) -> dict[str, Any]:
    """Send the demo's webhooks, wait for the worker, and say what happened."""
    started = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    serial = int(time.time() * 1000) * 10
    answers = [send(connector.url, webhook) for webhook in demo_webhooks(serial)]
    expected = sum(a.get("events", 0) + a.get("skipped", 0) for a in answers)
    counts = wait_until_settled(services, store_id, started, expected)
    next_order = Path(services.settings.instance_path) / "next-order.json"
    next_order.write_bytes(_new_order("orders_create.json", serial + 99, _unchanged))
    token = login_token(services.settings.secret_key, store_id)
    return {
        "store_id": store_id,
        "shop": DEMO_SHOP,
        "connector_url": connector.url,
        "login_url": f"{connector.url}/login/{token}",
        "webhooks_sent": len(answers),
        "events": counts,
        "unreadable_kept": _unreadable_count(services, store_id),
        "tiktok_stand_in": stand_in.base_url,
        "tiktok_events_received": _accepted_by(stand_in),
        "tiktok_pixel": DEMO_PIXEL,
        "tiktok_access_token": DEMO_TIKTOK_TOKEN,
        "webhook_secret": DEMO_WEBHOOK_SECRET,
        "curl": curl_command(connector.url, next_order),
        "log": str(connector.log),
        "instance": str(services.settings.instance_path),
    }


def _explain(summary: dict[str, Any]) -> None:
    """The same, for a person: where to click and what to try next (on stderr)."""
    counts = summary["events"]
    say = lambda text="": click.echo(text, err=True)  # noqa: E731 - short, local
    say()
    say(f"Sent {summary['webhooks_sent']} signed Shopify webhooks to {summary['connector_url']}:")
    say(
        f"  {counts.get(EventStatus.DELIVERED, 0)} events delivered to the local TikTok stand-in, "
        f"{counts.get(EventStatus.SKIPPED, 0)} skipped (a bot, a test order), "
        f"{summary['unreadable_kept']} webhook kept as unreadable."
    )
    say()
    say(f"Open the merchant pages (the link works once, for {LOGIN_LINK_MINUTES} minutes):")
    say(f"  {summary['login_url']}")
    say("  Status: what was delivered today, and the webhook that could not be read;")
    say("  Delivery log: every event, delivered or skipped with the reason;")
    say("  Settings: the TikTok pixel.")
    say()
    say("Send one more signed order (fresh date, HMAC computed by one line of Python):")
    say(f"  {summary['curl']}")
    say()
    say(
        f"TikTok stand-in: {summary['tiktok_stand_in']} (pixel {summary['tiktok_pixel']}, "
        f"token {summary['tiktok_access_token']}). Nothing leaves this machine."
    )
    say(f"Connector log: {summary['log']}. Another login link, while the demo runs:")
    instance, store_id = shlex.quote(summary["instance"]), summary["store_id"]
    say(f"  CONNECTOR_INSTANCE_PATH={instance} connector stores login-link {store_id}")


def _wait_for_stop(connector: DemoConnector) -> None:
    click.echo("Ctrl-C stops the demo.", err=True)
    while connector.process.poll() is None:
        time.sleep(0.5)
    raise click.ClickException(f"the connector stopped: see {connector.log}")
