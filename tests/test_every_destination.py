"""One order, three ad platforms, with real parts: signed webhooks over HTTP, a real worker
process, and the strict stand-ins of TikTok, Meta and Google. Each platform gets exactly one
event per order, normalised and hashed by its own rules, with the same event id as the browser
tags use and only its own click ids; one platform's trouble holds back no other.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from connector.hashing import sha256_hex
from connector.models import OutboxEvent, StoreDestination
from connector.standins.google import GoogleStandIn
from tests.support import (
    GOOGLE_CLIENT,
    GOOGLE_CUSTOMER,
    META_TOKEN,
    connect_google,
    connect_meta,
    connect_tiktok,
    fixture_bytes,
    fresh,
    google_env,
    post,
    shopify_headers,
    wait_until,
    woocommerce_headers,
)

pytestmark = pytest.mark.postgres

FBCLID = "IwAR2xQe9KpLm3Nv7Rt1Yz"
FBP = "fb.1.1733200000000.1098765432"
GCLID = "Cj0KCQiA-shopify-gclid"
WOO_GCLID = "Cj0KCQiA-woocommerce-gclid"


@pytest.fixture
def settings(settings, meta, google):  # type: ignore[no-untyped-def]
    """The test settings pointed at Meta's and Google's stand-ins, for this process and the
    worker alike."""
    return google_env(settings, google).with_env(META_API_BASE=meta.base_url)


def connect_all(services, store_id: str, google: GoogleStandIn) -> None:  # type: ignore[no-untyped-def]
    connect_tiktok(services, store_id)
    connect_meta(services, store_id)
    connect_google(services, store_id, google.issue_refresh_token(GOOGLE_CLIENT, {GOOGLE_CUSTOMER}))


def shopify_order_with_every_click() -> bytes:
    """The real orders/create fixture, landing from an ad URL that carries TikTok's, Meta's and
    Google's click ids, with Meta's browser cookie copied into the order attributes."""
    order = json.loads(fresh(fixture_bytes("shopify", "orders_create.json")))
    order["landing_site"] += f"&fbclid={FBCLID}&gclid={GCLID}"
    order["note_attributes"].append({"name": "_fbp", "value": FBP})
    return json.dumps(order).encode()


def woocommerce_order_with_every_click() -> bytes:
    """The real order.created fixture with the order meta the click-capture plugin writes."""
    order = json.loads(fresh(fixture_bytes("woocommerce", "order_created__processing.json")))
    order["meta_data"] += [
        {"id": 90001, "key": "_ttclid", "value": "E.C.P.woo-click"},
        {"id": 90002, "key": "_gclid", "value": WOO_GCLID},
        {"id": 90003, "key": "_fbp", "value": FBP},
    ]
    return json.dumps(order).encode()


def send_shopify(base_url: str, body: bytes) -> None:
    answer = post(f"{base_url}/webhooks/shopify", body, shopify_headers("orders/create", body))
    assert answer.status_code == 200, answer.text


def statuses(services, store_id: str) -> dict[tuple[str, str], str]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        rows = session.execute(
            select(OutboxEvent.destination, OutboxEvent.event_id, OutboxEvent.status).where(
                OutboxEvent.store_id == store_id
            )
        ).all()
    return {(kind, event_id): status for kind, event_id, status in rows}


def test_one_order_from_each_store_reaches_every_platform_once_in_its_own_terms(
    services, shopify_store, woocommerce_store, tiktok, meta, google, live_server, worker
):
    connect_all(services, shopify_store, google)
    body = shopify_order_with_every_click()
    order = json.loads(body)
    for _ in range(2):  # Shopify retries: still one event per platform
        send_shopify(live_server, body)

    [tiktok_event] = tiktok.wait_for_events(1)
    [meta_event] = meta.wait_for_events(1)
    wait_until(lambda: len(google.accepted_events()) >= 1)
    wait_until(lambda: set(statuses(services, shopify_store).values()) == {"delivered"})
    [google_event] = google.accepted_events()
    order_id = str(order["id"])

    assert (tiktok_event["event"], tiktok_event["event_id"]) == ("CompletePayment", order_id)
    assert tiktok_event["user"]["phone"] == sha256_hex("+16135550142")  # E.164 with +
    assert tiktok_event["user"]["city"] == "louisville"  # plain
    assert tiktok_event["user"]["ttclid"].startswith("E.C.P.")
    assert not {"fbc", "fbp", "gclid"} & set(tiktok_event["user"])

    assert (meta_event["event_name"], meta_event["event_id"]) == ("Purchase", order_id)
    meta_user = meta_event["user_data"]
    assert meta_user["em"] in (sha256_hex("jon@example.com"), [sha256_hex("jon@example.com")])
    assert meta_user["ph"] in (sha256_hex("16135550142"), [sha256_hex("16135550142")])  # no +
    assert meta_user["ct"] in (sha256_hex("louisville"), [sha256_hex("louisville")])  # hashed
    assert meta_user["fbc"] == f"fb.1.{meta_event['event_time'] * 1000}.{FBCLID}"
    assert meta_user["fbp"] == FBP
    assert "ttclid" not in json.dumps(meta_event) and GCLID not in json.dumps(meta_event)
    assert meta_event["custom_data"]["order_id"] == order_id

    assert google_event["transactionId"] == order_id
    assert google_event["adIdentifiers"]["gclid"] == GCLID
    identifiers = google_event["userData"]["userIdentifiers"]
    assert {"emailAddress": sha256_hex("jon@example.com")} in identifiers
    assert {"phoneNumber": sha256_hex("+16135550142")} in identifiers
    assert FBCLID not in json.dumps(google_event) and "E.C.P." not in json.dumps(google_event)

    woo_store, secret = woocommerce_store
    connect_all(services, woo_store, google)
    woo_body = woocommerce_order_with_every_click()
    headers = woocommerce_headers("order.created", woo_body, secret)
    answer = post(f"{live_server}/webhooks/woocommerce/{woo_store}", woo_body, headers)
    assert answer.status_code == 200, answer.text
    woo_id = str(json.loads(woo_body)["id"])
    wait_until(lambda: len(statuses(services, woo_store)) == 3)
    wait_until(lambda: set(statuses(services, woo_store).values()) == {"delivered"})
    assert [e["event_id"] for e in tiktok.accepted_events()].count(woo_id) == 1
    assert [e["event_id"] for e in meta.accepted_events()].count(woo_id) == 1
    woo_google = [e for e in google.accepted_events() if e["transactionId"] == woo_id]
    assert len(woo_google) == 1 and woo_google[0]["adIdentifiers"]["gclid"] == WOO_GCLID


def test_a_revoked_meta_token_pauses_meta_alone(
    services, shopify_store, tiktok, meta, google, live_server, worker
):
    connect_all(services, shopify_store, google)
    meta.revoke(META_TOKEN)
    send_shopify(live_server, shopify_order_with_every_click())

    tiktok.wait_for_events(1)
    wait_until(lambda: len(google.accepted_events()) == 1)
    wait_until(lambda: _paused(services, shopify_store, "meta"))
    events = statuses(services, shopify_store)
    assert {kind: status for (kind, _), status in events.items()} == {
        "tiktok": "delivered",
        "google": "delivered",
        "meta": "pending",  # kept, sent once a new token is entered
    }
    assert "access token" in _paused(services, shopify_store, "meta").lower()
    assert not _paused(services, shopify_store, "tiktok")


def test_a_google_outage_delays_google_alone(
    services, shopify_store, tiktok, meta, google, live_server, worker
):
    connect_all(services, shopify_store, google)
    google.fail_next(4, http_status=503)
    send_shopify(live_server, shopify_order_with_every_click())

    tiktok.wait_for_events(1)
    meta.wait_for_events(1)
    wait_until(lambda: len(google.accepted_events()) == 1, timeout=30)
    wait_until(lambda: set(statuses(services, shopify_store).values()) == {"delivered"})
    assert len(tiktok.accepted_events()) == len(meta.accepted_events()) == 1


def _paused(services, store_id: str, kind: str) -> str | None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalar(
            select(StoreDestination.paused_reason).where(
                StoreDestination.store_id == store_id, StoreDestination.kind == kind
            )
        )
