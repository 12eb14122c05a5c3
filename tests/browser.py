"""Real-browser tests share this: Debian's Chromium driven by Playwright (never a downloaded
browser), skipped with the fix when Chromium is missing, and screenshots kept as artifacts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # Pages served as "public" https sites reach the connector on 127.0.0.1 in some tests:
    # Chromium's Local Network Access would ask the user for permission.
    "--disable-features=LocalNetworkAccessChecks",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"

needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does it)",
)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright's ``Browser``), closed on the way out."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_page() -> Iterator[Any]:
    """One page of a fresh browser, sized for readable screenshots."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(15_000)
        yield page


def shoot(page: Any, name: str) -> None:
    """Keep a full-page screenshot under ``test-artifacts/screenshots/``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in_page(page: Any, base_url: str, secret_key: str, store_id: str) -> None:
    """Log a browser page in to a store the merchant's way: a login link, then Continue."""
    from connector.web.merchant.access import login_token

    page.goto(f"{base_url}/login/{login_token(secret_key, store_id)}")
    page.click("#continue")
