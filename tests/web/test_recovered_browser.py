"""The recovered-conversions ledger in a real browser (Debian's Chromium, driven by Playwright)
against a live connector, a real RQ worker and the TikTok stand-in: signed Shopify orders from
several browsers are delivered (one refused by TikTok), the storefront's receipts arrive
through ``POST /collect`` ("reported", "blocked", and none for some orders), and the Status
page, Diagnostics and the Delivery log show the numbers a direct reading of the tables gives.
Screenshots for the README are kept under ``test-artifacts/screenshots/``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import func, select

from connector.models import EventStatus, OutboxEvent
from tests.browser import SCREENSHOTS, chromium_page, log_in_page, needs_chromium, shoot
from tests.ledger_support import expected
from tests.support import (
    SHOP_DOMAIN,
    connect_tiktok,
    fixture_bytes,
    fresh,
    post,
    shopify_headers,
    wait_until,
)

pytestmark = [needs_chromium, pytest.mark.prefer_postgres]

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX_DESKTOP = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)

ORDERS = (  # order id, total, the shopper's browser, the storefront's receipt
    ("7001", "120.00", IPHONE, "reported"),
    ("7002", "80.50", CHROME_DESKTOP, "blocked"),
    ("7003", "45.25", FIREFOX_DESKTOP, "blocked"),
    ("7004", "60.00", CHROME_ANDROID, None),  # the page was closed before the receipt went
    ("7005", "99.99", IPHONE, "reported"),
    ("7006", "30.00", CHROME_ANDROID, "blocked"),
    ("7007", "25.00", CHROME_DESKTOP, None),
    ("7008", "70.00", IPHONE, "blocked"),  # TikTok refuses it: failed, not recovered
)
REFUSED = "7008"


@pytest.fixture
def browser_page() -> Iterator[object]:
    with chromium_page() as page:
        yield page


def send_order(base_url: str, order_id: str, total: str, user_agent: str) -> None:
    body = json.loads(fresh(fixture_bytes("shopify", "orders_create.json")))
    body["id"] = int(order_id)
    body["total_price"] = total
    for side in body["total_price_set"].values():  # the amount the parser reads
        side["amount"] = total
    body["client_details"]["user_agent"] = user_agent
    raw = json.dumps(body).encode()
    answer = post(f"{base_url}/webhooks/shopify", raw, shopify_headers("orders/create", raw))
    assert answer.status_code == 200, answer.text


def send_receipt(base_url: str, order_id: str, outcome: str) -> None:
    """What the storefront code sends from the thank-you page (text/plain, the shop's Origin)."""
    body = {"shop": SHOP_DOMAIN, "receipt": outcome, "event_id": order_id, "pixel": "tiktok"}
    answer = requests.post(
        f"{base_url}/collect",
        data=json.dumps(body),
        headers={"Content-Type": "text/plain", "Origin": f"https://{SHOP_DOMAIN}"},
        timeout=10,
    )
    assert answer.status_code == 204, answer.text


def pending(services, store_id: str) -> int:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalar(
            select(func.count()).where(
                OutboxEvent.store_id == store_id, OutboxEvent.status == EventStatus.PENDING
            )
        )


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_pages_show_what_the_server_recovered(
    browser_page, live_server, services, shopify_store, tiktok, worker
):
    page = browser_page
    expect = pytest.importorskip("playwright.sync_api").expect
    connect_tiktok(services, shopify_store)
    tiktok.reject_event_ids({REFUSED})
    for order_id, total, user_agent, receipt in ORDERS:
        send_order(live_server, order_id, total, user_agent)
        if receipt:
            send_receipt(live_server, order_id, receipt)
    wait_until(lambda: pending(services, shopify_store) == 0, timeout=30)
    want = expected(services, shopify_store)
    assert (want.delivered, want.reported, want.recovered, want.unreceipted) == (7, 2, 3, 2)
    assert want.outcomes[REFUSED] == "blocked"

    # The Status page leads with the ledger; its numbers are the tables'.
    log_in_page(page, live_server, services.settings.secret_key, shopify_store)
    sentence = page.locator("#ledger-headline").inner_text()
    dollars = f"${round(want.delivered_value['USD']):,}"
    recovered_dollars = f"${round(want.recovered_value['USD']):,}"
    assert sentence.startswith(f"Last 30 days: {want.delivered} purchases worth {dollars} sent")
    share = round(100 * want.recovered / want.delivered)
    assert (
        f"{want.recovered} of them ({share}%, worth {recovered_dollars}) never reached TikTok "
        "from the browser." in sentence
    )
    assert f"For {want.unreceipted} more" in sentence
    totals = {}
    for key in ("delivered", "reported", "recovered", "no-receipt"):
        cells = page.locator(f'#ledger-totals tr[data-row="{key}"] td').all_inner_texts()
        totals[key] = (number(cells[1]), cells[3])
    assert totals == {
        "delivered": (want.delivered, dollars),
        "reported": (want.reported, f"${round(want.reported_value['USD']):,}"),
        "recovered": (want.recovered, recovered_dollars),
        "no-receipt": (want.unreceipted, f"${round(want.unreceipted_value['USD']):,}"),
    }
    shoot(page, "status-recovered")

    # Diagnostics: by cause, browser, device and day.
    page.click("text=Diagnostics")
    page.click('#destination-switch a[data-destination="tiktok"]')
    page.click('#window a[data-days="30"]')
    section = page.locator("#recovered")
    expect(section).to_be_visible()
    browsers = {
        row.get_attribute("data-browser-family"): (
            number(row.get_attribute("data-delivered")),
            number(row.get_attribute("data-blocked")),
        )
        for row in section.locator("tr[data-browser-family]").all()
    }
    assert browsers == dict(want.by_browser)
    assert "unknown" not in browsers  # every order carried its shopper's user agent
    days = section.locator("tr[data-day]").all()
    assert {
        d.get_attribute("data-day"): number(d.get_attribute("data-delivered")) for d in days
    } == {day: count for day, (count, _blocked) in want.by_day.items()}
    refused = section.locator('#recovered-causes tr[data-status="failed"]')
    expect(refused).to_have_attribute("data-outcome", "blocked")
    expect(refused).to_have_attribute("data-count", "1")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    section.screenshot(path=str(SCREENSHOTS / "diagnostics-recovered.png"))

    # The Delivery log: the browser column, filtered to blocked pixels.
    page.click("text=Delivery log")
    page.select_option("#filter-browser", "blocked")
    page.click("#apply-filters")
    rows = page.locator("tr[data-event-id]")
    blocked = {k for k, v in want.outcomes.items() if v == "blocked"}
    expect(rows).to_have_count(len(blocked))
    assert {r.get_attribute("data-event-id") for r in rows.all()} == blocked
    expect(page.locator(f'tr[data-event-id="{REFUSED}"]')).to_have_attribute(
        "data-status", "failed"
    )
    page.select_option("#filter-browser", "")
    page.click("#apply-filters")
    expect(page.locator('tr[data-event-id="7004"] .browser-outcome')).to_contain_text("no receipt")
    expect(page.locator('tr[data-event-id="7001"] .browser-outcome')).to_contain_text(
        re.compile(r"reported\s*Safari, mobile")
    )
    shoot(page, "delivery-log-browser")
