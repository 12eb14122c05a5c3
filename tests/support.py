"""Helpers the tests share: signing, fixtures, a worker process, polling."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import requests
from redis import Redis

from connector.config import Settings
from connector.events import ClickIds, LineItem, Order, Shopper
from connector.services import Services
from connector.standins.google import GoogleStandIn
from connector.stores import set_destination

T = TypeVar("T")
ISO_DATETIME = re.compile(rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)([^"]*)"')
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "platforms"
TIKTOK_TOKEN = "tt-test-token"
PIXEL_CODE = "CPIXEL0123456789"
SHOPIFY_SECRET = "shopify-custom-app-secret"
SHOP_DOMAIN = "demo-store.myshopify.com"


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load these settings."""
    return {
        **os.environ,
        "CONNECTOR_INSTANCE_PATH": str(settings.instance_path),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "SECRET_KEY": settings.secret_key,
        "APP_URL": settings.app_url,
        **{name: value or "" for name, value in settings.destination_env.items()},
        "RETRY_BASE_SECONDS": str(settings.retry_base_seconds),
        "SWEEP_INTERVAL_SECONDS": str(settings.sweep_interval_seconds),
        "RECONCILE_INTERVAL_SECONDS": str(settings.reconcile_interval_seconds),
        "LEASE_SECONDS": str(settings.lease_seconds),
        "TIKTOK_BATCH_SIZE": str(settings.batch_size),
        "PYTHONUNBUFFERED": "1",
    }


class WorkerProcess:
    """A real ``connector worker`` child process; tests may kill and restart it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "worker"],
            env=settings_environment(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish or clean up, like a crashed machine."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


CommandResult = subprocess.CompletedProcess
"""What a ``connector`` command left: ``returncode``, ``stdout`` and ``stderr`` as text."""


def command_environment(settings: Settings, env_changes: dict[str, str | None]) -> dict[str, str]:
    """These settings' environment for a ``connector`` command (no TOKEN_ENCRYPTION_KEY or
    SHOPIFY_API_SECRET from the outer one); variables set to None are removed."""
    env = settings_environment(settings)
    for name in ("SHOPIFY_API_SECRET", "TOKEN_ENCRYPTION_KEY"):
        env.pop(name, None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_connector(  # type: ignore[no-untyped-def]
    settings: Settings, *args: str, timeout: float = 60, **env_changes: str | None
) -> subprocess.CompletedProcess:
    """Run ``python -m connector.cli ARGS`` as a process with these settings' environment (no
    TOKEN_ENCRYPTION_KEY or SHOPIFY_API_SECRET from the outer one); variables set to None are
    removed. Tests of what a command does use :func:`invoke_connector`; this one is for what
    only a real process shows (the entry point, exit status, a process that keeps running)."""
    env = command_environment(settings, env_changes)
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


PROCESS_COMMANDS = frozenset({"run", "web", "worker", "demo"})
"""Commands that start or become long-lived processes: only :func:`run_connector` runs them."""


def invoke_connector(settings: Settings, *args: str, **env_changes: str | None) -> CommandResult:
    """Run ``connector ARGS`` in this process, as :func:`run_connector` runs it in a child.

    The same click command group (``connector.cli:main``, the console script's target) parses
    the same arguments in the same environment (``os.environ`` is exactly that of the child
    for the call, then restored) from the repository folder, and reads and writes the test's
    database and Redis; click's ``CliRunner`` captures stdout and stderr apart and turns
    ``SystemExit`` into the exit status. A process start (about 1 s of imports here) is saved
    per call. An exception the command does not handle is a traceback on stderr and status 1,
    as in a child. The logging the command configures and the services it builds end with it.
    """
    from click.testing import CliRunner

    from connector.cli import main
    from connector.clitools import LazyServices

    if args and args[0] in PROCESS_COMMANDS:
        raise ValueError(f"`connector {args[0]}` starts processes: use run_connector")
    env = command_environment(settings, env_changes)
    root = logging.getLogger()
    saved_environ, saved_handlers, saved_level = dict(os.environ), root.handlers[:], root.level
    lazy = LazyServices()
    try:
        with contextlib.chdir(ROOT):
            result = CliRunner().invoke(
                main,
                list(args),
                env={**dict.fromkeys(os.environ), **env},
                obj=lazy,
                prog_name="connector",
            )
    finally:
        for name in set(os.environ) - set(saved_environ):
            del os.environ[name]
        for name, value in saved_environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        root.handlers[:], root.level = saved_handlers, saved_level
        if (built := lazy._services) is not None:  # the command's: closed as at its exit
            built.db.dispose()
            built.http.close()
            if built._redis is not None:
                built._redis.close()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return CommandResult(["connector", *args], result.exit_code, result.stdout, stderr)


GOOGLE_CLIENT, GOOGLE_SECRET = "client-1.apps.googleusercontent.com", "secret-1"
GOOGLE_CUSTOMER, GOOGLE_ACTION = "1234567890", "555"
META_PIXEL, META_TOKEN = "123456789012345", "meta-system-user-token"


def connect_meta(services: Services, store_id: str) -> int:
    values = {"pixel_id": META_PIXEL, "access_token": META_TOKEN}
    return set_destination(services, store_id, kind="meta", values=values).id


def connect_google(services: Services, store_id: str, refresh_token: str) -> int:
    values = {
        "customer_id": GOOGLE_CUSTOMER,
        "conversion_action": GOOGLE_ACTION,
        "refresh_token": refresh_token,
    }
    return set_destination(services, store_id, kind="google", values=values).id


def google_env(settings: Settings, google: GoogleStandIn) -> Settings:
    """``settings`` pointed at the Google stand-in, with the OAuth client it knows."""
    return settings.with_env(
        GOOGLE_DATAMANAGER_API_BASE=google.base_url,
        GOOGLE_OAUTH_TOKEN_URL=google.token_url,
        GOOGLE_OAUTH_CLIENT_ID=GOOGLE_CLIENT,
        GOOGLE_OAUTH_CLIENT_SECRET=GOOGLE_SECRET,
    )


def connect_tiktok(services: Services, store_id: str, **options: object) -> int:
    destination = set_destination(
        services,
        store_id,
        kind="tiktok",
        values={
            "pixel_code": PIXEL_CODE,
            "access_token": TIKTOK_TOKEN,
            "test_event_code": options.pop("test_event_code", None),  # type: ignore[dict-item]
        },
        options=options,
    )
    return destination.id


def fixture_bytes(platform: str, name: str) -> bytes:
    """A webhook body exactly as stored: tests sign and send these bytes untouched."""
    return (FIXTURES / platform / "fixtures" / name).read_bytes()


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(topic: str, body: bytes, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-Hmac-Sha256": sign(secret, body),
        "X-Shopify-Webhook-Id": f"wh-{time.time_ns()}",
    }


def woocommerce_headers(topic: str, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign(secret, body),
        "X-WC-Webhook-Source": "https://shop.example/",
    }


def topic_of(fixture_name: str, separator: str) -> str:
    """The topic a fixture stands for: ``orders_create__pos.json`` -> ``orders/create``."""
    return fixture_name.split("__")[0].removesuffix(".json").replace("_", separator, 1)


def wait_until(condition, timeout: float = 15.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll until ``condition()`` is truthy; fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def in_one_clock_minute(redis: Redis, burst: Callable[[], T]) -> T:
    """What ``burst()`` returned, from a run that began and ended in the same clock minute.

    The per-minute limits count in Redis per clock minute (``connector.rate_limits``): a burst
    that crossed into the next minute would start a fresh count halfway. Such a run is
    discarded and the burst runs again at once, from empty counts, at the start of the new
    minute, instead of every test waiting for a minute with enough of it left. Every request
    whose answer depends on the count belongs in ``burst``.
    """
    for _ in range(3):
        minute = time.time() // 60
        answers = burst()
        if time.time() // 60 == minute:
            return answers
        redis.flushall()
    raise AssertionError("the burst crossed a minute boundary three times: it takes > 60 s")


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=10)


def make_order(order_id: str, **changes: object) -> Order:
    """A realistic paid web order, for tests that start after the platform's parsing."""
    fields: dict[str, object] = {
        "occurred_at": datetime.now(UTC) - timedelta(minutes=5),
        "currency": "USD",
        "total": Decimal("59.90"),
        "subtotal": Decimal("49.90"),
        "items": (
            LineItem(
                product_id="7890123456789",
                variant_id="42345678901234",
                sku="TEE-BLK-M",
                name="Black tee",
                price=Decimal("24.95"),
                quantity=2,
                brand="Demo Brand",
            ),
        ),
        "shopper": Shopper(
            email="Shopper@Example.com",
            phone="+1 (650) 555-1212",
            customer_id="6940095564029",
            first_name="Ada",
            last_name="Lovelace",
            zip_code="94105",
            city="San Francisco",
            state="CA",
            country_code="US",
            ip="203.0.113.7",
            user_agent=(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
            ),
            locale="en-US",
        ),
        "clicks": ClickIds(
            ttclid="E.C.P.test-click", ttp="ttp-cookie-value", source="landing_site"
        ),
        "order_id": order_id,
        "triggers": frozenset({"created", "paid"}),
    }
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


def fresh(body: bytes, minutes_ago: int = 3) -> bytes:
    """The same payload, as if the order had just been placed (TikTok refuses old events).

    Only the date strings change; the result is still the exact bytes we sign and send.
    """
    moment = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S")
    offset = lambda match: b"+00:00" if match.group(2) else b""  # noqa: E731 - UTC, kept short
    return ISO_DATETIME.sub(lambda m: b'"' + moment.encode() + offset(m) + b'"', body)


def log_in(client, services: Services, store_id: str) -> None:  # type: ignore[no-untyped-def]
    """Log a Flask test client in to a store's pages the way a merchant does: the login link
    ``connector stores login-link`` prints, then its Continue button."""
    from connector.web.merchant.access import login_token

    path = f"/login/{login_token(services.settings.secret_key, store_id)}"
    page = client.get(path)
    assert page.status_code == 200
    answer = client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert answer.status_code == 303, answer.get_data(as_text=True)


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on a merchant page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)
