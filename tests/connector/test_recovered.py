"""The recovered-conversions ledger (connector.recovered) on SQLite and PostgreSQL: its numbers
are those of a direct reading of the tables, receipts of other stores, pixels and orders do not
count, a store without any receipt is "not installed" rather than 0% or 100% recovered, and
the whole ledger is two statements whatever the number of purchases."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from connector.models import utcnow
from connector.recovered import (
    BLOCKED,
    NO_RECEIPT,
    REPORTED,
    headline,
    ledger,
    money,
    orders,
    percent,
    write_csv,
)
from connector.testevent import send_test_event
from platforms.shopify import PLATFORM as SHOPIFY
from tests.ledger_support import MIX, Purchase, expected, forget_receipts, seed
from tests.support import connect_tiktok

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _no_receipts(services):  # type: ignore[no-untyped-def]
    forget_receipts(services)


def test_the_ledger_equals_a_direct_reading_of_the_tables(services, shopify_store):
    seed(services, shopify_store)
    want = expected(services, shopify_store)

    got = ledger(services, shopify_store)

    assert (want.delivered, want.reported, want.recovered, want.unreceipted) == (8, 2, 4, 2)
    assert got.delivered.count == want.delivered
    assert got.reported.count == want.reported
    assert got.recovered.count == want.recovered
    assert got.unreceipted.count == want.unreceipted
    for tally, value in (
        (got.delivered, want.delivered_value),
        (got.recovered, want.recovered_value),
        (got.unreceipted, want.unreceipted_value),
    ):
        assert tally.value.keys() == value.keys()
        for currency in value:
            assert tally.value[currency] == pytest.approx(value[currency], abs=0.005)
    assert got.recovered.value == pytest.approx({"USD": 80.50 + 45.25 + 10.00, "EUR": 30.00})
    assert got.share == pytest.approx(4 / 8)
    assert got.share_bounds == pytest.approx((4 / 8, 6 / 8))
    assert got.purchases == 11  # every status, within 30 days
    assert got.not_delivered == {"failed": 1, "pending": 1, "skipped": 1}
    assert got.code_installed


def test_breakdowns_by_day_browser_device_and_cause(services, shopify_store):
    seed(services, shopify_store)
    want = expected(services, shopify_store)

    got = ledger(services, shopify_store)

    assert {r.key: (r.delivered, r.blocked) for r in got.by_browser} == dict(want.by_browser)
    assert {r.key: (r.delivered, r.blocked) for r in got.by_day} == dict(want.by_day)
    assert [r.key for r in got.by_day] == sorted(want.by_day)  # oldest day first
    devices = {r.key: (r.delivered, r.reported, r.blocked, r.unreceipted) for r in got.by_device}
    assert devices == {
        "desktop": (3, 0, 3, 0),  # 1002, 1003, 1011
        "mobile": (3, 1, 1, 1),  # 1001, 1006, 1004
        "tablet": (1, 0, 0, 1),
        "unknown": (1, 1, 0, 0),  # recorded without a user agent
    }
    causes = {(c.status, c.outcome): c.tally.count for c in got.by_cause}
    assert causes == {
        ("delivered", REPORTED): 2,
        ("delivered", BLOCKED): 4,
        ("delivered", NO_RECEIPT): 2,
        ("pending", NO_RECEIPT): 1,
        ("failed", BLOCKED): 1,
        ("skipped", REPORTED): 1,
    }
    assert got.by_cause[0].status == "delivered"
    recovered = next(c for c in got.by_cause if (c.status, c.outcome) == ("delivered", BLOCKED))
    assert recovered.words.startswith("Recovered")
    unknown = next(c for c in got.by_cause if (c.status, c.outcome) == ("delivered", NO_RECEIPT))
    assert "cannot be told apart" in unknown.words


def test_the_headline_without_any_blocked_pixel(services, shopify_store):
    seed(services, shopify_store, [Purchase("1", 10.0, receipt="reported"), Purchase("2", 5.0)])

    words = headline(ledger(services, shopify_store))

    assert words.startswith("Last 30 days: 2 purchases worth $15 sent from the server; the ")
    assert "blocked for none of those with a receipt" in words
    assert "For 1 more (50%) the browser sent no receipt" in words


def test_the_settings_page_test_event_is_no_purchase(services, shopify_store, tiktok):
    connect_tiktok(services, shopify_store, test_event_code="TEST42")
    seed(services, shopify_store, [Purchase("1", 10.0, receipt="blocked")])

    sent = send_test_event(services, shopify_store, "tiktok")

    assert sent["status"] == "delivered"  # a delivered purchase row, which the ledger skips
    got = ledger(services, shopify_store)
    assert got.delivered.count == got.purchases == 1
    assert [row["order_id"] for row in orders(services, shopify_store)] == ["1"]


def test_a_window_counts_only_its_days(services, shopify_store):
    seed(services, shopify_store)

    week = ledger(services, shopify_store, 7)
    quarter = ledger(services, shopify_store, 60)

    assert week.delivered.count == expected(services, shopify_store, 7).delivered == 8
    assert quarter.delivered.count == 9  # order 0900, 40 days ago
    assert quarter.recovered.count == 5


def test_receipts_of_another_store_do_not_count(services, shopify_store, woocommerce_store):
    other, _secret = woocommerce_store
    seed(services, shopify_store, [p for p in MIX if p.receipt is None])  # no receipt at all
    seed(services, other, [Purchase("1004", 60.0, receipt="blocked")])  # same order id

    got = ledger(services, shopify_store)

    assert got.recovered.count == 0 and got.reported.count == 0
    # The stray receipts seed() adds (another order id, another pixel) are this store's own:
    # the storefront code works, nothing of the window was receipted.
    assert got.code_installed
    assert got.unreceipted.count == got.delivered.count == 2


def test_without_any_receipt_the_storefront_code_is_not_installed(services, shopify_store):
    seed(services, shopify_store)
    forget_receipts(services)

    got = ledger(services, shopify_store, platform=SHOPIFY)

    assert not got.code_installed
    assert got.recovered.count == 0 and got.unreceipted.count == got.delivered.count == 8
    words = headline(got)
    assert words.startswith("Last 30 days: 8 purchases worth $")
    assert "not installed" in words
    assert "%" not in words  # neither a misleading 0% nor 100%
    assert f"connector stores shopify-pixel {shopify_store}" in (got.install_hint or "")
    assert got.to_json()["recovered"]["share"] is None


def test_a_receipt_older_than_the_window_is_not_an_installed_code(services, shopify_store):
    seed(services, shopify_store, [Purchase("0900", 20.0, receipt="blocked", days_ago=40)],
         strays=False)  # fmt: skip
    seed(services, shopify_store, [Purchase("1001", 20.0)], strays=False)

    assert not ledger(services, shopify_store, 30).code_installed
    assert ledger(services, shopify_store, 60).code_installed


def test_a_code_installed_within_the_window_is_said(services, shopify_store):
    seed(services, shopify_store, [Purchase("1", 10.0, days_ago=10), Purchase("2", 5.0)],
         strays=False)  # fmt: skip
    assert ledger(services, shopify_store).installed_since is None  # no receipt at all

    seed(services, shopify_store, [Purchase("3", 7.0, receipt="blocked", days_ago=2)],
         strays=False)  # fmt: skip
    got = ledger(services, shopify_store)

    assert got.code_installed
    assert got.installed_since is not None
    assert (utcnow() - got.installed_since).days == 2
    assert ledger(services, shopify_store, 1).installed_since is None  # before this window


def test_the_headline_states_the_recovered_and_the_unknown(services, shopify_store):
    seed(services, shopify_store)

    words = headline(ledger(services, shopify_store))

    assert words.startswith("Last 30 days: 8 purchases worth $")
    assert "4 of them (50%, worth $136 + €30) never reached TikTok from the browser." in words
    assert "For 2 more (25%) the browser sent no receipt" in words
    assert "between 50% and 75%" in words


def test_the_csv_lists_every_purchase_of_the_window(services, shopify_store):
    seed(services, shopify_store)
    want = expected(services, shopify_store)

    rows = list(orders(services, shopify_store))
    text = write_csv(rows)

    assert {r["order_id"]: r["browser_outcome"] for r in rows} == want.outcomes
    lines = text.splitlines()
    assert lines[0] == "order_id,time,value,currency,server_status,browser_outcome,browser,device"
    assert len(lines) == 1 + 11
    by_id = {r["order_id"]: r for r in rows}
    assert by_id["1006"]["value"] == "30.00" and by_id["1006"]["currency"] == "EUR"
    assert by_id["1008"]["server_status"] == "failed"
    assert by_id["1005"]["browser"] == "unknown"
    assert by_id["1002"]["time"].endswith("Z")


def test_the_ledger_is_two_statements_whatever_the_number_of_purchases(services, shopify_store):
    many = [Purchase(str(5000 + i), 10.0, receipt=(None, "blocked", "reported")[i % 3])
            for i in range(300)]  # fmt: skip
    seed(services, shopify_store, many)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", count)
    try:
        got = ledger(services, shopify_store)
    finally:
        event.remove(services.db.engine, "before_cursor_execute", count)

    assert got.delivered.count == 300 and got.recovered.count == 100
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2


def test_money_and_percent_words():
    assert money({"USD": 98400.4}) == "$98,400"
    assert money({"USD": 10.0, "EUR": 12.0}) == "€12 + $10"
    assert money({"SEK": 1200.0}, cents=True) == "1,200.00 SEK"
    assert money({}) == "—"
    assert percent(0.25) == "25%" and percent(0.001) == "<1%" and percent(0) == "0%"
