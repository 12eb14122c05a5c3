"""The embedded pages renew their short grant in a real browser (Debian's Chromium, driven by
Playwright): ``static/embedded-grant.js`` asks App Bridge for a session token and writes the
fresh grant and CSRF token into the page's links and forms. App Bridge is a stand-in served in
place of Shopify's CDN script, whose ``idToken()`` answers a token signed like Shopify's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.platforms.shopify.helpers import shopify_app
from tests.platforms.shopify.test_embedded import session_token

pytestmark = needs_chromium


@pytest.fixture
def embedded_app(settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The connector as a Shopify app over real HTTP; its URL."""
    with shopify_app(settings) as (app_url, _shopify, _services):
        yield app_url


def grant_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["session"][0]


def test_the_page_renews_its_grant_through_app_bridge(embedded_app) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            token = json.dumps(session_token())
            app_bridge = f"window.shopify = {{idToken: () => Promise.resolve({token})}};"
            page.route(
                "https://cdn.shopify.com/**",
                lambda route: route.fulfill(body=app_bridge, content_type="text/javascript"),
            )
            page.clock.install()
            page.goto(f"{embedded_app}/shopify/app?id_token={session_token()}")
            page.click("nav a:nth-child(2)")  # Settings, with the grant of the first page
            first = grant_of(page.url)
            first_csrf = page.locator('input[name="csrf_token"]').first.input_value()
            with page.expect_response(lambda answer: "/shopify/app/grant" in answer.url):
                page.clock.run_for(4 * 60 * 1000 + 1000)  # the script's renewal timer
            page.wait_for_function(
                "(old) => !document.querySelector('nav a:nth-child(2)').href.includes(old)",
                arg=first,
            )
            renewed = page.locator('input[name="csrf_token"]').first.input_value()
            assert renewed != first_csrf
            assert page.locator('input[name="session"]').first.input_value() != first
            page.click("nav a:nth-child(2)")
            assert grant_of(page.url) != first
            assert "Settings" in page.title()
        finally:
            browser.close()
