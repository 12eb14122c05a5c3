"""The install redirect chain in a real browser (Debian's Chromium, driven by Playwright):
Shopify's signed install link -> consent screen (the stand-in) -> callback -> installed page,
with the state nonce cookie set and sent back by the browser itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from connector.models import ShopifyToken, Store
from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.platforms.shopify.helpers import INSTALL_SHOP, shopify_app
from tests.standins.shopify import ShopifyStandIn

pytestmark = needs_chromium


@pytest.fixture
def installable(settings) -> Iterator[tuple[str, ShopifyStandIn, object]]:  # type: ignore[no-untyped-def]
    """The connector as a Shopify app over real HTTP, and the stand-in it installs from."""
    with shopify_app(settings) as running:
        yield running


def test_install_chain_in_a_browser(installable) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    app_url, shopify, services = installable
    start = shopify.signed_query({"shop": INSTALL_SHOP, "timestamp": str(int(time.time()))})
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            visited: list[str] = []
            page.on("request", lambda request: visited.append(request.url))
            answer = page.goto(f"{app_url}/shopify/install?{urlencode(start)}")
            assert answer is not None and answer.status == 200
            assert f"{INSTALL_SHOP} is connected" in page.content()
            consent = f"{shopify.base_url}/{INSTALL_SHOP}/admin/oauth/authorize?"
            assert [url.split("?")[0] for url in visited] == [
                f"{app_url}/shopify/install",
                consent.rstrip("?"),
                f"{app_url}/shopify/callback",
            ]
            callback = visited[-1]
            # The same callback from another browser (no nonce cookie) is refused.
            stranger = browser.new_page()
            replay = stranger.goto(callback)
            assert replay is not None and replay.status == 403
        finally:
            browser.close()
    with services.db.session() as session:
        store = session.scalar(select(Store).where(Store.domain == INSTALL_SHOP))
        assert store is not None and session.get(ShopifyToken, store.id) is not None
    assert shopify.subscriptions.get(INSTALL_SHOP, []) == []  # the TOML's subscriptions only
    assert shopify.code_exchanges == 1
