"""Connect with TikTok from a store platform's admin: the embedded grant in the URL is not
turned into a cookie session; the connection carries its own signed, single-use state, bound
to the browser that started it (security issue, item 1)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from connector.destinations.tiktok.connect import NONCE_COOKIE
from connector.web.merchant.access import embedded_grant
from tests.destinations.tiktok_oauth_support import consent, oauth_settings, prepare_tiktok
from tests.support import SHOP_DOMAIN

pytestmark = pytest.mark.postgres

CALLBACK = "http://connector.test/tiktok/callback"  # APP_URL of the test settings
FRAMES = (f"https://{SHOP_DOMAIN}", "https://admin.shopify.com")


@pytest.fixture
def settings(settings, tiktok):  # type: ignore[no-untyped-def]
    prepare_tiktok(tiktok, CALLBACK)
    return oauth_settings(settings, tiktok)


@pytest.fixture
def grant(app, shopify_store) -> str:  # type: ignore[no-untyped-def]
    with app.test_request_context():
        app.preprocess_request()
        return embedded_grant(shopify_store, FRAMES, "shopify", shop=SHOP_DOMAIN)


def connect_from_admin(client: FlaskClient, store_id: str, grant: str):  # type: ignore[no-untyped-def]
    return client.get(f"/settings/{store_id}/tiktok/connect", query_string={"session": grant})


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"


def test_connecting_from_the_admin_starts_no_cookie_session(
    app, client, shopify_store, grant, tiktok
):
    answer = connect_from_admin(client, shopify_store, grant)
    assert answer.status_code == 302
    assert "connector_session" not in answer.headers["Set-Cookie"]
    assert client.get_cookie("connector_session") is None
    # Without the grant in the URL, this browser has no access to the store's pages.
    assert client.get(f"/settings/{shopify_store}/").status_code == 403
    back = client.get(callback_path(consent(answer.headers["Location"])))
    assert back.status_code == 302, back.get_data(as_text=True)
    assert client.get_cookie("connector_session") is None
    assert client.get(f"/settings/{shopify_store}/settings").status_code == 403
    # The pixel page opens with a short grant of its own, framed by no one.
    pixels = client.get(back.headers["Location"])
    assert pixels.status_code == 200 and "Connected to TikTok" in pixels.get_data(as_text=True)
    assert "frame-ancestors 'none'" in pixels.headers["Content-Security-Policy"]


def test_the_state_works_once_and_in_the_browser_that_started_it_only(
    app, client, shopify_store, grant, tiktok
):
    answer = connect_from_admin(client, shopify_store, grant)
    location = callback_path(consent(answer.headers["Location"]))
    # Another browser with the URL (from a history, a log): no nonce cookie.
    assert app.test_client().get(location).status_code == 403
    nonce = client.get_cookie(NONCE_COOKIE, path="/tiktok/")
    assert nonce is not None
    assert client.get(location).status_code == 302
    assert client.get_cookie(NONCE_COOKIE, path="/tiktok/") is None  # the browser forgets it
    # Even with the cookie kept (copied before), the state was spent.
    client.set_cookie(NONCE_COOKIE, nonce.value, path="/tiktok/")
    again = client.get(location)
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
