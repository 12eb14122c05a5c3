"""OAuth grants on the TikTok destination and their renewal (connector.destinations.tiktok.tokens),
alone and in the delivery run.

Covered: a new connection waits, paused, for a pixel; choosing one lifts that pause and keeps
the merchant's options; a token close to expiry is renewed before a batch, once, even by
workers racing for it; a 40102 from TikTok renews the token and the batch goes through; a
token that cannot be renewed pauses the destination with the fix; a token pasted by hand
after connecting is never "renewed" into the OAuth account's.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.delivery import deliver_pending
from connector.destinations.tiktok.oauth import (
    REFRESH_PATH,
    Pixel,
    authorize_url,
    exchange_auth_code,
)
from connector.destinations.tiktok.tokens import (
    CHOOSE_PIXEL,
    access_token_for,
    choose_pixel,
    renew_access_token,
    save_grant,
)
from connector.models import OutboxEvent, StoreDestination, utcnow
from connector.pipeline import record_events
from connector.stores import set_destination
from tests.destinations.tiktok_oauth_support import (
    ADVERTISER,
    OAUTH_PIXEL,
    consent,
    oauth_settings,
    prepare_tiktok,
    query_of,
)
from tests.support import connect_tiktok, make_order

pytestmark = pytest.mark.postgres

REDIRECT = "https://connector.example/tiktok/callback"


@pytest.fixture
def settings(settings, tiktok):  # type: ignore[no-untyped-def]
    prepare_tiktok(tiktok, REDIRECT)
    return oauth_settings(settings, tiktok)


def connect(services, store_id: str, tiktok, *, lifetime: int | None = None) -> int:  # type: ignore[no-untyped-def]
    """Connect with TikTok (consent in the stand-in) and choose the pixel; the row id."""
    tiktok.oauth.token_lifetime = lifetime
    location = consent(authorize_url(services.settings, redirect_uri=REDIRECT, state="s"))
    grant = exchange_auth_code(services.http, services.settings, query_of(location)["auth_code"])
    destination_id = save_grant(services, store_id, grant)
    choose_pixel(services, store_id, Pixel(ADVERTISER, OAUTH_PIXEL, "Demo shop pixel"))
    return destination_id


def row_of(services, destination_id: int) -> StoreDestination:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        row = session.get(StoreDestination, destination_id)
        assert row is not None
        return row


def expire_soon(services, destination_id: int) -> None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        session.execute(
            update(StoreDestination)
            .where(StoreDestination.id == destination_id)
            .values(token_expires_at=utcnow() + timedelta(minutes=2))
        )
        session.commit()


def successful_refreshes(tiktok) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for call in tiktok.oauth.calls_to(REFRESH_PATH) if call.code == 0)


# -- saving a grant and choosing a pixel -------------------------------------------------------


def test_a_new_connection_waits_for_a_pixel(services, shopify_store, tiktok) -> None:
    location = consent(authorize_url(services.settings, redirect_uri=REDIRECT, state="s"))
    grant = exchange_auth_code(services.http, services.settings, query_of(location)["auth_code"])
    destination_id = save_grant(services, shopify_store, grant)
    row = row_of(services, destination_id)
    assert (row.kind, row.account_id, row.paused_reason) == ("tiktok", "", CHOOSE_PIXEL)
    assert grant.access_token not in row.access_token_encrypted  # stored encrypted
    assert services.cipher.decrypt(row.access_token_encrypted) == grant.access_token
    choose_pixel(services, shopify_store, Pixel(ADVERTISER, OAUTH_PIXEL, "p"))
    row = row_of(services, destination_id)
    assert (row.account_id, row.advertiser_id, row.paused_reason) == (OAUTH_PIXEL, ADVERTISER, None)


def test_connecting_keeps_the_merchants_options(services, shopify_store, tiktok) -> None:
    connect_tiktok(services, shopify_store, purchase_event="Purchase", test_event_code="TEST1")
    destination_id = connect(services, shopify_store, tiktok)
    row = row_of(services, destination_id)
    assert row.options["purchase_event"] == "Purchase"
    assert row.test_event_code == "TEST1"
    with services.db.session() as session:
        assert len(session.scalars(select(StoreDestination)).all()) == 1


def test_another_pause_is_not_lifted_by_choosing_a_pixel(services, shopify_store, tiktok) -> None:
    destination_id = connect(services, shopify_store, tiktok)
    with services.db.session() as session:
        session.execute(update(StoreDestination).values(paused_reason="uninstalled"))
        session.commit()
    choose_pixel(services, shopify_store, Pixel(ADVERTISER, OAUTH_PIXEL, "p"))
    assert row_of(services, destination_id).paused_reason == "uninstalled"


# -- renewal -----------------------------------------------------------------------------------


def test_a_long_term_token_is_never_renewed(services, shopify_store, tiktok) -> None:
    destination_id = connect(services, shopify_store, tiktok)
    row = row_of(services, destination_id)
    assert row.token_expires_at is None and row.refresh_token_encrypted is None
    assert access_token_for(services, row) == services.cipher.decrypt(row.access_token_encrypted)
    assert tiktok.oauth.calls_to(REFRESH_PATH) == []


def test_a_token_close_to_expiry_is_renewed_once(services, shopify_store, tiktok) -> None:
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    row = row_of(services, destination_id)
    old = services.cipher.decrypt(row.access_token_encrypted)
    assert access_token_for(services, row) == old  # a day left: nothing to do
    expire_soon(services, destination_id)
    new = access_token_for(services, row_of(services, destination_id))
    assert new != old and new in tiktok.oauth.issued_tokens()
    renewed = row_of(services, destination_id)
    assert services.cipher.decrypt(renewed.access_token_encrypted) == new
    assert renewed.token_expires_at > utcnow() + timedelta(hours=23)
    assert access_token_for(services, renewed) == new
    assert successful_refreshes(tiktok) == 1


def test_racing_workers_renew_once_and_agree(services, shopify_store, tiktok) -> None:
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    stale = services.cipher.decrypt(row_of(services, destination_id).access_token_encrypted)
    tiktok.oauth.delay_seconds = 0.3  # every worker is waiting while the first one renews
    results: list[str] = []
    errors: list[Exception] = []

    def renew() -> None:
        try:
            results.append(
                renew_access_token(services, destination_id, stale_token=stale, force=True)
            )
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=renew) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1 and results[0] != stale
    assert successful_refreshes(tiktok) == 1
    assert len(tiktok.oauth.calls_to(REFRESH_PATH)) == 1


def test_a_token_pasted_after_connecting_is_left_alone(services, shopify_store, tiktok) -> None:
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    tiktok.allow("pasted-token", OAUTH_PIXEL)
    set_destination(
        services,
        shopify_store,
        kind="tiktok",
        values={"pixel_code": OAUTH_PIXEL, "access_token": "pasted-token"},
    )
    row = row_of(services, destination_id)
    assert (row.refresh_token_encrypted, row.token_expires_at, row.advertiser_id) == (None,) * 3
    expire_soon(services, destination_id)
    assert access_token_for(services, row_of(services, destination_id)) == "pasted-token"
    assert tiktok.oauth.calls_to(REFRESH_PATH) == []


def test_saving_settings_with_the_same_token_keeps_the_grant(services, shopify_store, tiktok):
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    row = row_of(services, destination_id)
    set_destination(
        services,
        shopify_store,
        kind="tiktok",
        values={
            "pixel_code": OAUTH_PIXEL,
            "access_token": services.cipher.decrypt(row.access_token_encrypted),
            "test_event_code": "TEST1",
        },
    )
    after = row_of(services, destination_id)
    assert after.refresh_token_encrypted == row.refresh_token_encrypted
    assert (after.token_expires_at, after.advertiser_id) == (row.token_expires_at, ADVERTISER)


# -- in the delivery run -----------------------------------------------------------------------


def record_order(services, store_id: str, order_id: str = "5001") -> None:  # type: ignore[no-untyped-def]
    record_events(services, store_id, "orders/create", make_order(order_id))


def sent_tokens(tiktok) -> list[str]:  # type: ignore[no-untyped-def]
    return [batch.headers["Access-Token"] for batch in tiktok.batches]


def test_delivery_renews_a_token_about_to_expire(services, shopify_store, tiktok) -> None:
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    old = services.cipher.decrypt(row_of(services, destination_id).access_token_encrypted)
    expire_soon(services, destination_id)
    record_order(services, shopify_store)
    report = deliver_pending(services, destination_id)
    assert report.delivered == 1
    [token] = sent_tokens(tiktok)
    assert token != old and successful_refreshes(tiktok) == 1


def test_a_40102_renews_the_token_and_the_batch_goes_through(
    services, shopify_store, tiktok
) -> None:
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    old = services.cipher.decrypt(row_of(services, destination_id).access_token_encrypted)
    tiktok.oauth.expire_token(old)  # TikTok's clock disagrees with the recorded expiry
    record_order(services, shopify_store)
    report = deliver_pending(services, destination_id)
    assert (report.delivered, report.paused) == (1, False)
    assert [b.answer["code"] for b in tiktok.batches] == [40102, 0]
    assert sent_tokens(tiktok)[1] != old
    assert row_of(services, destination_id).paused_reason is None


def test_a_40102_without_a_refresh_token_pauses_with_the_fix(
    services, shopify_store, tiktok
) -> None:
    destination_id = connect(services, shopify_store, tiktok)  # long-term: nothing to renew
    token = services.cipher.decrypt(row_of(services, destination_id).access_token_encrypted)
    tiktok.oauth.expire_token(token)
    record_order(services, shopify_store)
    report = deliver_pending(services, destination_id)
    assert report.paused and report.delivered == 0
    reason = row_of(services, destination_id).paused_reason
    assert "(code 40102)" in reason and "Connect with TikTok again" in reason
    with services.db.session() as session:
        assert session.scalar(select(OutboxEvent.status)) == "pending"


def test_a_refused_renewal_pauses_and_says_to_reconnect(services, shopify_store, tiktok) -> None:
    tiktok.oauth.refresh_token_lifetime = 0  # TikTok will say the refresh token has expired
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    token = services.cipher.decrypt(row_of(services, destination_id).access_token_encrypted)
    tiktok.oauth.expire_token(token)
    record_order(services, shopify_store)
    report = deliver_pending(services, destination_id)
    assert report.paused
    reason = row_of(services, destination_id).paused_reason
    assert "(code 40102)" in reason
    assert "Refresh token has expired. (code 40103)" in reason
    assert "Connect with TikTok again" in reason


def test_a_renewal_tiktok_cannot_answer_is_retried_not_paused(
    services, shopify_store, tiktok
) -> None:
    destination_id = connect(services, shopify_store, tiktok, lifetime=86400)
    token = services.cipher.decrypt(row_of(services, destination_id).access_token_encrypted)
    tiktok.oauth.expire_token(token)
    tiktok.oauth.fail_next(1, code=50000)
    record_order(services, shopify_store)
    report = deliver_pending(services, destination_id)
    assert (report.paused, report.retried) == (False, 1)
    assert row_of(services, destination_id).paused_reason is None
    with services.db.session() as session:
        event = session.scalars(select(OutboxEvent)).one()
        assert event.status == "pending" and "(code 50000)" in event.last_error
        session.execute(update(OutboxEvent).values(next_attempt_at=utcnow()))
        session.commit()
    assert deliver_pending(services, destination_id).delivered == 1
    assert successful_refreshes(tiktok) == 1
