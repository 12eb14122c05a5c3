"""The merchant pages in a real browser (Debian's Chromium, driven by Playwright), against a
live connector, a real RQ worker and the TikTok stand-in: log in by link, change settings,
send a test event and read TikTok's answer, filter the delivery log, replay a failed event
and see it delivered, and read the diagnostics chart. A screenshot of each page is kept under
``test-artifacts/screenshots/`` (the README's pictures come from there)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from connector.consent import ConsentPolicy
from connector.models import EventStatus, OutboxEvent
from connector.stores import consent_policy
from tests.browser import SCREENSHOTS, chromium_page, log_in_page, needs_chromium, shoot
from tests.support import (
    PIXEL_CODE,
    TIKTOK_TOKEN,
    fixture_bytes,
    fresh,
    post,
    shopify_headers,
    topic_of,
)

# Real-shaped orders: full signals, guest, no phone, national phone, a bot, and a checkout.
ORDERS = (
    "orders_create.json",
    "orders_create__guest_checkout.json",
    "orders_create__no_phone.json",
    "orders_create__national_phone.json",
    "orders_create__bot_user_agent.json",
    "checkouts_create.json",
)
REJECTED_ORDER = "820982911946154602"  # orders_create__no_phone.json

pytestmark = needs_chromium


@pytest.fixture
def browser_page() -> Iterator[object]:
    with chromium_page() as page:
        yield page


def send_orders(base_url: str) -> None:
    for name in ORDERS:
        body = fresh(fixture_bytes("shopify", name))
        answer = post(
            f"{base_url}/webhooks/shopify", body, shopify_headers(topic_of(name, "/"), body)
        )
        assert answer.status_code == 200, answer.text


def test_a_merchant_manages_the_store_in_a_browser(
    browser_page, live_server, services, shopify_store, tiktok, worker
):
    page = browser_page
    expect = pytest.importorskip("playwright.sync_api").expect

    # Log in by the link `connector stores login-link` prints.
    log_in_page(page, live_server, services.settings.secret_key, shopify_store)
    expect(page.locator("#health")).to_contain_text("No ad platform is connected yet")
    shoot(page, "status-not-connected")

    # Settings: one card per ad platform; connect TikTok's pixel, with a test event code.
    page.click("text=Settings")
    for kind in ("tiktok", "meta", "google"):
        expect(page.locator(f"#destination-{kind}")).to_have_attribute("data-connected", "no")
    expect(page.locator("#destination-google")).to_contain_text("Conversion action ID")
    page.fill("#tiktok-pixel_code", PIXEL_CODE)
    page.fill("#tiktok-access_token", TIKTOK_TOKEN)
    page.fill("#tiktok-test_event_code", "TEST42")
    page.select_option("#tiktok-purchase_event", "Purchase")
    page.click("#save-tiktok")
    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator("#destination-tiktok")).to_have_attribute("data-connected", "yes")
    expect(page.locator("#tiktok-purchase_event")).to_have_value("Purchase")

    # Send a test event: the whole pipeline, then TikTok's answer on the page.
    page.click("#send-test-event-tiktok")
    expect(page.locator("#test-result")).to_contain_text("delivered")
    expect(page.locator("#test-result")).to_contain_text("code 0")
    shoot(page, "settings")
    [test_event] = tiktok.wait_for_events(1)
    assert test_event["event"] == "Purchase" and test_event["event_id"].startswith("test-")

    # Consent: respect is the default; hold back purchases whose consent is not known.
    consent = page.locator("#consent")
    expect(consent).to_have_attribute("data-policy", "respect")
    page.check("#consent-unknown-hold")
    page.click("#save-consent")
    expect(page.locator("#consent-saved")).to_be_visible()
    expect(consent).to_have_attribute("data-unknown", "hold")
    assert consent_policy(services, shopify_store) == ConsentPolicy("respect", "hold")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    consent.screenshot(path=str(SCREENSHOTS / "settings-consent.png"))
    page.check("#consent-unknown-send")
    page.click("#save-consent")
    expect(consent).to_have_attribute("data-unknown", "send")

    # Real orders arrive; TikTok refuses one of them.
    tiktok.reject_event_ids({REJECTED_ORDER})
    send_orders(live_server)
    tiktok.wait_for_events(4, timeout=30)  # the test event and three orders; the bot is skipped

    # The delivery log, filtered to failures, shows TikTok's code and message.
    page.click("text=Delivery log")
    page.select_option("#filter-status", "failed")
    page.click("#apply-filters")
    failed_row = page.locator(f'tr[data-event-id="{REJECTED_ORDER}"]')
    expect(failed_row).to_have_attribute("data-status", "failed")
    expect(failed_row).to_contain_text("40002")
    expect(page.locator("tr[data-event-id]")).to_have_count(1)
    shoot(page, "delivery-log-failed")

    # The cause is fixed at TikTok's end; replay the event and see it delivered.
    tiktok.reset()
    failed_row.locator("button.replay").click()
    expect(page.locator("#replayed")).to_contain_text("1 event put back in the queue")
    assert REJECTED_ORDER in {e["event_id"] for e in tiktok.wait_for_events(1, timeout=30)}
    page.select_option("#filter-status", "")
    page.click("#apply-filters")
    expect(page.locator(f'tr[data-event-id="{REJECTED_ORDER}"]')).to_have_attribute(
        "data-status", "delivered"
    )
    expect(page.locator('tr[data-status="skipped"]')).to_contain_text("bot user agent")
    shoot(page, "delivery-log")

    page.click("text=Status")
    expect(page.locator("#health")).to_contain_text("All good")
    shoot(page, "status")

    # Diagnostics: the chart's numbers are the database's.
    page.click("text=Diagnostics")
    purchases = page.locator('#coverage-chart .coverage-event[data-event="Purchase"]')
    expect(purchases).to_have_attribute("data-events", str(sent_purchases(services)))
    ttclid = purchases.locator('.bar-row[data-signal="click_id"]')
    expect(ttclid).to_have_attribute("data-count", str(sent_purchases(services, with_bit=0)))
    expect(page.locator("#bots")).to_have_attribute("data-count", "1")
    expect(page.locator("#match-tier")).to_be_visible()
    shoot(page, "diagnostics")


def sent_purchases(services, with_bit: int | None = None) -> int:  # type: ignore[no-untyped-def]
    """Purchases that were sent (not skipped), optionally only those carrying one signal."""
    with services.db.session() as session:
        rows = session.execute(
            select(OutboxEvent.signals).where(
                OutboxEvent.event_name == "Purchase", OutboxEvent.status != EventStatus.SKIPPED
            )
        ).scalars()
        return sum(1 for mask in rows if with_bit is None or mask & (1 << with_bit))
