"""How a worker claims a batch: a row lock on PostgreSQL, a written lease on SQLite.

Either way a claimed row is never claimed by a second worker while the first lives, and it
comes back when the first is gone: at once when its transaction ends without an outcome (a
killed worker's connection), after ``lease_seconds`` for a lease. These drive
``claim_batch`` and ``deliver_pending`` on the real database with several sessions, as
concurrent workers would.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from connector.delivery import claim_batch, deliver_pending, in_flight
from connector.models import EventStatus, OutboxEvent, StoreDestination
from connector.pipeline import record_events
from tests.support import connect_tiktok, make_order

pytestmark = pytest.mark.postgres


@pytest.fixture
def destination_id(services, shopify_store):
    return connect_tiktok(services, shopify_store)


def record_orders(services, store_id, n, start=1000):
    for i in range(n):
        record_events(services, store_id, "orders/create", make_order(str(start + i)))


def claim(session, services, destination_id, limit=1000):
    row = session.get(StoreDestination, destination_id)
    return claim_batch(session, row, services.settings, limit)


def leases(services) -> list[str | None]:
    with services.db.session() as session:
        return list(session.scalars(select(OutboxEvent.lease_token)))


def test_a_claimed_row_is_held_until_its_claimer_ends(services, shopify_store, destination_id):
    record_orders(services, shopify_store, 4)
    with services.db.session() as first:
        claimed = claim(first, services, destination_id)
        with services.db.session() as second:
            assert claim(second, services, destination_id) == []
            assert all(in_flight(second, c.id) for c in claimed)
    # The first worker ended without writing an outcome (it died): nothing is lost.
    with services.db.session() as third:
        again = claim(third, services, destination_id)
        if services.db.engine.dialect.name == "postgresql":
            assert [c.id for c in again] == [c.id for c in claimed]  # free at once
        else:
            assert again == []  # under its lease until lease_seconds have passed


def test_postgresql_claims_by_row_lock_and_writes_nothing(
    services, shopify_store, destination_id, backend
):
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's claim")
    record_orders(services, shopify_store, 3)
    with services.db.session() as session:
        claimed = claim(session, services, destination_id)
        timeout = session.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
        assert len(claimed) == 3 and leases(services) == [None, None, None]
        # A worker that hangs mid-request loses its rows after lease_seconds, as a lease would.
        assert timeout == f"{services.settings.lease_seconds * 1000}ms" or timeout == (
            f"{services.settings.lease_seconds}s"
        )


def test_sqlite_claims_by_lease(services, shopify_store, destination_id, backend):
    if backend != "sqlite":
        pytest.skip("SQLite's claim is a lease")
    record_orders(services, shopify_store, 2)
    with services.db.session() as session:
        claimed = claim(session, services, destination_id)
    assert len(claimed) == 2 and all(leases(services))
    with services.db.session() as session:
        assert all(in_flight(session, c.id) for c in claimed)


def test_a_killed_connection_frees_its_rows_at_once(
    services, shopify_store, destination_id, backend
):
    if backend != "postgresql":
        pytest.skip("needs PostgreSQL: a server-side kill of the claiming session")
    record_orders(services, shopify_store, 3)
    dead = services.db.session()
    claimed = claim(dead, services, destination_id)
    pid = dead.execute(text("SELECT pg_backend_pid()")).scalar()
    with services.db.session() as other:
        assert claim(other, services, destination_id) == []
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        other.commit()
    time.sleep(0.2)
    with services.db.session() as other:
        assert len(claim(other, services, destination_id)) == len(claimed) == 3
    dead.invalidate()


def test_two_workers_at_once_deliver_each_event_once(
    services, shopify_store, destination_id, tiktok
):
    """Two runs for the same destination at the same time (the Redis lock normally stops
    the second): each takes its own rows, and every event is sent exactly once."""
    services.settings = services.settings.with_overrides(batch_size=5)
    record_orders(services, shopify_store, 40)
    tiktok.delay_seconds = 0.05  # keep batches in flight while the other claims
    reports = []
    runs = [
        threading.Thread(target=lambda: reports.append(deliver_pending(services, destination_id)))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    tiktok.delay_seconds = 0
    sent = tiktok.accepted_event_ids()
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 40
    assert sum(r.delivered for r in reports) == 40
    with services.db.session() as session:
        assert set(session.scalars(select(OutboxEvent.status))) == {EventStatus.DELIVERED}
        assert set(session.scalars(select(OutboxEvent.lease_token))) == {None}


def test_a_halved_batch_stays_claimed_while_its_halves_are_sent(
    services, shopify_store, destination_id, tiktok
):
    """A rejected batch naming no event is sent again in halves, each outcome committed
    before the next request: the rest of the batch must stay claimed meanwhile (leased, once
    the row locks went with the first commit), and all of it ends settled and unleased."""
    record_orders(services, shopify_store, 8)
    tiktok.reject_event_ids({"1005"}, name_path=False)
    run = threading.Thread(target=deliver_pending, args=(services, destination_id))
    run.start()
    try:
        deadline = time.monotonic() + 10
        while len(tiktok.batches) < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        tiktok.delay_seconds = 0.3  # the halves are in flight for a while
        time.sleep(0.1)
        with services.db.session() as other:
            assert claim(other, services, destination_id) == []
    finally:
        run.join()
        tiktok.delay_seconds = 0
    with services.db.session() as session:
        rows = {e.event_id: e for e in session.scalars(select(OutboxEvent))}
    assert rows["1005"].status == EventStatus.FAILED
    assert {e.status for k, e in rows.items() if k != "1005"} == {EventStatus.DELIVERED}
    assert {e.lease_token for e in rows.values()} == {None}
