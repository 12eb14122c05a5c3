"""Prometheus metrics: what happens to webhooks and deliveries, and where the outbox stands.

Counters and histograms are per process. Under gunicorn (several processes) and with
``connector run`` (web and worker side by side) they are shared through prometheus-client's
multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` names a folder the processes write to and
``/metrics`` reads. The outbox figures (events by status, oldest pending, queue depth) are
read from the database and Redis at scrape time, so they are right whichever process answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from connector.models import OutboxEvent, utcnow
from connector.queue import waiting

if TYPE_CHECKING:
    from connector.services import Services

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000)


class Metrics:
    """One process's metric objects, in a registry of its own (tests build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "connector_webhooks",
            "Webhooks received, by platform, topic and result.",
            ["platform", "topic", "result"],
            registry=self.registry,
        )
        self.webhook_seconds = Histogram(
            "connector_webhook_seconds",
            "Time to answer a webhook.",
            ["platform"],
            registry=self.registry,
        )
        self.requests = Counter(
            "connector_delivery_requests",
            "Requests to ad platforms, by destination, outcome and the platform's result code.",
            ["destination", "outcome", "code"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "connector_delivery_batch_size",
            "Events per request to an ad platform.",
            ["destination"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "connector_delivery_latency_seconds",
            "From storing an event to the ad platform accepting it.",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "connector_delivery_retries",
            "Events put back for a later retry.",
            ["destination"],
            registry=self.registry,
        )

    def exposition(self, services: Services) -> bytes:
        """The text format for ``/metrics``: this process's (or all processes') metrics,
        plus the outbox as it stands."""
        registry = CollectorRegistry()
        directory = os.environ.get(MULTIPROCESS_ENV)
        if directory:
            MultiProcessCollector(registry, path=directory)
        else:
            registry.register(_RegistryCollector(self.registry))
        registry.register(OutboxCollector(services))
        return generate_latest(registry)


class _RegistryCollector(Collector):
    """Re-exports another registry's metrics (the single-process case)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator:  # type: ignore[type-arg]
        yield from self.registry.collect()


class OutboxCollector(Collector):
    """Gauges read at scrape time: events by status, oldest pending event, queue depth."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        events = GaugeMetricFamily(
            "connector_events",
            "Outbox events by destination and status.",
            labels=["destination", "status"],
        )
        oldest = GaugeMetricFamily(
            "connector_oldest_pending_seconds", "Age of the oldest pending event."
        )
        try:
            with self.services.db.session() as session:
                rows = session.execute(
                    select(OutboxEvent.destination, OutboxEvent.status, func.count()).group_by(
                        OutboxEvent.destination, OutboxEvent.status
                    )
                )
                for destination, status, count in rows:
                    events.add_metric([destination, status], count)
                _, first = session.execute(waiting()).one()
        except SQLAlchemyError:
            return
        oldest.add_metric([], (utcnow() - first).total_seconds() if first else 0.0)
        yield events
        yield oldest
        try:
            depth = self.services.queue.count
        except RedisError:
            return
        queue = GaugeMetricFamily("connector_queue_depth", "Delivery jobs waiting in Redis.")
        queue.add_metric([], depth)
        yield queue
