"""shopify.app.toml and the Web Pixel extension agree with what the code does."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from connector.models import ClickRecord
from connector.stores import add_store
from platforms.shopify.admin_api import API_VERSION, TOML_TOPICS
from platforms.shopify.webhooks import PRIVACY_TOPICS
from tests.support import ROOT

PIXEL_SOURCE = ROOT / "extensions" / "tiktok-click-capture" / "src" / "index.js"
APP_TOML = tomllib.loads((ROOT / "shopify.app.toml").read_text())
EXTENSION_TOML = tomllib.loads((PIXEL_SOURCE.parent.parent / "shopify.extension.toml").read_text())
EXAMPLE_APP_URL = "https://connector.example.com"


def test_app_toml_declares_the_subscribed_and_privacy_topics_on_the_webhook_route():
    topics, privacy = APP_TOML["webhooks"]["subscriptions"]
    assert set(topics["topics"]) == set(TOML_TOPICS)
    assert set(privacy["compliance_topics"]) == PRIVACY_TOPICS
    assert {topics["uri"], privacy["uri"]} == {f"{EXAMPLE_APP_URL}/webhooks/shopify"}


def test_every_shopify_api_version_is_the_one_the_admin_api_calls_use():
    assert APP_TOML["webhooks"]["api_version"] == API_VERSION
    assert EXTENSION_TOML["api_version"] == API_VERSION


def test_the_app_is_embedded_and_its_urls_are_routes_of_the_connector(client):
    assert APP_TOML["embedded"] is True
    assert APP_TOML["application_url"] == f"{EXAMPLE_APP_URL}/shopify/app"
    assert APP_TOML["auth"]["redirect_urls"] == [f"{EXAMPLE_APP_URL}/shopify/callback"]
    paths = [APP_TOML["application_url"], *APP_TOML["auth"]["redirect_urls"]]
    paths += [subscription["uri"] for subscription in APP_TOML["webhooks"]["subscriptions"]]
    routes = client.application.url_map.bind("connector.example.com")
    for url in paths:
        path = url.removeprefix(EXAMPLE_APP_URL)
        method = "POST" if path.startswith("/webhooks/") else "GET"
        routes.match(path, method=method)  # raises NotFound or MethodNotAllowed if it is not one


def test_extension_toml_is_a_strict_web_pixel_with_the_collect_url_setting():
    config = EXTENSION_TOML
    assert (config["type"], config["runtime_context"]) == ("web_pixel_extension", "strict")
    assert "collectUrl" in config["settings"]["fields"]


RUNNER = """
const calls = [];
globalThis.fetch = async (url, init) => { calls.push({ url, init }); return { ok: true }; };
await import("./index.mjs");
const handlers = {};
const storage = new Map();
globalThis.__pixel({
  analytics: { subscribe: (name, handler) => { handlers[name] = handler; } },
  browser: {
    sessionStorage: {
      setItem: async (key, value) => { storage.set(key, value); },
      getItem: async (key) => (storage.has(key) ? storage.get(key) : null),
    },
    cookie: { get: async (name) => (name === "_ttp" ? "ttp-cookie" : "") },
  },
  init: { data: { shop: { myshopifyDomain: "demo.myshopify.com" },
                  cart: { id: "gid://shopify/Cart/c1-abc?key=xyz" } } },
  settings: { collectUrl: "https://connector.example/collect" },
});
const page = (href) => ({ context: { document: { location: { href } } } });
await handlers.page_viewed(page("https://demo.myshopify.com/?ttclid=E.C.P.abc&utm_source=tiktok"));
await handlers.page_viewed(page("https://demo.myshopify.com/products/tee"));
await handlers.checkout_started({ data: { checkout: { token: "tok123" } } });
const sent = calls.map((c) => ({ url: c.url, method: c.init.method, body: c.init.body }));
console.log(JSON.stringify(sent));
"""


@pytest.fixture
def pixel_report(tmp_path: Path) -> dict:
    """What the pixel sends to /collect after a ttclid landing and a checkout, run in Node
    with a stub of Shopify's ``register`` and fake browser APIs."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Web Pixel's JavaScript is not run")
    stub = tmp_path / "node_modules" / "@shopify" / "web-pixels-extension"
    stub.mkdir(parents=True)
    (stub / "package.json").write_text('{"type": "module", "main": "index.js"}')
    (stub / "index.js").write_text("export function register(fn) { globalThis.__pixel = fn; }")
    shutil.copy(PIXEL_SOURCE, tmp_path / "index.mjs")
    (tmp_path / "run.mjs").write_text(RUNNER)
    out = subprocess.run(
        ["node", "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=True
    )
    [call] = json.loads(out.stdout)
    assert (call["url"], call["method"]) == ("https://connector.example/collect", "POST")
    return json.loads(call["body"])


def test_pixel_reports_the_landing_ttclid_and_ttp_with_the_tokens(pixel_report):
    assert pixel_report == {
        "shop": "demo.myshopify.com",
        "ttclid": "E.C.P.abc",
        "ttp": "ttp-cookie",
        "checkout_token": "tok123",
        "cart_token": "c1-abc",
    }


def test_pixel_report_is_accepted_by_collect(pixel_report, browser, app_services):
    store = add_store(
        app_services, platform="shopify", domain="demo.myshopify.com", webhook_secret=None
    )
    answer = browser.post(
        "/collect",
        data=json.dumps(pixel_report),
        headers={"Origin": "https://demo.myshopify.com", "Content-Type": "text/plain"},
    )
    assert answer.status_code == 204, answer.get_data(as_text=True)
    with app_services.db.session() as session:
        kinds = {r.token_kind for r in session.query(ClickRecord).filter_by(store_id=store.id)}
    assert kinds == {"checkout", "cart"}
