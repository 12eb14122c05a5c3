"""The whole path, with real parts: signed webhooks over HTTP, the app, a real Redis, a real
``connector worker`` process, and the strict TikTok stand-in. Each test asserts exactly what
reached "TikTok".
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime

import pytest
from redis import Redis
from sqlalchemy import select

from connector.hashing import sha256_hex
from connector.models import OutboxEvent
from tests.support import (
    TIKTOK_TOKEN,
    connect_tiktok,
    fixture_bytes,
    fresh,
    post,
    shopify_headers,
    topic_of,
    wait_until,
    woocommerce_headers,
)

pytestmark = pytest.mark.postgres

SHOPIFY_SENT = [
    "orders_create.json",
    "orders_create__guest_checkout.json",
    "orders_create__no_phone.json",
    "orders_create__national_phone.json",
    "orders_create__multi_currency.json",
    "orders_create__non_ascii_names.json",
    "checkouts_create.json",
    "checkouts_update.json",
]
SHOPIFY_NOT_SENT = [
    "orders_create__pos.json",
    "orders_create__test.json",
    "orders_create__bot_user_agent.json",
    "carts_create.json",
    "app_uninstalled.json",
]


def send_shopify(base_url: str, name: str) -> bytes:
    body = fresh(fixture_bytes("shopify", name))
    answer = post(f"{base_url}/webhooks/shopify", body, shopify_headers(topic_of(name, "/"), body))
    assert answer.status_code == 200, answer.text
    return body


def send_woocommerce(base_url: str, store: tuple[str, str], name: str) -> bytes:
    store_id, secret = store
    body = fresh(fixture_bytes("woocommerce", name))
    headers = woocommerce_headers(topic_of(name, "."), body, secret)
    answer = post(f"{base_url}/webhooks/woocommerce/{store_id}", body, headers)
    assert answer.status_code == 200, answer.text
    return body


def by_id(events: list[dict]) -> dict[str, dict]:
    return {event["event_id"]: event for event in events}


@pytest.fixture
def shop(services, shopify_store, tiktok, live_server, worker):
    connect_tiktok(services, shopify_store)
    return live_server


def test_an_order_reaches_tiktok_with_every_signal(shop, tiktok):
    body = send_shopify(shop, "orders_create.json")
    [event] = tiktok.wait_for_events(1)
    order = json.loads(body)
    placed = datetime.fromisoformat(order["processed_at"])
    assert event["event"] == "CompletePayment"
    assert event["event_id"] == "820982911946154508"
    assert event["event_time"] == int(placed.timestamp())
    assert event["user"] == {
        "email": sha256_hex("jon@example.com"),
        "phone": sha256_hex("+16135550142"),
        "external_id": sha256_hex(str(order["customer"]["id"])),
        "first_name": sha256_hex("jon"),
        "last_name": sha256_hex("snowe"),
        "zip_code": sha256_hex("40202"),
        "city": "louisville",
        "state": "ky",
        "country": "us",
        "ttclid": "E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW",
        "ttp": "2gKx7TqW4mZr9LbVn3PcY8sHdJf",
        "ip": "203.0.113.42",
        "user_agent": order["client_details"]["user_agent"],
        "locale": "en-US",
    }
    properties = event["properties"]
    assert (properties["currency"], properties["value"]) == ("USD", 388.0)
    assert properties["order_id"] == "820982911946154508"
    assert properties["content_type"] == "product"
    assert [(c["content_id"], c["price"], c["quantity"]) for c in properties["contents"]] == [
        ("808950810", 199.0, 1),
        ("9007199254740995", 199.0, 1),
    ]
    assert event["page"] == {
        "url": "https://toys-example.myshopify.com/",
        "referrer": "https://www.tiktok.com/",
    }
    assert tiktok.batches[0].headers["Access-Token"] == TIKTOK_TOKEN


def test_every_shopify_topic_reaches_tiktok_exactly_once(shop, tiktok, services):
    for name in SHOPIFY_SENT + SHOPIFY_NOT_SENT:
        send_shopify(shop, name)
    events = by_id(tiktok.wait_for_events(7))
    time.sleep(1.0)  # anything extra would arrive now
    ids = tiktok.accepted_event_ids()
    assert len(ids) == 7 == len(set(ids)), Counter(ids)
    assert events["820982911946154601"]["user"].get("external_id") is None  # guest
    assert "phone" not in events["820982911946154602"]["user"]
    assert events["820982911946154603"]["user"]["phone"] == sha256_hex("+442079460958")
    euro = events["820982911946154604"]["properties"]
    assert euro["currency"] == "EUR" and euro["value"] != 388.0
    assert events["820982911946154605"]["properties"]["currency"] == "BRL"
    checkout = events["b1946ac92492d2347c6235b4d2611184"]
    assert checkout["event"] == "InitiateCheckout"
    with services.db.session() as session:
        skipped = session.scalars(
            select(OutboxEvent.event_id).where(OutboxEvent.status == "skipped")
        ).all()
    assert sorted(skipped) == ["820982911946154606", "820982911946154607", "820982911946154608"]


def test_replayed_webhooks_add_nothing(shop, tiktok):
    for _ in range(3):
        for name in ("orders_create.json", "checkouts_create.json", "orders_paid.json"):
            send_shopify(shop, name)
    tiktok.wait_for_events(2)
    time.sleep(1.0)
    assert sorted(tiktok.accepted_event_ids()) == [
        "820982911946154508",
        "b1946ac92492d2347c6235b4d2611184",
    ]


def test_forged_webhook_reaches_nobody(shop, tiktok, services):
    body = fresh(fixture_bytes("shopify", "orders_create.json"))
    headers = shopify_headers("orders/create", body, secret="forged")
    assert post(f"{shop}/webhooks/shopify", body, headers).status_code == 401
    time.sleep(0.8)
    assert tiktok.batches == []
    with services.db.session() as session:
        assert session.scalars(select(OutboxEvent)).all() == []


def test_rate_limit_storm_and_server_errors_still_deliver_everything(shop, tiktok):
    tiktok.set_random_faults(rate_limit=0.34, http_500=0.1, seed=7)
    for name in SHOPIFY_SENT:
        send_shopify(shop, name)
    tiktok.wait_for_events(7, timeout=30)
    faults = [b.answer.get("code") for b in tiktok.batches if b.answer.get("code")]
    assert faults, "the storm must really have happened"
    assert len(set(tiktok.accepted_event_ids())) == 7


def test_tiktok_down_then_back_loses_nothing(shop, tiktok):
    tiktok.go_down()
    try:
        for name in SHOPIFY_SENT[:4]:
            send_shopify(shop, name)
        time.sleep(1.5)
    finally:
        tiktok.come_up()
    tiktok.wait_for_events(4, timeout=30)
    assert len(set(tiktok.accepted_event_ids())) == 4


def test_flushed_redis_loses_nothing(services, shopify_store, tiktok, live_server, settings):
    """Events stored while no worker runs, then Redis loses every job: the sweep recovers."""
    connect_tiktok(services, shopify_store)
    for name in SHOPIFY_SENT[:3]:
        send_shopify(live_server, name)
    Redis.from_url(settings.redis_url).flushall()
    from tests.support import WorkerProcess

    worker = WorkerProcess(settings, settings.instance_path.parent / "late-worker.log").start()
    try:
        tiktok.wait_for_events(3, timeout=30)
    finally:
        worker.stop()
    assert len(set(tiktok.accepted_event_ids())) == 3


def test_worker_killed_mid_batch_loses_nothing(
    services, shopify_store, tiktok, live_server, worker
):
    connect_tiktok(services, shopify_store)
    tiktok.delay_seconds = 3.0
    for name in SHOPIFY_SENT[:3]:
        send_shopify(live_server, name)
    time.sleep(1.0)  # the worker's request is now in flight: the stand-in sleeps 3 s on it
    worker.kill()
    tiktok.delay_seconds = 0
    worker.start()
    tiktok.wait_for_events(3, timeout=30)
    delivered = wait_until(lambda: all_delivered(services, 3), timeout=30)
    assert delivered
    ids = tiktok.accepted_event_ids()
    assert set(ids) == {"820982911946154508", "820982911946154601", "820982911946154602"}
    # At-least-once: the killed batch may also have been accepted; never more than twice.
    assert max(Counter(ids).values()) <= 2


def all_delivered(services, n: int) -> bool:
    with services.db.session() as session:
        statuses = session.scalars(select(OutboxEvent.status)).all()
    return len(statuses) == n and set(statuses) == {"delivered"}


def test_woocommerce_paid_order_is_sent_once(
    services, woocommerce_store, tiktok, live_server, worker
):
    connect_tiktok(services, woocommerce_store[0])
    for name in (
        "order_created__pending.json",
        "order_updated__on_hold.json",
        "order_updated__cancelled.json",
        "order_created__processing.json",
        "order_updated__completed.json",
        "order_created__guest_with_ttclid_meta.json",
    ):
        send_woocommerce(live_server, woocommerce_store, name)
    events = by_id(tiktok.wait_for_events(2))
    time.sleep(1.0)
    assert sorted(tiktok.accepted_event_ids()) == ["1187", "1191"]
    assert events["1187"]["event"] == "CompletePayment"
    assert events["1187"]["user"]["ttclid"] == "E.C.P.CvgBwoo9Qx3Lm7Np2Rs5Tv8Xz1Bd4Fh6Jk0"
    assert events["1187"]["user"]["phone"] == sha256_hex("+14155550123")
    guest = events["1191"]
    assert guest["user"]["ttclid"] == "E.C.P.CsUBguestMeta5Hj8Kl2Mn6Pq9Rs3Tu7Vw0"
    assert guest["user"]["ttp"] == "2hVd8PkN3sQw6ZtRb1LmY4xGcFj"
    assert "external_id" not in guest["user"]
    assert guest["properties"]["currency"] == "EUR"


def test_woocommerce_ping_is_answered_200(woocommerce_store, live_server, services):
    body = fixture_bytes("woocommerce", "ping.txt")
    answer = post(
        f"{live_server}/webhooks/woocommerce/{woocommerce_store[0]}",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    with services.db.session() as session:
        assert session.scalars(select(OutboxEvent)).all() == []
