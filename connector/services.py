"""The long-lived parts one process shares: settings, database, cipher, Redis, destinations.

Built once per process (the web app's factory, the worker, a command) and passed down, so no
module fills globals at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue

from connector.config import Settings
from connector.crypto import TokenCipher
from connector.db import Database
from connector.destinations import Destination, load_destinations
from connector.metrics import Metrics


@dataclass
class Services:
    """One process's shared resources; Redis is connected on first use."""

    settings: Settings
    db: Database
    cipher: TokenCipher
    destinations: dict[str, Destination]
    # One HTTP session per process, so deliveries reuse kept-alive connections to the API.
    http: requests.Session = field(default_factory=requests.Session, repr=False)
    metrics: Metrics = field(default_factory=Metrics, repr=False)
    # Stores as webhooks last found them, by (platform, domain) or ("", id): a remembered copy
    # is trusted only as far as connector.web.intake says (its secret is checked again in the
    # statement that records the events).
    webhook_stores: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _redis: Redis | None = field(default=None, repr=False)

    @property
    def redis(self) -> Redis:
        """The queue's Redis; short timeouts so a Redis outage cannot stall a webhook."""
        if self._redis is None:
            self._redis = connect_redis(self.settings.redis_url)
        return self._redis

    @property
    def queue(self) -> Queue:
        """The RQ queue delivery jobs go to."""
        return Queue(self.settings.queue_name, connection=self.redis)


def build_services(settings: Settings) -> Services:
    """Everything a process needs, from its settings."""
    return Services(
        settings=settings,
        db=Database(settings.database_url),
        cipher=TokenCipher(
            settings.token_encryption_key, settings.secret_key, settings.secret_key_fallbacks
        ),
        destinations=load_destinations(),
    )


def connect_redis(url: str | None, *, socket_timeout: float | None = 5.0) -> Redis:
    """A client for ``url``; Heroku's ``rediss://`` URLs carry a self-signed certificate.

    ``socket_timeout`` bounds the wait for each reply, so a Redis outage cannot stall a webhook
    or the periodic work; None leaves it to a caller whose commands block on purpose (the
    worker's dequeue, :func:`connector.worker.delivery_worker`).
    """
    if not url:
        # A connection error, so callers treat it like any Redis outage (events stay stored).
        raise RedisConnectionError("REDIS_URL is not set: `connector run` starts an embedded Redis")
    options: dict[str, object] = {"socket_connect_timeout": 2, "socket_timeout": socket_timeout}
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = None
    return Redis.from_url(url, **options)
