"""GET /healthz: what an operator or a load balancer reads."""

from __future__ import annotations

from app import create_app
from connector.embedded_redis import free_port
from connector.pipeline import record_events
from tests.support import connect_tiktok, make_order


def test_healthy(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "queue_depth": 0,
        "oldest_pending_seconds": None,
    }


def test_reports_queue_depth_and_oldest_pending_event(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order("1"))
    answer = client.get("/healthz").json
    assert answer["queue_depth"] == 1  # no worker runs in this test
    assert 0 <= answer["oldest_pending_seconds"] < 60


def test_redis_down_is_degraded_but_200(services):
    settings = services.settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    answer = create_app(settings).test_client().get("/healthz")
    assert answer.status_code == 200
    assert answer.json["status"] == "degraded"
    assert answer.json["redis"].startswith("error")


def test_database_down_is_503(services):
    unreachable = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone"
    answer = create_app(services.settings.with_overrides(database_url=unreachable))
    answer = answer.test_client().get("/healthz")
    assert answer.status_code == 503
    assert answer.json["status"] == "down"
