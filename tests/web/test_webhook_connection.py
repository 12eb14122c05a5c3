"""The webhook's kept connection: autocommit, reused, and replaced when the database dropped it.

A webhook keeps its thread's connection from one request to the next
(``connector.web.intake.webhook_connection``) instead of checking one out of the pool, which
would cost a ``SELECT 1`` round trip each time. A kept connection the database has closed (a
restart, a failover, an idle timeout) must cost no webhook: the first statement fails, and
the webhook is handled again on a new connection.
"""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select, text

from connector.models import OutboxEvent
from connector.web.intake import _HELD
from tests.support import fixture_bytes, shopify_headers

pytestmark = pytest.mark.postgres

URL = "/webhooks/shopify"


def post_order(client, order_id: int):  # type: ignore[no-untyped-def]
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload["id"] = order_id
    body = json.dumps(payload).encode()
    return client.post(URL, data=body, headers=shopify_headers("orders/create", body))


def kept_connections(services) -> list:  # type: ignore[no-untyped-def]
    return [connection for engine, connection in _HELD.values() if engine is services.db.engine]


def in_autocommit(connection) -> bool:  # type: ignore[no-untyped-def]
    """What the driver itself says: psycopg's ``autocommit``, sqlite3's ``isolation_level``."""
    driver = connection.connection.dbapi_connection
    if hasattr(driver, "total_changes"):  # sqlite3
        return driver.isolation_level is None
    return driver.autocommit is True


def stored(services) -> int:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalar(select(func.count(OutboxEvent.id)))


def test_webhooks_reuse_one_connection_in_autocommit(client, services, shopify_store):
    assert post_order(client, 1).status_code == 200
    [kept] = kept_connections(services)
    assert in_autocommit(kept)
    assert post_order(client, 2).status_code == 200
    assert kept_connections(services) == [kept]
    assert stored(services) == 2


def test_a_connection_the_database_closed_costs_no_webhook(
    client, services, shopify_store, backend
):
    if backend != "postgresql":
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): a server that can end a session")
    assert post_order(client, 1).status_code == 200
    [kept] = kept_connections(services)
    backend_pid = kept.execute(text("SELECT pg_backend_pid()")).scalar()
    with services.db.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend_pid})
        admin.commit()
    answer = post_order(client, 2)
    assert answer.status_code == 200, answer.json
    assert answer.json["events"] == 1
    assert kept_connections(services) != [kept]
    assert stored(services) == 2


def test_disposing_the_engine_closes_the_kept_connection(client, services, shopify_store):
    assert post_order(client, 1).status_code == 200
    [kept] = kept_connections(services)
    services.db.dispose()
    assert kept.closed
    assert kept_connections(services) == []
    assert post_order(client, 2).status_code == 200


def test_threads_that_ended_give_their_connections_back(client, services, shopify_store):
    """A server with a thread per request (``flask run``, the tests' live server) must not
    keep one connection per finished thread: the pool would run dry after about ten."""
    pool_limit = services.db.engine.pool.size() + services.db.engine.pool._max_overflow
    answers = []
    for order_id in range(pool_limit + 5):
        thread = threading.Thread(target=lambda n=order_id: answers.append(post_order(client, n)))
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "a webhook waited for a connection the pool no longer had"
    assert [answer.status_code for answer in answers] == [200] * (pool_limit + 5)
    assert len(kept_connections(services)) == 1
    assert stored(services) == pool_limit + 5
