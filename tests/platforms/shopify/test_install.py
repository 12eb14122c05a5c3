"""The OAuth install against the Shopify stand-in: redirect chain, token, webhooks, refresh."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select, update

from connector.models import ShopifyToken, Store, StoreDestination, utcnow
from connector.stores import add_store
from connector.worker import periodic_tasks
from platforms.shopify.admin_api import TOML_TOPICS, remove_shop_webhooks
from platforms.shopify.compliance import UNINSTALLED_REASON
from platforms.shopify.install import REMOVE_DUPLICATE_WEBHOOKS, remove_duplicate_webhooks
from platforms.shopify.tokens import TokenError, access_token, admin_base_url
from tests.platforms.shopify.helpers import (
    API_KEY,
    APP_URL,
    INSTALL_SHOP,
    app_webhook,
    get,
    install,
    query_of,
)
from tests.support import PIXEL_CODE, connect_tiktok, fixture_bytes

pytestmark = pytest.mark.postgres


def token_row(services) -> ShopifyToken:
    with services.db.session() as session:
        store = session.scalar(select(Store).where(Store.domain == INSTALL_SHOP))
        return session.get(ShopifyToken, store.id)


def store_row(services) -> Store:
    with services.db.session() as session:
        return session.scalar(select(Store).where(Store.domain == INSTALL_SHOP))


def expire_stored_token(services) -> None:
    with services.db.session() as session:
        session.execute(update(ShopifyToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()


def test_install_redirects_to_the_consent_screen_with_a_browser_bound_state(browser, shopify):
    start = shopify.signed_query({"shop": INSTALL_SHOP, "timestamp": str(int(time.time()))})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(f"{shopify.base_url}/{INSTALL_SHOP}/admin/oauth/authorize?")
    query = query_of(location)
    assert query["client_id"] == API_KEY
    assert query["redirect_uri"] == f"{APP_URL}/shopify/callback"
    assert query["scope"] == "read_orders,write_pixels"
    cookie = answer.headers["Set-Cookie"]
    assert "shopify_oauth_nonce=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert query["state"] and query["state"] not in cookie  # the nonce alone is not the state


def test_full_install_stores_an_encrypted_expiring_token_and_subscribes_nothing_itself(
    browser, shopify, app_services
):
    answer = install(browser, shopify)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert f"{INSTALL_SHOP} is connected" in answer.get_data(as_text=True)
    assert f'href="https://{INSTALL_SHOP}/admin/apps/{API_KEY}"' in answer.get_data(as_text=True)
    store = store_row(app_services)
    assert (store.platform, store.status, store.webhook_secret_encrypted) == (
        "shopify",
        "active",
        None,
    )
    row = token_row(app_services)
    plain = app_services.cipher.decrypt(row.access_token_encrypted)
    assert plain.startswith("shpat_") and plain not in row.access_token_encrypted
    assert app_services.cipher.decrypt(row.refresh_token_encrypted).startswith("shprt_")
    assert timedelta(minutes=59) < row.expires_at - utcnow() <= timedelta(hours=1)
    assert row.refresh_expires_at > utcnow() + timedelta(days=80)
    assert shopify.subscriptions.get(INSTALL_SHOP, []) == []  # shopify.app.toml's only
    assert "shopify_oauth_nonce=;" in answer.headers["Set-Cookie"]  # the nonce is spent
    assert shopify.pixels[INSTALL_SHOP] == {"collectUrl": f"{APP_URL}/collect"}


def test_install_finishes_when_the_pixel_cannot_be_activated(
    browser, shopify, app_services, caplog
):
    refusal = {"code": "INVALID_CONFIGURATION", "field": None, "message": "no extension"}
    shopify._create_pixel = lambda _shop, _variables: {  # the extension was never deployed
        "data": {"webPixelCreate": {"webPixel": None, "userErrors": [refusal]}}
    }
    answer = install(browser, shopify)
    assert answer.status_code == 200
    assert token_row(app_services) is not None
    assert "shopify.pixel-not-activated" in caplog.text and "no extension" in caplog.text


def test_installed_store_webhooks_verify_with_the_app_secret(browser, shopify, app_services):
    install(browser, shopify)
    body = fixture_bytes("shopify", "orders_create.json")
    answer = browser.post(
        "/webhooks/shopify", data=body, headers=app_webhook("orders/create", body)
    )
    assert answer.status_code == 200 and answer.json["events"] == 1


def test_token_is_refreshed_before_it_expires_and_the_refresh_token_rotates(
    browser, shopify, app_services
):
    install(browser, shopify)
    before = token_row(app_services)
    admin = admin_base_url(INSTALL_SHOP, shopify.admin_base_template)
    store_id = before.store_id
    assert access_token(app_services, store_id, admin) == app_services.cipher.decrypt(
        before.access_token_encrypted
    )
    assert shopify.refreshes == 0
    expire_stored_token(app_services)
    fresh = access_token(app_services, store_id, admin)
    after = token_row(app_services)
    assert shopify.refreshes == 1
    assert fresh == app_services.cipher.decrypt(after.access_token_encrypted)
    assert fresh != app_services.cipher.decrypt(before.access_token_encrypted)
    assert after.refresh_token_encrypted != before.refresh_token_encrypted
    assert after.expires_at > utcnow() + timedelta(minutes=59)
    # The new token works.
    assert remove_shop_webhooks(app_services, store_id, admin) == []


def test_a_401_refreshes_the_token_once_and_retries(browser, shopify, app_services):
    install(browser, shopify)
    store_id = token_row(app_services).store_id
    shopify.expire_access_tokens()  # Shopify says expired although our clock says fresh
    admin = admin_base_url(INSTALL_SHOP, shopify.admin_base_template)
    assert remove_shop_webhooks(app_services, store_id, admin) == []
    assert shopify.refreshes == 1


def test_two_workers_refreshing_at_once_make_one_refresh(browser, shopify, app_services):
    install(browser, shopify)
    store_id = token_row(app_services).store_id
    expire_stored_token(app_services)
    admin = admin_base_url(INSTALL_SHOP, shopify.admin_base_template)
    results: list[str] = []
    errors: list[Exception] = []

    def refresh() -> None:
        try:
            results.append(access_token(app_services, store_id, admin))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert shopify.refreshes == 1  # the stand-in refuses a rotated refresh token
    assert len(set(results)) == 1


def test_without_a_token_the_error_says_to_install(app_services, shopify):
    store = add_store(app_services, platform="shopify", domain=INSTALL_SHOP, webhook_secret=None)
    with pytest.raises(TokenError, match="install the app"):
        access_token(app_services, store.id, shopify.admin_base_template)


def test_callback_from_another_browser_is_refused(browser, shopify, shopify_app, app_services):
    start = shopify.signed_query({"shop": INSTALL_SHOP, "timestamp": str(int(time.time()))})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    consent = requests.get(answer.headers["Location"], allow_redirects=False, timeout=5)
    stranger = shopify_app.test_client()  # no nonce cookie
    refused = get(stranger, consent.headers["Location"])
    assert refused.status_code == 403
    assert "browser" in refused.json["error"]
    assert store_row(app_services) is None and shopify.code_exchanges == 0


def test_callback_with_a_tampered_hmac_is_refused(browser, shopify, app_services):
    start = shopify.signed_query({"shop": INSTALL_SHOP, "timestamp": str(int(time.time()))})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    consent = requests.get(answer.headers["Location"], allow_redirects=False, timeout=5)
    back = query_of(consent.headers["Location"])
    back["code"] = shopify.issue_code(INSTALL_SHOP)  # a code the hmac does not cover
    refused = browser.get("/shopify/callback", query_string=back, base_url=APP_URL)
    assert refused.status_code == 400 and "hmac" in refused.json["error"]
    assert store_row(app_services) is None


def test_callback_replayed_is_refused(browser, shopify, app_services):
    start = shopify.signed_query({"shop": INSTALL_SHOP, "timestamp": str(int(time.time()))})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    consent = requests.get(answer.headers["Location"], allow_redirects=False, timeout=5)
    assert get(browser, consent.headers["Location"]).status_code == 200
    replay = get(browser, consent.headers["Location"])
    assert replay.status_code == 403  # the nonce cookie is gone with the first use
    assert shopify.code_exchanges == 1


@pytest.mark.parametrize(
    "shop", ["evil.com/x.myshopify.com", "x.myshopify.com.evil.com", "x.myshopify.com:8443"]
)
def test_install_for_a_hostile_shop_is_refused(browser, shopify, shop):
    start = shopify.signed_query({"shop": shop, "timestamp": str(int(time.time()))})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    assert answer.status_code == 400 and "shop" in answer.json["error"]
    assert "Location" not in answer.headers


def test_install_older_than_a_day_is_refused(browser, shopify):
    old = str(int(time.time()) - 24 * 3600 - 60)
    start = shopify.signed_query({"shop": INSTALL_SHOP, "timestamp": old})
    answer = browser.get("/shopify/install", query_string=start, base_url=APP_URL)
    assert answer.status_code == 400 and "day old" in answer.json["error"]


def test_install_is_disabled_without_app_credentials(client):
    answer = client.get("/shopify/install", query_string={"shop": INSTALL_SHOP})
    assert answer.status_code == 404
    assert "SHOPIFY_API_KEY" in answer.json["error"]


def test_reinstall_resumes_only_what_the_uninstall_paused(browser, shopify, app_services):
    install(browser, shopify)
    store_id = store_row(app_services).id
    connect_tiktok(app_services, store_id)
    body = b'{"id": 1, "domain": "install-demo.myshopify.com"}'
    answer = browser.post(
        "/webhooks/shopify", data=body, headers=app_webhook("app/uninstalled", body)
    )
    assert answer.status_code == 200 and answer.json == {"status": "uninstalled"}
    with app_services.db.session() as session:
        destination = session.scalar(select(StoreDestination))
        assert destination.paused_reason == UNINSTALLED_REASON
        assert session.get(ShopifyToken, store_id) is None
        assert session.get(Store, store_id).status == "uninstalled"
    assert install(browser, shopify).status_code == 200
    assert shopify.pixels[INSTALL_SHOP] == {"collectUrl": f"{APP_URL}/collect"}  # kept
    with app_services.db.session() as session:
        destination = session.scalar(select(StoreDestination))
        assert destination.paused_reason is None and destination.account_id == PIXEL_CODE
        assert session.get(Store, store_id).status == "active"
        assert session.get(ShopifyToken, store_id) is not None


# -- one subscription per topic: shopify.app.toml's ----------------------------------------------

OLD_VERSION_URI = f"{APP_URL}/webhooks/shopify"


def subscribe_as_an_older_version(shopify, shop: str = INSTALL_SHOP) -> None:  # type: ignore[no-untyped-def]
    """The shop-specific subscriptions versions before the TOML made at every install, plus
    one of another topic, which is not a duplicate of anything."""
    for enum in TOML_TOPICS.values():
        shopify.add_shop_subscription(shop, enum, OLD_VERSION_URI)
    shopify.add_shop_subscription(shop, "PRODUCTS_UPDATE", OLD_VERSION_URI)


def test_a_reinstall_removes_the_shop_webhooks_an_older_version_made(
    browser, shopify, app_services, caplog
):
    caplog.set_level(logging.INFO)
    install(browser, shopify)
    subscribe_as_an_older_version(shopify)
    assert install(browser, shopify).status_code == 200
    assert [s["topic"] for s in shopify.subscriptions[INSTALL_SHOP]] == ["PRODUCTS_UPDATE"]
    assert "shopify.shop-webhooks-removed" in caplog.text


def test_the_worker_removes_duplicates_of_installed_stores_and_leaves_custom_apps_alone(
    browser, shopify, app_services, caplog
):
    caplog.set_level(logging.INFO)
    install(browser, shopify)
    subscribe_as_an_older_version(shopify)
    custom_shop = "own-app.myshopify.com"
    token = shopify.issue_custom_app_token(custom_shop, {"read_orders"})
    add_store(
        app_services,
        platform="shopify",
        domain=custom_shop,
        webhook_secret="custom-app-secret",
        access_token=token,
    )
    subscribe_as_an_older_version(shopify, custom_shop)  # the merchant's own app made these
    assert REMOVE_DUPLICATE_WEBHOOKS in periodic_tasks(app_services)
    remove_duplicate_webhooks(app_services)
    assert [s["topic"] for s in shopify.subscriptions[INSTALL_SHOP]] == ["PRODUCTS_UPDATE"]
    assert len(shopify.subscriptions[custom_shop]) == len(TOML_TOPICS) + 1
    remove_duplicate_webhooks(app_services)  # nothing left to do: one listing, no deletion
    assert caplog.text.count("shopify.shop-webhooks-removed") == 1


def test_a_store_that_cannot_be_cleaned_does_not_stop_the_others(
    browser, shopify, app_services, caplog
):
    install(browser, shopify)
    install(browser, shopify, shop="second-shop.myshopify.com")
    subscribe_as_an_older_version(shopify)
    subscribe_as_an_older_version(shopify, "second-shop.myshopify.com")
    shopify.revoke(INSTALL_SHOP)
    remove_duplicate_webhooks(app_services)
    assert "shopify.shop-webhooks-not-removed" in caplog.text
    remaining = shopify.subscriptions["second-shop.myshopify.com"]
    assert [s["topic"] for s in remaining] == ["PRODUCTS_UPDATE"]
