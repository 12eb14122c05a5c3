"""POST /webhooks/shopify: what is accepted, refused, ignored, and what ends up in the outbox."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app import create_app
from connector.embedded_redis import free_port
from connector.hashing import sha256_hex
from connector.models import OutboxEvent
from tests.support import (
    connect_tiktok,
    fixture_bytes,
    shopify_headers,
    sign,
)

pytestmark = pytest.mark.postgres

URL = "/webhooks/shopify"


def events(services) -> list[OutboxEvent]:
    with services.db.session() as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def count(services) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count(OutboxEvent.id)))


def test_order_is_recorded_as_one_pending_purchase(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 200, answer.json
    assert answer.json == {"status": "accepted", "events": 1, "duplicates": 0, "skipped": 0}
    [event] = events(services)
    payload = json.loads(body)
    assert (event.event_name, event.event_id) == ("CompletePayment", str(payload["id"]))
    assert event.status == "pending"
    assert event.source_topic == "orders/create"
    assert event.click_source in ("note_attributes", "landing_site")


def test_outbox_holds_hashes_never_raw_email_or_phone(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    payload = json.loads(body)
    [event] = events(services)
    stored = json.dumps(event.payload)
    assert payload["email"] not in stored
    assert event.payload["user"]["email"] == sha256_hex(payload["email"].strip().lower())
    assert len(event.payload["user"]["phone"]) == 64


def test_repeated_delivery_adds_nothing(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    for _ in range(3):
        answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
        assert answer.status_code == 200
    assert answer.json["duplicates"] == 1 and answer.json["events"] == 0
    assert count(services) == 1


def test_checkout_create_and_update_make_one_initiate_checkout(client, services, shopify_store):
    for name, topic in (
        ("checkouts_create.json", "checkouts/create"),
        ("checkouts_update.json", "checkouts/update"),
    ):
        body = fixture_bytes("shopify", name)
        assert client.post(URL, data=body, headers=shopify_headers(topic, body)).status_code == 200
    [event] = events(services)
    token = json.loads(fixture_bytes("shopify", "checkouts_create.json"))["token"]
    assert (event.event_name, event.event_id) == ("InitiateCheckout", token)


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("orders_create__pos.json", "point of sale order"),
        ("orders_create__test.json", "test order"),
        ("orders_create__bot_user_agent.json", "bot user agent"),
    ],
)
def test_orders_we_never_send_are_recorded_as_skipped(
    client, services, shopify_store, fixture, reason
):
    body = fixture_bytes("shopify", fixture)
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 200
    assert answer.json["skipped"] == 1
    [event] = events(services)
    assert event.status == "skipped"
    assert event.last_error.startswith(reason)


def test_paid_trigger_ignores_orders_create_and_records_orders_paid(
    client, services, shopify_store
):
    connect_tiktok(services, shopify_store, order_trigger="paid")
    created = fixture_bytes("shopify", "orders_create.json")
    answer = client.post(URL, data=created, headers=shopify_headers("orders/create", created))
    assert answer.status_code == 200 and answer.json["events"] == 0
    paid = fixture_bytes("shopify", "orders_paid.json")
    answer = client.post(URL, data=paid, headers=shopify_headers("orders/paid", paid))
    assert answer.json["events"] == 1
    [event] = events(services)
    assert event.source_topic == "orders/paid"


@pytest.mark.parametrize("topic", ["carts/create", "products/update"])
def test_topics_we_do_not_use_get_200_and_store_nothing(client, services, shopify_store, topic):
    body = fixture_bytes("shopify", "carts_create.json")
    answer = client.post(URL, data=body, headers=shopify_headers(topic, body))
    assert answer.status_code == 200
    assert answer.json["status"] == "ignored"
    assert count(services) == 0


def test_forged_signature_is_refused_and_stores_nothing(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers("orders/create", body, secret="not-the-secret")
    answer = client.post(URL, data=body, headers=headers)
    assert answer.status_code == 401
    assert "signature" in answer.json["error"]
    assert count(services) == 0


def test_tampered_body_is_refused(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers("orders/create", body)
    tampered = body.replace(b'"total_price"', b'"total_price" ', 1)
    assert client.post(URL, data=tampered, headers=headers).status_code == 401
    assert count(services) == 0


def test_missing_signature_is_refused(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers("orders/create", body)
    del headers["X-Shopify-Hmac-Sha256"]
    assert client.post(URL, data=body, headers=headers).status_code == 401
    assert count(services) == 0


def test_unknown_shop_is_404(client, services, shopify_store):
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers("orders/create", body)
    headers["X-Shopify-Shop-Domain"] = "someone-else.myshopify.com"
    answer = client.post(URL, data=body, headers=headers)
    assert answer.status_code == 404
    assert "connector stores add-shopify" in answer.json["error"]


def test_malformed_json_is_400(client, services, shopify_store):
    body = b'{"id": 1, "total_price": '
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 400
    assert answer.json["error"] == "body is not valid JSON"
    assert count(services) == 0


def test_order_without_currency_is_kept_with_the_reason(client, services, shopify_store):
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    for key in ("currency", "presentment_currency", "total_price_set"):
        payload.pop(key, None)
    body = json.dumps(payload).encode()
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 200
    assert answer.json["status"] == "kept"
    assert "currency" in answer.json["reason"]
    assert count(services) == 0


def test_body_over_one_mebibyte_is_413(client, services, shopify_store):
    body = b'{"padding": "' + b"x" * (1024 * 1024) + b'"}'
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 413
    assert "limit" in answer.json["error"]
    assert count(services) == 0


def test_app_secret_also_verifies_when_configured(app, services, shopify_store):
    app.extensions["connector"].settings = services.settings.with_overrides(
        shopify_api_secret="the-app-secret"
    )
    body = fixture_bytes("shopify", "orders_create.json")
    headers = shopify_headers("orders/create", body)
    headers["X-Shopify-Hmac-Sha256"] = sign("the-app-secret", body)
    answer = app.test_client().post(URL, data=body, headers=headers)
    assert answer.status_code == 200


def test_database_down_answers_503_so_shopify_retries(services):
    unreachable = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone"
    settings = services.settings.with_overrides(database_url=unreachable)
    client = create_app(settings).test_client()
    body = fixture_bytes("shopify", "orders_create.json")
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 503
    assert answer.json == {"error": "the event could not be stored; please retry"}


def test_redis_down_still_stores_and_answers_200(services, shopify_store):
    connect_tiktok(services, shopify_store)
    settings = services.settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(settings).test_client()
    body = fixture_bytes("shopify", "orders_create.json")
    answer = client.post(URL, data=body, headers=shopify_headers("orders/create", body))
    assert answer.status_code == 200
    assert answer.json["events"] == 1
    [event] = events(services)
    assert event.status == "pending"  # the sweep sends it once Redis is back
