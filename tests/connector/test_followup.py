"""Following up accepted requests (connector.followup) against the Google stand-in: a request
Google reports on later is asked about when due, until its status is final, and the answer
shows in the delivery log beside the request's events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.delivery import deliver_pending
from connector.events import ClickIds
from connector.followup import ASK_EVERY, FIRST_ASK_AFTER, follow_up_requests
from connector.models import Attempt, utcnow
from connector.pipeline import record_events
from tests.support import (
    GOOGLE_CLIENT,
    GOOGLE_CUSTOMER,
    connect_google,
    connect_tiktok,
    google_env,
    log_in,
    make_order,
)


@pytest.fixture
def google_destination(services, shopify_store, google) -> int:  # type: ignore[no-untyped-def]
    services.settings = google_env(services.settings, google)
    refresh = google.issue_refresh_token(GOOGLE_CLIENT, {GOOGLE_CUSTOMER})
    return connect_google(services, shopify_store, refresh)


def attempt(services) -> Attempt:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.scalars(select(Attempt)).one()


def age(services, column, by: timedelta) -> None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        session.execute(update(Attempt).values({column: utcnow() - by}))
        session.commit()


def test_a_request_is_asked_about_when_due_until_its_status_is_final(
    services, shopify_store, google, google_destination
):
    order = make_order("1001", clicks=ClickIds(gclid="Cj0KCQ-gclid", source="landing_site"))
    record_events(services, shopify_store, "orders/create", order)
    assert deliver_pending(services, google_destination).delivered == 1
    [request_id] = google.request_ids()
    assert attempt(services).request_id == request_id

    assert follow_up_requests(services) == 0  # Google needs time: not asked at once
    age(services, "started_at", FIRST_ASK_AFTER + timedelta(minutes=1))
    google.set_request_status(request_id, "PROCESSING")
    assert follow_up_requests(services) == 1
    first = attempt(services)
    assert (first.follow_up, first.follow_up_done) == ("PROCESSING, 1 record", False)
    assert follow_up_requests(services) == 0  # asked a moment ago

    age(services, "followed_up_at", ASK_EVERY + timedelta(minutes=1))
    google.set_request_status(request_id, "PARTIAL_SUCCESS", {"INVALID_GCLID": 1})
    assert follow_up_requests(services) == 1
    final = attempt(services)
    assert final.follow_up == "PARTIAL_SUCCESS, 1 record, errors: INVALID_GCLID 1"
    assert final.follow_up_done is True
    age(services, "followed_up_at", ASK_EVERY + timedelta(minutes=1))
    assert follow_up_requests(services) == 0  # final: never asked again


def test_the_delivery_log_shows_what_google_said_later(
    client, services, shopify_store, google, google_destination
):
    record_events(services, shopify_store, "orders/create", make_order("1002"))
    deliver_pending(services, google_destination)
    age(services, "started_at", FIRST_ASK_AFTER + timedelta(minutes=1))
    follow_up_requests(services)

    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/log?destination=google").get_data(as_text=True)
    assert 'data-destination="google"' in page
    assert "later: SUCCESS, 1 record" in page


def test_platforms_without_follow_up_are_never_asked(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order("1003"))
    deliver_pending(services, destination_id)
    age(services, "started_at", FIRST_ASK_AFTER + timedelta(hours=1))
    assert follow_up_requests(services) == 0
    assert attempt(services).follow_up is None
