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
const storage = new Map();
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
  init: { data: { shop: { myshopifyDomain: "demo.myshopify.com" },
                  cart: { id: "gid://shopify/Cart/c1-abc?key=xyz" } } },
  settings: { collectUrl: "https://connector.example/collect" },
};
const page = (href) => ({ context: { document: { location: { href } } } });
async function shop() {
  for (const href of scenario.pages) await handlers.page_viewed(page(href));
  const checkout = { token: "tok123", lineItems: [], totalPrice: { amount: 1 } };
  await handlers.checkout_started({ ...page("https://demo.myshopify.com/checkouts/cn/tok123"),
                                    data: { checkout } });
  const sent = calls.filter((c) => c.url === "https://connector.example/collect");
  console.log(JSON.stringify(sent.map((c) => JSON.parse(c.init.body))));
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
globalThis.document = { createElement: () => ({}), head: { appendChild() {} } };
Object.assign(globalThis, shopify);
require("./pixel.js");
shop();
"""
)


def run_pixel(tmp_path: Path, which: str, pages: list[str], cookies: dict[str, str]) -> list:
    """The /collect reports the pixel sends for this shopper's pages and cookies."""
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
    scenario = json.dumps({"pages": pages, "cookies": cookies})
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
