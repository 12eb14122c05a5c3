"""The TikTok custom pixel in a real browser (Debian's Chromium, driven by Playwright).

A local page plays Shopify's custom-pixel sandbox: the globals ``analytics`` (driven here with
real-shaped ``page_viewed``, ``checkout_started`` and ``checkout_completed`` events, per the
Web Pixels API), ``browser`` (the page's own cookies and sessionStorage) and ``init``. It is
served as the shop's primary domain (``https://shop.example.com``, routed by Playwright), the
rendered pixel runs in it, and TikTok's ``events.js`` is a local fake that records every
``ttq`` call. The pixel's click report goes over real HTTP to a real connector, whose worker
then sends the order to the TikTok stand-in: the browser and server events must carry the same
event name, ``event_id``, value, currency and content ids, which is what TikTok deduplicates on.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from connector.embedded_redis import free_port
from connector.mapping import EventOptions
from connector.models import ClickRecord, OutboxEvent, Store
from platforms.shopify.custom_pixel import custom_pixel_code
from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.support import (
    PIXEL_CODE,
    SHOP_DOMAIN,
    connect_tiktok,
    fixture_bytes,
    fresh,
    post,
    shopify_headers,
)

pytestmark = [
    needs_chromium,
    pytest.mark.postgres,
]

STOREFRONT = "shop.example.com"
ORIGIN = f"https://{STOREFRONT}"
TTCLID = "E.C.P.CqgBbrowserLanding7Hj2Kl9Mn4Pq6Rs8Tu1Vw3"
TTP_COOKIE = "01HZX3browserTtpCookie"
CHECKOUT_TOKEN = "b1946ac92492d2347c6235b4d2611184"  # the fixtures' checkout token
ORDER_ID = "820982911946154508"  # orders_create.json's id: more than 2^53, so kept as text

SANDBOX_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Shopify custom pixel sandbox (test stand-in)</title>
<script>
  // What Shopify's lax sandbox hands a custom pixel (Web Pixels API): analytics.subscribe,
  // browser.cookie / browser.sessionStorage (async, acting on the top frame), init and the
  // customerPrivacy API.
  (function () {
    const handlers = {};
    window.analytics = {
      subscribe(name, callback) {
        (handlers[name] = handlers[name] || []).push(callback);
        return Promise.resolve();
      },
    };
    window.publishCustomerEvent = (name, event) =>
      Promise.all((handlers[name] || []).map((callback) => callback(event)));
    // The customerPrivacy API: visitorConsentCollected, with the shopper's new choice.
    const consentHandlers = [];
    window.customerPrivacy = {
      subscribe(name, callback) {
        if (name === "visitorConsentCollected") consentHandlers.push(callback);
        return Promise.resolve();
      },
    };
    window.publishConsent = (customerPrivacy) =>
      Promise.all(consentHandlers.map((callback) => callback({ customerPrivacy })));
    window.browser = {
      cookie: {
        get: async (name) => {
          const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
          return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
        },
      },
      sessionStorage: {
        getItem: async (key) => window.sessionStorage.getItem(key),
        setItem: async (key, value) => window.sessionStorage.setItem(key, value),
      },
    };
    window.init = %(init)s;
  })();
</script>
<script src="/custom-pixel.js"></script>
"""

FAKE_EVENTS_JS = """
// Stands in for TikTok's events.js: replays the queued ttq calls, then records every later
// one, in the top frame's sessionStorage so that the calls of every page add up.
(function () {
  const ttq = window[window.TiktokAnalyticsObject];
  const record = (method, args) => {
    const calls = JSON.parse(sessionStorage.getItem("test:ttq-calls") || "[]");
    calls.push([method].concat(JSON.parse(JSON.stringify(args))));
    sessionStorage.setItem("test:ttq-calls", JSON.stringify(calls));
  };
  ttq.splice(0).forEach((call) => record(call[0], call.slice(1)));
  ttq.methods.forEach((method) => {
    ttq[method] = function () { record(method, Array.prototype.slice.call(arguments)); };
  });
  ttq.testLoaded = true;
})();
"""


def web_pixel_line_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhook's line items as the Web Pixels API's ``CheckoutLineItem`` objects."""
    currency = payload["currency"]
    return [
        {
            "id": f"gid://shopify/CheckoutLineItem/{index}",
            "quantity": item["quantity"],
            "title": item["title"],
            "variant": {
                "id": f"gid://shopify/ProductVariant/{item['variant_id']}",
                "sku": item["sku"],
                "title": item["variant_title"],
                "price": {"amount": float(item["price"]), "currencyCode": currency},
                "product": {
                    "id": f"gid://shopify/Product/{item['product_id']}",
                    "title": item["title"],
                    "vendor": item.get("vendor"),
                },
            },
            "finalLinePrice": {
                "amount": float(item["price"]) * item["quantity"],
                "currencyCode": currency,
            },
        }
        for index, item in enumerate(payload["line_items"], start=1)
    ]


def customer_event(name: str, href: str, seq: int, checkout: dict | None = None) -> dict:
    """A standard customer event as ``analytics.subscribe`` callbacks receive it."""
    event: dict[str, Any] = {
        "id": f"sh-{name}-{seq}",
        "clientId": "e5a41b4c-0a6c-4c37-9c1d-4f3f1f2b7b10",
        "name": name,
        "seq": seq,
        "timestamp": "2026-03-02T10:15:00.000Z",
        "type": "standard",
        "context": {
            "document": {
                "location": {"href": href, "host": STOREFRONT, "protocol": "https:"},
                "referrer": "https://www.tiktok.com/",
                "title": "Demo store",
            },
            "navigator": {"language": "en-US", "userAgent": "Mozilla/5.0"},
        },
        "data": {},
    }
    if checkout is not None:
        event["data"]["checkout"] = checkout
    return event


def web_pixel_checkout(payload: dict[str, Any], order_id: str | None) -> dict[str, Any]:
    """A webhook payload's checkout as the Web Pixels API's ``Checkout`` object."""
    currency = payload["currency"]
    return {
        "token": payload.get("checkout_token") or payload["token"],
        "currencyCode": currency,
        "totalPrice": {"amount": float(payload["total_price"]), "currencyCode": currency},
        "subtotalPrice": {"amount": float(payload["subtotal_price"]), "currencyCode": currency},
        "email": payload.get("email"),
        "lineItems": web_pixel_line_items(payload),
        "order": {"id": f"gid://shopify/Order/{order_id}", "customer": None} if order_id else None,
    }


def order_webhook() -> dict[str, Any]:
    """orders/create for the checkout, with no click id of its own: only the pixel has one."""
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload.update(note_attributes=[], landing_site="/", cart_token=None)
    return payload


GRANTED = {
    "marketingAllowed": True,
    "analyticsProcessingAllowed": True,
    "preferencesProcessingAllowed": True,
    "saleOfDataAllowed": True,
}
"""``init.customerPrivacy`` of a shopper who allowed everything (or needs no consent)."""


class Storefront:
    """The shop's pages in one browser tab: each visit is a fresh page load of the sandbox.

    ``privacy`` is the ``init.customerPrivacy`` the sandbox hands the pixel (None: none at
    all); ``block_tiktok`` makes every request for TikTok's events.js fail, as an ad blocker
    does (Playwright's route abort: the script element fires ``error``)."""

    def __init__(  # type: ignore[no-untyped-def]
        self, page, pixel: str, privacy: dict | None = GRANTED, block_tiktok: bool = False
    ) -> None:
        self.page = page
        self.events_js_requests: list[str] = []
        self.calls: list[list[Any]] = []
        self.block_tiktok = block_tiktok
        self.privacy = privacy
        init = {
            "context": {"document": {"location": {"href": ORIGIN + "/"}}},
            "data": {
                "shop": {
                    "name": "Demo store",
                    "myshopifyDomain": SHOP_DOMAIN,
                    "storefrontUrl": ORIGIN,
                    "paymentSettings": {"currencyCode": "USD"},
                },
                "cart": None,
                "customer": None,
                "purchasingCompany": None,
            },
        }
        if privacy is not None:
            init["customerPrivacy"] = privacy
        html = SANDBOX_PAGE % {"init": json.dumps(init)}

        def storefront(route) -> None:  # type: ignore[no-untyped-def]
            path = urlsplit(route.request.url).path
            if path == "/custom-pixel.js":
                route.fulfill(status=200, content_type="text/javascript", body=pixel)
            else:
                route.fulfill(status=200, content_type="text/html", body=html)

        def tiktok(route) -> None:  # type: ignore[no-untyped-def]
            self.events_js_requests.append(route.request.url)
            if block_tiktok:
                route.abort("blockedbyclient")
            else:
                route.fulfill(status=200, content_type="text/javascript", body=FAKE_EVENTS_JS)

        page.route(f"{ORIGIN}/**", storefront)
        page.route("https://analytics.tiktok.com/**", tiktok)

    def visit(self, url: str, *events: tuple[str, dict]) -> None:
        """Load a page, wait for the pixel to be up, and publish these customer events."""
        answer = self.page.goto(url)
        assert answer is not None and answer.status == 200
        if self.block_tiktok or (self.privacy or {}).get("marketingAllowed") is False:
            self.page.wait_for_function("Array.isArray(window.ttq)")  # the queue, no events.js
        else:
            self.page.wait_for_function("window.ttq && window.ttq.testLoaded === true")
        for name, event in events:
            # Resolves once every handler is done: the pixel's reports have been answered.
            self.page.evaluate(
                "([name, event]) => window.publishCustomerEvent(name, event)", [name, event]
            )

    def tiktok_calls(self) -> list[list[Any]]:
        return json.loads(self.page.evaluate("sessionStorage.getItem('test:ttq-calls') || '[]'"))


def add_storefront_domain(services, store_id: str) -> None:  # type: ignore[no-untyped-def]
    """What the install stores from ``shop { primaryDomain { host } }`` (the store here is a
    custom-app store, which has no install)."""
    with services.db.session() as session:
        session.execute(
            update(Store).where(Store.id == store_id).values(storefront_domains=[STOREFRONT])
        )
        session.commit()


CONTENTS = [
    {
        "content_id": "808950810",
        "content_type": "product",
        "content_name": "IPod Nano - 8GB",
        "price": 199,
        "quantity": 1,
    },
    {
        "content_id": "9007199254740995",
        "content_type": "product",
        "content_name": "IPod Nano - 8GB",
        "price": 199,
        "quantity": 1,
    },
]
"""The fixtures' two variants, as the pixel must describe them (variant ids as text)."""


def shop_to_purchase(sync_api, pixel: str, started: dict, completed: dict) -> Storefront:  # type: ignore[no-untyped-def]
    """A shopper's visit: landing page with ``?ttclid=``, checkout (loaded twice), thank-you
    page; returns the storefront, whose TikTok calls and events.js requests are recorded."""
    checkout_url = f"{ORIGIN}/checkouts/cn/{CHECKOUT_TOKEN}"
    landing = f"{ORIGIN}/products/ipod-nano?ttclid={TTCLID}&utm_source=tiktok"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "_ttp", "value": TTP_COOKIE, "url": ORIGIN}])
            shop = Storefront(context.new_page(), pixel)
            shop.visit(landing, ("page_viewed", customer_event("page_viewed", landing, 1)))
            started_event = customer_event("checkout_started", checkout_url, 2, started)
            shop.visit(checkout_url, ("checkout_started", started_event))
            # The shopper reloads the checkout: Shopify publishes checkout_started again.
            shop.visit(checkout_url, ("checkout_started", started_event))
            thank_you = checkout_url + "/thank-you"
            completed_event = customer_event("checkout_completed", thank_you, 3, completed)
            shop.visit(thank_you, ("checkout_completed", completed_event))
            shop.calls = shop.tiktok_calls()
        finally:
            browser.close()
    return shop


def send_webhooks(live_server: str, *topics_and_payloads: tuple[str, dict]) -> None:
    for topic, payload in topics_and_payloads:
        body = fresh(json.dumps(payload).encode())
        answer = post(f"{live_server}/webhooks/shopify", body, shopify_headers(topic, body))
        assert answer.status_code == 200, answer.text


def comparable(properties: dict) -> tuple:
    """What must agree between browser and server for one event."""
    contents = [
        (c["content_id"], c["price"], c["quantity"], c["content_type"])
        for c in properties["contents"]
    ]
    return properties["value"], properties["currency"], contents


def test_browser_events_match_the_server_events_and_the_click_reaches_tiktok(
    services, shopify_store, tiktok, live_server, worker
):
    sync_api = pytest.importorskip("playwright.sync_api")
    connect_tiktok(services, shopify_store)
    add_storefront_domain(services, shopify_store)
    checkout_payload = json.loads(fixture_bytes("shopify", "checkouts_create.json"))
    order_payload = order_webhook()
    pixel = custom_pixel_code(PIXEL_CODE, f"{live_server}/collect")

    shop = shop_to_purchase(
        sync_api,
        pixel,
        web_pixel_checkout(checkout_payload, order_id=None),
        web_pixel_checkout(order_payload, order_id=ORDER_ID),
    )

    sdk_ids = {parse_qs(urlsplit(url).query)["sdkid"][0] for url in shop.events_js_requests}
    assert sdk_ids == {PIXEL_CODE}
    assert shop.calls == [
        [
            "track",
            "InitiateCheckout",
            {"value": 398, "currency": "USD", "content_type": "product", "contents": CONTENTS},
            {"event_id": CHECKOUT_TOKEN},
        ],
        [
            "track",
            "CompletePayment",
            {"value": 388, "currency": "USD", "content_type": "product", "contents": CONTENTS},
            {"event_id": ORDER_ID},
        ],
    ]
    with services.db.session() as session:
        record = session.scalar(select(ClickRecord).where(ClickRecord.token == CHECKOUT_TOKEN))
    assert record is not None and (record.ttclid, record.ttp) == (TTCLID, TTP_COOKIE)

    send_webhooks(
        live_server, ("checkouts/create", checkout_payload), ("orders/create", order_payload)
    )
    server = {event["event"]: event for event in tiktok.wait_for_events(2)}
    for _, name, browser_properties, options in shop.calls:
        assert server[name]["event_id"] == options["event_id"]
        assert comparable(server[name]["properties"]) == comparable(browser_properties)
    assert server["CompletePayment"]["user"]["ttclid"] == TTCLID
    assert server["CompletePayment"]["user"]["ttp"] == TTP_COOKIE
    with services.db.session() as session:
        source = session.scalar(
            select(OutboxEvent.click_source).where(OutboxEvent.event_id == ORDER_ID)
        )
    assert source == "stored_checkout_token"


def test_the_pixel_follows_the_stores_choices_and_needs_no_connector_to_track():
    """Purchase named ``Purchase``, no InitiateCheckout, subtotal value, SKUs as content ids;
    a thank-you page without an order id fires nothing; and /collect being unreachable (the
    port is closed) does not stop the TikTok events."""
    sync_api = pytest.importorskip("playwright.sync_api")
    options = EventOptions(
        purchase_event="Purchase",
        send_initiate_checkout=False,
        value_basis="subtotal",
        content_id="sku",
    )
    pixel = custom_pixel_code(PIXEL_CODE, f"http://127.0.0.1:{free_port()}/collect", options)
    checkout_payload = json.loads(fixture_bytes("shopify", "checkouts_create.json"))
    order_payload = order_webhook()
    without_order = web_pixel_checkout(order_payload, order_id=None)
    thank_you = f"{ORIGIN}/checkouts/cn/{CHECKOUT_TOKEN}/thank-you"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "_ttp", "value": TTP_COOKIE, "url": ORIGIN}])
            shop = Storefront(context.new_page(), pixel)
            started = web_pixel_checkout(checkout_payload, order_id=None)
            shop.visit(
                thank_you,
                ("checkout_started", customer_event("checkout_started", thank_you, 1, started)),
                (
                    "checkout_completed",
                    customer_event("checkout_completed", thank_you, 2, without_order),
                ),
                (
                    "checkout_completed",
                    customer_event(
                        "checkout_completed",
                        thank_you,
                        3,
                        web_pixel_checkout(order_payload, order_id=ORDER_ID),
                    ),
                ),
            )
            calls = shop.tiktok_calls()
        finally:
            browser.close()
    skus = [
        {**content, "content_id": sku}
        for content, sku in zip(CONTENTS, ["IPOD2008PINK", "IPOD2008BLUE"], strict=True)
    ]
    assert calls == [
        [
            "track",
            "Purchase",
            {"value": 378, "currency": "USD", "content_type": "product", "contents": skus},
            {"event_id": ORDER_ID},
        ]
    ]
