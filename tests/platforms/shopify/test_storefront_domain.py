"""The shop's primary domain: read at install through the GraphQL Admin API (the Shopify
stand-in), kept on the store, and accepted by POST /collect as an Origin, next to the
myshopify domain and nothing else."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from connector.models import ClickRecord, Store
from connector.stores import add_store
from platforms.shopify.admin_api import AdminApiError, graphql
from platforms.shopify.tokens import TokenGrant, admin_base_url, save_grant
from tests.platforms.shopify.helpers import INSTALL_SHOP, install

pytestmark = pytest.mark.postgres

STOREFRONT = "shop.example.com"
CHECKOUT = "b1946ac92492d2347c6235b4d2611184"


def stored_store(services) -> Store:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalar(select(Store).where(Store.domain == INSTALL_SHOP))


def click_records(services) -> list[ClickRecord]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return list(session.scalars(select(ClickRecord)))


def report(browser, origin: str | None, shop: str = INSTALL_SHOP):  # type: ignore[no-untyped-def]
    body = {"shop": shop, "checkout_token": CHECKOUT, "ttclid": "E.C.P.x", "ttp": "t"}
    headers = {"Content-Type": "text/plain"}
    if origin is not None:
        headers["Origin"] = origin
    return browser.post("/collect", data=json.dumps(body), headers=headers)


# -- install -----------------------------------------------------------------------------------


def test_install_keeps_the_primary_domain(browser, shopify, app_services):
    shopify.primary_domains[INSTALL_SHOP] = STOREFRONT
    assert install(browser, shopify).status_code == 200
    assert stored_store(app_services).storefront_domains == [STOREFRONT]


def test_a_shop_without_a_domain_of_its_own_keeps_none(browser, shopify, app_services):
    assert install(browser, shopify).status_code == 200
    assert stored_store(app_services).storefront_domains == []


def test_a_reinstall_picks_up_a_changed_domain(browser, shopify, app_services):
    shopify.primary_domains[INSTALL_SHOP] = STOREFRONT
    install(browser, shopify)
    shopify.primary_domains[INSTALL_SHOP] = "www.new-name.example"
    assert install(browser, shopify).status_code == 200
    assert stored_store(app_services).storefront_domains == ["www.new-name.example"]


def test_an_internationalised_domain_is_kept_as_browsers_send_it(browser, shopify, app_services):
    shopify.primary_domains[INSTALL_SHOP] = "Bücher.example"
    install(browser, shopify)
    assert stored_store(app_services).storefront_domains == ["xn--bcher-kva.example"]


@pytest.mark.parametrize("host", ["", "evil.com/x", "shop.example.com:8443", "a b.example"])
def test_a_primary_domain_that_is_not_a_host_is_not_kept(
    browser, shopify, app_services, caplog, host
):
    shopify.primary_domains[INSTALL_SHOP] = host
    assert install(browser, shopify).status_code == 200  # orders still convert
    assert stored_store(app_services).storefront_domains is None
    assert "shopify.storefront-domain-unknown" in caplog.text
    assert INSTALL_SHOP in shopify.pixels  # the install went on past the domain


def test_the_stand_in_serves_only_the_selection_the_connector_sends(browser, shopify, app_services):
    install(browser, shopify)
    store_id = stored_store(app_services).id
    admin = admin_base_url(INSTALL_SHOP, shopify.admin_base_template)
    query = "{ shop { primaryDomain { host url } } }"
    with pytest.raises(AdminApiError, match="unsupported selection"):
        graphql(app_services, store_id, admin, query, {})


# -- POST /collect -----------------------------------------------------------------------------


@pytest.fixture
def store_with_storefront(app_services) -> str:
    store = add_store(app_services, platform="shopify", domain=INSTALL_SHOP, webhook_secret=None)
    with app_services.db.session() as session:
        session.get(Store, store.id).storefront_domains = [STOREFRONT]
        session.commit()
    return store.id


@pytest.mark.parametrize("origin", [f"https://{INSTALL_SHOP}", f"https://{STOREFRONT}"])
def test_collect_accepts_the_shops_own_origins(
    browser, app_services, store_with_storefront, origin
):
    answer = report(browser, origin)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert [r.store_id for r in click_records(app_services)] == [store_with_storefront]
    preflight = browser.options("/collect", headers={"Origin": origin})
    assert preflight.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "https://evil.com",
        f"https://{STOREFRONT}.evil.com",
        f"https://evil.{STOREFRONT}",
        f"https://evil{STOREFRONT}",
        f"http://{STOREFRONT}",
        f"http://{INSTALL_SHOP}",
        f"https://{STOREFRONT}:8443",
        f"https://{STOREFRONT}/",
        f"https://{STOREFRONT}@evil.com",
        f"https://evil.com#{STOREFRONT}",
        "https://example.com",
        "https://com",
        f"{STOREFRONT}",
    ],
)
def test_collect_refuses_every_other_origin(browser, app_services, store_with_storefront, origin):
    answer = report(browser, origin)
    assert answer.status_code == 403 and "Origin" in answer.json["error"]
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert click_records(app_services) == []
    if origin is not None:
        preflight = browser.options("/collect", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in preflight.headers


def test_a_sandboxed_pixel_reports_with_a_null_origin_and_gets_no_cors_header(
    browser, app_services, store_with_storefront
):
    """Shopify's pixel sandboxes are iframes without allow-same-origin: ``Origin: null``,
    taken only from a store installed through the app (whose pixel it is)."""
    grant = TokenGrant("shpat_x", "read_orders", 3600, "shprt_x", 10)
    save_grant(app_services, store_with_storefront, grant)
    answer = report(browser, "null")
    assert answer.status_code == 204
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert [r.store_id for r in click_records(app_services)] == [store_with_storefront]
    preflight = browser.options("/collect", headers={"Origin": "null"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_another_stores_storefront_cannot_report_for_this_store(
    browser, app_services, store_with_storefront
):
    other = add_store(
        app_services, platform="shopify", domain="other-shop.myshopify.com", webhook_secret=None
    )
    with app_services.db.session() as session:
        session.get(Store, other.id).storefront_domains = ["other-shop.example"]
        session.commit()
    assert report(browser, "https://other-shop.example").status_code == 403
    accepted = report(browser, "https://other-shop.example", shop="other-shop.myshopify.com")
    assert accepted.status_code == 204
    assert [r.store_id for r in click_records(app_services)] == [other.id]


def test_an_uninstalled_stores_storefront_is_refused(browser, app_services, store_with_storefront):
    with app_services.db.session() as session:
        session.get(Store, store_with_storefront).status = "uninstalled"
        session.commit()
    assert report(browser, f"https://{STOREFRONT}").status_code == 403
    preflight = browser.options("/collect", headers={"Origin": f"https://{STOREFRONT}"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
