"""POST /collect's pixel receipts and consent choices, and the store's consent policy from a
signed order webhook to what the TikTok stand-in receives (or is never sent)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from connector.consent import NO_MARKETING_CONSENT, UNKNOWN_HELD, ConsentPolicy
from connector.delivery import deliver_pending
from connector.models import ClickRecord, EventStatus, OutboxEvent, PixelReceipt
from connector.pipeline import record_events
from connector.stores import add_store, consent_policy, set_consent_policy
from platforms.woocommerce.parse import parse_order as parse_woocommerce_order
from tests.platforms.shopify.helpers import INSTALL_SHOP, app_webhook
from tests.platforms.shopify.test_collect import CART, CHECKOUT, records, report
from tests.support import connect_tiktok, fixture_bytes

pytestmark = pytest.mark.postgres

ORDER_ID = "820982911946154508"  # orders_create.json's id, the purchase's event_id


@pytest.fixture
def store_id(app_services) -> str:
    return add_store(app_services, platform="shopify", domain=INSTALL_SHOP, webhook_secret=None).id


def receipts(services) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        rows = session.scalars(select(PixelReceipt).order_by(PixelReceipt.id))
        return [(r.pixel, r.event_id, r.outcome) for r in rows]


def receipt(browser, outcome: str, event_id: str = ORDER_ID, **extra: str):  # type: ignore[no-untyped-def]
    return report(
        browser, {"shop": INSTALL_SHOP, "receipt": outcome, "event_id": event_id, **extra}
    )


# -- receipts ----------------------------------------------------------------------------------


def test_a_receipt_is_kept_and_reported_wins_over_blocked(browser, app_services, store_id):
    assert receipt(browser, "blocked").status_code == 204
    assert receipts(app_services) == [("tiktok", ORDER_ID, "blocked")]
    assert receipt(browser, "reported", pixel="tiktok").status_code == 204
    assert receipts(app_services) == [("tiktok", ORDER_ID, "reported")]
    assert receipt(browser, "blocked").status_code == 204  # a reload where it failed
    assert receipts(app_services) == [("tiktok", ORDER_ID, "reported")]
    assert records(app_services) == []  # a receipt is no click report


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"receipt": "maybe", "event_id": ORDER_ID}, "'receipt' must be one of"),
        ({"receipt": "reported"}, "'event_id'"),
        ({"receipt": "reported", "event_id": "1 OR 1=1"}, "'event_id'"),
        ({"receipt": "reported", "event_id": ORDER_ID, "pixel": "myspace"}, "'pixel'"),
        ({"receipt": "reported", "event_id": ORDER_ID, "pixel": ["tiktok"]}, "'pixel'"),
        ({"receipt": "reported", "event_id": ORDER_ID, "pixel": {}}, "'pixel'"),
        ({"receipt": ["reported"], "event_id": ORDER_ID}, "'receipt' must be one of"),
        ({"receipt": "reported", "event_id": ORDER_ID, "ttclid": "x"}, "a receipt is"),
    ],
)
def test_invalid_receipts_are_400_and_store_nothing(browser, app_services, store_id, body, message):
    answer = report(browser, {"shop": INSTALL_SHOP, **body})
    assert answer.status_code == 400 and message in answer.json["error"], answer.json
    assert receipts(app_services) == []


def test_a_receipt_from_another_site_is_refused(browser, app_services, store_id):
    body = {"shop": INSTALL_SHOP, "receipt": "blocked", "event_id": ORDER_ID}
    assert report(browser, body, origin="https://attacker.example").status_code == 403
    assert receipts(app_services) == []


# -- consent on click records ------------------------------------------------------------------


def consent_of(record: ClickRecord) -> tuple[bool | None, bool | None, bool | None]:
    return (record.consent_marketing, record.consent_analytics, record.consent_sale_of_data)


def test_consent_alone_makes_a_record_whose_first_clicks_are_still_taken(
    browser, app_services, store_id
):
    choice = {"consent_marketing": "granted", "consent_sale_of_data": "denied"}
    assert report(browser, {"shop": INSTALL_SHOP, "cart_token": CART, **choice}).status_code == 204
    [record] = records(app_services)
    assert consent_of(record) == (True, None, False) and record.ttclid is None
    clicks = {"shop": INSTALL_SHOP, "cart_token": CART, "ttclid": "E.C.P.first"}
    assert report(browser, clicks).status_code == 204
    [record] = records(app_services)
    assert record.ttclid == "E.C.P.first" and consent_of(record) == (True, None, False)


def test_the_latest_consent_wins_but_clicks_stay_write_once(browser, app_services, store_id):
    first = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, "ttclid": "E.C.P.first"}
    assert report(browser, {**first, "consent_marketing": "granted"}).status_code == 204
    later = {"consent_marketing": "denied", "consent_analytics": "granted"}
    assert report(browser, {**first, **later}).status_code == 204
    [record] = records(app_services)
    assert consent_of(record) == (False, True, None) and record.ttclid == "E.C.P.first"


@pytest.mark.parametrize("value", ["yes", "true", "GRANTED"])
def test_a_consent_choice_is_granted_or_denied(browser, app_services, store_id, value):
    body = {"shop": INSTALL_SHOP, "cart_token": CART, "consent_marketing": value}
    answer = report(browser, body)
    assert answer.status_code == 400 and "granted" in answer.json["error"]
    assert records(app_services) == []


# -- the policy, from the order webhook to TikTok --------------------------------------------


def send_order(browser, services) -> OutboxEvent:  # type: ignore[no-untyped-def]
    """orders_create.json placed a minute ago (TikTok takes no event older than 7 days)."""
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    moment = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    body = json.dumps({**payload, "created_at": moment, "processed_at": moment}).encode()
    answer = browser.post(
        "/webhooks/shopify", data=body, headers=app_webhook("orders/create", body)
    )
    assert answer.status_code == 200, answer.json
    with services.db.session() as session:
        return session.scalars(select(OutboxEvent).where(OutboxEvent.event_id == ORDER_ID)).one()


def choose(browser, **choices: str) -> None:
    fields = {f"consent_{name}": value for name, value in choices.items()}
    body = {"shop": INSTALL_SHOP, "checkout_token": CHECKOUT, **fields}
    assert report(browser, body).status_code == 204


@pytest.mark.parametrize(
    ("policy", "choices", "consent", "held_back", "limited"),
    [
        (ConsentPolicy(), {"marketing": "granted"}, "granted", None, False),
        (ConsentPolicy(), {"marketing": "denied"}, "denied", NO_MARKETING_CONSENT, None),
        (
            ConsentPolicy(),
            {"marketing": "granted", "sale_of_data": "denied"},
            "limited",
            None,
            True,
        ),
        (ConsentPolicy(), {}, "unknown", None, False),
        (ConsentPolicy(unknown="hold"), {}, "unknown", UNKNOWN_HELD, None),
        (ConsentPolicy(unknown="hold"), {"marketing": "granted"}, "granted", None, False),
        (ConsentPolicy("limited"), {"marketing": "granted"}, "granted", None, True),
        (ConsentPolicy("ignore"), {"marketing": "denied"}, "denied", None, False),
    ],
)
def test_the_stores_policy_decides_what_tiktok_receives(
    browser, app_services, store_id, tiktok, policy, choices, consent, held_back, limited
):
    destination_id = connect_tiktok(app_services, store_id)
    set_consent_policy(app_services, store_id, policy)
    if choices:
        choose(browser, **choices)
    event = send_order(browser, app_services)
    assert (event.consent, event.last_error) == (consent, held_back)
    assert event.consent_source == ("stored_checkout_token" if choices else None)
    assert (event.browser, event.device) == ("Safari", "mobile")  # the fixture's iPhone
    assert (event.value, event.currency) == (event.payload["value"], event.payload["currency"])
    deliver_pending(app_services, destination_id)
    if held_back:
        assert event.status == EventStatus.SKIPPED
        assert tiktok.accepted_events() == []
    else:
        [sent] = tiktok.wait_for_events(1)
        assert sent["event_id"] == ORDER_ID and sent["limited_data_use"] is limited


def test_a_new_store_respects_consent_and_sends_when_unknown(app_services, store_id):
    assert consent_policy(app_services, store_id) == ConsentPolicy("respect", "send")


def test_woocommerce_order_meta_consent_is_applied(app_services, tiktok):
    store = add_store(
        app_services, platform="woocommerce", domain="shop.example", webhook_secret="s"
    )
    destination_id = connect_tiktok(app_services, store.id)
    payload = json.loads(fixture_bytes("woocommerce", "order_created__processing.json"))
    meta = [
        {"id": 901, "key": "_tcc_consent_marketing", "value": "granted"},
        {"id": 902, "key": "_tcc_consent_sale_of_data", "value": "denied"},
        {"id": 903, "key": "_tcc_consent_source", "value": "wp_consent_api"},
    ]
    moment = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    recent = {"date_created_gmt": moment, "date_paid_gmt": moment}
    order = parse_woocommerce_order({**payload, **recent, "meta_data": payload["meta_data"] + meta})
    assert (order.consent.marketing, order.consent.sale_of_data) == (True, False)
    record_events(app_services, store.id, "order.created", order)
    deliver_pending(app_services, destination_id)
    [sent] = tiktok.wait_for_events(1)
    assert sent["limited_data_use"] is True
    with app_services.db.session() as session:
        event = session.scalars(select(OutboxEvent)).one()
    assert (event.consent, event.consent_source) == ("limited", "wp_consent_api")
