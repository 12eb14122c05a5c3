"""A deployed connector in miniature, for breaking things on purpose.

The rig runs the web process as deployed (gunicorn through ``connector web``), real
``connector worker`` processes, its own Redis (so it can be flushed and restarted), and the
TikTok stand-in; it sends signed Shopify order webhooks and counts, per scenario: webhooks
sent, accepted (answered 200), events delivered (distinct ``event_id`` at the stand-in),
duplicates the stand-in received, and lost (accepted but never delivered). The bar is zero
lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from connector.config import Settings
from connector.embedded_redis import EmbeddedRedis, free_port, start_redis
from connector.standins.tiktok import TikTokStandIn
from tests.support import (
    FIXTURES,
    ROOT,
    SHOP_DOMAIN,
    SHOPIFY_SECRET,
    WorkerProcess,
    settings_environment,
    sign,
)

SIZE = int(os.environ.get("RELIABILITY_SIZE", "40"))
BATCH_OF = int(os.environ.get("RELIABILITY_BATCH", "500"))
TEMPLATE = json.loads((FIXTURES / "shopify/fixtures/orders_create.json").read_bytes())


@dataclass
class Counts:
    """The figures every scenario reports."""

    scenario: str
    sent: int
    accepted: int
    delivered: int
    duplicates: int
    lost: int

    def row(self) -> str:
        return (
            f"{self.scenario:<46}{self.sent:>7}{self.accepted:>10}{self.delivered:>11}"
            f"{self.duplicates:>12}{self.lost:>6}"
        )


HEADER = (
    f"{'scenario':<46}{'sent':>7}{'accepted':>10}{'delivered':>11}{'duplicates':>12}{'lost':>6}"
)


class Rig:
    """Processes and counters for one scenario."""

    def __init__(self, settings: Settings, tiktok: TikTokStandIn, workdir: Path) -> None:
        self.workdir = workdir
        self.tiktok = tiktok
        self.redis_port = free_port()
        self.redis: EmbeddedRedis = start_redis(
            workdir / "redis", port=self.redis_port, persist=False
        )
        self.settings = settings.with_overrides(
            redis_url=self.redis.url,
            sweep_interval_seconds=0.5,
            retry_base_seconds=0.2,
            lease_seconds=4,
        )
        self.web_port = free_port()
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[WorkerProcess] = []
        self.answers: dict[str, int] = {}
        self.sent = 0
        self.session = requests.Session()

    # -- processes ---------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return {**settings_environment(self.settings), "WEB_CONCURRENCY": "2"}

    def start_web(self) -> None:
        log = (self.workdir / "web.log").open("ab")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "web", "--port", str(self.web_port)],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self._wait_for_web()

    def stop_web(self) -> None:
        if self.web and self.web.poll() is None:
            self.web.terminate()
            self.web.wait(timeout=30)

    def start_worker(self) -> WorkerProcess:
        log = self.workdir / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.settings, log).start()
        self.workers.append(worker)
        return worker

    def restart_redis(self, *, flush: bool) -> None:
        """Flush (optionally) and stop Redis, then start an empty one on the same port."""
        if flush:
            self.redis_client().flushall()
        self.redis.stop()
        self.redis = start_redis(self.workdir / "redis-2", port=self.redis_port, persist=False)

    def redis_client(self):  # type: ignore[no-untyped-def]
        from redis import Redis

        return Redis.from_url(self.redis.url)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.stop_web()
        self.redis.stop()

    def _wait_for_web(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.session.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"web process did not start: {self.workdir / 'web.log'}")

    # -- traffic -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def send(self, order_ids: list[str]) -> dict[str, int]:
        """Send a signed orders/create webhook per id; returns each answer's status (0: none)."""
        answers = {}
        for order_id in order_ids:
            answers[order_id] = self._post(order_id)
        self.sent += len(order_ids)
        for order_id, status in answers.items():  # once accepted, always accepted
            if self.answers.get(order_id) != 200:
                self.answers[order_id] = status
        return answers

    def send_until_accepted(self, order_ids: list[str], timeout: float = 60.0) -> None:
        """What Shopify does: resend what was not answered 200 until it is."""
        pending = list(order_ids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            answers = self.send(pending)
            pending = [order_id for order_id, status in answers.items() if status != 200]
            if pending:
                time.sleep(0.2)
        assert not pending, f"{len(pending)} webhooks never accepted"

    def _post(self, order_id: str) -> int:
        body = order_body(order_id)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": SHOP_DOMAIN,
            "X-Shopify-Hmac-Sha256": sign(SHOPIFY_SECRET, body),
        }
        try:
            return self.session.post(
                self.url("/webhooks/shopify"), data=body, headers=headers, timeout=10
            ).status_code
        except requests.RequestException:
            return 0

    # -- counting ----------------------------------------------------------------------------

    def accepted_ids(self) -> set[str]:
        return {order_id for order_id, status in self.answers.items() if status == 200}

    def wait_delivered(self, timeout: float | None = None) -> None:
        """Until every accepted webhook's event reached the stand-in, or the timeout.

        The default grows with the size: under a storm of 40100s the connector obeys TikTok
        and slows down on purpose, so 2,000 events in batches of 4 take minutes, not seconds.
        Whatever has not arrived by then is counted as lost.
        """
        wanted = self.accepted_ids()
        deadline = time.monotonic() + (timeout or 60.0 + 0.1 * SIZE)
        while time.monotonic() < deadline:
            if wanted <= set(self.tiktok.accepted_event_ids()):
                return
            time.sleep(0.1)

    def counts(self, scenario: str) -> Counts:
        accepted = self.accepted_ids()
        received = self.tiktok.accepted_event_ids()
        delivered = accepted & set(received)
        return Counts(
            scenario=scenario,
            sent=self.sent,
            accepted=len(accepted),
            delivered=len(delivered),
            duplicates=len(received) - len(set(received)),
            lost=len(accepted - delivered),
        )


def order_ids(start: int, count: int) -> list[str]:
    """Distinct Shopify-sized (64-bit) order ids."""
    return [str(7_300_000_000_000_000_000 + start + i) for i in range(count)]


def order_body(order_id: str) -> bytes:
    """A real-shaped orders/create body for this id, placed just now."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return json.dumps(dict(TEMPLATE, id=int(order_id), processed_at=now, created_at=now)).encode()
