"""The delivery queue (``pending_events``) holds exactly the pending events, whoever writes them.

Triggers put an event in the queue when it is inserted pending and whenever an UPDATE makes it
pending or moves its next attempt; delivery takes it out when it finishes the event. These
drive the real database: the webhook path, a retry, a replay, an operator's SQL, a deletion,
and the property the queue exists for, that recording a delivery on PostgreSQL is a heap-only
update.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text, update

from connector.delivery import _finish, claim_batch, deliver_pending
from connector.jobs import sweep
from connector.models import EventStatus, OutboxEvent, PendingEvent, StoreDestination, utcnow
from connector.pipeline import record_events
from connector.replay import replay_events
from connector.retention import purge_expired
from tests.support import connect_tiktok, make_order

pytestmark = pytest.mark.postgres


@pytest.fixture
def destination_id(services, shopify_store):
    return connect_tiktok(services, shopify_store)


def queue(services) -> dict[int, object]:
    """The queue: event id -> next attempt."""
    with services.db.session() as session:
        rows = session.execute(select(PendingEvent.event_id, PendingEvent.next_attempt_at))
        return {id_: due for id_, due in rows}


def events(services) -> dict[int, tuple[str, object]]:
    """Every outbox row: id -> (status, next attempt)."""
    with services.db.session() as session:
        rows = session.execute(
            select(OutboxEvent.id, OutboxEvent.status, OutboxEvent.next_attempt_at)
        )
        return {id_: (status, due) for id_, status, due in rows}


def pending_in_events(services) -> dict[int, object]:
    return {id_: due for id_, (status, due) in events(services).items() if status == "pending"}


def test_a_recorded_order_enters_the_queue_and_a_skipped_one_does_not(
    services, shopify_store, destination_id
):
    record_events(services, shopify_store, "orders/create", make_order("1"))
    record_events(
        services, shopify_store, "orders/create", make_order("2", skip_reason="point of sale")
    )
    statuses = sorted(status for status, _ in events(services).values())
    assert statuses == ["pending", "skipped"]
    assert queue(services) == pending_in_events(services)
    assert len(queue(services)) == 1


def test_delivery_takes_delivered_events_out(services, shopify_store, destination_id, tiktok):
    for i in range(3):
        record_events(services, shopify_store, "orders/create", make_order(str(i)))
    assert len(queue(services)) == 3
    report = deliver_pending(services, destination_id)
    assert report.delivered == 3
    assert queue(services) == {}


def test_a_retry_moves_the_queue_row_and_a_replay_puts_it_back(
    services, shopify_store, destination_id, tiktok
):
    record_events(services, shopify_store, "orders/create", make_order("1"))
    tiktok.fail_next(1, http_status=500)
    deliver_pending(services, destination_id)
    (event_id, (status, due)), *_ = events(services).items()
    assert status == "pending" and due > utcnow()  # backing off
    assert queue(services) == {event_id: due}

    with services.db.session() as session:  # an operator gives up on it by hand
        session.execute(update(OutboxEvent).values(status=EventStatus.DEAD))
        session.commit()
    assert replay_events(services, ids=[event_id], status=None) == 1
    assert queue(services) == pending_in_events(services)
    assert deliver_pending(services, destination_id).delivered == 1
    assert queue(services) == {}


def test_an_event_made_due_by_hand_is_due_in_the_queue(services, shopify_store, destination_id):
    """Tests and operators move ``next_attempt_at`` with plain UPDATEs: the queue follows."""
    record_events(services, shopify_store, "orders/create", make_order("1"))
    later = utcnow() + timedelta(hours=1)
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(next_attempt_at=later))
        session.commit()
    assert list(queue(services).values()) == [later]
    with services.db.session() as session:
        row = session.get(StoreDestination, destination_id)
        assert claim_batch(session, row, services.settings, 10) == []


def test_a_stray_left_by_an_out_of_band_write_is_never_sent_and_is_cleaned(
    services, shopify_store, destination_id
):
    record_events(services, shopify_store, "orders/create", make_order("1"))
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(status=EventStatus.FAILED))
        session.commit()
    assert len(queue(services)) == 1  # only delivery takes rows out
    with services.db.session() as session:
        row = session.get(StoreDestination, destination_id)
        assert claim_batch(session, row, services.settings, 10) == []
        session.rollback()
    assert sweep(services) == 0
    assert purge_expired(services)["queue_strays"] == 1
    assert queue(services) == {}


def test_a_deleted_event_leaves_the_queue(services, shopify_store, destination_id):
    record_events(services, shopify_store, "orders/create", make_order("1"))
    with services.db.session() as session:
        session.execute(OutboxEvent.__table__.delete())
        session.commit()
    assert queue(services) == {}


def test_no_index_of_events_names_what_an_outcome_changes(services):
    """The precondition of a heap-only update: an outcome changes no indexed column."""
    changed = {"status", "next_attempt_at", "attempts", "delivered_at", "network", "wire"}
    with services.db.engine.connect() as connection:
        indexes = inspect(connection).get_indexes("events")
        unique = inspect(connection).get_unique_constraints("events")
    named = {column for index in [*indexes, *unique] for column in index["column_names"]}
    assert named and not named & changed


def test_recording_a_delivery_is_a_heap_only_update_on_postgresql(
    services, shopify_store, destination_id, backend
):
    if backend != "postgresql":
        pytest.skip("heap-only tuples are PostgreSQL's")
    for i in range(20):
        record_events(services, shopify_store, "orders/create", make_order(str(i)))
    with services.db.session() as session:
        ids = list(queue(services))
        _finish(session, ids, EventStatus.DELIVERED, None, 0, "r", delivered_at=utcnow())
        updated, hot = session.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'events'"
            )
        ).one()
        session.commit()
    assert updated == 20 and hot == 20
    assert queue(services) == {}


def test_cleaning_strays_never_takes_the_row_of_an_event_being_replayed(
    services, shopify_store, destination_id, backend
):
    """A replay making a stray's event pending again while retention runs: the replay's
    transaction holds the rows, so the cleaning skips them and the event stays queued."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    record_events(services, shopify_store, "orders/create", make_order("1"))
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(status=EventStatus.FAILED))
        session.commit()
    with services.db.session() as replay:  # as replay_events does, not yet committed
        replay.execute(update(OutboxEvent).values(status=EventStatus.PENDING))
        purging = threading.Thread(target=purge_expired, args=(services,))
        purging.start()
        purging.join(timeout=0.5)
        replay.commit()
    purging.join(timeout=10)
    assert not purging.is_alive()
    assert len(queue(services)) == 1 and queue(services) == pending_in_events(services)
