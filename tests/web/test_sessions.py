"""Merchant sessions kept server-side, login CSRF, and short embedded grants (security issue,
items 1 and 2): what a stolen cookie, an old grant or another site's page can no longer do."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import delete, select, update

from connector.models import MerchantSession, Store, utcnow
from connector.stores import add_store
from connector.web.merchant.access import (
    EMBEDDED_GRANT_SECONDS,
    EMBEDDED_SALT,
    SESSION_HOURS,
    SESSION_IDLE_HOURS,
    embedded_grant,
    login_token,
)
from platforms.shopify.compliance import redact_shop, uninstall
from tests.support import SHOP_DOMAIN, csrf_of

pytestmark = pytest.mark.postgres

COOKIE = "connector_session"
FRAMES = (f"https://{SHOP_DOMAIN}", "https://admin.shopify.com")


@pytest.fixture(autouse=True)
def no_sessions_left(services):  # type: ignore[no-untyped-def]
    """The shared fixture empties stores with SQLite's foreign keys off: clear sessions too."""
    with services.db.session() as session:
        session.execute(delete(MerchantSession))
        session.commit()


def log_in(client, services, store_id: str) -> str:  # type: ignore[no-untyped-def]
    """Log in through the login link and its Continue form; the session cookie's value."""
    path = f"/login/{login_token(services.settings.secret_key, store_id)}"
    page = client.get(path)
    answer = client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def with_cookie(app, value: str):  # type: ignore[no-untyped-def]
    """A fresh browser holding a copy of a session cookie (as a thief would)."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, value)
    return thief


def set_session_times(services, **times) -> None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        session.execute(update(MerchantSession).values(**times))
        session.commit()


# -- server-side sessions ----------------------------------------------------------------------


def test_the_cookie_holds_a_random_id_and_the_database_only_its_hash(
    client, services, shopify_store
):
    value = log_in(client, services, shopify_store)
    session_id, _signature = value.rsplit(".", 1)
    with services.db.session() as session:
        rows = session.scalars(select(MerchantSession)).all()
    assert [row.id_sha256 for row in rows] == [hashlib.sha256(session_id.encode()).hexdigest()]
    assert rows[0].store_id == shopify_store
    assert rows[0].expires_at - rows[0].created_at == timedelta(hours=SESSION_HOURS)
    assert shopify_store not in value


def test_a_session_is_refused_after_logout_even_with_a_copy_of_the_cookie(
    app, client, services, shopify_store
):
    value = log_in(client, services, shopify_store)
    assert with_cookie(app, value).get(f"/settings/{shopify_store}/").status_code == 200
    answer = client.post("/logout")
    assert answer.status_code == 303
    assert f"{COOKIE}=;" in answer.headers["Set-Cookie"]  # the browser forgets it too
    assert with_cookie(app, value).get(f"/settings/{shopify_store}/").status_code == 403
    assert client.get(f"/settings/{shopify_store}/").status_code == 403


def test_the_cookie_is_not_reissued_and_ends_at_its_absolute_lifetime(
    client, services, shopify_store
):
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/")
    assert page.status_code == 200
    assert COOKIE not in (page.headers.get("Set-Cookie") or "")  # no sliding expiry
    # Logged in 12 hours ago and used a minute ago: over all the same.
    now = utcnow()
    set_session_times(
        services,
        created_at=now - timedelta(hours=SESSION_HOURS),
        expires_at=now - timedelta(seconds=1),
        last_seen_at=now - timedelta(minutes=1),
    )
    assert client.get(f"/settings/{shopify_store}/").status_code == 403


def test_an_idle_session_is_refused(client, services, shopify_store):
    log_in(client, services, shopify_store)
    idle = utcnow() - timedelta(hours=SESSION_IDLE_HOURS, minutes=1)
    set_session_times(services, last_seen_at=idle)
    assert client.get(f"/settings/{shopify_store}/").status_code == 403


def test_using_a_session_keeps_it_from_going_idle(client, services, shopify_store):
    log_in(client, services, shopify_store)
    almost = utcnow() - timedelta(hours=SESSION_IDLE_HOURS) + timedelta(minutes=5)
    set_session_times(services, last_seen_at=almost)
    assert client.get(f"/settings/{shopify_store}/").status_code == 200
    with services.db.session() as session:
        seen = session.scalar(select(MerchantSession.last_seen_at))
    assert utcnow() - seen < timedelta(minutes=1)


def test_an_uninstall_ends_the_stores_sessions(app, client, services, shopify_store):
    value = log_in(client, services, shopify_store)
    with services.db.session() as session:
        store = session.get(Store, shopify_store)
    uninstall(services, store, {})
    assert with_cookie(app, value).get(f"/settings/{shopify_store}/").status_code == 403


def test_a_deleted_stores_sessions_go_with_it(client, services, shopify_store):
    log_in(client, services, shopify_store)
    with services.db.session() as session:
        store = session.get(Store, shopify_store)
    redact_shop(services, store, {})
    with services.db.session() as session:
        assert session.scalars(select(MerchantSession)).all() == []


# -- login CSRF --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    ],
    ids=["origin", "sec-fetch-site", "null-origin"],
)
def test_a_login_post_from_another_site_is_refused(client, services, shopify_store, headers):
    path = f"/login/{login_token(services.settings.secret_key, shopify_store)}"
    form = {"csrf_token": csrf_of(client.get(path).get_data(as_text=True))}
    answer = client.post(path, data=form, headers=headers)
    assert answer.status_code == 403 and b"open your login link again" in answer.data
    assert COOKIE not in (answer.headers.get("Set-Cookie") or "")
    assert client.get(f"/settings/{shopify_store}/").status_code == 403
    # The refusal did not spend the link: the merchant's own click still works.
    # Our own form: Origin null (the page's no-referrer policy), Sec-Fetch-Site same-origin.
    same_site = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert client.post(path, data=form, headers=same_site).status_code == 303


def test_a_login_post_without_the_forms_csrf_token_is_refused(app, client, services, shopify_store):
    path = f"/login/{login_token(services.settings.secret_key, shopify_store)}"
    page = client.get(path)
    assert client.post(path).status_code == 403
    assert client.post(path, data={"csrf_token": "0" * 64}).status_code == 403
    # Another browser's token is no good either: it is bound to the login page's cookie.
    other = app.test_client()
    token = csrf_of(page.get_data(as_text=True))
    assert other.post(path, data={"csrf_token": token}).status_code == 403
    assert client.get(f"/settings/{shopify_store}/").status_code == 403
    assert client.post(path, data={"csrf_token": token}).status_code == 303


# -- embedded grants ---------------------------------------------------------------------------


def grant_made(app, services, store_id: str, seconds_ago: int, **claims) -> str:  # type: ignore[no-untyped-def]
    """An embedded grant signed ``seconds_ago``, as the app signs them."""

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_ago

    serializer = URLSafeTimedSerializer(
        services.settings.secret_key, salt=EMBEDDED_SALT, signer=Earlier
    )
    payload = {"store": store_id, "sid": "s", "frame": list(FRAMES), "platform": "shopify"}
    return serializer.dumps({**payload, **claims})


def test_an_embedded_grant_is_refused_after_its_lifetime(app, client, services, shopify_store):
    recent = grant_made(app, services, shopify_store, EMBEDDED_GRANT_SECONDS - 60)
    page = client.get(f"/settings/{shopify_store}/settings", query_string={"session": recent})
    assert page.status_code == 200
    old = grant_made(app, services, shopify_store, EMBEDDED_GRANT_SECONDS + 60)
    for answer in (
        client.get(f"/settings/{shopify_store}/", query_string={"session": old}),
        app.test_client().post(
            f"/settings/{shopify_store}/settings",
            data={"session": old, "csrf_token": csrf_of(page.get_data(as_text=True))},
        ),
    ):
        assert answer.status_code == 403
    assert EMBEDDED_GRANT_SECONDS <= 300


def test_an_embedded_grant_is_for_its_shop_and_store_only(app, client, services, shopify_store):
    other = add_store(
        services, platform="shopify", domain="other-shop.myshopify.com", webhook_secret="s"
    ).id
    with app.test_request_context():
        app.preprocess_request()
        own = embedded_grant(shopify_store, FRAMES, "shopify", shop=SHOP_DOMAIN)
        other_shops = embedded_grant(
            shopify_store, FRAMES, "shopify", shop="other-shop.myshopify.com"
        )
    assert (
        client.get(f"/settings/{shopify_store}/", query_string={"session": own}).status_code == 200
    )
    assert client.get(f"/settings/{other}/", query_string={"session": own}).status_code == 403
    refused = client.get(f"/settings/{shopify_store}/", query_string={"session": other_shops})
    assert refused.status_code == 403


def test_an_embedded_grant_ends_with_an_uninstall(app, client, services, shopify_store):
    with app.test_request_context():
        app.preprocess_request()
        grant = embedded_grant(shopify_store, FRAMES, "shopify", shop=SHOP_DOMAIN)
    with services.db.session() as session:
        store = session.get(Store, shopify_store)
    uninstall(services, store, {})
    answer = client.get(f"/settings/{shopify_store}/", query_string={"session": grant})
    assert answer.status_code == 403
