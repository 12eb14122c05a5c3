"""The embedded app path: App Bridge session tokens authenticate /shopify/app, and the first
visit installs the shop by token exchange instead of the redirect flow."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import select

from connector.models import ShopifyToken, Store
from tests.platforms.shopify.helpers import API_KEY, API_SECRET, APP_URL, INSTALL_SHOP

pytestmark = pytest.mark.postgres


def session_token(secret: str = API_SECRET, **changes: object) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://{INSTALL_SHOP}/admin",
        "dest": f"https://{INSTALL_SHOP}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": "jti-1",
        "sid": "sid-1",
        **changes,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def open_app(browser, token: str, *, header: bool = False):  # type: ignore[no-untyped-def]
    if header:
        return browser.get(
            "/shopify/app", headers={"Authorization": f"Bearer {token}"}, base_url=APP_URL
        )
    return browser.get("/shopify/app", query_string={"id_token": token}, base_url=APP_URL)


def test_first_visit_installs_by_token_exchange(browser, shopify, app_services):
    answer = open_app(browser, session_token())
    assert answer.status_code == 303, answer.get_data(as_text=True)
    page = browser.get(answer.headers["Location"], base_url=APP_URL)
    assert page.status_code == 200
    assert INSTALL_SHOP in page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors https://{INSTALL_SHOP} https://admin.shopify.com" in csp
    # App Bridge, as Shopify requires of embedded pages, and nothing else from outside.
    assert "script-src 'self' https://cdn.shopify.com;" in csp
    html = page.get_data(as_text=True)
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in html
    assert '<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js"></script>' in html
    assert shopify.token_exchanges == 1 and shopify.code_exchanges == 0
    assert shopify.subscriptions.get(INSTALL_SHOP, []) == []  # shopify.app.toml's only
    with app_services.db.session() as session:
        store = session.scalar(select(Store).where(Store.domain == INSTALL_SHOP))
        row = session.get(ShopifyToken, store.id)
    assert app_services.cipher.decrypt(row.refresh_token_encrypted).startswith("shprt_")


def test_later_visits_reuse_the_stored_token(browser, shopify):
    assert open_app(browser, session_token()).status_code == 303
    assert open_app(browser, session_token(), header=True).status_code == 303
    assert shopify.token_exchanges == 1


@pytest.mark.parametrize(
    "token",
    [
        session_token(secret="another-secret-that-is-long-enough-0123"),
        session_token(aud="another-app"),
        session_token(exp=int(time.time()) - 60),
        session_token(dest="https://other-shop.myshopify.com"),
        "not-a-jwt",
        "",
    ],
)
def test_invalid_session_tokens_get_401_and_install_nothing(browser, shopify, app_services, token):
    answer = open_app(browser, token)
    assert answer.status_code == 401 and "session token" in answer.json["error"]
    assert shopify.token_exchanges == 0
    with app_services.db.session() as session:
        assert session.scalar(select(Store)) is None
