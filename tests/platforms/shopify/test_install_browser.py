"""The install redirect chain in a real browser (Debian's Chromium, driven by Playwright):
Shopify's signed install link -> consent screen (the stand-in) -> callback -> installed page,
with the state nonce cookie set and sent back by the browser itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from app import create_app
from connector.embedded_redis import free_port
from connector.models import ShopifyToken, Store
from connector.services import build_services
from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.platforms.shopify.helpers import API_KEY, API_SECRET, INSTALL_SHOP
from tests.standins.shopify import ShopifyStandIn

pytestmark = needs_chromium


@pytest.fixture
def installable(settings) -> Iterator[tuple[str, ShopifyStandIn, object]]:  # type: ignore[no-untyped-def]
    """The connector as a Shopify app over real HTTP, and the stand-in it installs from."""
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
    app = create_app(services=services)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app_url, shopify, services
    server.shutdown()
    thread.join()
    shopify.stop()
    services.db.dispose()


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
