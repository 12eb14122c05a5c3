"""Google access tokens made from the row's refresh token (connector.destinations.google.tokens),
against the stand-in's token endpoint and a real database (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set).

Covered: the refresh request and each way Google refuses it; a first token made and stored
sealed on the row; a live token reused without asking Google; one close to expiry renewed
once, even by racing workers; a replaced refresh token never sending with the old account's
access token; a revoked refresh token or a missing OAuth client giving "" instead of raising.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from connector.destinations.google.tokens import (
    CLIENT_FIX,
    RECONNECT_FIX,
    TokenError,
    access_token_for,
    refresh_grant,
)
from connector.models import Store, StoreDestination, utcnow
from connector.services import Services
from connector.standins.google import GoogleStandIn
from tests.support import GOOGLE_ACTION, GOOGLE_CLIENT, GOOGLE_CUSTOMER, GOOGLE_SECRET

pytestmark = pytest.mark.postgres

CLIENT, SECRET = GOOGLE_CLIENT, GOOGLE_SECRET
CUSTOMER, ACTION = GOOGLE_CUSTOMER, GOOGLE_ACTION


def add_destination(services: Services, refresh_token: str) -> int:
    with services.db.session() as session:
        session.add(Store(id="store-1", platform="shopify", domain="demo.myshopify.com"))
        row = StoreDestination(
            store_id="store-1",
            kind="google",
            account_id=CUSTOMER,
            refresh_token_encrypted=services.cipher.encrypt(refresh_token),
            settings={"conversion_action": ACTION},
            options={},
        )
        session.add(row)
        session.commit()
        return row.id


def row_of(services: Services, destination_id: int) -> StoreDestination:
    with services.db.session() as session:
        row = session.get(StoreDestination, destination_id)
        assert row is not None
        return row


def set_columns(services: Services, destination_id: int, **values: object) -> None:
    with services.db.session() as session:
        session.execute(
            update(StoreDestination).where(StoreDestination.id == destination_id).values(**values)
        )
        session.commit()


def grants(google: GoogleStandIn) -> int:
    return sum(1 for call in google.token_calls if call.http_status == 200)


# -- the refresh request -----------------------------------------------------------------------


def test_refresh_grant(google: GoogleStandIn) -> None:
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    grant = refresh_grant(requests.Session(), google.token_url, CLIENT, SECRET, refresh)
    assert grant.access_token in google.issued_access_tokens()
    assert grant.expires_in == 3599


@pytest.mark.parametrize(
    ("secret", "refresh", "fix"),
    [
        (SECRET, "1//never-issued", RECONNECT_FIX),  # invalid_grant
        ("wrong", None, CLIENT_FIX),  # invalid_client
    ],
)
def test_refused_refresh(google: GoogleStandIn, secret: str, refresh: str | None, fix: str) -> None:
    token = refresh or google.issue_refresh_token(CLIENT, {CUSTOMER})
    with pytest.raises(TokenError) as refused:
        refresh_grant(requests.Session(), google.token_url, CLIENT, secret, token)
    assert refused.value.fix == fix and not refused.value.transient


def test_missing_oauth_client_asks_nothing(google: GoogleStandIn) -> None:
    with pytest.raises(TokenError) as refused:
        refresh_grant(requests.Session(), google.token_url, None, SECRET, "1//x")
    assert refused.value.fix == CLIENT_FIX
    assert google.token_calls == []


def test_token_endpoint_outage_is_transient(google: GoogleStandIn) -> None:
    google.fail_token_endpoint(1, http_status=503)
    with pytest.raises(TokenError) as down:
        refresh_grant(requests.Session(), google.token_url, CLIENT, SECRET, "1//x")
    assert down.value.transient
    with pytest.raises(TokenError) as unreachable:
        refresh_grant(requests.Session(), "http://127.0.0.1:9/token", CLIENT, SECRET, "1//x")
    assert unreachable.value.transient


# -- tokens on the row ---------------------------------------------------------------------------


def test_first_token_is_made_and_stored_sealed(
    google_services: Services, google: GoogleStandIn
) -> None:
    destination_id = add_destination(
        google_services, google.issue_refresh_token(CLIENT, {CUSTOMER})
    )
    token = access_token_for(google_services, row_of(google_services, destination_id))
    assert token in google.issued_access_tokens()
    row = row_of(google_services, destination_id)
    assert row.access_token_encrypted and token not in row.access_token_encrypted
    assert token not in google_services.cipher.decrypt(row.refresh_token_encrypted or "")
    assert utcnow() + timedelta(minutes=55) < row.token_expires_at < utcnow() + timedelta(hours=1)
    assert access_token_for(google_services, row) == token  # alive: Google is not asked
    assert grants(google) == 1


def test_a_token_close_to_expiry_is_renewed(
    google_services: Services, google: GoogleStandIn
) -> None:
    destination_id = add_destination(
        google_services, google.issue_refresh_token(CLIENT, {CUSTOMER})
    )
    old = access_token_for(google_services, row_of(google_services, destination_id))
    set_columns(google_services, destination_id, token_expires_at=utcnow() + timedelta(minutes=2))
    new = access_token_for(google_services, row_of(google_services, destination_id))
    assert new != old and new in google.issued_access_tokens()
    assert grants(google) == 2


def test_racing_workers_renew_once(google_services: Services, google: GoogleStandIn) -> None:
    destination_id = add_destination(
        google_services, google.issue_refresh_token(CLIENT, {CUSTOMER})
    )
    row = row_of(google_services, destination_id)
    tokens: list[str] = []

    def worker() -> None:
        tokens.append(access_token_for(google_services, row))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 4 and len(set(tokens)) == 1
    assert grants(google) == 1


def test_a_replaced_refresh_token_gets_its_own_access_token(
    google_services: Services, google: GoogleStandIn
) -> None:
    destination_id = add_destination(
        google_services, google.issue_refresh_token(CLIENT, {CUSTOMER})
    )
    old = access_token_for(google_services, row_of(google_services, destination_id))
    other = google.issue_refresh_token(CLIENT, {CUSTOMER})
    set_columns(
        google_services,
        destination_id,
        refresh_token_encrypted=google_services.cipher.encrypt(other),
    )
    new = access_token_for(google_services, row_of(google_services, destination_id))
    assert new != old and grants(google) == 2


def test_revoked_refresh_token_gives_no_token_and_no_exception(
    google_services: Services, google: GoogleStandIn
) -> None:
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    destination_id = add_destination(google_services, refresh)
    google.revoke(refresh)
    assert access_token_for(google_services, row_of(google_services, destination_id)) == ""
    assert [call.error for call in google.token_calls] == ["invalid_grant"]


def test_a_live_token_is_kept_when_renewal_fails(
    google_services: Services, google: GoogleStandIn
) -> None:
    destination_id = add_destination(
        google_services, google.issue_refresh_token(CLIENT, {CUSTOMER})
    )
    token = access_token_for(google_services, row_of(google_services, destination_id))
    set_columns(google_services, destination_id, token_expires_at=utcnow() + timedelta(minutes=2))
    google.fail_token_endpoint(1)
    assert access_token_for(google_services, row_of(google_services, destination_id)) == token


def test_missing_oauth_client_gives_no_token(
    google_services: Services, google: GoogleStandIn
) -> None:
    destination_id = add_destination(
        google_services, google.issue_refresh_token(CLIENT, {CUSTOMER})
    )
    google_services.settings = google_services.settings.with_env(GOOGLE_OAUTH_CLIENT_SECRET=None)
    assert access_token_for(google_services, row_of(google_services, destination_id)) == ""
    assert google.token_calls == []
