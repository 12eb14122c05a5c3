"""Each path an order's status can take, as signed webhook snapshots of one order, and what the
outbox records for it (a recorded row is what the worker sends; nothing recorded is nothing
sent).

WooCommerce builds a webhook's body when the delivery runs, so every delivery is a snapshot of
the order as it is then: an ``order.created`` may already be paid, and what decides is the
status in the body, never the topic. Paid means ``processing`` or ``completed``; pending and
on-hold (bank transfer, cheque) wait; cancelled, failed and refunded before payment never send.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from connector.models import OutboxEvent
from tests.platforms.woocommerce.helpers import order
from tests.support import connect_tiktok, woocommerce_headers

PROCESSING = "order_created__processing.json"  # order 1187, ttclid in its meta


def snapshot(status: str, *, paid: bool) -> dict[str, Any]:
    """Order 1187 in ``status``, with a payment date only when ``paid``."""
    changes: dict[str, Any] = {"status": status}
    if not paid:
        changes.update(date_paid=None, date_paid_gmt=None)
    return order(PROCESSING, **changes)


def send(client, store: tuple[str, str], topic: str, payload: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    store_id, secret = store
    body = json.dumps(payload).encode()
    answer = client.post(
        f"/webhooks/woocommerce/{store_id}",
        data=body,
        headers=woocommerce_headers(topic, body, secret),
    )
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def outbox(services) -> list[tuple[str, str, str, str | None]]:  # type: ignore[no-untyped-def]
    """(event_id, event name, source topic, click source) of every recorded event."""
    query = select(
        OutboxEvent.event_id,
        OutboxEvent.event_name,
        OutboxEvent.source_topic,
        OutboxEvent.click_source,
    )
    with services.db.session() as session:
        return [tuple(row) for row in session.execute(query.order_by(OutboxEvent.id))]


@pytest.mark.parametrize("send_on", ["created", "paid"])
def test_a_waiting_order_is_sent_once_when_paid(client, services, woocommerce_store, send_on):
    connect_tiktok(services, woocommerce_store[0], order_trigger=send_on)
    steps = [
        ("order.created", snapshot("pending", paid=False), "ignored"),
        ("order.updated", snapshot("on-hold", paid=False), "ignored"),
        ("order.updated", snapshot("processing", paid=True), "accepted"),
        ("order.updated", snapshot("completed", paid=True), "accepted"),
        ("order.updated", snapshot("refunded", paid=True), "ignored"),
    ]
    answers = [send(client, woocommerce_store, topic, body) for topic, body, _ in steps]
    assert [a["status"] for a in answers] == [expected for _, _, expected in steps]
    assert (answers[2]["events"], answers[3]["events"], answers[3]["duplicates"]) == (1, 0, 1)
    assert outbox(services) == [("1187", "CompletePayment", "order.updated", "order_meta")]


@pytest.mark.parametrize(
    ("status", "paid"),
    [("cancelled", False), ("failed", False), ("refunded", True)],
)
def test_an_order_that_ends_before_it_was_sent_is_never_sent(
    client, services, woocommerce_store, status, paid
):
    send(client, woocommerce_store, "order.created", snapshot("pending", paid=False))
    answer = send(client, woocommerce_store, "order.updated", snapshot(status, paid=paid))
    assert (answer["status"], answer["reason"]) == ("ignored", "order not paid yet")
    assert outbox(services) == []


@pytest.mark.parametrize("status", ["processing", "completed"])
def test_an_order_created_already_paid_is_sent(client, services, woocommerce_store, status):
    answer = send(client, woocommerce_store, "order.created", snapshot(status, paid=True))
    assert (answer["status"], answer["events"]) == ("accepted", 1)
    later = send(client, woocommerce_store, "order.updated", snapshot("completed", paid=True))
    assert (later["events"], later["duplicates"]) == (0, 1)
    assert outbox(services) == [("1187", "CompletePayment", "order.created", "order_meta")]


def test_meta_click_ids_are_kept_with_their_source(client, services, woocommerce_store):
    guest = order("order_created__guest_with_ttclid_meta.json")
    send(client, woocommerce_store, "order.created", guest)
    with services.db.session() as session:
        event = session.scalars(select(OutboxEvent)).one()
    assert (event.event_id, event.click_source) == ("1191", "order_meta")
    assert event.payload["user"]["ttclid"] == "E.C.P.CsUBguestMeta5Hj8Kl2Mn6Pq9Rs3Tu7Vw0"
    assert event.payload["user"]["ttp"] == "2hVd8PkN3sQw6ZtRb1LmY4xGcFj"
