"""POST /collect and the click-id resolution order it feeds (attributes, stored, landing)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.clicks import STORED_COLUMNS, purge_expired_click_records, with_stored_clicks
from connector.events import ClickIds
from connector.models import ClickRecord, OutboxEvent, utcnow
from connector.stores import add_store
from platforms.shopify.parse import parse_order
from tests.platforms.shopify.helpers import INSTALL_SHOP, app_webhook, install
from tests.support import fixture_bytes, in_one_clock_minute

pytestmark = pytest.mark.postgres

ORIGIN = f"https://{INSTALL_SHOP}"
CHECKOUT = "b1946ac92492d2347c6235b4d2611184"  # the fixtures' checkout token
CART = "eeafa272cebfd4b22385bc4b645e762c"  # and cart token
LANDING_TTCLID = "E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"  # Meta's example
FBC = f"fb.1.1554763741205.{FBCLID}"
FBP = "fb.1.1596403881668.1116446470"  # Meta's example _fbp
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


def test_every_ad_platforms_click_ids_and_cookies_are_stored_as_sent(
    browser, app_services, store_id
):
    body = {
        "shop": INSTALL_SHOP,
        "checkout_token": CHECKOUT,
        "ttclid": " E.C.P.x ",
        "ttp": "t1",
        "fbc": FBC,
        "fbp": f" {FBP}",
        "gclid": "Cj0KCQiA5NSdBhDfARIsALzs2EDw",
        "gbraid": "0AAAAAoK1kZx9gbraid",
        "wbraid": "CjkKCQiA5NSdBhDfwbraid",
    }
    assert report(browser, body).status_code == 204
    [record] = records(app_services)
    stored = [getattr(record, name) for name in STORED_COLUMNS]
    assert stored == [
        "E.C.P.x",
        "t1",
        FBC,
        FBP,
        *(body[name] for name in ("gclid", "gbraid", "wbraid")),
    ]


def test_an_fbclid_without_fbc_is_kept_as_the_fbc_meta_documents(browser, app_services, store_id):
    before = time.time_ns() // 1_000_000
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "fbclid": f" {FBCLID} "}
    assert report(browser, body).status_code == 204
    after = time.time_ns() // 1_000_000
    [record] = records(app_services)
    version, subdomain_index, created_ms, fbclid = record.fbc.split(".", 3)
    assert (version, subdomain_index, fbclid) == ("fb", "1", FBCLID)
    assert before <= int(created_ms) <= after


def test_the_same_fbclid_reported_again_keeps_when_it_was_first_seen(
    browser, app_services, store_id
):
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "fbclid": FBCLID}
    assert report(browser, body).status_code == 204
    [first] = records(app_services)
    time.sleep(0.005)
    assert report(browser, {**body, "fbp": FBP}).status_code == 204
    assert report(browser, {**body, "fbc": FBC}).status_code == 204  # the cookie, same fbclid
    [again] = records(app_services)
    assert (again.fbc, again.fbp) == (first.fbc, FBP)


def test_a_recorded_click_is_never_replaced_nor_added_to(browser, app_services, store_id):
    """Whoever learns a token (both tokens, even) cannot re-attribute the checkout's order."""
    first = {
        "shop": INSTALL_SHOP,
        "checkout_token": CHECKOUT,
        "fbp": FBP,
        "ttclid": "E.C.P.shopper",
    }
    assert report(browser, first).status_code == 204
    attempts = [
        {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.attacker"},
        {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.attacker", "ttp": "t"},
        {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "fbclid": "IwAttackerClick"},
        {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "gclid": "gclid-attacker"},
        {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "fbp": "fb.1.1.999"},
    ]
    for attempt in attempts:
        answer = report(browser, attempt, ip="203.0.113.66")
        assert answer.status_code == 409 and "never replaced" in answer.json["error"], attempt
    [record] = records(app_services)
    assert (record.ttclid, record.ttp, record.fbc, record.gclid, record.fbp) == (
        "E.C.P.shopper",
        None,
        None,
        None,
        FBP,
    )


def test_a_cart_record_is_not_overwritten_by_a_report_that_also_names_a_new_checkout(
    browser, app_services, store_id
):
    """The cart's record keeps its click (409); the new checkout gets a record of its own."""
    first = {"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "E.C.P.a"}
    assert report(browser, first).status_code == 204
    body = {
        "shop": INSTALL_SHOP,
        "checkout_token": CHECKOUT,
        "cart_token": CART,
        "ttclid": "E.C.P.b",
    }
    answer = report(browser, body)
    assert answer.status_code == 409 and "cart token" in answer.json["error"]
    assert {(r.token_kind, r.ttclid) for r in records(app_services)} == {
        ("cart", "E.C.P.a"),
        ("checkout", "E.C.P.b"),
    }


def test_the_pixels_sequence_stores_and_joins_the_order(browser, app_services, store_id):
    """What both Shopify pixels send: the cart token alone (no checkout yet), then on
    checkout_started and again on checkout_completed the checkout token with the same cart
    token, the same landing-page ids and a ``_ttp`` the TikTok pixel set meanwhile."""
    landing = {"shop": INSTALL_SHOP, "ttclid": "E.C.P.pixel", "fbclid": FBCLID, "fbp": FBP}
    assert report(browser, {**landing, "cart_token": CART}).status_code == 204
    later = {**landing, "checkout_token": CHECKOUT, "cart_token": CART, "ttp": "pixel-ttp"}
    assert report(browser, later).status_code == 204  # checkout_started
    assert report(browser, later).status_code == 204  # checkout_completed
    stored = {r.token_kind: (r.ttclid, r.ttp, r.fbp) for r in records(app_services)}
    assert stored == {
        "cart": ("E.C.P.pixel", "pixel-ttp", FBP),
        "checkout": ("E.C.P.pixel", "pixel-ttp", FBP),
    }
    event = recorded(browser, app_services, "orders/create", order_body(note_attributes=[]))
    assert event.click_source == "stored_checkout_token"
    assert (event.payload["user"]["ttclid"], event.payload["user"]["ttp"]) == (
        "E.C.P.pixel",
        "pixel-ttp",
    )


def test_the_pixels_fbc_cookie_wins_over_an_fbclid_in_the_same_report(
    browser, app_services, store_id
):
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "fbclid": FBCLID, "fbc": FBC}
    assert report(browser, body).status_code == 204
    [record] = records(app_services)
    assert record.fbc == FBC


def test_a_report_of_a_cookie_alone_is_stored(browser, app_services, store_id):
    assert (
        report(browser, {"shop": INSTALL_SHOP, "cart_token": CART, "fbp": FBP}).status_code == 204
    )
    [record] = records(app_services)
    assert (record.fbp, record.ttclid, record.fbc) == (FBP, None, None)


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


# -- Origin: null, the pixels' sandbox: only for a store the app's pixel runs for -------------

WOO_SHOP = "shop.example"


def test_a_null_origin_is_accepted_for_a_store_installed_through_the_app(
    browser, shopify, app_services
):
    assert install(browser, shopify).status_code == 200
    assert shopify.pixels[INSTALL_SHOP] == {"collectUrl": "https://connector.test/collect"}
    body = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.sandboxed"}
    answer = report(browser, body, origin="null")
    assert answer.status_code == 204
    assert "Access-Control-Allow-Origin" not in answer.headers  # the pixels send no-cors
    assert [r.ttclid for r in records(app_services)] == ["E.C.P.sandboxed"]


def test_a_null_origin_is_refused_for_a_shopify_store_without_the_app(
    browser, app_services, store_id
):
    """A custom-app store (no install, so no app pixel) reports from its own https origin."""
    body = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.x"}
    answer = report(browser, body, origin="null")
    assert answer.status_code == 403 and "installed through the app" in answer.json["error"]
    assert records(app_services) == []
    assert report(browser, body, origin=ORIGIN).status_code == 204


def test_a_woocommerce_store_takes_reports_from_its_own_https_origin_only(browser, app_services):
    add_store(app_services, platform="woocommerce", domain=WOO_SHOP, webhook_secret="s")
    body = {"shop": WOO_SHOP, "cart_token": CART, "ttclid": "E.C.P.woo"}
    for origin in ("null", f"http://{WOO_SHOP}", ORIGIN, f"https://www.{WOO_SHOP}"):
        assert report(browser, body, origin=origin).status_code == 403, origin
    assert records(app_services) == []
    answer = report(browser, body, origin=f"https://{WOO_SHOP}")
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == f"https://{WOO_SHOP}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[" * 1500 + b"]" * 1500, "nested"),  # 3 KB no parser follows: never a 500
        ([1, 2], "object"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x", "email": "a@b.c"}, "only"),
        ({"cart_token": CART, "ttclid": "x"}, "shop"),
        ({"shop": INSTALL_SHOP, "ttclid": "x"}, "checkout_token or a cart_token"),
        (
            {"shop": INSTALL_SHOP, "cart_token": CART},
            "give a click id, an ad cookie or a consent choice",
        ),
        ({"shop": INSTALL_SHOP, "cart_token": "a b<script>", "ttclid": "x"}, "cart_token"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x\u0000y"}, "ttclid"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "x" * 501}, "ttclid"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "ttp": 42}, "ttp"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "gclid": "g\u0007"}, "'gclid'"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "gbraid": ["g"]}, "'gbraid'"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "wbraid": "w" * 501}, "'wbraid'"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "fbclid": 7}, "'fbclid'"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "fbc": FBCLID}, "fb.<digit>"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "fbp": "fb.1.x.123"}, "'fbp'"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "gclid": "g", "_fbc": FBC}, "only"),
        # Values that do not even hash (a list, an object) are refused like any other.
        ({"shop": INSTALL_SHOP, "cart_token": CART, "consent_marketing": ["granted"]}, "granted"),
        ({"shop": INSTALL_SHOP, "cart_token": CART, "consent_sale_of_data": {}}, "granted"),
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


def test_one_address_is_rate_limited_and_others_are_not(browser, app_services, store_id):
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "E.C.P.x"}
    answers = in_one_clock_minute(
        app_services.redis,
        lambda: [report(browser, body, ip="203.0.113.9").status_code for _ in range(121)],
    )
    assert answers[:120] == [204] * 120 and answers[120] == 429
    assert report(browser, body, ip="203.0.113.10").status_code == 204


# -- resolution order at mapping time ----------------------------------------------------------


def order_body(**changes: object) -> bytes:
    """orders_create.json: ``_ttp`` in note_attributes, a ttclid only in landing_site."""
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload.update(changes)
    return json.dumps(payload).encode()


def recorded(browser, services, topic: str, body: bytes) -> OutboxEvent:
    answer = browser.post("/webhooks/shopify", data=body, headers=app_webhook(topic, body))
    assert answer.status_code == 200 and answer.json["events"] == 1, answer.json
    with services.db.session() as session:
        return session.scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc())).first()


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


# -- every platform's ids through the stored record (no destination needed) ------------------


def stored_clicks_of(services, store_id: str, body: bytes) -> ClickIds:  # type: ignore[no-untyped-def]
    order = parse_order(json.loads(body), "orders/create")
    with services.db.engine.begin() as connection:
        return with_stored_clicks(connection, store_id, order).clicks


def test_each_field_comes_from_the_first_place_that_has_it(browser, app_services, store_id):
    """note_attributes (``_ttp``, ``gclid``), then the checkout record, then the cart record,
    then landing_site (the ttclid and a wbraid)."""
    checkout = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "fbclid": FBCLID, "fbp": FBP}
    cart = {"shop": INSTALL_SHOP, "cart_token": CART, "gclid": "gclid-cart", "gbraid": "gb-cart"}
    assert report(browser, checkout).status_code == 204
    assert report(browser, cart).status_code == 204
    attributes = [{"name": "_ttp", "value": "ttp-note"}, {"name": "gclid", "value": "gclid-note"}]
    landing = f"/?ttclid={LANDING_TTCLID}&wbraid=wb-landing&gclid=gclid-landing"
    clicks = stored_clicks_of(
        app_services, store_id, order_body(note_attributes=attributes, landing_site=landing)
    )
    checkout_fbc = next(r.fbc for r in records(app_services) if r.token_kind == "checkout")
    assert checkout_fbc.endswith(f".{FBCLID}")
    assert clicks == ClickIds(
        ttclid=LANDING_TTCLID,
        ttp="ttp-note",
        fbc=checkout_fbc,
        fbp=FBP,
        gclid="gclid-note",
        gbraid="gb-cart",
        wbraid="wb-landing",
        source="note_attributes",
    )


def test_a_stored_google_click_alone_names_the_stored_record_as_source(
    browser, app_services, store_id
):
    assert (
        report(browser, {"shop": INSTALL_SHOP, "cart_token": CART, "wbraid": "wb"}).status_code
        == 204
    )
    clicks = stored_clicks_of(
        app_services, store_id, order_body(note_attributes=[], landing_site="/")
    )
    assert clicks == ClickIds(wbraid="wb", source="stored_cart_token")
