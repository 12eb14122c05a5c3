"""Privacy webhooks and app/uninstalled: rows are really gone, exports are complete."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connector.clicks import save_click_record, save_consent
from connector.events import CLICK_ID_FIELDS, ClickIds, Consent
from connector.models import (
    Attempt,
    ClickRecord,
    OutboxEvent,
    ShopifyToken,
    Store,
    StoreDestination,
)
from connector.stores import add_store
from platforms.shopify.compliance import DATA_REQUESTS_FOLDER
from platforms.shopify.tokens import TokenGrant, save_grant
from tests.platforms.shopify.helpers import INSTALL_SHOP, app_webhook
from tests.support import connect_tiktok, fixture_bytes, shopify_headers, sign

pytestmark = pytest.mark.postgres

JON_ORDER = "820982911946154508"
GUEST_ORDER = "820982911946154601"
OLIVIA_ORDER = "820982911946154603"
JON_CHECKOUT = "b1946ac92492d2347c6235b4d2611184"
OTHER_CHECKOUT = "0" * 32
JON_CLICKS = ClickIds(
    ttclid="E.C.P.jon",
    ttp="ttp-cookie-of-jon",
    fbc="fb.1.1733200000000.IwAR2xQe9KpLm3Nv7Rt1Yz",
    fbp="fb.1.1733200000000.1098765432",
    gclid="Cj0KCQiA-jon-gclid",
    gbraid="0AAAAA-jon-gbraid",
    wbraid="CjkKEQjw-jon-wbraid",
)
JON_CONSENT = Consent(marketing=True, analytics=False, sale_of_data=None)


@pytest.fixture
def store_id(app_services) -> str:
    """An app-installed store (verified with the app secret) with a TikTok destination."""
    store = add_store(app_services, platform="shopify", domain=INSTALL_SHOP, webhook_secret=None)
    connect_tiktok(app_services, store.id)
    save_grant(app_services, store.id, TokenGrant("shpat_x", "read_orders", 3600, "shprt_x", 10))
    return store.id


@pytest.fixture
def stored(browser, app_services, store_id) -> str:
    """Four events of three customers and two click records, stored through the webhook."""
    with app_services.db.session() as session:
        save_click_record(
            session, store_id, token_kind="checkout", token=JON_CHECKOUT, clicks=JON_CLICKS
        )
        save_consent(
            session, store_id, token_kind="checkout", token=JON_CHECKOUT, consent=JON_CONSENT
        )
        save_click_record(
            session,
            store_id,
            token_kind="checkout",
            token=OTHER_CHECKOUT,
            clicks=ClickIds("E.C.P.x"),
        )
        session.commit()
    olivia = json.loads(fixture_bytes("shopify", "orders_create__national_phone.json"))
    olivia["customer"]["id"] = 555001  # her own customer, not Jon's
    bodies = [
        ("orders/create", fixture_bytes("shopify", "orders_create.json")),
        ("orders/create", fixture_bytes("shopify", "orders_create__guest_checkout.json")),
        ("orders/create", json.dumps(olivia).encode()),
        ("checkouts/create", fixture_bytes("shopify", "checkouts_create.json")),
    ]
    for topic, body in bodies:
        answer = browser.post("/webhooks/shopify", data=body, headers=app_webhook(topic, body))
        assert answer.status_code == 200 and answer.json["events"] == 1, answer.json
    return store_id


def event_ids(services) -> set[str]:
    with services.db.session() as session:
        return set(session.scalars(select(OutboxEvent.event_id)))


def click_tokens(services) -> set[str]:
    with services.db.session() as session:
        return set(session.scalars(select(ClickRecord.token)))


def send(browser, topic: str, payload: dict, secret: str | None = None):  # type: ignore[no-untyped-def]
    body = json.dumps(payload).encode()
    headers = app_webhook(topic, body)
    if secret:
        headers["X-Shopify-Hmac-Sha256"] = sign(secret, body)
    return browser.post("/webhooks/shopify", data=body, headers=headers)


def redact(customer: dict, orders: list[int] | None = None) -> dict:
    return {
        "shop_id": 954889,
        "shop_domain": INSTALL_SHOP,
        "customer": customer,
        "orders_to_redact": orders or [],
    }


def test_redact_by_customer_id_deletes_their_orders_checkouts_and_click_records(
    browser, app_services, stored
):
    answer = send(browser, "customers/redact", redact({"id": 115310627314723954}))
    assert answer.status_code == 200
    assert answer.json == {"status": "redacted", "events": 2, "click_records": 1}
    assert event_ids(app_services) == {GUEST_ORDER, OLIVIA_ORDER}
    assert click_tokens(app_services) == {OTHER_CHECKOUT}


@pytest.mark.parametrize(
    ("payload", "gone"),
    [
        (redact({"email": " Guest.Buyer@Example.com "}), {GUEST_ORDER}),
        (redact({"phone": "020 7946 0958"}), {OLIVIA_ORDER}),  # national: the event's country
        (redact({"phone": "+1 613 555 0177"}), {GUEST_ORDER}),
        (redact({}, orders=[int(GUEST_ORDER), int(OLIVIA_ORDER)]), {GUEST_ORDER, OLIVIA_ORDER}),
        (redact({"id": 1, "email": "nobody@example.com"}), set()),
    ],
)
def test_redact_matches_by_email_phone_and_order_ids(browser, app_services, stored, payload, gone):
    everything = event_ids(app_services)
    assert send(browser, "customers/redact", payload).status_code == 200
    assert event_ids(app_services) == everything - gone


def test_shop_redact_deletes_everything_of_that_store_only(browser, app_services, stored):
    other = add_store(
        app_services, platform="shopify", domain="other.myshopify.com", webhook_secret="s"
    )
    connect_tiktok(app_services, other.id)
    answer = send(browser, "shop/redact", {"shop_id": 954889, "shop_domain": INSTALL_SHOP})
    assert answer.status_code == 200
    with app_services.db.session() as session:
        for model in (OutboxEvent, ClickRecord, ShopifyToken, Attempt):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
        assert session.scalars(select(Store.id)).all() == [other.id]
        assert session.scalars(select(StoreDestination.store_id)).all() == [other.id]
    again = send(browser, "shop/redact", {"shop_id": 954889, "shop_domain": INSTALL_SHOP})
    assert again.status_code == 200 and again.json["status"] == "ignored"


def data_request(customer: dict, request_id: int) -> dict:
    return {
        "shop_id": 954889,
        "shop_domain": INSTALL_SHOP,
        "orders_requested": [],
        "customer": customer,
        "data_request": {"id": request_id},
    }


JON = {"id": 115310627314723954, "email": "jon@example.com", "phone": None}
GUEST = {"email": "guest.buyer@example.com"}


def exports(services) -> list[Path]:  # type: ignore[no-untyped-def]
    """Every data-request export on disk, wherever in the exports folder it is."""
    return sorted((services.settings.instance_path / DATA_REQUESTS_FOLDER).rglob("*.json"))


def test_data_request_writes_the_customers_data_for_the_merchant(browser, app_services, stored):
    answer = send(browser, "customers/data_request", data_request(JON, 9999))
    assert answer.json == {"status": "recorded", "events": 2, "click_records": 1}
    [path] = exports(app_services)
    assert path.name.endswith("-9999.json")
    document = json.loads(path.read_text())
    assert document["shop"] == INSTALL_SHOP and document["data_request_id"] == "9999"
    assert {e["event_id"] for e in document["events"]} == {JON_ORDER, JON_CHECKOUT}
    [click] = document["click_records"]
    assert click["token"] == JON_CHECKOUT
    # every platform's click ids and cookies the record holds (it keeps an fbclid as its fbc),
    # and the consent the storefront reported with them
    assert {name: click[name] for name in CLICK_ID_FIELDS if name != "fbclid"} == {
        name: getattr(JON_CLICKS, name) for name in CLICK_ID_FIELDS if name != "fbclid"
    }
    assert click["consent"] == {"marketing": True, "analytics": False, "sale_of_data": None}
    assert "jon@example.com" not in path.read_text()  # only hashes were ever stored
    assert "115310627314723954" not in path.name  # the customer is a hash in the name too
    assert event_ids(app_services) >= {JON_ORDER, JON_CHECKOUT}  # nothing deleted


def test_a_data_request_export_is_private_and_holds_no_ip_or_user_agent(
    browser, app_services, stored
):
    order = json.loads(fixture_bytes("shopify", "orders_create.json"))
    with app_services.db.session() as session:  # pending: the row still has them
        network = session.scalar(
            select(OutboxEvent.network).where(OutboxEvent.event_id == JON_ORDER)
        )
    assert network["ip"] == order["browser_ip"]

    send(browser, "customers/data_request", data_request(JON, 9999))

    [path] = exports(app_services)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    text = path.read_text()
    assert order["browser_ip"] not in text
    assert order["client_details"]["user_agent"] not in text
    [event] = [e for e in json.loads(text)["events"] if e["event_id"] == JON_ORDER]
    assert {"ip", "user_agent"} <= set(event["signals"])  # said, not copied


def test_customer_redact_deletes_that_customers_exports_only(browser, app_services, stored):
    send(browser, "customers/data_request", data_request(JON, 1))
    send(browser, "customers/data_request", data_request(JON, 2))
    send(browser, "customers/data_request", data_request(GUEST, 3))
    assert len(exports(app_services)) == 3

    assert send(browser, "customers/redact", redact({"id": JON["id"]})).status_code == 200

    assert [p.name.rsplit("-", 1)[1] for p in exports(app_services)] == ["3.json"]
    send(browser, "customers/redact", redact({"email": " Guest.Buyer@Example.com "}))
    assert exports(app_services) == []


def test_shop_redact_deletes_the_stores_exports_only(browser, app_services, stored):
    send(browser, "customers/data_request", data_request(JON, 1))
    send(browser, "customers/data_request", data_request(GUEST, 2))
    folder = app_services.settings.instance_path / DATA_REQUESTS_FOLDER
    other = folder / "st_0123456789abcdef" / "export-4.json"
    other.parent.mkdir()
    other.write_text("{}")
    earlier = folder / f"{stored}-5.json"  # where earlier versions wrote them
    earlier.write_text("{}")

    send(browser, "shop/redact", {"shop_id": 954889, "shop_domain": INSTALL_SHOP})

    assert exports(app_services) == [other]


@pytest.mark.parametrize("topic", ["customers/redact", "shop/redact", "customers/data_request"])
def test_privacy_webhooks_with_a_bad_hmac_get_401_and_change_nothing(
    browser, app_services, stored, topic
):
    everything = event_ids(app_services)
    payload = redact({"id": 115310627314723954})
    answer = send(browser, topic, payload, secret="not-the-app-secret")
    assert answer.status_code == 401
    assert event_ids(app_services) == everything


@pytest.mark.parametrize("topic", ["customers/redact", "shop/redact", "customers/data_request"])
def test_privacy_webhooks_for_an_unknown_shop_are_acknowledged(browser, app_services, topic):
    answer = send(browser, topic, redact({"id": 1}))
    assert answer.status_code == 200 and answer.json["status"] == "ignored"


def test_uninstall_deletes_tokens_and_pauses_deliveries(browser, app_services, store_id):
    body = fixture_bytes("shopify", "app_uninstalled.json")
    answer = browser.post(
        "/webhooks/shopify", data=body, headers=app_webhook("app/uninstalled", body)
    )
    assert answer.status_code == 200
    with app_services.db.session() as session:
        assert session.get(ShopifyToken, store_id) is None
        store = session.get(Store, store_id)
        assert (store.status, store.access_token_encrypted) == ("uninstalled", None)
        destination = session.scalar(select(StoreDestination))
        assert "uninstalled" in destination.paused_reason and destination.paused_at


def test_uninstall_keeps_an_earlier_pause_reason(browser, app_services, store_id):
    with app_services.db.session() as session:
        session.scalar(select(StoreDestination)).paused_reason = "TikTok refused the token"
        session.commit()
    body = fixture_bytes("shopify", "app_uninstalled.json")
    browser.post("/webhooks/shopify", data=body, headers=app_webhook("app/uninstalled", body))
    with app_services.db.session() as session:
        assert session.scalar(select(StoreDestination)).paused_reason == "TikTok refused the token"


def test_uninstall_of_a_custom_apps_own_app_changes_nothing(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    body = fixture_bytes("shopify", "app_uninstalled.json")
    answer = client.post(
        "/webhooks/shopify", data=body, headers=shopify_headers("app/uninstalled", body)
    )
    assert answer.status_code == 200 and answer.json["status"] == "ignored"
    with services.db.session() as session:
        assert session.scalar(select(StoreDestination)).paused_reason is None
        assert session.get(Store, shopify_store).status == "active"
