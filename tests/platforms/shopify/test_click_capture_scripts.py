"""Both Shopify pixels, run in Node, capture every ad platform's click ids and cookies.

The Web Pixel extension (``extensions/tiktok-click-capture/src/index.js``) and the custom pixel
(``platforms/shopify/storefront/tiktok-custom-pixel.js``) get the same shopper: a landing page
with the ad platforms' click ids in its URL, a product page without them, then a checkout, with
the ad pixels' cookies in the browser. Shopify's globals (``analytics``, ``browser``, ``init``,
per https://shopify.dev/docs/api/web-pixels-api) are fakes; what the pixel sends to
``/collect`` is then posted to the real endpoint, which must accept and store it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.clicks import STORED_COLUMNS
from connector.models import ClickRecord
from connector.stores import add_store
from platforms.shopify.tokens import TokenGrant, save_grant
from tests.support import ROOT

EXTENSION = ROOT / "extensions" / "tiktok-click-capture" / "src" / "index.js"
CUSTOM_PIXEL = ROOT / "platforms" / "shopify" / "storefront" / "tiktok-custom-pixel.js"
SHOP = "demo.myshopify.com"
COLLECT_URL = "https://connector.example/collect"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
FBC = f"fb.1.1554763741205.{FBCLID}"
FBP = "fb.1.1596403881668.1116446470"
LANDING = (
    f"https://{SHOP}/products/tee?utm_source=ads&ttclid=E.C.P.abc&fbclid={FBCLID}"
    "&gclid=Cj0KCQiA5NSd&gbraid=0AAAAAoK1kZx&wbraid=CjkKCQiA5NSd%20"
)
EVERY_CLICK = {
    "ttclid": "E.C.P.abc",
    "fbclid": FBCLID,
    "gclid": "Cj0KCQiA5NSd",
    "gbraid": "0AAAAAoK1kZx",
    "wbraid": "CjkKCQiA5NSd",
    "ttp": "ttp-cookie",
    "fbc": FBC,
    "fbp": FBP,
}
TOKENS = {"checkout_token": "tok123", "cart_token": "c1-abc"}

FAKE_SHOPIFY = """
const calls = [];
globalThis.fetch = async (url, init) => { calls.push({ url, init }); return { ok: true }; };
const scenario = JSON.parse(process.env.SCENARIO);
const handlers = {};
const privacyHandlers = {};
const storage = new Map();
const scripts = [];
const init = { data: { shop: { myshopifyDomain: "demo.myshopify.com" },
                       cart: { id: "gid://shopify/Cart/c1-abc?key=xyz" } } };
// init.customerPrivacy as Shopify gives it; left out: a sandbox that gives none.
if (scenario.privacy) init.customerPrivacy = scenario.privacy;
const shopify = {
  analytics: { subscribe: (name, handler) => { handlers[name] = handler; } },
  browser: {
    sessionStorage: {
      setItem: async (key, value) => { storage.set(key, value); },
      getItem: async (key) => (storage.has(key) ? storage.get(key) : null),
    },
    // Shopify's browser.cookie.get answers "" for a cookie that is not set.
    cookie: { get: async (name) => scenario.cookies[name] || "" },
  },
  init,
  // The Customer Privacy API: visitorConsentCollected is its only event.
  customerPrivacy: { subscribe: async (name, handler) => { privacyHandlers[name] = handler; } },
  settings: { collectUrl: "https://connector.example/collect" },
};
const page = (href) => ({ context: { document: { location: { href } } } });
async function shop() {
  for (const href of scenario.pages) await handlers.page_viewed(page(href));
  const checkout = { token: "tok123", lineItems: [], totalPrice: { amount: 1 } };
  const at = page("https://demo.myshopify.com/checkouts/cn/tok123");
  await handlers.checkout_started({ ...at, data: { checkout } });
  // The shopper answers the consent banner, then the checkout goes on.
  if (scenario.decides) {
    await privacyHandlers.visitorConsentCollected({ customerPrivacy: scenario.decides });
    await handlers.checkout_started({ ...at, data: { checkout } });
  }
  const sent = calls.filter((c) => c.url === "https://connector.example/collect");
  console.log(JSON.stringify({ reports: sent.map((c) => JSON.parse(c.init.body)), scripts }));
}
"""

EXTENSION_RUNNER = (
    FAKE_SHOPIFY
    + """
await import("./index.mjs");
globalThis.__pixel(shopify);
await shop();
"""
)

CUSTOM_PIXEL_RUNNER = (
    FAKE_SHOPIFY
    + """
// The lax sandbox's page: a window and a document to load TikTok's events.js into.
globalThis.window = globalThis;
globalThis.document = {
  createElement: () => ({}),
  head: { appendChild(element) { scripts.push(element.src); } },
};
Object.assign(globalThis, shopify);
require("./pixel.js");
shop();
"""
)


def run_pixel(
    tmp_path: Path,
    which: str,
    pages: list[str],
    cookies: dict[str, str],
    privacy: dict[str, bool] | None = None,
    decides: dict[str, bool] | None = None,
) -> list:
    """The /collect reports the pixel sends for this shopper's pages and cookies."""
    return run_shopper(tmp_path, which, pages, cookies, privacy, decides)["reports"]


def run_shopper(
    tmp_path: Path,
    which: str,
    pages: list[str],
    cookies: dict[str, str],
    privacy: dict[str, bool] | None = None,
    decides: dict[str, bool] | None = None,
) -> dict[str, list]:
    """What the pixel did for this shopper: the /collect ``reports`` it sent and the
    ``scripts`` it added to the page (the custom pixel's TikTok events.js).

    ``privacy`` is ``init.customerPrivacy``; ``decides`` a ``visitorConsentCollected`` after
    the first ``checkout_started``, followed by a second one."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the pixels' JavaScript is not run")
    tmp_path.mkdir(parents=True, exist_ok=True)
    if which == "extension":
        stub = tmp_path / "node_modules" / "@shopify" / "web-pixels-extension"
        stub.mkdir(parents=True)
        (stub / "package.json").write_text('{"type": "module", "main": "index.js"}')
        (stub / "index.js").write_text("export function register(fn) { globalThis.__pixel = fn; }")
        shutil.copy(EXTENSION, tmp_path / "index.mjs")
        runner = tmp_path / "run.mjs"
        runner.write_text(EXTENSION_RUNNER)
    else:
        config = {
            "pixelCode": "C4SGRA4B8F4N0C1DFNFG",
            "collectUrl": COLLECT_URL,
            "purchaseEvent": "CompletePayment",
            "initiateCheckout": False,
            "valueBasis": "total",
            "contentId": "variant",
        }
        template = CUSTOM_PIXEL.read_text(encoding="utf-8")
        rendered = template.replace("{} /* CONNECTOR_CONFIG */", json.dumps(config))
        (tmp_path / "pixel.js").write_text(rendered, encoding="utf-8")
        runner = tmp_path / "run.cjs"
        runner.write_text(CUSTOM_PIXEL_RUNNER)
    scenario = json.dumps(
        {"pages": pages, "cookies": cookies, "privacy": privacy, "decides": decides}
    )
    out = subprocess.run(
        ["node", runner.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SCENARIO": scenario},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


PIXELS = ["extension", "custom_pixel"]
COOKIES = {"_ttp": "ttp-cookie", "_fbc": FBC, "_fbp": FBP}


@pytest.mark.parametrize("which", PIXELS)
def test_every_click_id_of_the_landing_page_and_every_cookie_is_reported(tmp_path, which):
    pages = [LANDING, f"https://{SHOP}/products/mug"]
    assert run_pixel(tmp_path, which, pages, COOKIES) == [{"shop": SHOP, **EVERY_CLICK, **TOKENS}]


@pytest.mark.parametrize("which", PIXELS)
def test_values_collect_would_refuse_are_left_out_and_the_rest_is_sent(tmp_path, which):
    pages = [f"https://{SHOP}/?gclid=a%0Ab&gbraid=%20%20&fbclid={FBCLID}"]
    cookies = {"_ttp": "ttp-cookie", "_fbc": "not-meta-format", "_fbp": "fb.1.x.1"}
    expected = {"shop": SHOP, "fbclid": FBCLID, "ttp": "ttp-cookie", **TOKENS}
    assert run_pixel(tmp_path, which, pages, cookies) == [expected]


@pytest.mark.parametrize("which", PIXELS)
def test_a_cookie_alone_is_reported_and_nothing_is_not(tmp_path, which):
    pages = [f"https://{SHOP}/"]
    assert run_pixel(tmp_path, which, pages, {"_fbp": FBP}) == [
        {"shop": SHOP, "fbp": FBP, **TOKENS}
    ]
    assert run_pixel(tmp_path / "again", which, pages, {}) == []


@pytest.mark.parametrize("which", PIXELS)
def test_what_the_pixels_report_is_stored_by_collect(tmp_path, which, browser, app_services):
    store = add_store(app_services, platform="shopify", domain=SHOP, webhook_secret=None)
    # Installed through the app, whose pixel reports with Origin: null.
    save_grant(app_services, store.id, TokenGrant("shpat_x", "read_orders", 3600, "shprt_x", 10))
    [report] = run_pixel(tmp_path, which, [LANDING], COOKIES)
    answer = browser.post(
        "/collect",
        data=json.dumps(report),
        headers={"Origin": "null", "Content-Type": "text/plain"},
    )
    assert answer.status_code == 204, answer.get_data(as_text=True)
    with app_services.db.session() as session:
        rows = session.scalars(select(ClickRecord).where(ClickRecord.store_id == store.id))
        stored: dict[str, Any] = {
            row.token_kind: {name: getattr(row, name) for name in STORED_COLUMNS} for row in rows
        }
    expected = {name: EVERY_CLICK[name] for name in STORED_COLUMNS}
    assert stored == {"checkout": expected, "cart": expected}


# -- consent (Shopify's Customer Privacy API) ---------------------------------------------------

GRANTED = {"marketingAllowed": True, "analyticsProcessingAllowed": True, "saleOfDataAllowed": True}
DENIED = {
    "marketingAllowed": False,
    "analyticsProcessingAllowed": False,
    "saleOfDataAllowed": False,
}
OPTED_OUT = {**GRANTED, "saleOfDataAllowed": False}
CONSENT_GRANTED = {
    "consent_marketing": "granted",
    "consent_analytics": "granted",
    "consent_sale_of_data": "granted",
}
CONSENT_DENIED = {key: "denied" for key in CONSENT_GRANTED}


@pytest.mark.parametrize("which", PIXELS)
def test_a_shopper_who_allowed_everything_is_reported_with_her_consent(tmp_path, which):
    reports = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy=GRANTED)
    assert reports == [{"shop": SHOP, **EVERY_CLICK, **CONSENT_GRANTED, **TOKENS}]


@pytest.mark.parametrize("which", PIXELS)
def test_a_sale_of_data_opt_out_is_reported_with_the_clicks(tmp_path, which):
    reports = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy=OPTED_OUT)
    expected = {**CONSENT_GRANTED, "consent_sale_of_data": "denied"}
    assert reports == [{"shop": SHOP, **EVERY_CLICK, **expected, **TOKENS}]


@pytest.mark.parametrize("which", PIXELS)
def test_a_refusal_is_reported_without_any_click_id(tmp_path, which):
    """Marketing denied: the report carries the tokens and the refusal, never a click id or an
    ad cookie, and the landing page's click ids are not kept."""
    reports = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy=DENIED)
    assert reports == [{"shop": SHOP, **CONSENT_DENIED, **TOKENS}]


@pytest.mark.parametrize("which", PIXELS)
def test_a_partial_state_reports_only_what_is_known(tmp_path, which):
    """A field Shopify leaves out is unknown to the connector, not denied."""
    reports = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy={"marketingAllowed": True})
    assert reports == [{"shop": SHOP, **EVERY_CLICK, "consent_marketing": "granted", **TOKENS}]


@pytest.mark.parametrize("which", PIXELS)
def test_a_decision_on_the_page_is_reported_and_then_counts(tmp_path, which):
    """Refused at first, then allowed on the banner: the choice is reported at once with the
    checkout's tokens, and the page's click ids (not kept while refused) are kept from then on
    and reported with the next checkout event."""
    reports = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy=DENIED, decides=GRANTED)
    assert reports == [
        {"shop": SHOP, **CONSENT_DENIED, **TOKENS},
        {"shop": SHOP, **CONSENT_GRANTED, **TOKENS},
        {"shop": SHOP, **EVERY_CLICK, **CONSENT_GRANTED, **TOKENS},
    ]


@pytest.mark.parametrize("which", PIXELS)
def test_a_withdrawal_stops_the_click_ids(tmp_path, which):
    reports = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy=GRANTED, decides=DENIED)
    assert reports == [
        {"shop": SHOP, **EVERY_CLICK, **CONSENT_GRANTED, **TOKENS},
        {"shop": SHOP, **CONSENT_DENIED, **TOKENS},
        {"shop": SHOP, **CONSENT_DENIED, **TOKENS},
    ]


EVENTS_JS = "https://analytics.tiktok.com/i18n/pixel/events.js?sdkid=C4SGRA4B8F4N0C1DFNFG&lib=ttq"


@pytest.mark.parametrize(
    ("privacy", "decides", "scripts"),
    [
        (None, None, [EVENTS_JS]),
        (GRANTED, None, [EVENTS_JS]),
        (OPTED_OUT, None, [EVENTS_JS]),
        (DENIED, None, []),
        (DENIED, GRANTED, [EVENTS_JS]),
    ],
    ids=["unknown", "granted", "sale-of-data-opt-out", "denied", "allowed-later"],
)
def test_the_custom_pixel_loads_tiktok_only_without_a_refusal(tmp_path, privacy, decides, scripts):
    done = run_shopper(tmp_path, "custom_pixel", [LANDING], COOKIES, privacy, decides)
    assert done["scripts"] == scripts


@pytest.mark.parametrize("which", PIXELS)
@pytest.mark.parametrize(
    ("privacy", "stored"),
    [(GRANTED, (True, True, True)), (DENIED, (False, False, False))],
    ids=["granted", "denied"],
)
def test_collect_stores_the_reported_consent(
    tmp_path, which, privacy, stored, browser, app_services
):
    """What the pixels report is what /collect keeps on the token's record (a refusal with no
    click id makes a record holding only the consent)."""
    store = add_store(app_services, platform="shopify", domain=SHOP, webhook_secret=None)
    save_grant(app_services, store.id, TokenGrant("shpat_x", "read_orders", 3600, "shprt_x", 10))
    [report] = run_pixel(tmp_path, which, [LANDING], COOKIES, privacy=privacy)
    answer = browser.post(
        "/collect",
        data=json.dumps(report),
        headers={"Origin": "null", "Content-Type": "text/plain"},
    )
    assert answer.status_code == 204, answer.get_data(as_text=True)
    with app_services.db.session() as session:
        rows = session.scalars(select(ClickRecord).where(ClickRecord.store_id == store.id)).all()
        found = {
            row.token_kind: (
                (row.consent_marketing, row.consent_analytics, row.consent_sale_of_data),
                row.ttclid,
            )
            for row in rows
        }
    ttclid = EVERY_CLICK["ttclid"] if privacy is GRANTED else None
    assert found == {"checkout": (stored, ttclid), "cart": (stored, ttclid)}
