"""Pixel receipts and consent from the TikTok custom pixel, in a real browser (Chromium).

The storefront is the sandbox page of ``test_custom_pixel_browser`` (Shopify's custom-pixel
globals, served as the shop's primary domain, with a local stand-in for TikTok's events.js);
the rendered pixel reports over real HTTP to a real connector, whose worker sends the orders to
the TikTok stand-in.

* Receipts: one shopper's purchase with TikTok's events.js loading, another's with it blocked
  (Playwright aborts the request as an ad blocker does, so the script element fires
  ``error``). The connector must store ``reported`` and ``blocked`` for their order ids, deliver
  both orders from the server, and its ledger (:mod:`connector.recovered`) must call the first
  reported and the second recovered.
* Consent: four shoppers, who allowed everything, refused marketing, opted out of the sale of
  their data, or whose consent the sandbox does not give. Each report must leave the checkout's
  record holding exactly that choice, and a refusal must cost TikTok's script (not loaded) and
  the click ids (not sent).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from connector import recovered
from connector.models import ClickRecord, OutboxEvent, PixelReceipt
from platforms.shopify.custom_pixel import custom_pixel_code
from tests.browser import chromium, needs_chromium
from tests.platforms.shopify.test_custom_pixel_browser import (
    GRANTED,
    ORDER_ID,
    ORIGIN,
    TTCLID,
    TTP_COOKIE,
    Storefront,
    add_storefront_domain,
    customer_event,
    order_webhook,
    send_webhooks,
    web_pixel_checkout,
)
from tests.support import PIXEL_CODE, SHOP_DOMAIN, connect_tiktok

pytestmark = [needs_chromium, pytest.mark.postgres]

DENIED = {key: False for key in GRANTED}
OPTED_OUT = {**GRANTED, "saleOfDataAllowed": False}


def order(number: int) -> dict[str, Any]:
    """orders/create for the ``number``-th shopper: its own order id and checkout token."""
    payload = order_webhook()
    payload["id"] = int(ORDER_ID) + number
    payload["checkout_token"] = f"{number:02d}" + payload["checkout_token"][2:]
    payload["token"] = f"{number:02d}" + payload["token"][2:]
    payload["name"] = f"#{1001 + number}"
    payload["order_number"] = 1001 + number
    return payload


def buy(  # type: ignore[no-untyped-def]
    browser, pixel: str, payload: dict[str, Any], *, privacy: dict | None, block_tiktok=False
) -> Storefront:
    """One shopper's visit, in a fresh browser context: the landing page with ``?ttclid=``,
    the checkout, the thank-you page; each event's handlers (reports, receipt) have finished
    when this returns."""
    context = browser.new_context()
    try:
        context.add_cookies([{"name": "_ttp", "value": TTP_COOKIE, "url": ORIGIN}])
        shop = Storefront(context.new_page(), pixel, privacy=privacy, block_tiktok=block_tiktok)
        landing = f"{ORIGIN}/products/ipod-nano?ttclid={TTCLID}"
        shop.visit(landing, ("page_viewed", customer_event("page_viewed", landing, 1)))
        checkout_url = f"{ORIGIN}/checkouts/cn/{payload['checkout_token']}"
        started = web_pixel_checkout(payload, order_id=None)
        shop.visit(
            checkout_url,
            ("checkout_started", customer_event("checkout_started", checkout_url, 2, started)),
        )
        thank_you = checkout_url + "/thank-you"
        completed = web_pixel_checkout(payload, order_id=str(payload["id"]))
        shop.visit(
            thank_you,
            ("checkout_completed", customer_event("checkout_completed", thank_you, 3, completed)),
        )
        shop.calls = shop.tiktok_calls()
    finally:
        context.close()
    return shop


def receipts(services, store_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        rows = session.execute(
            select(PixelReceipt.event_id, PixelReceipt.outcome, PixelReceipt.pixel).where(
                PixelReceipt.store_id == store_id
            )
        ).all()
    assert {pixel for _, _, pixel in rows} <= {"tiktok"}
    return {event_id: outcome for event_id, outcome, _ in rows}


def wait_for_statuses(services, store_id: str, count: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The outbox statuses of the store's purchases, once ``count`` of them are final."""
    deadline = time.monotonic() + 20
    while True:
        with services.db.session() as session:
            rows = session.execute(
                select(OutboxEvent.event_id, OutboxEvent.status).where(
                    OutboxEvent.store_id == store_id, OutboxEvent.event_name == "CompletePayment"
                )
            ).all()
        statuses = dict(rows)
        final = [s for s in statuses.values() if s not in ("pending", "processing")]
        if len(final) >= count or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def test_the_ledger_tells_a_purchase_the_browser_reported_from_one_it_could_not(
    services, shopify_store, tiktok, live_server, worker
):
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    seen, blocked = order(1), order(2)
    seen_id, blocked_id = str(seen["id"]), str(blocked["id"])

    with chromium() as browser:
        normal = buy(browser, pixel, seen, privacy=GRANTED)
        adblocked = buy(browser, pixel, blocked, privacy=GRANTED, block_tiktok=True)

    # The browser reached TikTok's (stand-in) events.js only the first time.
    assert [call[1:2] + [call[3]] for call in normal.calls] == [
        ["InitiateCheckout", {"event_id": seen["checkout_token"]}],
        ["CompletePayment", {"event_id": seen_id}],
    ]
    assert adblocked.events_js_requests and adblocked.calls == []
    assert receipts(services, shopify_store) == {seen_id: "reported", blocked_id: "blocked"}

    send_webhooks(live_server, ("orders/create", seen), ("orders/create", blocked))
    delivered = {event["event_id"] for event in tiktok.wait_for_events(2)}
    assert delivered == {seen_id, blocked_id}
    assert wait_for_statuses(services, shopify_store, 2) == {
        seen_id: "delivered",
        blocked_id: "delivered",
    }
    rows = {row["order_id"]: row for row in recovered.orders(services, shopify_store)}
    assert {order_id: row["browser_outcome"] for order_id, row in rows.items()} == {
        seen_id: "reported",
        blocked_id: "blocked",
    }
    ledger = recovered.ledger(services, shopify_store)
    assert (ledger.delivered.count, ledger.reported.count, ledger.recovered.count) == (2, 1, 1)
    assert ledger.unreceipted.count == 0


def test_a_reload_that_loads_the_pixel_turns_blocked_into_reported(
    services, shopify_store, live_server
):
    """The same order's thank-you page, blocked and then reloaded with events.js loading: the
    blocked call was forgotten, so the reload tracks the purchase and its receipt replaces
    "blocked" with "reported"."""
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    payload = order(3)
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        thank_you = f"{ORIGIN}/checkouts/cn/{payload['checkout_token']}/thank-you"
        completed = web_pixel_checkout(payload, order_id=str(payload["id"]))
        event = (
            "checkout_completed",
            customer_event("checkout_completed", thank_you, 1, completed),
        )
        Storefront(page, pixel, block_tiktok=True).visit(thank_you, event)
        assert receipts(services, shopify_store) == {str(payload["id"]): "blocked"}
        # The shopper reloads; this time nothing blocks events.js (the newer routes win).
        reloaded = Storefront(page, pixel)
        reloaded.visit(thank_you, event)
        calls = reloaded.tiktok_calls()
        context.close()
    assert [call[1] for call in calls] == ["CompletePayment"]
    assert receipts(services, shopify_store) == {str(payload["id"]): "reported"}


@pytest.mark.parametrize(
    ("privacy", "stored", "loads_tiktok"),
    [
        (GRANTED, (True, True, True), True),
        (DENIED, (False, False, False), False),
        (OPTED_OUT, (True, True, False), True),
        (None, (None, None, None), True),
    ],
    ids=["granted", "denied", "sale-of-data-opt-out", "unknown"],
)
def test_each_shoppers_consent_reaches_the_checkouts_record(
    services, shopify_store, live_server, privacy, stored, loads_tiktok
):
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    payload = order(4)
    with chromium() as browser:
        shop = buy(browser, pixel, payload, privacy=privacy)

    assert bool(shop.events_js_requests) is loads_tiktok
    with services.db.session() as session:
        record = session.scalar(
            select(ClickRecord).where(
                ClickRecord.store_id == shopify_store,
                ClickRecord.token == payload["checkout_token"],
            )
        )
    assert record is not None
    consent = (record.consent_marketing, record.consent_analytics, record.consent_sale_of_data)
    assert consent == stored
    # A refusal sends no click id; otherwise the landing page's ttclid and the _ttp cookie.
    clicks = (None, None) if privacy is DENIED else (TTCLID, TTP_COOKIE)
    assert (record.ttclid, record.ttp) == clicks
    # No receipt where TikTok's script was never requested: nothing was blocked.
    expected = {str(payload["id"]): "reported"} if loads_tiktok else {}
    assert receipts(services, shopify_store) == expected


def test_a_shopper_who_allows_marketing_on_the_checkout_is_recorded_and_tracked(
    services, shopify_store, live_server
):
    """Refused on landing, allowed on the checkout's banner (visitorConsentCollected): the
    choice replaces the refusal on the checkout's record, TikTok's script loads then, and
    the thank-you page tracks and reports the purchase."""
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    payload = order(5)
    checkout_url = f"{ORIGIN}/checkouts/cn/{payload['checkout_token']}"
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        refused = Storefront(page, pixel, privacy=DENIED)
        started = web_pixel_checkout(payload, order_id=None)
        refused.visit(
            checkout_url,
            ("checkout_started", customer_event("checkout_started", checkout_url, 1, started)),
        )
        with services.db.session() as session:
            first = session.scalar(
                select(ClickRecord.consent_marketing).where(
                    ClickRecord.token == payload["checkout_token"]
                )
            )
        page.evaluate("(choice) => window.publishConsent(choice)", GRANTED)
        page.wait_for_function("window.ttq && window.ttq.testLoaded === true")
        allowed = Storefront(page, pixel, privacy=GRANTED)
        thank_you = checkout_url + "/thank-you"
        completed = web_pixel_checkout(payload, order_id=str(payload["id"]))
        allowed.visit(
            thank_you,
            ("checkout_completed", customer_event("checkout_completed", thank_you, 2, completed)),
        )
        calls = allowed.tiktok_calls()
        context.close()
    assert first is False
    with services.db.session() as session:
        record = session.scalar(
            select(ClickRecord).where(ClickRecord.token == payload["checkout_token"])
        )
    assert (record.consent_marketing, record.consent_sale_of_data) == (True, True)
    # InitiateCheckout waited in ttq's queue while refused, and went out once allowed.
    assert [call[1] for call in calls] == ["InitiateCheckout", "CompletePayment"]
    assert receipts(services, shopify_store) == {str(payload["id"]): "reported"}


def test_the_receipt_is_one_flat_report_collect_accepts(services, shopify_store, live_server):
    """What the pixel posts as a receipt, seen on the wire: text/plain, one flat object."""
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    payload = order(6)
    bodies: list[dict] = []
    with chromium() as browser:
        context = browser.new_context()
        context.on(
            "request",
            lambda request: (
                bodies.append(json.loads(request.post_data or "{}"))
                if request.url.endswith("/collect")
                else None
            ),
        )
        shop = Storefront(context.new_page(), pixel)
        thank_you = f"{ORIGIN}/checkouts/cn/{payload['checkout_token']}/thank-you"
        completed = web_pixel_checkout(payload, order_id=str(payload["id"]))
        shop.visit(
            thank_you,
            ("checkout_completed", customer_event("checkout_completed", thank_you, 1, completed)),
        )
        context.close()
    [receipt] = [body for body in bodies if "receipt" in body]
    assert receipt == {
        "shop": SHOP_DOMAIN,
        "receipt": "reported",
        "event_id": str(payload["id"]),
        "pixel": "tiktok",
    }


def test_each_shoppers_purchase_ends_as_her_consent_and_the_default_policy_say(
    services, shopify_store, tiktok, live_server, worker
):
    """The default policy (respect; unknown consent sent): the shopper who allowed everything
    and the one whose consent is unknown are sent in full, the one who opted out of the sale
    of her data is sent with ``limited_data_use: true``, the one who refused marketing is not
    sent at all and her purchase is recorded as held back."""
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    shoppers = {"granted": GRANTED, "denied": DENIED, "opted_out": OPTED_OUT, "unknown": None}
    payloads = {name: order(10 + number) for number, name in enumerate(shoppers)}
    ids = {name: str(payload["id"]) for name, payload in payloads.items()}

    with chromium() as browser:
        for name, privacy in shoppers.items():
            buy(browser, pixel, payloads[name], privacy=privacy)
    send_webhooks(live_server, *(("orders/create", payload) for payload in payloads.values()))

    arrived = {event["event_id"]: event for event in tiktok.wait_for_events(3)}
    statuses = wait_for_statuses(services, shopify_store, 4)
    time.sleep(1.0)  # a fourth event would arrive now
    assert sorted(tiktok.accepted_event_ids()) == sorted(
        [ids["granted"], ids["opted_out"], ids["unknown"]]
    )
    limited = {event_id: event["limited_data_use"] for event_id, event in arrived.items()}
    assert limited == {ids["granted"]: False, ids["opted_out"]: True, ids["unknown"]: False}
    assert arrived[ids["granted"]]["user"]["ttclid"] == TTCLID
    assert statuses == {
        ids["granted"]: "delivered",
        ids["denied"]: "skipped",
        ids["opted_out"]: "delivered",
        ids["unknown"]: "delivered",
    }
    with services.db.session() as session:
        rows = session.execute(
            select(
                OutboxEvent.event_id,
                OutboxEvent.consent,
                OutboxEvent.consent_source,
                OutboxEvent.last_error,
            ).where(
                OutboxEvent.store_id == shopify_store,
                OutboxEvent.event_name == "CompletePayment",
            )
        ).all()
    recorded = {event_id: (consent, source) for event_id, consent, source, _ in rows}
    assert recorded == {
        ids["granted"]: ("granted", "stored_checkout_token"),
        ids["denied"]: ("denied", "stored_checkout_token"),
        ids["opted_out"]: ("limited", "stored_checkout_token"),
        ids["unknown"]: ("unknown", None),
    }
    [reason] = [error for event_id, *_, error in rows if event_id == ids["denied"]]
    assert reason.startswith("no marketing consent")


def test_a_shopper_who_withdraws_on_the_page_is_not_tracked_any_more(
    services, shopify_store, live_server
):
    """Allowed at first (events.js loaded), withdrawn on the banner before paying: the
    purchase is not tracked in the browser, no receipt is sent, and the withdrawal replaces
    the grant on the checkout's record."""
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")
    payload = order(7)
    checkout_url = f"{ORIGIN}/checkouts/cn/{payload['checkout_token']}"
    thank_you = checkout_url + "/thank-you"
    started = web_pixel_checkout(payload, order_id=None)
    completed = web_pixel_checkout(payload, order_id=str(payload["id"]))
    with chromium() as browser:
        context = browser.new_context()
        shop = Storefront(context.new_page(), pixel, privacy=GRANTED)
        shop.visit(
            thank_you,
            ("checkout_started", customer_event("checkout_started", checkout_url, 1, started)),
        )
        shop.page.evaluate("(choice) => window.publishConsent(choice)", DENIED)
        shop.page.evaluate(
            "([name, event]) => window.publishCustomerEvent(name, event)",
            ["checkout_completed", customer_event("checkout_completed", thank_you, 2, completed)],
        )
        calls = shop.tiktok_calls()
        context.close()
    assert [call[1] for call in calls] == ["InitiateCheckout"]
    assert receipts(services, shopify_store) == {}
    with services.db.session() as session:
        record = session.scalar(
            select(ClickRecord).where(ClickRecord.token == payload["checkout_token"])
        )
    assert record.consent_marketing is False
