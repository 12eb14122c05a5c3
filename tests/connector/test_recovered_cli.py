"""``connector stores recovered``: the same numbers as a direct reading of the tables, the
per-order CSV, the window, how to install the storefront code when no receipt came, and an
unknown store. Run in-process as the other command tests run the ``connector`` command."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.ledger_support import expected, forget_receipts, seed
from tests.support import invoke_connector

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _no_receipts(services):  # type: ignore[no-untyped-def]
    forget_receipts(services)


def ledger_json(settings, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = invoke_connector(settings, "stores", "recovered", *args)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    return json.loads(line)


def test_prints_the_numbers_of_the_database(settings, services, shopify_store):
    seed(services, shopify_store)
    want = expected(services, shopify_store)

    got = ledger_json(settings, shopify_store)

    assert got["storefront_code_installed"] is True
    assert got["delivered"]["count"] == want.delivered == 8
    assert got["browser_reported"]["count"] == want.reported
    assert got["recovered"]["count"] == want.recovered
    assert got["no_receipt"]["count"] == want.unreceipted
    assert got["recovered"]["share"] == pytest.approx(want.recovered / want.delivered)
    for key, value in (
        ("delivered", want.delivered_value),
        ("recovered", want.recovered_value),
        ("no_receipt", want.unreceipted_value),
    ):
        assert got[key]["value"] == pytest.approx({c: round(v, 2) for c, v in value.items()})
    assert {r["key"]: (r["delivered"], r["blocked"]) for r in got["by_browser"]} == dict(
        want.by_browser
    )
    assert {r["key"]: (r["delivered"], r["blocked"]) for r in got["by_day"]} == dict(want.by_day)
    assert {(c["status"], c["browser"]) for c in got["by_cause"]} >= {
        ("delivered", "blocked"),
        ("delivered", "no receipt"),
    }
    assert got["headline"].startswith("Last 30 days: 8 purchases worth $")
    assert "4 of them (50%" in got["headline"]
    assert got["install_hint"] is None


def test_csv_has_one_line_per_purchase(settings, services, shopify_store):
    seed(services, shopify_store)
    want = expected(services, shopify_store)

    result = invoke_connector(settings, "stores", "recovered", shopify_store, "--csv")

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[:6] == [
        "order_id",
        "time",
        "value",
        "currency",
        "server_status",
        "browser_outcome",
    ]
    assert {r["order_id"]: r["browser_outcome"] for r in rows} == want.outcomes
    delivered = [r for r in rows if r["server_status"] == "delivered"]
    assert len(delivered) == want.delivered
    usd = sum(float(r["value"]) for r in delivered if r["currency"] == "USD")
    assert usd == pytest.approx(want.delivered_value["USD"])


def test_days_chooses_the_window(settings, services, shopify_store):
    seed(services, shopify_store)

    longer = invoke_connector(settings, "stores", "recovered", shopify_store, "--days", "60")
    assert json.loads(longer.stdout)["delivered"]["count"] == 9
    assert "older than 30 days are deleted (EVENT_RETENTION_DAYS)" in longer.stderr
    assert (
        "EVENT_RETENTION_DAYS"
        not in invoke_connector(settings, "stores", "recovered", shopify_store).stderr
    )
    assert ledger_json(settings, shopify_store, "--days", "2")["delivered"]["count"] == (
        expected(services, shopify_store, 2).delivered
    )
    refused = invoke_connector(settings, "stores", "recovered", shopify_store, "--days", "0")
    assert refused.returncode == 2 and "--days" in refused.stderr


def test_without_receipts_it_says_how_to_install_the_storefront_code(
    settings, services, shopify_store, woocommerce_store
):
    woo_store, _secret = woocommerce_store
    seed(services, shopify_store, strays=False)
    seed(services, woo_store, strays=False)
    forget_receipts(services)

    shopify = ledger_json(settings, shopify_store)
    woo = ledger_json(settings, woo_store)

    for got in (shopify, woo):
        assert got["storefront_code_installed"] is False
        assert got["recovered"]["share"] is None
        assert "not installed" in got["headline"] and "%" not in got["headline"]
    assert f"connector stores shopify-pixel {shopify_store}" in shopify["install_hint"]
    assert "custom pixel" in shopify["install_hint"]
    assert "WordPress plugin" in woo["install_hint"]


def test_an_unknown_store_is_an_error(settings, services):
    result = invoke_connector(settings, "stores", "recovered", "st_nosuchstore")

    assert result.returncode == 1
    assert "no store st_nosuchstore" in result.stderr
    assert result.stdout == ""


def test_an_unknown_pixel_is_refused(settings, services, shopify_store):
    result = invoke_connector(settings, "stores", "recovered", shopify_store, "--pixel", "myspace")

    assert result.returncode == 2
    assert "there is no destination 'myspace'" in result.stderr
    assert result.stdout == ""
