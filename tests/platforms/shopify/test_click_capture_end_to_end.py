"""A shopper who landed with ``?ttclid=`` reaches TikTok carrying it, by each capture path:
cart attributes (note_attributes), the storefront pixel's report (POST /collect, joined by
checkout token), and the order's landing_site. Real HTTP, a real worker, the TikTok stand-in.
"""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import select

from connector.models import OutboxEvent
from tests.support import (
    SHOP_DOMAIN,
    connect_tiktok,
    fixture_bytes,
    fresh,
    post,
    shopify_headers,
)

pytestmark = pytest.mark.postgres


def order(order_id: int, *, checkout_token: str, note_ttclid: str | None, landing: str) -> bytes:
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload.update(
        id=order_id,
        checkout_token=checkout_token,
        cart_token=None,
        landing_site=landing,
        note_attributes=[{"name": "ttclid", "value": note_ttclid}] if note_ttclid else [],
    )
    return fresh(json.dumps(payload).encode())


def test_each_capture_path_delivers_the_ttclid(
    services, shopify_store, tiktok, live_server, worker
):
    connect_tiktok(services, shopify_store)
    collected = requests.post(
        f"{live_server}/collect",
        data=json.dumps(
            {"shop": SHOP_DOMAIN, "checkout_token": "c" * 32, "ttclid": "E.C.P.pixel", "ttp": "p"}
        ),
        headers={"Origin": f"https://{SHOP_DOMAIN}", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert collected.status_code == 204
    orders = {
        "9001": order(9001, checkout_token="a" * 32, note_ttclid="E.C.P.note", landing="/"),
        "9002": order(9002, checkout_token="c" * 32, note_ttclid=None, landing="/"),
        "9003": order(
            9003, checkout_token="d" * 32, note_ttclid=None, landing="/?ttclid=E.C.P.url"
        ),
    }
    for body in orders.values():
        answer = post(
            f"{live_server}/webhooks/shopify", body, shopify_headers("orders/create", body)
        )
        assert answer.status_code == 200, answer.text
    received = {e["event_id"]: e for e in tiktok.wait_for_events(3)}
    assert {k: received[k]["user"]["ttclid"] for k in orders} == {
        "9001": "E.C.P.note",
        "9002": "E.C.P.pixel",
        "9003": "E.C.P.url",
    }
    with services.db.session() as session:
        sources = dict(
            session.execute(select(OutboxEvent.event_id, OutboxEvent.click_source)).all()
        )
    assert sources == {
        "9001": "note_attributes",
        "9002": "stored_checkout_token",
        "9003": "landing_site",
    }
