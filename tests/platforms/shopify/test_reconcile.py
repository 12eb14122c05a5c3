"""Reconciliation's Shopify side against the stand-in's GraphQL Admin API: orders read back
are the orders their webhooks bring, paged, within the cost budget, and a store whose access
went says what to do.

The stand-in's orders are GraphQL nodes; ``graphql_order*.json`` are the same orders as the
webhook fixtures ``orders_create*.json``, so the two roads can be compared.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from connector.events import Order
from connector.models import EventSource, OutboxEvent, Store
from connector.plugins import FetchError, NoApiAccess
from connector.reconcile import reconcile_store
from connector.stores import add_store
from platforms.shopify.parse import read_webhook
from platforms.shopify.reconcile import ORDERS_PER_PAGE, fetch_orders
from tests.platforms.shopify.helpers import INSTALL_SHOP, app_webhook, install
from tests.standins.shopify_admin import AdminGraphQL
from tests.support import connect_tiktok, fixture_bytes

pytestmark = pytest.mark.postgres

EVERY_SCOPE = {"read_orders", "write_pixels", "read_products", "read_customers"}
SHOP_ZONE = timezone(timedelta(hours=-4))  # webhooks write dates in the shop's zone
NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = (NOW - timedelta(hours=1)).replace(tzinfo=None)


def dated(variant: str = "", *, minutes_ago: int = 20) -> tuple[dict[str, Any], dict[str, Any]]:
    """The GraphQL node and the webhook body of one fixture order, placed ``minutes_ago``
    and changed two seconds later (both within Shopify's 60 days and TikTok's 7)."""
    node = json.loads(fixture_bytes("shopify", f"graphql_order{variant}.json"))
    body = json.loads(fixture_bytes("shopify", f"orders_create{variant}.json"))
    placed = NOW - timedelta(minutes=minutes_ago)
    changed = placed + timedelta(seconds=2)
    node.update(createdAt=_z(placed), processedAt=_z(placed), updatedAt=_z(changed))
    in_zone = placed.astimezone(SHOP_ZONE).isoformat()
    body.update(
        created_at=in_zone,
        processed_at=in_zone,
        updated_at=changed.astimezone(SHOP_ZONE).isoformat(),
    )
    return node, body


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def numbered(node: dict[str, Any], number: int, changed: datetime) -> dict[str, Any]:
    """Another order like ``node``: its own id, changed at ``changed``."""
    copied = copy.deepcopy(node)
    copied.update(
        id=f"gid://shopify/Order/{number}", legacyResourceId=str(number), updatedAt=_z(changed)
    )
    return copied


def as_webhook_brings(body: dict[str, Any], topic: str = "orders/create") -> Order:
    """What the webhook gives, less the browser's user agent, which GraphQL does not have."""
    order = read_webhook(topic, body)
    assert isinstance(order, Order)
    return replace(order, shopper=replace(order.shopper, user_agent=None))


def installed(browser, shopify, services, scopes: set[str] | None = None) -> Store:  # type: ignore[no-untyped-def]
    if scopes is not None:
        shopify.scopes = set(scopes)
    assert install(browser, shopify).status_code == 200
    with services.db.session() as session:
        return session.scalar(select(Store).where(Store.domain == INSTALL_SHOP))


def fetched(services, store: Store, since: datetime = SINCE) -> list:  # type: ignore[no-untyped-def]
    return list(fetch_orders(services, store, since))


# -- the same order as its webhook -------------------------------------------------------------


def test_an_order_read_back_is_the_order_its_webhook_brings(browser, shopify, app_services):
    store = installed(browser, shopify, app_services, EVERY_SCOPE)
    node, body = dated()
    shopify.orders[INSTALL_SHOP] = [node]
    found = fetched(app_services, store)
    assert [(f.topic, f.order) for f in found] == [
        ("orders/create", as_webhook_brings(body)),
        ("orders/paid", as_webhook_brings(body, "orders/paid")),  # displayFinancialStatus PAID
    ]
    order = found[0].order
    assert order.order_id == "820982911946154508"  # legacyResourceId: the webhook's event_id
    assert order.shopper.customer_id == "115310627314723954"
    assert order.items[1].variant_id == "9007199254740995"  # above 2**53, exact
    assert order.clicks.ttclid is not None and order.checkout_token == body["checkout_token"]
    assert found[0].updated_at == datetime.fromisoformat(node["updatedAt"]).replace(tzinfo=None)


def test_a_foreign_currency_order_reports_what_the_shopper_paid_as_its_webhook_does(
    browser, shopify, app_services
):
    store = installed(browser, shopify, app_services, EVERY_SCOPE)
    node, body = dated("__multi_currency")
    shopify.orders[INSTALL_SHOP] = [node]
    [only] = fetched(app_services, store)  # PENDING: no orders/paid
    assert (only.topic, only.order) == ("orders/create", as_webhook_brings(body))
    assert (only.order.currency, str(only.order.total)) == ("EUR", "357.95")
    assert only.order.clicks.ttclid == "E.C.P.Cs0BzQ1Xk9pR2vT7wY4aB6dF8hJ0lN3"  # the last visit


def test_without_product_and_customer_scopes_only_those_ids_are_missing(
    browser, shopify, app_services
):
    store = installed(browser, shopify, app_services)  # read_orders and write_pixels only
    node, body = dated()
    shopify.orders[INSTALL_SHOP] = [node]
    order = fetched(app_services, store)[0].order
    expected = as_webhook_brings(body)
    no_ids = tuple(replace(line, product_id=None, variant_id=None) for line in expected.items)
    no_customer = replace(expected.shopper, customer_id=None)
    assert order == replace(expected, items=no_ids, shopper=no_customer)


# -- paging, lines, checkpoint -------------------------------------------------------------------


def test_every_order_changed_since_comes_once_oldest_change_first(browser, shopify, app_services):
    store = installed(browser, shopify, app_services)
    node, _ = dated()
    node["displayFinancialStatus"] = "PENDING"
    changes = [NOW - timedelta(minutes=50 - n) for n in range(2 * ORDERS_PER_PAGE + 3)]
    orders = [numbered(node, 1000 + n, changed) for n, changed in enumerate(changes)]
    orders.append(numbered(node, 999, SINCE.replace(tzinfo=UTC) - timedelta(seconds=1)))
    orders.append(numbered(node, 998, SINCE.replace(tzinfo=UTC)))  # at the checkpoint: read
    shopify.orders[INSTALL_SHOP] = list(reversed(orders))
    found = fetched(app_services, store)
    ids = [f.order.order_id for f in found]
    assert ids == ["998", *(str(1000 + n) for n in range(len(changes)))]
    assert [f.updated_at for f in found] == sorted(f.updated_at for f in found)


def test_an_order_with_more_lines_than_a_page_holds_has_them_all(browser, shopify, app_services):
    store = installed(browser, shopify, app_services)
    node, _ = dated()
    line = node["lineItems"][0]
    node["lineItems"] = [dict(line, sku=f"SKU-{n}") for n in range(113)]
    shopify.orders[INSTALL_SHOP] = [node]
    order = fetched(app_services, store)[0].order
    assert [item.sku for item in order.items] == [f"SKU-{n}" for n in range(113)]


def test_an_order_that_cannot_be_read_is_counted_and_the_others_come(
    browser, shopify, app_services
):
    store = installed(browser, shopify, app_services)
    node, body = dated()
    broken = numbered(node, 4242, NOW - timedelta(minutes=30))
    broken.update(currencyCode=None, presentmentCurrencyCode=None, totalPriceSet=None)
    shopify.orders[INSTALL_SHOP] = [node, broken]
    found = fetched(app_services, store)
    unreadable = [f for f in found if f.order is None]
    assert len(unreadable) == 1 and "order 4242" in unreadable[0].unreadable
    assert {f.order.order_id for f in found if f.order} == {str(body["id"])}


# -- the cost budget -----------------------------------------------------------------------------


def many_orders(shopify, count: int) -> None:  # type: ignore[no-untyped-def]
    node, _ = dated()
    node["displayFinancialStatus"] = "PENDING"
    shopify.orders[INSTALL_SHOP] = [
        numbered(node, 2000 + n, NOW - timedelta(minutes=40 - n)) for n in range(count)
    ]


def test_it_waits_for_the_bucket_instead_of_being_throttled(browser, shopify, app_services):
    store = installed(browser, shopify, app_services)
    many_orders(shopify, 3 * ORDERS_PER_PAGE)
    # Room for one page at a time, refilled in about a tenth of a second: a reader that did
    # not wait for the bucket would be throttled from the second page on.
    shopify.admin = AdminGraphQL(bucket_size=600.0, restore_rate=3000.0)
    assert len(fetched(app_services, store)) == 3 * ORDERS_PER_PAGE
    assert shopify.admin.throttled == 0


def test_a_throttled_call_is_waited_out_and_repeated(browser, shopify, app_services):
    store = installed(browser, shopify, app_services)
    many_orders(shopify, ORDERS_PER_PAGE + 1)
    shopify.admin = AdminGraphQL(bucket_size=1000.0, restore_rate=5000.0)
    shopify.admin.drain_before_calls = 2  # another process of the app spent the bucket
    assert len(fetched(app_services, store)) == ORDERS_PER_PAGE + 1
    # Both drained calls were throttled and repeated; the first orders page, whose cost is
    # not known before Shopify first charges it, may be throttled once more.
    assert shopify.admin.throttled in (2, 3)


# -- access ------------------------------------------------------------------------------------


def test_an_uninstalled_app_says_to_reinstall(browser, shopify, app_services):
    store = installed(browser, shopify, app_services)
    shopify.revoke(INSTALL_SHOP)
    shopify.expire_access_tokens()
    with pytest.raises(FetchError, match="reinstall the app"):
        fetched(app_services, store)


def test_a_revoked_custom_app_token_says_to_reconnect(shopify, app_services):
    token = shopify.issue_custom_app_token("own-app.myshopify.com", {"read_orders"})
    store = add_store(
        app_services,
        platform="shopify",
        domain="own-app.myshopify.com",
        webhook_secret="its-own-secret",
        access_token=token,
    )
    node, body = dated()
    shopify.orders["own-app.myshopify.com"] = [node]
    assert fetched(app_services, store)[0].order.order_id == str(body["id"])
    shopify.revoke("own-app.myshopify.com")
    with pytest.raises(FetchError, match="reconnect the store"):
        fetched(app_services, store)


def test_a_store_without_any_token_has_no_api_access(shopify, app_services):
    store = add_store(app_services, platform="shopify", domain=INSTALL_SHOP, webhook_secret="s")
    with pytest.raises(NoApiAccess, match="install the app"):
        fetched(app_services, store)
    assert shopify.graphql_requests == 0


# -- with the core: connector.reconcile ----------------------------------------------------------


def events(services, store_id: str) -> list[OutboxEvent]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return list(session.scalars(select(OutboxEvent).where(OutboxEvent.store_id == store_id)))


def test_a_webhook_that_never_came_is_recovered_and_one_that_came_adds_nothing(
    browser, shopify, app_services, caplog
):
    caplog.set_level(logging.INFO)
    store = installed(browser, shopify, app_services, EVERY_SCOPE)
    connect_tiktok(app_services, store.id)
    missed, missed_body = dated()
    came, came_body = dated("__multi_currency")
    shopify.orders[INSTALL_SHOP] = [missed, came]
    sent = json.dumps(came_body).encode()
    answer = browser.post(
        "/webhooks/shopify", data=sent, headers=app_webhook("orders/create", sent)
    )
    assert answer.status_code == 200
    first = reconcile_store(app_services, store.id, since=SINCE)
    assert (first.error, first.inserted, first.duplicates) == (None, 1, 1)
    sources = {event.event_id: event.source for event in events(app_services, store.id)}
    assert sources == {
        str(missed_body["id"]): EventSource.RECONCILED,
        str(came_body["id"]): EventSource.WEBHOOK,
    }
    again = reconcile_store(app_services, store.id, since=SINCE)
    assert (again.inserted, len(events(app_services, store.id))) == (0, 2)
    assert missed_body["email"] not in caplog.text


def test_a_revoked_store_keeps_its_checkpoint_and_says_why(browser, shopify, app_services):
    store = installed(browser, shopify, app_services)
    shopify.revoke(INSTALL_SHOP)
    shopify.expire_access_tokens()
    summary = reconcile_store(app_services, store.id, since=SINCE)
    assert "reinstall the app" in summary.error
    with app_services.db.session() as session:
        row = session.get(Store, store.id)
        assert (row.reconciled_until, row.reconcile_error) == (None, summary.error)


def test_an_order_older_than_tiktok_accepts_is_recorded_skipped_not_sent(
    browser, shopify, app_services
):
    store = installed(browser, shopify, app_services)
    connect_tiktok(app_services, store.id)
    node, body = dated(minutes_ago=8 * 24 * 60)  # placed 8 days ago...
    node["updatedAt"] = _z(NOW - timedelta(minutes=5))  # ...and changed (fulfilled) just now
    shopify.orders[INSTALL_SHOP] = [node]
    summary = reconcile_store(app_services, store.id, since=SINCE)
    assert (summary.inserted, summary.skipped) == (0, 1)
    [event] = events(app_services, store.id)
    assert (event.event_id, event.status) == (str(body["id"]), "skipped")
    assert "older than 7 days" in (event.last_error or "")
