"""Helpers the Shopify app tests share: constants, the install chain, signed webhooks."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import requests

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
