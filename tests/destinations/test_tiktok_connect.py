"""The "Connect with TikTok" pages (connector.destinations.tiktok.connect), through Flask's test
client, with real HTTP to the TikTok stand-in for its authorization page and API.

Covered: the whole connection (Settings link, TikTok's consent, callback, pixel list, choice)
ending with a real order webhook delivered to the stand-in with the OAuth token; what waits
while no pixel is chosen; forged, expired, foreign-store and other-session states refused;
store B's session cannot connect or change store A; a declined consent, a TikTok refusal and a
connector without a TikTok app each explained on a page.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from connector.delivery import deliver_pending
from connector.destinations.tiktok.connect import STATE_SALT
from connector.destinations.tiktok.tokens import CHOOSE_PIXEL
from connector.models import OutboxEvent, StoreDestination
from connector.stores import add_store
from connector.web.merchant.access import embedded_grant
from tests.destinations.tiktok_oauth_support import (
    ADVERTISER,
    ADVERTISER_NAME,
    OAUTH_PIXEL,
    OTHER_ADVERTISER,
    OTHER_PIXEL,
    consent,
    oauth_settings,
    prepare_tiktok,
    query_of,
)
from tests.support import csrf_of, fixture_bytes, fresh, log_in, shopify_headers

pytestmark = pytest.mark.postgres

CALLBACK = "http://connector.test/tiktok/callback"  # APP_URL of the test settings


@pytest.fixture
def settings(settings, tiktok):  # type: ignore[no-untyped-def]
    assert settings.app_url + "/tiktok/callback" == CALLBACK
    prepare_tiktok(tiktok, CALLBACK)
    return oauth_settings(settings, tiktok)


@pytest.fixture
def other_store(services) -> str:  # type: ignore[no-untyped-def]
    return add_store(
        services, platform="woocommerce", domain="other.example", webhook_secret="s"
    ).id


def start(client: FlaskClient, store_id: str) -> str:
    """Click Connect with TikTok; where the connector sends the browser."""
    answer = client.get(f"/settings/{store_id}/tiktok/connect")
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer.headers["Location"]


def come_back(client: FlaskClient, location: str):  # type: ignore[no-untyped-def]
    """Follow TikTok's redirect to the connector's callback (the test client is the browser)."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def connect(client: FlaskClient, store_id: str, *, link: str = "grant"):  # type: ignore[no-untyped-def]
    return come_back(client, consent(start(client, store_id), link=link))


def tiktok_row(services, store_id: str) -> StoreDestination | None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalar(select(StoreDestination).where(StoreDestination.store_id == store_id))


def send_order(client: FlaskClient) -> None:
    body = fresh(fixture_bytes("shopify", "orders_create.json"))
    answer = client.post(
        "/webhooks/shopify", data=body, headers=shopify_headers("orders/create", body)
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)


def text(answer) -> str:  # type: ignore[no-untyped-def]
    return answer.get_data(as_text=True)


# -- the whole connection ----------------------------------------------------------------------


def test_connect_choose_a_pixel_and_an_order_reaches_tiktok_with_the_oauth_token(
    client, services, shopify_store, tiktok
) -> None:
    log_in(client, services, shopify_store)
    settings_page = text(client.get(f"/settings/{shopify_store}/settings"))
    assert f'href="/settings/{shopify_store}/tiktok/connect"' in settings_page

    location = start(client, shopify_store)
    assert location.startswith(tiktok.authorize_url + "?")
    assert query_of(location)["redirect_uri"] == CALLBACK
    answer = come_back(client, consent(location))
    assert answer.status_code == 302
    assert answer.headers["Location"] == f"/settings/{shopify_store}/tiktok/pixels"

    row = tiktok_row(services, shopify_store)
    [token] = tiktok.oauth.issued_tokens()
    assert (row.account_id, row.paused_reason) == ("", CHOOSE_PIXEL)
    assert services.cipher.decrypt(row.access_token_encrypted) == token
    assert token not in row.access_token_encrypted

    page = text(client.get(answer.headers["Location"]))
    assert "Connected to TikTok" in page
    for shown in (ADVERTISER_NAME, OAUTH_PIXEL, OTHER_PIXEL):
        assert shown in page

    send_order(client)  # arrives while no pixel is chosen: it waits
    assert deliver_pending(services, row.id).requests == 0
    assert tiktok.batches == []

    chosen = client.post(
        f"/settings/{shopify_store}/tiktok/pixels",
        data={"csrf_token": csrf_of(page), "pixel": f"{ADVERTISER}/{OAUTH_PIXEL}"},
    )
    assert chosen.status_code == 200
    assert "Conversions now go to" in text(chosen) and OAUTH_PIXEL in text(chosen)
    row = tiktok_row(services, shopify_store)
    assert (row.account_id, row.advertiser_id, row.paused_reason) == (
        OAUTH_PIXEL,
        ADVERTISER,
        None,
    )

    assert deliver_pending(services, row.id).delivered == 1
    [batch] = tiktok.batches
    assert batch.headers["Access-Token"] == token
    assert batch.body["event_source_id"] == OAUTH_PIXEL
    assert batch.answer["code"] == 0
    with services.db.session() as session:
        assert session.scalar(select(OutboxEvent.status)) == "delivered"


def test_reconnecting_keeps_the_options_and_offers_the_current_pixel(
    client, services, shopify_store, tiktok
) -> None:
    log_in(client, services, shopify_store)
    connect(client, shopify_store)
    page = text(client.get(f"/settings/{shopify_store}/tiktok/pixels"))
    client.post(
        f"/settings/{shopify_store}/tiktok/pixels",
        data={"csrf_token": csrf_of(page), "pixel": f"{OTHER_ADVERTISER}/{OTHER_PIXEL}"},
    )
    with services.db.session() as session:
        session.get(StoreDestination, tiktok_row(services, shopify_store).id).options = {
            "purchase_event": "Purchase"
        }
        session.commit()
    assert connect(client, shopify_store).status_code == 302
    row = tiktok_row(services, shopify_store)
    assert row.options == {"purchase_event": "Purchase"}
    assert row.paused_reason == CHOOSE_PIXEL
    page = text(client.get(f"/settings/{shopify_store}/tiktok/pixels"))
    assert f'value="{OTHER_ADVERTISER}/{OTHER_PIXEL}" checked' in page


def test_a_pixel_outside_the_granted_accounts_is_refused(
    client, services, shopify_store, tiktok
) -> None:
    tiktok.oauth.grant_advertiser_ids = [ADVERTISER]
    log_in(client, services, shopify_store)
    connect(client, shopify_store)
    page = text(client.get(f"/settings/{shopify_store}/tiktok/pixels"))
    assert OTHER_PIXEL not in page
    answer = client.post(
        f"/settings/{shopify_store}/tiktok/pixels",
        data={"csrf_token": csrf_of(page), "pixel": f"{OTHER_ADVERTISER}/{OTHER_PIXEL}"},
    )
    assert answer.status_code == 400
    assert "Choose one of the pixels listed below." in text(answer)
    assert tiktok_row(services, shopify_store).paused_reason == CHOOSE_PIXEL


def test_choosing_needs_the_forms_csrf_token(client, services, shopify_store, tiktok) -> None:
    log_in(client, services, shopify_store)
    connect(client, shopify_store)
    answer = client.post(
        f"/settings/{shopify_store}/tiktok/pixels",
        data={"pixel": f"{ADVERTISER}/{OAUTH_PIXEL}"},
    )
    assert answer.status_code == 400
    assert tiktok_row(services, shopify_store).account_id == ""


# -- the state ---------------------------------------------------------------------------------


def callback_with(client: FlaskClient, state: str):  # type: ignore[no-untyped-def]
    return client.get("/tiktok/callback", query_string={"auth_code": "ac_x", "state": state})


def test_a_forged_state_is_refused(client, services, shopify_store, tiktok) -> None:
    log_in(client, services, shopify_store)
    forged = URLSafeTimedSerializer("not-our-key", salt=STATE_SALT).dumps(
        {"store": shopify_store, "nonce": "n"}
    )
    answer = callback_with(client, forged)
    assert answer.status_code == 400
    assert "not valid" in text(answer) and "Connect with TikTok again" in text(answer)
    assert callback_with(client, "").status_code == 400
    assert tiktok_row(services, shopify_store) is None
    assert tiktok.oauth.calls == []  # nothing was exchanged


def test_an_expired_state_is_refused(client, services, shopify_store, tiktok) -> None:
    log_in(client, services, shopify_store)

    class HourAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 3600

    old = URLSafeTimedSerializer(
        services.settings.secret_key, salt=STATE_SALT, signer=HourAgo
    ).dumps({"store": shopify_store, "nonce": "n"})
    answer = callback_with(client, old)
    assert answer.status_code == 400 and "took too long" in text(answer)


def test_a_state_from_another_session_of_the_same_store_is_refused(
    app, services, shopify_store, tiktok
) -> None:
    first, second = app.test_client(), app.test_client()
    log_in(first, services, shopify_store)
    log_in(second, services, shopify_store)
    location = consent(start(first, shopify_store))
    answer = come_back(second, location)
    assert answer.status_code == 403
    assert "another browser session" in text(answer)
    assert tiktok_row(services, shopify_store) is None


def test_a_state_of_another_store_is_refused(
    app, services, shopify_store, other_store, tiktok
) -> None:
    store_a, store_b = app.test_client(), app.test_client()
    log_in(store_a, services, shopify_store)
    log_in(store_b, services, other_store)
    location = consent(start(store_a, shopify_store))  # store A's grant, store B's browser
    assert come_back(store_b, location).status_code == 403
    assert tiktok_row(services, shopify_store) is None
    assert tiktok_row(services, other_store) is None


# -- access ------------------------------------------------------------------------------------


def test_store_b_cannot_connect_or_change_store_a(
    client, services, shopify_store, other_store, tiktok
) -> None:
    log_in(client, services, other_store)
    own = text(client.get(f"/settings/{other_store}/settings"))
    token = csrf_of(own)
    assert client.get(f"/settings/{shopify_store}/tiktok/connect").status_code == 403
    assert client.get(f"/settings/{shopify_store}/tiktok/pixels").status_code == 403
    answer = client.post(
        f"/settings/{shopify_store}/tiktok/pixels",
        data={"csrf_token": token, "pixel": f"{ADVERTISER}/{OAUTH_PIXEL}"},
    )
    assert answer.status_code == 403
    assert tiktok.oauth.calls == []


def test_without_a_login_nothing_is_reachable(client, shopify_store) -> None:
    assert client.get(f"/settings/{shopify_store}/tiktok/connect").status_code == 403
    assert client.get(f"/settings/{shopify_store}/tiktok/pixels").status_code == 403


# -- what went wrong, and what to do -----------------------------------------------------------


def test_a_declined_consent_says_how_to_connect(client, services, shopify_store, tiktok) -> None:
    log_in(client, services, shopify_store)
    answer = connect(client, shopify_store, link="deny")
    assert answer.status_code == 400
    page = text(answer)
    assert "declined or cancelled" in page and "click Connect with TikTok again" in page
    assert "Back to Settings" in page  # the merchant's own layout
    assert tiktok_row(services, shopify_store) is None


def test_a_tiktok_refusal_is_shown_with_its_code(client, services, shopify_store, tiktok) -> None:
    tiktok.oauth.register_app(
        services.settings.env("TIKTOK_APP_ID"), "a-rotated-secret", CALLBACK
    )  # the operator's TIKTOK_APP_SECRET is now stale
    log_in(client, services, shopify_store)
    answer = connect(client, shopify_store)
    assert answer.status_code == 502
    page = text(answer)
    assert "TikTok refused the connection." in page
    assert "app_id or secret is invalid. (code 40001)" in page
    assert "TIKTOK_APP_SECRET" in page
    assert tiktok_row(services, shopify_store) is None


def test_pixels_tiktok_cannot_list_are_explained(client, services, shopify_store, tiktok) -> None:
    log_in(client, services, shopify_store)
    connect(client, shopify_store)
    tiktok.oauth.expire_token(tiktok.oauth.issued_tokens()[0])
    answer = client.get(f"/settings/{shopify_store}/tiktok/pixels")
    assert answer.status_code == 502
    assert "(code 40102)" in text(answer) and "Connect with TikTok again" in text(answer)


def test_the_pixel_page_before_connecting(client, services, shopify_store) -> None:
    log_in(client, services, shopify_store)
    answer = client.get(f"/settings/{shopify_store}/tiktok/pixels")
    assert answer.status_code == 404
    assert "not connected to TikTok yet" in text(answer)


def test_without_a_tiktok_app_the_pages_say_what_the_operator_must_set(
    settings, shopify_store
) -> None:
    from app import create_app
    from connector.services import build_services

    bare = build_services(settings.with_env(TIKTOK_APP_ID=None, TIKTOK_APP_SECRET=None))
    client = create_app(services=bare).test_client()
    log_in(client, bare, shopify_store)
    answer = client.get(f"/settings/{shopify_store}/tiktok/connect")
    assert answer.status_code == 404
    assert "TIKTOK_APP_ID and TIKTOK_APP_SECRET" in text(answer)
    assert "tiktok/connect" not in text(client.get(f"/settings/{shopify_store}/settings"))
    bare.db.dispose()


def test_from_the_embedded_admin_the_connection_finishes_in_the_top_window(
    client, services, shopify_store, tiktok, app
) -> None:
    """Opened inside a store platform's admin (an embedded grant in the URL, no cookie), the
    Connect link leaves the frame; no cookie session is started: a nonce cookie binds the
    callback to this browser, and the pixel page gets a short grant of its own."""
    with app.test_request_context():
        app.preprocess_request()
        grant = embedded_grant(shopify_store, ("https://admin.shopify.com",), "shopify")
    page = text(client.get(f"/settings/{shopify_store}/settings", query_string={"session": grant}))
    assert 'id="connect-tiktok"' in page and 'target="_top"' in page
    answer = client.get(
        f"/settings/{shopify_store}/tiktok/connect", query_string={"session": grant}
    )
    assert answer.status_code == 302
    assert "connector_session=" not in answer.headers["Set-Cookie"]
    back = come_back(client, consent(answer.headers["Location"]))
    assert back.status_code == 302, text(back)
    assert "Connected to TikTok" in text(client.get(back.headers["Location"]))
