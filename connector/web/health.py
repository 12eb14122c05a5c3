"""Is it working? ``GET /`` for people, ``GET /healthz`` and ``GET /metrics`` for machines."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from connector.models import utcnow
from connector.queue import waiting
from connector.web import services

blueprint = Blueprint("health", __name__)


@blueprint.get("/")
def index() -> str:
    """What the connector is, for whoever opens its address in a browser: anyone can, so it
    shows no numbers (how many stores or orders a business has is its own affair). Operators
    read ``/healthz`` and ``/metrics``, merchants their own store's pages."""
    return render_template("index.html")


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Database and Redis reachability, queue depth, age of the oldest pending event.

    503 when the database is unreachable (webhooks cannot be stored). A Redis outage is
    reported but answered 200 with ``degraded``: events are still stored and the sweep sends
    them when Redis returns.
    """
    report: dict[str, object] = {}
    database_ok = _check_database(report)
    _check_redis(report)
    report["status"] = (
        "ok"
        if database_ok and report.get("redis") == "ok"
        else "degraded"
        if database_ok
        else "down"
    )
    return jsonify(report), 200 if database_ok else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus text format (see connector.metrics)."""
    body = services().metrics.exposition(services())
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")


def _check_database(report: dict[str, object]) -> bool:
    try:
        with services().db.session() as session:
            session.execute(text("SELECT 1"))
            _, oldest = session.execute(waiting()).one()
    except SQLAlchemyError as exc:
        report["database"] = f"error: {type(exc).__name__}"
        return False
    report["database"] = "ok"
    report["oldest_pending_seconds"] = (
        round((utcnow() - oldest).total_seconds(), 1) if oldest else None
    )
    return True


def _check_redis(report: dict[str, object]) -> None:
    try:
        services().redis.ping()
        report["queue_depth"] = services().queue.count
        report["redis"] = "ok"
    except RedisError as exc:
        report["redis"] = f"error: {type(exc).__name__}"
