"""POST /collect and the click-id resolution order it feeds (attributes, stored, landing)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.clicks import purge_expired_click_records
from connector.models import ClickRecord, Event, utcnow
from connector.stores import add_store
from tests.platforms.shopify.helpers import INSTALL_SHOP, app_webhook
from tests.support import fixture_bytes

pytestmark = pytest.mark.postgres

ORIGIN = f"https://{INSTALL_SHOP}"
CHECKOUT = "b1946ac92492d2347c6235b4d2611184"  # the fixtures' checkout token
CART = "eeafa272cebfd4b22385bc4b645e762c"  # and cart token
LANDING_TTCLID = "E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW"
NOTE_TTCLID = "E.C.P.CpQBcartAttr7Hj2Kl9Mn4Pq6Rs8Tu1Vw3"


@pytest.fixture
def store_id(app_services) -> str:
    return add_store(app_services, platform="shopify", domain=INSTALL_SHOP, webhook_secret=None).id


def report(browser, body: object, origin: str | None = ORIGIN, ip: str = "198.51.100.7"):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "text/plain"}  # what sendBeacon sends
    if origin:
        headers["Origin"] = origin
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return browser.post("/collect", data=data, headers=headers, environ_base={"REMOTE_ADDR": ip})


def records(services) -> list[ClickRecord]:
    with services.db.session() as session:
        return list(session.scalars(select(ClickRecord).order_by(ClickRecord.id)))


def test_a_report_is_stored_for_seven_days_with_cors_for_the_store(browser, app_services, store_id):
    body = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.x", "ttp": "t1"}
    answer = report(browser, body)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    [record] = records(app_services)
    assert (record.store_id, record.token_kind, record.token) == (store_id, "checkout", CHECKOUT)
    assert (record.ttclid, record.ttp) == ("E.C.P.x", "t1")
    assert timedelta(days=6, hours=23) < record.expires_at - utcnow() <= timedelta(days=7)


def test_a_later_report_adds_to_the_record_without_erasing(browser, app_services, store_id):
    report(browser, {"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "E.C.P.first"})
    report(browser, {"shop": INSTALL_SHOP, "cart_token": CART, "ttp": "late-ttp"})
    [record] = records(app_services)
    assert (record.token_kind, record.ttclid, record.ttp) == ("cart", "E.C.P.first", "late-ttp")


def test_preflight_is_allowed_only_for_a_stores_origin(browser, store_id):
    allowed = browser.options("/collect", headers={"Origin": ORIGIN})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    other = browser.options("/collect", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "https://evil.example",
        f"http://{INSTALL_SHOP}",
        f"https://{INSTALL_SHOP}:8443",
        "https://other-shop.myshopify.com",
    ],
)
def test_reports_from_another_origin_are_refused(browser, app_services, store_id, origin):
    body = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.x"}
    answer = report(browser, body, origin=origin)
    assert answer.status_code == 403 and "Origin" in answer.json["error"]
    assert records(app_services) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[" * 1500 + b"]" * 1500, "not JSON"),  # 3 KB no parser follows: never a 500
        ([1, 2], "object"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x", "email": "a@b.c"}, "only"),
        ({"cart_token": CART, "ttclid": "x"}, "shop"),
        ({"shop": INSTALL_SHOP, "ttclid": "x"}, "checkout_token or a cart_token"),
        ({"shop": INSTALL_SHOP, "cart_token": CART}, "ttclid or a ttp"),
        ({"shop": INSTALL_SHOP, "cart_token": "a b<script>", "ttclid": "x"}, "cart_token"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x\u0000y"}, "ttclid"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x" * 501}, "ttclid"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttp": 42}, "ttp"),
    ],
)
def test_invalid_reports_are_400_and_store_nothing(browser, app_services, store_id, body, message):
    answer = report(browser, body)
    assert answer.status_code == 400 and message in answer.json["error"]
    assert records(app_services) == []


def test_a_large_body_is_413(browser, app_services, store_id):
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x", "ttp": "y" * 5000}
    assert report(browser, body).status_code == 413
    assert records(app_services) == []


def test_one_address_is_rate_limited_and_others_are_not(browser, store_id):
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "E.C.P.x"}
    # The limit counts per clock minute: a burst that crossed into the next minute would start
    # a fresh count, so it starts with at least 20 s of the minute ahead.
    if (left := 60 - time.time() % 60) < 20:
        time.sleep(left)
    answers = [report(browser, body, ip="203.0.113.9").status_code for _ in range(121)]
    assert answers[:120] == [204] * 120 and answers[120] == 429
    assert report(browser, body, ip="203.0.113.10").status_code == 204


# -- resolution order at mapping time ----------------------------------------------------------


def order_body(**changes: object) -> bytes:
    """orders_create.json: ``_ttp`` in note_attributes, a ttclid only in landing_site."""
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload.update(changes)
    return json.dumps(payload).encode()


def recorded(browser, services, topic: str, body: bytes) -> Event:
    answer = browser.post("/webhooks/shopify", data=body, headers=app_webhook(topic, body))
    assert answer.status_code == 200 and answer.json["events"] == 1, answer.json
    with services.db.session() as session:
        return session.scalars(select(Event).order_by(Event.id.desc())).first()


def store_click(browser, kind: str, token: str, ttclid: str) -> None:
    body = {"shop": INSTALL_SHOP, f"{kind}_token": token, "ttclid": ttclid, "ttp": "stored-ttp"}
    assert report(browser, body).status_code == 204


def test_note_attributes_win_over_a_stored_record(browser, app_services, store_id):
    store_click(browser, "checkout", CHECKOUT, "E.C.P.stored")
    event = recorded(
        browser, app_services, "checkouts/create", fixture_bytes("shopify", "checkouts_create.json")
    )
    assert event.click_source == "note_attributes"
    assert event.payload["user"]["ttclid"] == NOTE_TTCLID


def test_stored_checkout_record_wins_over_cart_record_and_landing_site(
    browser, app_services, store_id
):
    store_click(browser, "cart", CART, "E.C.P.cart")
    store_click(browser, "checkout", CHECKOUT, "E.C.P.checkout")
    event = recorded(browser, app_services, "orders/create", order_body())
    assert event.click_source == "stored_checkout_token"
    assert event.payload["user"]["ttclid"] == "E.C.P.checkout"
    assert event.payload["user"]["ttp"] == "2gKx7TqW4mZr9LbVn3PcY8sHdJf"  # note_attributes' _ttp
    assert {r.order_id for r in records(app_services)} == {event.event_id}


def test_stored_cart_record_wins_over_landing_site(browser, app_services, store_id):
    store_click(browser, "cart", CART, "E.C.P.cart")
    event = recorded(browser, app_services, "orders/create", order_body())
    assert event.click_source == "stored_cart_token"
    assert event.payload["user"]["ttclid"] == "E.C.P.cart"


def test_stored_ttp_fills_in_when_the_order_has_none(browser, app_services, store_id):
    store_click(browser, "cart", CART, "E.C.P.cart")
    event = recorded(browser, app_services, "orders/create", order_body(note_attributes=[]))
    assert event.payload["user"]["ttp"] == "stored-ttp"


def test_landing_site_is_the_last_resort_and_expired_records_do_not_count(
    browser, app_services, store_id
):
    store_click(browser, "checkout", CHECKOUT, "E.C.P.old")
    with app_services.db.session() as session:
        session.execute(update(ClickRecord).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    event = recorded(browser, app_services, "orders/create", order_body())
    assert event.click_source == "landing_site"
    assert event.payload["user"]["ttclid"] == LANDING_TTCLID


def test_expired_records_are_purged(app_services, browser, store_id):
    store_click(browser, "checkout", CHECKOUT, "E.C.P.old")
    store_click(browser, "cart", CART, "E.C.P.live")
    with app_services.db.session() as session:
        session.execute(
            update(ClickRecord)
            .where(ClickRecord.token == CHECKOUT)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    assert purge_expired_click_records(app_services) == 1
    assert [r.token for r in records(app_services)] == [CART]
