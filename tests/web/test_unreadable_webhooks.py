"""A signed webhook is never refused for its content: what cannot be read is kept, shown,
purged after its own retention, and read again by ``events reprocess``.

Bodies here stay unreadable whatever the parsers learn to tolerate: no order id, JSON nested
beyond what a parser follows, an array instead of an object. The "fix deployed later" case is
a body an older version kept that today's code reads: the record is written as that version
wrote it (through :func:`keep_unreadable`), then reprocessed.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from connector.crypto import TokenCipher
from connector.models import OutboxEvent, Store, UnreadableWebhook
from connector.retention import purge_expired
from connector.unreadable import KeptWebhook, keep_unreadable, reprocess
from tests.support import (
    connect_tiktok,
    csrf_of,
    fixture_bytes,
    fresh,
    invoke_connector,
    log_in,
    shopify_headers,
    woocommerce_headers,
)

pytestmark = pytest.mark.postgres

SHOPIFY = "/webhooks/shopify"
SHOPPER_EMAIL = "kept.shopper.7731@example.com"


def shopify_order(**changes: object) -> dict:
    payload = json.loads(fresh(fixture_bytes("shopify", "orders_create.json")))
    payload.update(changes)
    return payload


def kept(services) -> list[UnreadableWebhook]:
    with services.db.session() as session:
        return list(session.scalars(select(UnreadableWebhook).order_by(UnreadableWebhook.id)))


def event_count(services) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count(OutboxEvent.id)))


def post_shopify(client, body: bytes, topic: str = "orders/create"):  # type: ignore[no-untyped-def]
    return client.post(SHOPIFY, data=body, headers=shopify_headers(topic, body))


def test_an_order_without_an_id_is_kept_not_refused(client, services, shopify_store, caplog):
    payload = shopify_order(email=SHOPPER_EMAIL)
    del payload["id"]
    body = json.dumps(payload).encode()
    with caplog.at_level(logging.INFO):
        answer = post_shopify(client, body)
    assert answer.status_code == 200
    assert answer.json["status"] == "kept"
    [record] = kept(services)
    assert (record.store_id, record.platform, record.topic) == (
        shopify_store,
        "shopify",
        "orders/create",
    )
    assert "id" in record.reason and record.resource_id is None
    assert services.cipher.decrypt(record.body_encrypted).encode() == body
    assert event_count(services) == 0
    [line] = [r.getMessage() for r in caplog.records if "webhook.unreadable" in r.getMessage()]
    assert f"store={shopify_store}" in line and "topic=orders/create" in line
    assert SHOPPER_EMAIL not in caplog.text


def test_the_same_body_resent_keeps_one_copy(client, services, shopify_store):
    payload = shopify_order(currency=None, presentment_currency=None, total_price_set=None)
    body = json.dumps(payload).encode()
    for _ in range(3):  # Shopify retries a webhook it thinks failed
        assert post_shopify(client, body).json["status"] == "kept"
    [record] = kept(services)
    assert record.resource_id == str(payload["id"])
    assert "currency" in record.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b'[{"id": 1}]', "is an array, not an object"),
    ],
    ids=["deeply-nested", "array"],
)
def test_json_no_parser_can_follow_is_kept(client, services, shopify_store, body, reason):
    answer = post_shopify(client, body)
    assert answer.status_code == 200, answer.json
    [record] = kept(services)
    assert reason in record.reason


def test_malformed_json_is_still_400_and_forged_still_401(client, services, shopify_store):
    assert post_shopify(client, b'{"id": 1,').status_code == 400
    body = json.dumps(shopify_order()).encode()
    headers = shopify_headers("orders/create", body, secret="not-the-secret")
    assert client.post(SHOPIFY, data=body, headers=headers).status_code == 401
    assert kept(services) == [] and event_count(services) == 0


def test_a_woocommerce_order_without_an_id_is_kept(client, services, woocommerce_store):
    store_id, secret = woocommerce_store
    payload = json.loads(fresh(fixture_bytes("woocommerce", "order_created__processing.json")))
    del payload["id"]
    body = json.dumps(payload).encode()
    answer = client.post(
        f"/webhooks/woocommerce/{store_id}",
        data=body,
        headers=woocommerce_headers("order.created", body, secret),
    )
    assert answer.status_code == 200 and answer.json["status"] == "kept"
    [record] = kept(services)
    assert (record.platform, record.topic) == ("woocommerce", "order.created")


def test_a_body_kept_by_an_older_version_is_recovered_by_reprocess(services, shopify_store):
    connect_tiktok(services, shopify_store)
    body = fresh(fixture_bytes("shopify", "orders_create.json"))
    store_body(services, shopify_store, body, "orders/create", "read by a version since fixed")
    store_body(services, shopify_store, b'{"id": 5}', "orders/create", "still unreadable")

    report = reprocess(services)

    assert (report.recovered, report.events, report.still_unreadable) == (1, 1, 1)
    [event] = events(services)
    assert event.event_id == str(json.loads(body)["id"]) and event.source == "reprocessed"
    [left] = kept(services)
    assert left.reprocessed_at is not None and left.reason != "still unreadable"
    # Read again, the same body adds nothing: the outbox's key deduplicates as always.
    store_body(services, shopify_store, body, "orders/create", "kept twice")
    assert reprocess(services).events == 0
    assert len(events(services)) == 1


def test_the_command_line_lists_and_reprocesses(settings, services, shopify_store):
    body = fresh(fixture_bytes("shopify", "orders_create.json"))
    store_body(services, shopify_store, body, "orders/create", "read by a version since fixed")

    listed = run_cli(settings, "events", "list", "--status", "unreadable")
    [line] = [json.loads(text) for text in listed.splitlines()]
    assert line["store_id"] == shopify_store and line["topic"] == "orders/create"
    assert line["status"] == "unreadable" and line["reason"] == "read by a version since fixed"
    assert line["received_at"].endswith("Z")

    report = json.loads(run_cli(settings, "events", "reprocess", "--store", shopify_store))
    assert report["recovered"] == 1 and report["still_unreadable"] == 0
    assert run_cli(settings, "events", "list", "--status", "unreadable") == ""


def test_the_delivery_log_shows_kept_webhooks_and_reads_them_again(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    body = fresh(fixture_bytes("shopify", "orders_create.json"))
    store_body(services, shopify_store, body, "orders/create", "'total_price' is not an amount")
    log_in(client, services, shopify_store)

    page = client.get(f"/settings/{shopify_store}/log?status=unreadable").get_data(as_text=True)
    assert "&#39;total_price&#39; is not an amount" in page
    assert 'id="unreadable-webhooks"' in page
    status = client.get(f"/settings/{shopify_store}/").get_data(as_text=True)
    assert "1 webhook from your store could not be read" in status

    answer = client.post(
        f"/settings/{shopify_store}/log/reprocess", data={"csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 303 and "reprocessed=1" in answer.headers["Location"]
    assert kept(services) == [] and len(events(services)) == 1
    diagnostics = client.get(f"/settings/{shopify_store}/diagnostics").get_data(as_text=True)
    assert 'id="unreadable" data-count="0"' in diagnostics
    assert 'id="unreadable"' not in client.get(f"/settings/{shopify_store}/").get_data(as_text=True)


def test_kept_bodies_are_encrypted_and_purged_after_their_retention(
    client, services, shopify_store, backend
):
    payload = shopify_order(email=SHOPPER_EMAIL)
    del payload["id"]
    post_shopify(client, json.dumps(payload).encode())
    if backend == "sqlite":
        database_file = Path(services.settings.database_url.removeprefix("sqlite:///"))
        assert SHOPPER_EMAIL.encode() not in database_file.read_bytes()
    assert SHOPPER_EMAIL not in kept(services)[0].body_encrypted

    assert purge_expired(services)["unreadable"] == 0
    days = services.settings.unreadable_retention_days
    with services.db.session() as session:
        old = UnreadableWebhook.received_at - timedelta(days=days, minutes=1)
        session.execute(update(UnreadableWebhook).values(received_at=old))
        session.commit()
    assert purge_expired(services)["unreadable"] == 1
    assert kept(services) == []


def test_a_secret_that_no_longer_decrypts_is_503_not_500(client, services, shopify_store, caplog):
    foreign = TokenCipher(None, "a-key-this-process-does-not-have").encrypt("secret")
    with services.db.session() as session:
        session.execute(
            update(Store).where(Store.id == shopify_store).values(webhook_secret_encrypted=foreign)
        )
        session.commit()
    body = json.dumps(shopify_order()).encode()
    answer = post_shopify(client, body)
    assert answer.status_code == 503
    assert "retry" in answer.json["error"]
    assert "SECRET_KEY_FALLBACKS" in caplog.text
    assert event_count(services) == 0


def store_body(services, store_id: str, body: bytes, topic: str, reason: str) -> None:
    """A kept record as the webhook writes it, with the reason its version gave."""
    with services.db.engine.connect() as connection:
        keep_unreadable(services, connection, KeptWebhook(store_id, "shopify", topic, reason), body)


def events(services) -> list[OutboxEvent]:
    with services.db.session() as session:
        return list(session.scalars(select(OutboxEvent)))


def run_cli(settings, *args: str) -> str:  # type: ignore[no-untyped-def]
    result = invoke_connector(settings, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_privacy_request_that_cannot_be_carried_out_is_kept_for_a_person(
    app, services, shopify_store, tmp_path
):
    # The export folder cannot be made (a file stands where the instance folder should be).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    app.extensions["connector"].settings = services.settings.with_overrides(instance_path=blocker)
    body = json.dumps({"shop_domain": "x", "customer": {"id": 1}, "data_request": {"id": 7}})
    answer = post_shopify(app.test_client(), body.encode(), topic="customers/data_request")
    assert answer.status_code == 200 and answer.json["status"] == "kept"
    [record] = kept(services)
    assert record.topic == "customers/data_request"
    # Reading it again never carries it out late and unseen: it stays listed for a person.
    assert reprocess(services).still_unreadable == 1
    assert "handled by hand" in kept(services)[0].reason
