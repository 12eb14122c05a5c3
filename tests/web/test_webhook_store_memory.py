"""Webhooks verify with a remembered copy of the store, and never with a stale one.

Each web process remembers a store's id and encrypted secret after its first webhook
(``connector.web.intake.find_store``) and checks that copy against the row in the read that
records the events. These tests change the row the way another process would (a plain UPDATE,
nothing in this process told) and check that the next webhook is judged by the row: a secret
rotated away is refused at once, the new one accepted at once, and a destination or consent
policy changed applies to the very next order.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update

from connector.consent import ConsentPolicy
from connector.models import OutboxEvent, Store, StoreDestination
from connector.stores import set_consent_policy
from tests.platforms.woocommerce.helpers import order as woo_order
from tests.support import (
    SHOPIFY_SECRET,
    connect_meta,
    connect_tiktok,
    fixture_bytes,
    shopify_headers,
    woocommerce_headers,
)

pytestmark = pytest.mark.postgres

SHOPIFY = "/webhooks/shopify"
NEW_SECRET = "the-rotated-custom-app-secret"


def shopify_order(order_id: int) -> bytes:
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload["id"] = order_id
    return json.dumps(payload).encode()


def post_order(client, order_id: int, secret: str = SHOPIFY_SECRET):  # type: ignore[no-untyped-def]
    body = shopify_order(order_id)
    return client.post(SHOPIFY, data=body, headers=shopify_headers("orders/create", body, secret))


def rows(services) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        query = select(OutboxEvent.event_id, OutboxEvent.destination, OutboxEvent.status)
        return sorted(tuple(row) for row in session.execute(query.order_by(OutboxEvent.id)))


def change_store(services, store_id: str, **values) -> None:  # type: ignore[no-untyped-def]
    """What another process's write looks like to this one: only the row changes."""
    with services.db.session() as session:
        session.execute(update(Store).where(Store.id == store_id).values(**values))
        session.commit()


def remembered(services, store_id: str) -> bool:  # type: ignore[no-untyped-def]
    return any(store.id == store_id for store in services.webhook_stores.values())


def test_a_rotated_secret_is_refused_at_once_and_the_new_one_accepted(
    client, services, shopify_store
):
    assert post_order(client, 1001).status_code == 200
    assert remembered(services, shopify_store)
    change_store(
        services, shopify_store, webhook_secret_encrypted=services.cipher.encrypt(NEW_SECRET)
    )

    old = post_order(client, 1002)  # still what the remembered copy would accept
    assert old.status_code == 401, old.json
    new = post_order(client, 1003, secret=NEW_SECRET)
    assert new.status_code == 200 and new.json["events"] == 1, new.json
    assert post_order(client, 1004).status_code == 401  # and stays refused
    assert [event_id for event_id, _, _ in rows(services)] == ["1001", "1003"]


def test_a_secret_rotated_away_is_not_trusted_for_an_ignored_topic_either(
    client, services, shopify_store
):
    assert post_order(client, 1001).status_code == 200
    change_store(
        services, shopify_store, webhook_secret_encrypted=services.cipher.encrypt(NEW_SECRET)
    )
    body = fixture_bytes("shopify", "carts_create.json")
    answer = client.post(SHOPIFY, data=body, headers=shopify_headers("carts/create", body))
    assert answer.status_code == 401, answer.json
    signed = shopify_headers("carts/create", body, secret=NEW_SECRET)
    assert client.post(SHOPIFY, data=body, headers=signed).json["status"] == "ignored"


def test_a_store_that_left_its_domain_gets_no_more_of_its_webhooks(client, services, shopify_store):
    assert post_order(client, 1001).status_code == 200
    change_store(services, shopify_store, domain="another-name.myshopify.com")
    answer = post_order(client, 1002)
    assert answer.status_code == 404, answer.json
    assert [event_id for event_id, _, _ in rows(services)] == ["1001"]


def test_a_destination_added_or_removed_applies_to_the_next_order(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    assert post_order(client, 1001).json["events"] == 1
    connect_meta(services, shopify_store)
    assert post_order(client, 1002).json["events"] == 2
    with services.db.session() as session:
        session.execute(delete(StoreDestination).where(StoreDestination.kind == "tiktok"))
        session.commit()
    assert post_order(client, 1003).json["events"] == 1
    assert rows(services) == [
        ("1001", "tiktok", "pending"),
        ("1002", "meta", "pending"),
        ("1002", "tiktok", "pending"),
        ("1003", "meta", "pending"),
    ]


def test_repeated_webhooks_count_duplicates_per_destination(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    assert post_order(client, 1001).json["events"] == 1
    connect_meta(services, shopify_store)
    again = post_order(client, 1001)  # TikTok has it; Meta, connected since, gets it now
    assert (again.json["events"], again.json["duplicates"]) == (1, 1), again.json
    third = post_order(client, 1001)
    assert (third.json["events"], third.json["duplicates"]) == (0, 2), third.json


def test_a_consent_policy_changed_applies_to_the_next_order(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    assert post_order(client, 1001).json == {
        "status": "accepted",
        "events": 1,
        "duplicates": 0,
        "skipped": 0,
    }
    set_consent_policy(services, shopify_store, ConsentPolicy("respect", "hold"))
    held = post_order(client, 1002)  # the fixture order reports no consent
    assert held.json["skipped"] == 1, held.json
    statuses = {event_id: status for event_id, _, status in rows(services)}
    assert statuses == {"1001": "pending", "1002": "skipped"}


def test_woocommerce_secret_rotation_is_seen_at_once(client, services, woocommerce_store):
    store_id, secret = woocommerce_store
    url = f"/webhooks/woocommerce/{store_id}"

    def post(order_id: int, with_secret: str):  # type: ignore[no-untyped-def]
        body = json.dumps(woo_order("order_created__processing.json", id=order_id)).encode()
        headers = woocommerce_headers("order.created", body, with_secret)
        return client.post(url, data=body, headers=headers)

    assert post(501, secret).status_code == 200
    assert remembered(services, store_id)
    change_store(services, store_id, webhook_secret_encrypted=services.cipher.encrypt(NEW_SECRET))
    assert post(502, secret).status_code == 401
    assert post(503, NEW_SECRET).status_code == 200
    assert [event_id for event_id, _, _ in rows(services)] == ["501", "503"]


def test_a_deleted_store_is_not_found_even_when_remembered(client, services, woocommerce_store):
    store_id, secret = woocommerce_store
    url = f"/webhooks/woocommerce/{store_id}"
    body = json.dumps(woo_order("order_created__processing.json", id=601)).encode()
    headers = woocommerce_headers("order.created", body, secret)
    assert client.post(url, data=body, headers=headers).status_code == 200
    with services.db.session() as session:
        session.execute(delete(OutboxEvent))
        session.execute(delete(Store).where(Store.id == store_id))
        session.commit()
    body = json.dumps(woo_order("order_created__processing.json", id=602)).encode()
    answer = client.post(url, data=body, headers=woocommerce_headers("order.created", body, secret))
    assert answer.status_code == 404, answer.json
