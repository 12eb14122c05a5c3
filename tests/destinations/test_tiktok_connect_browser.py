"""Connect with TikTok in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
Settings, TikTok's consent page (the stand-in's), back to the pixel list, choose, done.

The connector is served over real HTTP on a port chosen first, so that ``APP_URL`` (and with it
the redirect URL TikTok sends the browser back to) is the address the browser can reach.
Screenshots are kept under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from app import create_app
from connector.embedded_redis import free_port
from connector.services import build_services
from tests.browser import chromium_page, log_in_page, needs_chromium, shoot
from tests.destinations.tiktok_oauth_support import (
    ADVERTISER,
    OAUTH_PIXEL,
    oauth_settings,
    prepare_tiktok,
)

pytestmark = needs_chromium


@pytest.fixture
def connector(settings, tiktok) -> Iterator[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """The connector on a real port, with APP_URL pointing at it; (base URL, services)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    prepare_tiktok(tiktok, f"{base_url}/tiktok/callback")
    services = build_services(oauth_settings(settings.with_overrides(app_url=base_url), tiktok))
    server = make_server("127.0.0.1", port, create_app(services=services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base_url, services
    server.shutdown()
    thread.join()
    services.db.dispose()


@pytest.fixture
def browser_page() -> Iterator[object]:
    with chromium_page() as page:
        yield page


def test_a_merchant_connects_with_tiktok_in_a_browser(
    browser_page, connector, shopify_store, tiktok
) -> None:
    page = browser_page
    base_url, services = connector
    expect = pytest.importorskip("playwright.sync_api").expect

    log_in_page(page, base_url, services.settings.secret_key, shopify_store)
    page.click("text=Settings")
    page.click("#connect-tiktok")

    # TikTok's consent page (the stand-in's), then back to the connector.
    assert page.url.startswith(tiktok.authorize_url)
    page.click("#grant")
    expect(page.locator("#waiting")).to_contain_text("Connected to TikTok")
    shoot(page, "tiktok-pixels")

    page.check(f'input[value="{ADVERTISER}/{OAUTH_PIXEL}"]')
    page.click("#choose-pixel")
    expect(page.locator("#chosen")).to_contain_text(OAUTH_PIXEL)
    shoot(page, "tiktok-pixel-chosen")

    page.click("text=Status")
    expect(page.locator("#health")).to_contain_text("All good")


def test_a_declined_connection_is_explained_in_a_browser(
    browser_page, connector, shopify_store, tiktok
) -> None:
    page = browser_page
    base_url, services = connector
    expect = pytest.importorskip("playwright.sync_api").expect

    log_in_page(page, base_url, services.settings.secret_key, shopify_store)
    page.goto(f"{base_url}/settings/{shopify_store}/tiktok/connect")
    page.click("#deny")
    expect(page.locator("#tiktok-error")).to_contain_text("declined or cancelled")
    shoot(page, "tiktok-declined")
