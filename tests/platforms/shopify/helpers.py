"""Helpers the Shopify app tests share: constants, the install chain, signed webhooks."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import requests
from werkzeug.serving import make_server

from app import create_app
from connector.config import Settings
from connector.embedded_redis import free_port
from connector.services import Services, build_services
from tests.standins.shopify import ShopifyStandIn
from tests.support import sign

API_KEY = "test-api-key"
API_SECRET = "test-api-secret-long-enough-for-hs256"
APP_URL = "https://connector.test"
INSTALL_SHOP = "install-demo.myshopify.com"


def get(client, url: str):  # type: ignore[no-untyped-def]
    """GET an absolute ``APP_URL`` URL (or a path) with the test client."""
    parts = urlsplit(url)
    return client.get(parts.path, query_string=parts.query, base_url=APP_URL)


def install(browser, shopify: ShopifyStandIn, shop: str = INSTALL_SHOP):  # type: ignore[no-untyped-def]
    """The whole redirect chain: Shopify's signed install request, the consent screen, the
    callback. Returns the callback's answer."""
    start = shopify.signed_query({"shop": shop, "timestamp": str(int(time.time()))})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    consent = requests.get(answer.headers["Location"], allow_redirects=False, timeout=5)
    assert consent.status_code == 302, consent.text
    return get(browser, consent.headers["Location"])


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def app_webhook(topic: str, body: bytes, shop: str = INSTALL_SHOP) -> dict[str, str]:
    """Headers of a webhook Shopify sends for an app install (signed with the app secret)."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": sign(API_SECRET, body),
    }


@contextlib.contextmanager
def shopify_app(settings: Settings) -> Iterator[tuple[str, ShopifyStandIn, Services]]:
    """The connector as a Shopify app over real HTTP (its URL), the Shopify stand-in it
    installs from, and its services: for tests that drive a real browser through it."""
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    shopify = ShopifyStandIn(API_KEY, API_SECRET, f"{app_url}/shopify/callback").start()
    services = build_services(
        settings.with_overrides(
            shopify_api_key=API_KEY,
            shopify_api_secret=API_SECRET,
            shopify_scopes="read_orders,write_pixels",
            shopify_admin_base_url=shopify.admin_base_template,
            app_url=app_url,
        )
    )
    server = make_server("127.0.0.1", port, create_app(services=services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app_url, shopify, services
    finally:
        server.shutdown()
        thread.join()
        shopify.stop()
        services.db.dispose()
