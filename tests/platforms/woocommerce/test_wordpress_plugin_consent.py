"""The WordPress plugin's consent meta and pixel receipts, with its real main file.

``wordpress-plugin/tests/wordpress_stand_in.php`` runs ``tiktok-click-capture.php`` (hooks and
all) on a stand-in for the WordPress and WooCommerce functions it calls, for one shopper: her
WP Consent API answers (or no API at all), the ``tcc_sale_of_data_consent`` filter, a checkout,
then the thank-you page. What the plugin writes as order meta must be what the connector's
WooCommerce parser reads as the order's consent; what it prints on the thank-you page is served
to Chromium, with TikTok's base code and a stand-in events.js (served, refused as an ad blocker
does, or never answered), and the receipt it sends must be stored by the live connector's
``/collect`` for the order id.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy import select

from connector.events import Consent
from connector.models import OutboxEvent, PixelReceipt
from connector.stores import add_store
from platforms.woocommerce.build_plugin import PLUGIN_DIR
from platforms.woocommerce.parse import parse_order
from tests.browser import chromium, needs_chromium
from tests.platforms.shopify.test_custom_pixel_browser import FAKE_EVENTS_JS
from tests.platforms.woocommerce.helpers import order
from tests.support import connect_tiktok, post, wait_until, woocommerce_headers

PHP = shutil.which("php")
needs_php = pytest.mark.skipif(
    PHP is None, reason="php is not installed (`apt-get install php-cli`; .ci/run installs it)"
)
STAND_IN = PLUGIN_DIR.parent / "tests" / "wordpress_stand_in.php"
GUEST = "order_created__guest_with_ttclid_meta.json"  # order 1191, _ttclid and _ttp in meta
ORDER_ID = 1191
HOST = "woo.example.com"
SITE = f"https://{HOST}"


def plugin_run(
    consent: dict[str, bool] | None,
    *,
    sale_of_data: str | None = None,
    collect_url: str = "https://connector.example.com/collect",
    paid: bool = True,
) -> dict[str, Any]:
    """What the plugin wrote and printed for one shopper's checkout and thank-you page."""
    scenario = {
        "consent": consent,
        "sale_of_data": sale_of_data,
        "collect_url": collect_url,
        "home_url": SITE + "/",
        "cookies": {"tcc_ttclid": "E.C.P.wordpressLanding", "_ttp": "ttp-cookie"},
        "order": {
            "id": ORDER_ID,
            "total": "54.30",
            "currency": "eur",
            "paid": paid,
            "items": [
                {"product_id": 22, "variation_id": 23, "name": "Tee", "quantity": 1, "price": 54.3}
            ],
        },
    }
    out = subprocess.run(
        [PHP, str(STAND_IN), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and not out.stderr, out.stderr + out.stdout
    return json.loads(out.stdout)


def webhook_with(meta: dict[str, str]) -> dict[str, Any]:
    """The order webhook WooCommerce sends for the order, its meta as the plugin left it."""
    meta_data = [
        {"id": 15000 + index, "key": key, "value": value}
        for index, (key, value) in enumerate(meta.items())
    ]
    return order(GUEST, meta_data=meta_data)


CLICKS = {"_ttclid": "E.C.P.wordpressLanding", "_ttp": "ttp-cookie"}
SOURCE = {"_tcc_consent_source": "wp_consent_api"}


@needs_php
@pytest.mark.parametrize(
    ("consent", "sale_of_data", "meta", "parsed"),
    [
        (
            {"marketing": True, "statistics": True},
            None,
            {"_tcc_consent_marketing": "granted", "_tcc_consent_analytics": "granted", **SOURCE},
            Consent(marketing=True, analytics=True, source="wp_consent_api"),
        ),
        (
            {"marketing": False, "statistics": False},
            None,
            {"_tcc_consent_marketing": "denied", "_tcc_consent_analytics": "denied", **SOURCE},
            Consent(marketing=False, analytics=False, source="wp_consent_api"),
        ),
        (
            {"marketing": True, "statistics": False},
            "denied",
            {
                "_tcc_consent_marketing": "granted",
                "_tcc_consent_analytics": "denied",
                "_tcc_consent_sale_of_data": "denied",
                **SOURCE,
            },
            Consent(marketing=True, analytics=False, sale_of_data=False, source="wp_consent_api"),
        ),
        (None, "denied", {}, Consent()),
    ],
    ids=["granted", "denied", "sale-of-data-opt-out", "unknown-no-consent-api"],
)
def test_the_consent_the_plugin_writes_is_the_consent_the_parser_reads(
    consent, sale_of_data, meta, parsed
):
    written = plugin_run(consent, sale_of_data=sale_of_data)["meta"]
    assert written == {**CLICKS, **meta}
    assert parse_order(webhook_with(written)).consent == parsed


@needs_php
def test_a_refusal_prints_no_receipt_and_an_unset_address_neither():
    refused = plugin_run({"marketing": False, "statistics": True})
    assert refused["head"] == ""
    assert "window.ttq.track(" in refused["thankyou"]  # the consent plugin decides the pixel
    assert "receipt" not in refused["thankyou"]
    unset = plugin_run(None, collect_url="")
    assert unset["head"] == "" and "receipt" not in unset["thankyou"]
    unpaid = plugin_run(None, paid=False)
    assert unpaid["thankyou"] == ""


@needs_php
def test_without_the_consent_api_the_receipt_is_printed():
    page = plugin_run(None)
    assert "tccPixelWatch" in page["head"]
    assert page["thankyou"].count("<script>") == 2
    assert '"eventId":"1191"' in page["thankyou"] and f'"shop":"{HOST}"' in page["thankyou"]


# -- in a browser --------------------------------------------------------------------------------

TIKTOK_BASE_CODE = """<script>
// TikTok's base code as a theme or the TikTok plugin adds it (restated): a ttq queue, then
// events.js loaded asynchronously.
!function (w, d, t) {
  w.TiktokAnalyticsObject = t; var ttq = w[t] = w[t] || [];
  ttq.methods = ["page", "track", "identify", "instances", "debug", "on", "off", "once",
                 "ready", "alias", "group", "enableCookie", "disableCookie"];
  ttq.setAndDefer = function (o, m) { o[m] = function () {
    o.push([m].concat(Array.prototype.slice.call(arguments, 0))); }; };
  for (var i = 0; i < ttq.methods.length; i++) ttq.setAndDefer(ttq, ttq.methods[i]);
  ttq.load = function (e) {
    var s = d.createElement("script"); s.type = "text/javascript"; s.async = true;
    s.src = "https://analytics.tiktok.com/i18n/pixel/events.js?sdkid=" + e + "&lib=" + t;
    d.getElementsByTagName("head")[0].appendChild(s);
  };
  ttq.load("C4SGRA4B8F4N0C1DFNFG"); ttq.page();
}(window, document, "ttq");
</script>
"""


def thank_you_page(head: str, body: str, *, tiktok_pixel: bool = True) -> str:
    """The theme's thank-you page: wp_head's output (the plugin's at priority 1, before the
    TikTok pixel's), then woocommerce_thankyou's in the page body."""
    base = TIKTOK_BASE_CODE if tiktok_pixel else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>{head}{base}</head>"
        f"<body><h1>Order received</h1>{body}</body></html>"
    )


def show_thank_you(html: str, events_js: str) -> list[dict]:
    """Serve the page as the shop's own https origin and let it run; ``events_js`` is
    "served", "blocked" (refused, as an ad blocker does) or "hanging" (never answered).
    Returns the /collect bodies the page sent."""
    bodies: list[dict] = []

    def tiktok(route) -> None:  # type: ignore[no-untyped-def]
        if events_js == "served":
            route.fulfill(status=200, content_type="text/javascript", body=FAKE_EVENTS_JS)
        elif events_js == "blocked":
            route.abort("blockedbyclient")
        # "hanging": no answer at all

    with chromium() as browser:
        page = browser.new_page()
        page.on(
            "request",
            lambda request: (
                bodies.append(json.loads(request.post_data or "{}"))
                if request.url.endswith("/collect")
                else None
            ),
        )
        page.route(
            f"{SITE}/**",
            lambda route: route.fulfill(status=200, content_type="text/html", body=html),
        )
        page.route("https://analytics.tiktok.com/**", tiktok)
        # Not waiting for "load": a hanging events.js holds it back, as it would the shopper's.
        page.goto(
            f"{SITE}/checkout/order-received/{ORDER_ID}/?key=wc_order_x",
            wait_until="domcontentloaded",
        )
        deadline = time.monotonic() + 10
        while not bodies and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        page.wait_for_timeout(300)  # a second report would come now
    return bodies


def stored_receipts(services, store_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 5
    while True:
        with services.db.session() as session:
            rows = session.execute(
                select(PixelReceipt.event_id, PixelReceipt.outcome).where(
                    PixelReceipt.store_id == store_id
                )
            ).all()
        if rows or time.monotonic() > deadline:
            return dict(rows)
        time.sleep(0.1)


@pytest.fixture
def wordpress_store(services) -> str:  # type: ignore[no-untyped-def]
    return add_store(services, platform="woocommerce", domain=HOST, webhook_secret="s").id


@needs_php
@needs_chromium
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("events_js", "outcome"),
    [("served", "reported"), ("blocked", "blocked"), ("hanging", "blocked")],
)
def test_the_thank_you_page_reports_whether_the_tiktok_pixel_loaded(
    services, wordpress_store, live_server, events_js, outcome
):
    printed = plugin_run(None, collect_url=f"{live_server}/collect")
    bodies = show_thank_you(thank_you_page(printed["head"], printed["thankyou"]), events_js)
    assert bodies == [
        {"shop": HOST, "receipt": outcome, "event_id": str(ORDER_ID), "pixel": "tiktok"}
    ]
    assert stored_receipts(services, wordpress_store) == {str(ORDER_ID): outcome}


@needs_php
@needs_chromium
def test_a_page_without_a_tiktok_pixel_sends_no_receipt(live_server):
    """No TikTok base code on the page: no purchase call was made, so nothing to report."""
    printed = plugin_run(None, collect_url=f"{live_server}/collect")
    html = thank_you_page(printed["head"], printed["thankyou"], tiktok_pixel=False)
    assert show_thank_you(html, "served") == []


# -- to the TikTok stand-in ----------------------------------------------------------------------

SHOPPERS = {
    "granted": ({"marketing": True, "statistics": True}, None),
    "denied": ({"marketing": False, "statistics": True}, None),
    "opted_out": ({"marketing": True, "statistics": True}, "denied"),
    "unknown": (None, None),
}


@needs_php
@pytest.mark.postgres
def test_each_shoppers_order_ends_as_her_consent_and_the_default_policy_say(
    services, tiktok, live_server, worker
):
    """Four orders whose meta the plugin wrote, delivered by WooCommerce's webhook, under the
    default policy (respect; unknown consent sent): granted and unknown are sent in full, the
    sale-of-data opt-out with ``limited_data_use: true``, the refusal is held back."""
    secret = "woo-consent-secret"
    store_id = add_store(
        services, platform="woocommerce", domain="shop.example", webhook_secret=secret
    ).id
    connect_tiktok(services, store_id)
    ids = {}
    for number, (name, (consent, sale_of_data)) in enumerate(SHOPPERS.items()):
        meta = plugin_run(consent, sale_of_data=sale_of_data)["meta"]
        payload = webhook_with(meta)
        payload["id"] = ids[name] = ORDER_ID + number
        body = json.dumps(payload).encode()
        answer = post(
            f"{live_server}/webhooks/woocommerce/{store_id}",
            body,
            woocommerce_headers("order.created", body, secret),
        )
        assert answer.status_code == 200, answer.text
    arrived = {event["event_id"]: event for event in tiktok.wait_for_events(3)}
    time.sleep(1.5)  # a fourth event would arrive now
    assert sorted(tiktok.accepted_event_ids()) == sorted(
        str(ids[name]) for name in ("granted", "opted_out", "unknown")
    )
    limited = {event_id: event["limited_data_use"] for event_id, event in arrived.items()}
    assert limited == {
        str(ids["granted"]): False,
        str(ids["opted_out"]): True,
        str(ids["unknown"]): False,
    }
    assert arrived[str(ids["granted"])]["user"]["ttclid"] == "E.C.P.wordpressLanding"

    def settled() -> list | None:  # type: ignore[type-arg]
        with services.db.session() as session:
            rows = session.execute(
                select(
                    OutboxEvent.event_id,
                    OutboxEvent.status,
                    OutboxEvent.consent,
                    OutboxEvent.consent_source,
                    OutboxEvent.last_error,
                ).where(OutboxEvent.store_id == store_id)
            ).all()
        return rows if all(row.status not in ("pending", "processing") for row in rows) else None

    rows = wait_until(settled)
    found = {event_id: (status, consent, source) for event_id, status, consent, source, _ in rows}
    assert found == {
        str(ids["granted"]): ("delivered", "granted", "wp_consent_api"),
        str(ids["denied"]): ("skipped", "denied", "wp_consent_api"),
        str(ids["opted_out"]): ("delivered", "limited", "wp_consent_api"),
        str(ids["unknown"]): ("delivered", "unknown", None),
    }
    [reason] = [error for event_id, *_, error in rows if event_id == str(ids["denied"])]
    assert reason.startswith("no marketing consent")
