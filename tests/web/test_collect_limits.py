"""POST /collect's limits: per store as well as per IP, never off when Redis is down, a cap on a
store's live click records, and JSON nesting refused before parsing. Real HTTP through the
Flask test client, a real database, a real (or really unreachable) Redis."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update

from app import create_app
from connector.embedded_redis import free_port
from connector.models import ClickRecord, utcnow
from connector.rate_limits import LocalBuckets
from connector.stores import add_store
from connector.web.collect import (
    MAX_BODY_BYTES,
    MAX_LIVE_RECORDS_PER_STORE,
    RATE_LIMIT_PER_MINUTE,
    STORE_REPORTS_PER_MINUTE,
)
from tests.support import in_one_clock_minute

pytestmark = pytest.mark.postgres

SHOP = "limits-demo.myshopify.com"
OTHER_SHOP = "other-demo.myshopify.com"


@pytest.fixture
def stores(services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Two custom-app Shopify stores, domain -> id."""
    return {
        shop: add_store(services, platform="shopify", domain=shop, webhook_secret="s").id
        for shop in (SHOP, OTHER_SHOP)
    }


def report(client, shop: str = SHOP, *, token: str = "cart-1", ip: str = "198.51.100.1", data=None):  # type: ignore[no-untyped-def]
    body = {"shop": shop, "cart_token": token, "ttclid": "E.C.P.x"}
    return client.post(
        "/collect",
        data=data if data is not None else json.dumps(body),
        headers={"Origin": f"https://{shop}", "Content-Type": "text/plain"},
        environ_base={"REMOTE_ADDR": ip},
    )


def live_records(services, store_id: str) -> int:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        query = select(func.count()).where(
            ClickRecord.store_id == store_id, ClickRecord.expires_at > utcnow()
        )
        return session.scalar(query)


# -- per store ---------------------------------------------------------------------------------


def test_a_store_takes_a_limited_number_of_reports_a_minute_from_all_addresses(
    client, services, stores
):
    ips = [f"203.0.113.{n}" for n in range(1, 1 + STORE_REPORTS_PER_MINUTE // 100)]

    def burst():  # type: ignore[no-untyped-def]
        answers = [report(client, ip=ip) for ip in ips for _ in range(100)]
        return answers, report(client, ip="203.0.113.200")  # a fresh address, the same store

    answers, refused = in_one_clock_minute(services.redis, burst)
    assert [answer.status_code for answer in answers] == [204] * STORE_REPORTS_PER_MINUTE
    assert refused.status_code == 429 and "for this store" in refused.json["error"]
    assert report(client, OTHER_SHOP, ip="203.0.113.200").status_code == 204


def add_live_records(services, store_id: str, count: int) -> None:  # type: ignore[no-untyped-def]
    """``count`` unexpired records, as that many earlier reports would have left."""
    expires_at = utcnow() + timedelta(days=7)
    rows = [
        {"store_id": store_id, "token_kind": "cart", "token": f"t{n}", "ttclid": "E.C.P.old"}
        | {"created_at": utcnow(), "expires_at": expires_at}
        for n in range(count)
    ]
    with services.db.engine.begin() as connection:
        connection.execute(insert(ClickRecord), rows)


def test_a_full_store_refuses_new_records_and_evicts_none(client, services, stores):
    store_id = stores[SHOP]
    add_live_records(services, store_id, MAX_LIVE_RECORDS_PER_STORE - 1)
    both = json.dumps(
        {"shop": SHOP, "cart_token": "new-cart", "checkout_token": "new-co", "ttclid": "E.C.P.n"}
    )
    refused = report(client, data=both)  # two new records would pass the cap: neither stored
    assert refused.status_code == 429
    assert f"{MAX_LIVE_RECORDS_PER_STORE} unexpired click records" in refused.json["error"]
    assert live_records(services, store_id) == MAX_LIVE_RECORDS_PER_STORE - 1
    assert report(client, token="last-one").status_code == 204
    assert report(client, token="one-too-many").status_code == 429
    assert live_records(services, store_id) == MAX_LIVE_RECORDS_PER_STORE  # none evicted
    assert report(client, token="last-one").status_code == 204  # a repeat creates nothing
    assert report(client, OTHER_SHOP, token="one-too-many").status_code == 204
    with services.db.session() as session:  # records expire: room again
        session.execute(
            update(ClickRecord)
            .where(ClickRecord.token == "t0")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    assert report(client, token="one-too-many").status_code == 204


# -- Redis down: the limits still hold, counted in the process ------------------------------


@pytest.fixture
def without_redis(services):  # type: ignore[no-untyped-def]
    """The app with Redis pointed at a port nothing listens on."""
    settings = services.settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    return create_app(settings).test_client()


def test_with_redis_down_one_address_is_still_limited(without_redis, stores, caplog):
    started = time.monotonic()
    answers = [report(without_redis, ip="203.0.113.9").status_code for _ in range(150)]
    refilled = (time.monotonic() - started) * RATE_LIMIT_PER_MINUTE / 60
    assert answers[:RATE_LIMIT_PER_MINUTE] == [204] * RATE_LIMIT_PER_MINUTE
    assert 429 in answers and answers.count(204) <= RATE_LIMIT_PER_MINUTE + refilled + 1
    assert report(without_redis, ip="203.0.113.10").status_code == 204
    assert "rate-limit.local limit=collect:rate reason=redis-unavailable" in caplog.text


def test_with_redis_down_one_store_is_still_limited(without_redis, stores):
    started = time.monotonic()
    ips = [f"203.0.113.{n}" for n in range(1, 9)]
    answers = [report(without_redis, ip=ip).status_code for ip in ips for _ in range(100)]
    refilled = (time.monotonic() - started) * STORE_REPORTS_PER_MINUTE / 60
    assert answers[:STORE_REPORTS_PER_MINUTE] == [204] * STORE_REPORTS_PER_MINUTE
    assert 429 in answers and answers.count(204) <= STORE_REPORTS_PER_MINUTE + refilled + 1
    assert report(without_redis, OTHER_SHOP, ip="203.0.113.50").status_code == 204


def test_local_buckets_refill_over_the_minute_and_stay_bounded():
    now = [0.0]
    buckets = LocalBuckets(60, max_keys=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(61)] == [True] * 60 + [False]
    now[0] += 1.0  # one token a second
    assert [buckets.take("a"), buckets.take("a")] == [True, False]
    for key in ("b", "c", "d"):
        buckets.take(key)
    assert len(buckets) == 3  # "a", least recently used, was dropped


# -- JSON nesting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * MAX_BODY_BYTES,
        b'{"shop":' + b"[" * 2000 + b"]" * 2000 + b"}",
        # Valid JSON, ~4 KB, that Python's parser does follow (800 levels):
        b'{"":' * 800 + b"1" + b"}" * 800,
        json.dumps({"shop": SHOP, "cart_token": "c", "ttclid": {"a": {"b": "E.C.P.x"}}}).encode(),
    ],
)
def test_nested_json_is_400_and_never_reaches_the_parser(client, services, stores, body):
    assert len(body) <= MAX_BODY_BYTES
    answer = report(client, data=body)
    assert answer.status_code == 400 and "nested" in answer.json["error"]
    assert live_records(services, stores[SHOP]) == 0
