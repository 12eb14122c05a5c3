"""The recovered-conversions ledger on the merchant pages, through Flask's test client: the
Status page leads with it and its numbers are the database's, says "install the storefront
code" (how, per platform) instead of a share when no receipt came, Diagnostics breaks it down
by day, browser, device and cause, and the Delivery log shows and filters the browser outcome."""

from __future__ import annotations

import html
import re

import pytest

from tests.ledger_support import Purchase, expected, forget_receipts, seed
from tests.support import connect_meta, connect_tiktok, log_in
from tests.web.test_diagnostics_page import Elements

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _no_receipts(services):  # type: ignore[no-untyped-def]
    forget_receipts(services)


def page_of(client, path: str) -> str:  # type: ignore[no-untyped-def]
    answer = client.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    return answer.get_data(as_text=True)


def text_of(page: str, element_id: str) -> str:
    """The text inside the element with this id (tags removed, spaces folded)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(p|div|section|table)>', page, re.S)
    assert match, element_id
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


def test_the_status_page_leads_with_the_ledger(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    seed(services, shopify_store)
    want = expected(services, shopify_store)
    log_in(client, services, shopify_store)

    page = page_of(client, f"/settings/{shopify_store}/")

    assert page.index('id="ledger"') < page.index('id="health"')  # it comes first
    sentence = text_of(page, "ledger-headline")
    assert sentence.startswith(f"Last 30 days: {want.delivered} purchases worth $")
    assert f"{want.recovered} of them (50%, worth $136 + €30) never reached TikTok" in sentence
    assert f"For {want.unreceipted} more (25%) the browser sent no receipt" in sentence
    rows = {row["data-row"]: row for row in Elements(page).with_attr("data-row")}
    assert int(rows["delivered"]["data-count"]) == want.delivered
    assert int(rows["reported"]["data-count"]) == want.reported
    assert int(rows["recovered"]["data-count"]) == want.recovered
    assert int(rows["no-receipt"]["data-count"]) == want.unreceipted
    for key, value in (
        ("delivered", want.delivered_value),
        ("recovered", want.recovered_value),
        ("no-receipt", want.unreceipted_value),
    ):
        shown = dict(part.split(":") for part in rows[key]["data-value"].split())
        assert {c: float(v) for c, v in shown.items()} == pytest.approx(
            {c: round(v, 2) for c, v in value.items()}
        )


@pytest.mark.parametrize(
    ("platform", "words"),
    [("shopify", "custom pixel"), ("woocommerce", "WordPress plugin")],
)
def test_without_receipts_the_status_page_says_how_to_install(
    client, services, shopify_store, woocommerce_store, platform, words
):
    store_id = shopify_store if platform == "shopify" else woocommerce_store[0]
    connect_tiktok(services, store_id)
    seed(services, store_id, strays=False)
    forget_receipts(services)
    log_in(client, services, store_id)

    page = page_of(client, f"/settings/{store_id}/")

    sentence = text_of(page, "ledger-headline")
    assert "not installed" in sentence and "%" not in sentence
    install = text_of(page, "ledger-install")
    assert "Install the storefront code" in install and words in install
    assert 'id="ledger-totals"' not in page  # no share at all, rather than a misleading one
    if platform == "shopify":  # the command that prints the custom pixel, as code
        assert f"<code>connector stores shopify-pixel {store_id}</code>" in page


def test_the_status_page_says_when_the_first_receipt_came(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    seed(services, shopify_store, [Purchase("1", 10.0, days_ago=10)], strays=False)
    seed(services, shopify_store, [Purchase("2", 5.0, receipt="reported", days_ago=3)],
         strays=False)  # fmt: skip
    log_in(client, services, shopify_store)

    page = page_of(client, f"/settings/{shopify_store}/")

    note = text_of(page, "ledger-installed-since")
    assert note.startswith("The first receipt from your storefront came 3 days ago")
    assert "purchases before then have no receipt" in note
    seed(services, shopify_store, [Purchase("3", 5.0, receipt="reported", days_ago=40)],
         strays=False)  # fmt: skip
    assert 'id="ledger-installed-since"' not in page_of(client, f"/settings/{shopify_store}/")


def test_a_store_without_tiktok_or_purchases_has_no_ledger(client, services, shopify_store):
    log_in(client, services, shopify_store)
    assert 'id="ledger"' not in page_of(client, f"/settings/{shopify_store}/")

    connect_tiktok(services, shopify_store)
    page = page_of(client, f"/settings/{shopify_store}/")
    assert "no purchases sent from the server to TikTok yet" in text_of(page, "ledger-headline")


def test_diagnostics_break_the_ledger_down(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    seed(services, shopify_store)
    want = expected(services, shopify_store)
    log_in(client, services, shopify_store)

    page = page_of(client, f"/settings/{shopify_store}/diagnostics?days=30&destination=tiktok")

    elements = Elements(page)
    days = {r["data-day"]: r for r in elements.with_attr("data-day")}
    assert {d: (int(r["data-delivered"]), int(r["data-blocked"])) for d, r in days.items()} == (
        dict(want.by_day)
    )
    browsers = {r["data-browser-family"]: r for r in elements.with_attr("data-browser-family")}
    assert {
        b: (int(r["data-delivered"]), int(r["data-blocked"])) for b, r in browsers.items()
    } == dict(want.by_browser)
    devices = {
        r["data-device"]: int(r["data-delivered"]) for r in elements.with_attr("data-device")
    }
    assert devices == {"desktop": 3, "mobile": 3, "tablet": 1, "unknown": 1}
    causes = {
        (r["data-status"], r["data-outcome"]): int(r["data-count"])
        for r in elements.with_attr("data-outcome")
    }
    assert causes[("delivered", "blocked")] == want.recovered
    assert causes[("delivered", "no receipt")] == want.unreceipted
    assert causes[("failed", "blocked")] == 1
    assert "cannot be told apart" in text_of(page, "recovered-causes")


def test_diagnostics_of_a_destination_without_receipts_say_so(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    connect_meta(services, shopify_store)
    seed(services, shopify_store)
    log_in(client, services, shopify_store)

    page = page_of(client, f"/settings/{shopify_store}/diagnostics?days=30&destination=meta")

    assert "data-browser-family" not in page
    assert "TikTok" in text_of(page, "recovered")


def test_the_delivery_log_shows_and_filters_the_browser_outcome(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    seed(services, shopify_store)
    want = expected(services, shopify_store, 60)  # the log has no window
    log_in(client, services, shopify_store)

    page = page_of(client, f"/settings/{shopify_store}/log")

    shown = {
        row["data-event-id"]: row["data-browser"]
        for row in Elements(page).with_attr("data-event-id")
        if row.get("data-destination") == "tiktok"
    }
    assert {k: v for k, v in shown.items() if v} == want.outcomes
    assert shown["1013"] == ""  # a checkout: no receipt can be about it
    meta = [r for r in Elements(page).with_attr("data-event-id") if r["data-destination"] == "meta"]
    assert [r["data-browser"] for r in meta] == [""]
    for outcome in ("reported", "blocked", "no receipt"):
        filtered = page_of(client, f"/settings/{shopify_store}/log?browser={outcome}")
        ids = {r["data-event-id"] for r in Elements(filtered).with_attr("data-event-id")}
        assert ids == {k for k, v in want.outcomes.items() if v == outcome}, outcome
        assert f'<option value="{outcome}" selected>' in filtered
    blocked_delivered = page_of(
        client, f"/settings/{shopify_store}/log?browser=blocked&status=delivered"
    )
    ids = {r["data-event-id"] for r in Elements(blocked_delivered).with_attr("data-event-id")}
    assert ids == {"1002", "1003", "1006", "1011", "0900"}
