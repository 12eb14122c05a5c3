"""The shopper's IP address and user agent are kept apart from the stored payloads and leave
the row once they are no longer needed (connector.privacy), yet diagnostics still count them;
``/`` tells strangers nothing.

Events go through ``record_events`` and ``deliver_pending`` against the platforms' stand-ins,
so the payloads and signal masks checked here are the ones production writes.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from connector.delivery import deliver_pending
from connector.diagnostics import diagnose
from connector.models import EventStatus, OutboxEvent, utcnow
from connector.pipeline import record_events
from connector.retention import purge_expired
from tests.support import (
    GOOGLE_CLIENT,
    GOOGLE_CUSTOMER,
    connect_google,
    connect_meta,
    connect_tiktok,
    google_env,
    make_order,
)

pytestmark = pytest.mark.postgres

SHOPPER_IP = "203.0.113.7"  # make_order's
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def settings(settings, meta, google):  # type: ignore[no-untyped-def]
    """The test settings pointed at Meta's and Google's stand-ins too."""
    return google_env(settings, google).with_env(META_API_BASE=meta.base_url)


def connect(services, store_id: str, kind: str, google) -> int:  # type: ignore[no-untyped-def]
    if kind == "meta":
        return connect_meta(services, store_id)
    if kind == "google":
        token = google.issue_refresh_token(GOOGLE_CLIENT, {GOOGLE_CUSTOMER})
        return connect_google(services, store_id, token)
    return connect_tiktok(services, store_id)


def network_keys(services, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    keys = services.destinations[kind].signal_keys
    return [keys["ip"], keys["user_agent"]]


def stored_users(services) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """What each row keeps of its shopper: the payload's user data and the network column."""
    with services.db.session() as session:
        return {
            e.event_id: {**e.payload["user"], **(e.network or {})}
            for e in session.scalars(select(OutboxEvent))
        }


def statuses(services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return {e.event_id: e.status for e in session.scalars(select(OutboxEvent))}


@pytest.mark.parametrize("kind", ["tiktok", "meta", "google"])
def test_a_delivered_event_keeps_no_ip_or_user_agent_yet_diagnostics_count_them(
    services, shopify_store, google, kind
):
    destination_id = connect(services, shopify_store, kind, google)
    order = make_order("1", page_url="https://shop.example/")  # Meta requires one
    record_events(services, shopify_store, "orders/create", order)
    ip_key, agent_key = network_keys(services, kind)
    assert {ip_key, agent_key} <= set(stored_users(services)["1"])  # needed until sent
    with services.db.session() as session:
        event = session.scalar(select(OutboxEvent))
        assert event.network and SHOPPER_IP not in str(event.payload)  # apart from the payload
        assert SHOPPER_IP in event.wire  # and in the event as it is sent

    deliver_pending(services, destination_id)
    with services.db.session() as session:
        event = session.scalar(select(OutboxEvent))
        assert event.status == EventStatus.DELIVERED, event.last_error

    user = stored_users(services)["1"]
    assert ip_key not in user and agent_key not in user
    with services.db.session() as session:
        assert session.scalar(select(OutboxEvent.wire)) is None
    assert SHOPPER_IP not in str(user)
    assert user[services.destinations[kind].signal_keys["email"]]  # the rest stays
    coverage = diagnose(
        services, shopify_store, 7, destination=services.destinations[kind]
    ).coverage[0]
    assert coverage.share("ip") == 1.0 and coverage.share("user_agent") == 1.0


def test_the_platform_still_receives_them(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order("1"))
    deliver_pending(services, destination_id)
    [sent] = tiktok.accepted_events()
    assert sent["user"]["ip"] == SHOPPER_IP and "iPhone" in sent["user"]["user_agent"]


def test_failed_events_keep_them_for_a_replay_until_the_replay_window_ends(services, shopify_store):
    destination_id = connect_tiktok(services, shopify_store)
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)  # TikTok refuses it: failed
    for order_id in ("recent", "old"):
        record_events(
            services,
            shopify_store,
            "orders/create",
            make_order(order_id, occurred_at=eight_days_ago),
        )
    deliver_pending(services, destination_id)
    assert statuses(services) == {"recent": "failed", "old": "failed"}
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == "old")
            .values(received_at=utcnow() - timedelta(days=8))
        )
        session.commit()

    assert purge_expired(services)["scrubbed"] == 1

    users = stored_users(services)
    assert users["recent"]["ip"] == SHOPPER_IP and users["recent"]["user_agent"]  # replayable
    assert "ip" not in users["old"] and "user_agent" not in users["old"]
    with services.db.session() as session:
        wires = dict(session.execute(select(OutboxEvent.event_id, OutboxEvent.wire)).all())
    assert SHOPPER_IP in wires["recent"] and wires["old"] is None


def test_retention_scrubs_skipped_and_earlier_delivered_events_but_never_pending_ones(
    services, shopify_store
):
    destination_id = connect_tiktok(services, shopify_store)
    bot = dataclasses.replace(make_order("bot").shopper, user_agent=GOOGLEBOT)
    record_events(services, shopify_store, "orders/create", make_order("bot", shopper=bot))
    record_events(services, shopify_store, "orders/create", make_order("delivered"))
    deliver_pending(services, destination_id)
    record_events(services, shopify_store, "orders/create", make_order("pending"))
    with services.db.session() as session:  # delivered before delivery dropped them
        event = session.scalar(select(OutboxEvent).where(OutboxEvent.event_id == "delivered"))
        event.network = {"ip": SHOPPER_IP, "user_agent": "Mozilla/5.0"}
        session.commit()
    assert statuses(services) == {
        "bot": EventStatus.SKIPPED,
        "delivered": EventStatus.DELIVERED,
        "pending": EventStatus.PENDING,
    }

    assert purge_expired(services)["scrubbed"] == 2

    users = stored_users(services)
    for event_id in ("bot", "delivered"):
        assert "ip" not in users[event_id] and "user_agent" not in users[event_id], event_id
        assert users[event_id]["email"]
    assert users["pending"]["ip"] == SHOPPER_IP
    assert purge_expired(services)["scrubbed"] == 0


def test_the_index_page_shows_a_stranger_no_numbers(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order("1"))
    answer = client.get("/")
    assert answer.status_code == 200
    body = answer.get_data(as_text=True).split("<body>", 1)[1]
    text = re.sub(r"<[^>]*>", " ", body)
    assert "Conversion connector" in text
    assert not re.search(r"\d", text), text
