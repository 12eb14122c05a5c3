"""Delivery against the strict TikTok stand-in: batching, faults, isolation, pausing.

These call the delivery run directly (the RQ job's body) so each fault is deterministic; the
end-to-end tests drive the same code through a real worker process.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connector.delivery import backoff_seconds, claim_batch, deliver_pending
from connector.events import ConversionEvent
from connector.models import Attempt, OutboxEvent, StoreDestination, utcnow
from connector.pipeline import record_events
from tests.support import PIXEL_CODE, TIKTOK_TOKEN, connect_tiktok, make_order

pytestmark = pytest.mark.postgres


@pytest.fixture
def destination_id(services, shopify_store):
    return connect_tiktok(services, shopify_store)


def record_orders(services, store_id, n, start=1000):
    for i in range(n):
        record_events(services, store_id, "orders/create", make_order(str(start + i)))


def statuses(services) -> dict[str, str]:
    with services.db.session() as session:
        return {e.event_id: e.status for e in session.scalars(select(OutboxEvent))}


def make_due(services) -> None:
    """Skip the backoff wait: every pending row becomes due now."""
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        session.commit()


def test_pending_events_leave_in_one_batch(services, shopify_store, destination_id, tiktok):
    record_orders(services, shopify_store, 5)
    report = deliver_pending(services, destination_id)
    assert (report.requests, report.delivered) == (1, 5)
    [batch] = tiktok.batches
    assert batch.headers["Access-Token"] == TIKTOK_TOKEN
    assert batch.body["event_source"] == "web"
    assert batch.body["event_source_id"] == PIXEL_CODE
    assert [e["event_id"] for e in batch.body["data"]] == [str(1000 + i) for i in range(5)]
    assert set(statuses(services).values()) == {"delivered"}
    with services.db.session() as session:
        assert {e.request_id for e in session.scalars(select(OutboxEvent))} == {
            batch.answer["request_id"]
        }


def test_batches_respect_the_batch_size(services, shopify_store, destination_id, tiktok):
    services.settings = services.settings.with_overrides(batch_size=3)
    record_orders(services, shopify_store, 7)
    report = deliver_pending(services, destination_id)
    assert [len(b.body["data"]) for b in tiktok.batches] == [3, 3, 1]
    assert report.delivered == 7


def test_rate_limit_storm_is_retried_until_delivered(
    services, shopify_store, destination_id, tiktok
):
    record_orders(services, shopify_store, 3)
    tiktok.fail_next(4, code=40100)
    for _ in range(5):
        deliver_pending(services, destination_id)
        make_due(services)
    assert sorted(tiktok.accepted_event_ids()) == ["1000", "1001", "1002"]
    assert set(statuses(services).values()) == {"delivered"}
    with services.db.session() as session:
        assert {e.attempts for e in session.scalars(select(OutboxEvent))} == {5}
        codes = [a.code for a in session.scalars(select(Attempt).order_by(Attempt.id))]
    assert codes == [40100, 40100, 40100, 40100, 0]


def test_retry_waits_for_the_backoff(services, shopify_store, destination_id, tiktok):
    # The suite's 50 ms base could pass between two runs on a loaded machine.
    services.settings = services.settings.with_overrides(retry_base_seconds=5.0)
    record_orders(services, shopify_store, 1)
    tiktok.fail_next(1, http_status=500)
    deliver_pending(services, destination_id)
    again = deliver_pending(services, destination_id)
    assert again.requests == 0, "a failed event must wait for its backoff"
    with services.db.session() as session:
        event = session.scalar(select(OutboxEvent))
    assert event.status == "pending" and event.next_attempt_at > utcnow() - timedelta(seconds=1)
    assert "HTTP 500" in event.last_error or event.last_code == 50000


def test_retry_after_hint_is_honoured(services, shopify_store, destination_id, tiktok):
    record_orders(services, shopify_store, 1)
    tiktok.fail_next(1, http_status=429, retry_after=120)
    deliver_pending(services, destination_id)
    with services.db.session() as session:
        event = session.scalar(select(OutboxEvent))
    assert event.next_attempt_at >= utcnow() + timedelta(seconds=110)


def test_one_bad_event_is_isolated_and_the_rest_delivered(
    services, shopify_store, destination_id, tiktok
):
    record_orders(services, shopify_store, 9)
    tiktok.reject_event_ids({"1004"})
    report = deliver_pending(services, destination_id)
    assert sorted(tiktok.accepted_event_ids()) == sorted(str(1000 + i) for i in range(9) if i != 4)
    assert report.failed == 1 and report.delivered == 8
    with services.db.session() as session:
        bad = session.scalar(select(OutboxEvent).where(OutboxEvent.event_id == "1004"))
    assert bad.status == "failed"
    assert bad.last_code == 40002
    assert "1004" in bad.last_error
    assert report.requests == 2, "TikTok names the bad event: fail it, resend the rest once"


def test_an_unnamed_bad_event_is_found_by_halving(services, shopify_store, destination_id, tiktok):
    record_orders(services, shopify_store, 16)
    tiktok.reject_event_ids({"1005", "1011"}, name_path=False)
    report = deliver_pending(services, destination_id)
    assert report.failed == 2 and report.delivered == 14
    assert statuses(services)["1005"] == statuses(services)["1011"] == "failed"
    assert report.requests <= 1 + 2 * 2 * 4, "halving, not one request per event"


def test_events_a_partial_success_names_fail_with_tiktoks_words_and_the_rest_are_delivered(
    services, shopify_store, destination_id, tiktok
):
    record_orders(services, shopify_store, 9)
    tiktok.drop_event_ids({"1002", "1006"})
    report = deliver_pending(services, destination_id)
    assert (report.requests, report.delivered, report.failed) == (1, 7, 2)
    kept = {str(1000 + i) for i in range(9)} - {"1002", "1006"}
    assert set(tiktok.accepted_event_ids()) == kept
    with services.db.session() as session:
        events = {e.event_id: e for e in session.scalars(select(OutboxEvent))}
    assert events["1002"].status == events["1006"].status == "failed"
    assert events["1002"].last_error == "data.2.event_id: Invalid value '1002'."
    assert events["1006"].last_error == "data.6.event_id: Invalid value '1006'."
    assert {events[i].status for i in kept} == {"delivered"}
    assert {e.last_code for e in events.values()} == {20001}


def test_a_partial_success_naming_nothing_is_halved_until_the_dropped_events_stand_alone(
    services, shopify_store, destination_id, tiktok
):
    """Nothing is counted as delivered on trust; resending what TikTok kept counts nothing
    twice there (it deduplicates event_id), and the stand-in keeps every copy it was sent."""
    record_orders(services, shopify_store, 16)
    tiktok.drop_event_ids({"1005", "1011"}, name_path=False)
    report = deliver_pending(services, destination_id)
    assert (report.delivered, report.failed) == (14, 2)
    assert report.requests <= 1 + 2 * 2 * 4, "halving, not one request per event"
    assert statuses(services)["1005"] == statuses(services)["1011"] == "failed"
    kept = {str(1000 + i) for i in range(16)} - {"1005", "1011"}
    assert set(tiktok.accepted_event_ids()) == kept
    with services.db.session() as session:
        dropped = session.scalar(select(OutboxEvent).where(OutboxEvent.event_id == "1005"))
    assert (dropped.last_code, dropped.last_error) == (20001, "Partial success.")


def test_token_error_pauses_the_destination_and_keeps_events(
    services, shopify_store, destination_id, tiktok
):
    record_orders(services, shopify_store, 2)
    tiktok.fail_next(1, code=40105, message="Access token is incorrect or has been revoked.")
    report = deliver_pending(services, destination_id)
    assert report.paused and report.requests == 1
    assert set(statuses(services).values()) == {"pending"}
    with services.db.session() as session:
        destination = session.get(StoreDestination, destination_id)
    assert "40105" in destination.paused_reason
    assert "connector tiktok set" in destination.paused_reason
    assert deliver_pending(services, destination_id).requests == 0, "paused means no requests"
    connect_tiktok(services, shopify_store)  # the merchant pastes a new token
    assert deliver_pending(services, destination_id).delivered == 2


def test_pixel_without_permission_pauses(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    with services.db.session() as session:
        session.execute(update(StoreDestination).values(account_id="CSOMEONEELSE"))
        session.commit()
    record_orders(services, shopify_store, 1)
    report = deliver_pending(services, destination_id)
    assert report.paused
    assert tiktok.batches[0].answer["code"] == 40001


def test_unreachable_tiktok_loses_nothing(services, shopify_store, destination_id, tiktok):
    record_orders(services, shopify_store, 4)
    tiktok.go_down()
    try:
        report = deliver_pending(services, destination_id)
    finally:
        tiktok.come_up()
    assert report.retried == 4 and report.delivered == 0
    assert set(statuses(services).values()) == {"pending"}
    make_due(services)
    assert deliver_pending(services, destination_id).delivered == 4
    assert sorted(tiktok.accepted_event_ids()) == ["1000", "1001", "1002", "1003"]


def test_retries_end_as_dead_after_the_horizon(services, shopify_store, destination_id, tiktok):
    record_orders(services, shopify_store, 1)
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(give_up_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    tiktok.fail_next(1, http_status=503)
    report = deliver_pending(services, destination_id)
    assert report.dead == 1
    assert statuses(services) == {"1000": "dead"}


def test_events_older_than_seven_days_fail_without_a_request(
    services, shopify_store, destination_id, tiktok
):
    record_orders(services, shopify_store, 1)
    with services.db.session() as session:  # recorded a moment ago, sent eight days later
        event = session.scalar(select(OutboxEvent))
        event.event_time -= 8 * 24 * 3600
        event.payload = dict(event.payload, event_time=event.event_time)
        session.commit()
    report = deliver_pending(services, destination_id)
    assert report.requests == 0 and report.failed == 1
    assert statuses(services) == {"1000": "failed"}


def test_an_old_event_among_fresh_ones_fails_alone_and_the_rest_are_sent(
    services, shopify_store, destination_id, tiktok
):
    """A batch whose extremes are inside TikTok's window is sent whole; one outside it makes
    delivery check every event, so an old one in the middle of a batch is still found."""
    record_orders(services, shopify_store, 3)
    with services.db.session() as session:
        event = session.scalar(select(OutboxEvent).where(OutboxEvent.event_id == "1001"))
        event.event_time -= 8 * 24 * 3600
        session.commit()
    report = deliver_pending(services, destination_id)
    assert report.requests == 1 and report.failed == 1 and report.delivered == 2
    assert statuses(services) == {"1000": "delivered", "1001": "failed", "1002": "delivered"}


def test_an_event_recorded_before_it_was_stored_as_sent_is_rebuilt_from_its_payload(
    services, shopify_store, destination_id, tiktok
):
    """Rows recorded before ``wire`` existed, or whose ``wire`` was emptied, are sent from
    their payload and ``network``, as the same element."""
    record_orders(services, shopify_store, 2)
    with services.db.session() as session:
        stored = session.scalar(select(OutboxEvent).where(OutboxEvent.event_id == "1000"))
        stored.wire = None
        session.commit()
    report = deliver_pending(services, destination_id)
    assert report.delivered == 2 and report.requests == 1
    rebuilt, as_sent = sorted(tiktok.accepted_events(), key=lambda e: e["event_id"])
    assert rebuilt["user"]["ip"] and rebuilt["user"]["user_agent"]
    assert rebuilt.keys() == as_sent.keys() and rebuilt["user"].keys() == as_sent["user"].keys()


def test_a_leased_row_is_not_claimed_twice(services, shopify_store, destination_id):
    record_orders(services, shopify_store, 4)
    with services.db.session() as first, services.db.session() as second:
        row = first.get(StoreDestination, destination_id)
        claimed = claim_batch(first, row, services.settings, 1000)
        again = claim_batch(
            second, second.get(StoreDestination, destination_id), services.settings, 1000
        )
    assert len(claimed) == 4 and again == []


def test_an_expired_lease_is_claimed_again(services, shopify_store, destination_id):
    record_orders(services, shopify_store, 2)
    with services.db.session() as session:
        claim_batch(session, session.get(StoreDestination, destination_id), services.settings, 1000)
        session.execute(
            update(OutboxEvent).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
        again = claim_batch(
            session, session.get(StoreDestination, destination_id), services.settings, 1000
        )
    assert len(again) == 2


def test_payload_round_trips_through_the_outbox(services, shopify_store, destination_id, tiktok):
    record_orders(services, shopify_store, 1)
    with services.db.session() as session:
        stored = session.scalar(select(OutboxEvent)).payload
    assert ConversionEvent.from_json(json.loads(json.dumps(stored))).to_json() == stored


def test_backoff_grows_with_jitter_and_respects_retry_after():
    first = [backoff_seconds(1, None, 5.0) for _ in range(50)]
    fifth = [backoff_seconds(5, None, 5.0) for _ in range(50)]
    assert all(2.5 <= d <= 5.0 for d in first)
    assert all(40.0 <= d <= 80.0 for d in fifth)
    assert len(set(first)) > 1, "jitter spreads retries"
    assert backoff_seconds(1, 90.0, 5.0) == 90.0
    assert backoff_seconds(30, None, 5.0) <= 3600.0
