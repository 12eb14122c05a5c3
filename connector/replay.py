"""Put failed or dead events back in the queue, after the merchant fixed the cause."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from connector.jobs import request_delivery
from connector.models import EventStatus, OutboxEvent, utcnow
from connector.services import Services
from connector.stores import find_destination

REPLAYABLE = (EventStatus.FAILED, EventStatus.DEAD)


def replay_events(
    services: Services,
    *,
    ids: list[int],
    status: str | None,
    store_id: str | None = None,
    kind: str | None = None,
) -> int:
    """Make the chosen failed/dead events pending again, with a fresh retry window; ``kind``
    keeps a replay to one destination's events.

    Returns how many were replayed; events in other states (delivered, skipped, pending) are
    left alone, so a replay can never send a conversion twice.
    """
    query = select(OutboxEvent).where(OutboxEvent.status.in_(REPLAYABLE))
    if ids:
        query = query.where(OutboxEvent.id.in_(ids))
    if status:
        query = query.where(OutboxEvent.status == status)
    if store_id:
        query = query.where(OutboxEvent.store_id == store_id)
    if kind:
        query = query.where(OutboxEvent.destination == kind)
    now = utcnow()
    horizon = timedelta(seconds=services.settings.retry_horizon_seconds)
    with services.db.session() as session:
        events = session.scalars(query).all()
        for event in events:
            event.status = EventStatus.PENDING
            event.next_attempt_at = now
            event.give_up_at = now + horizon
            event.lease_token = None
            event.lease_expires_at = None
        destinations = {(event.store_id, event.destination) for event in events}
        session.commit()
        found = [find_destination(session, store, kind) for store, kind in destinations]
        destination_ids = [destination.id for destination in found if destination is not None]
    for destination_id in destination_ids:
        request_delivery(services, destination_id)
    return len(events)
