"""Record the events a verified webhook means, then ask for their delivery.

This runs inside the webhook request, so it does only local work: map, hash, one INSERT per
destination (ignored when the row exists, which is how repeated deliveries and the same order
seen through two topics collapse into one event), one commit, and a cheap Redis call. No
outbound HTTP happens here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connector.clicks import with_stored_clicks
from connector.events import Checkout, Order
from connector.jobs import request_delivery
from connector.mapping import EventOptions, PlannedEvent, plan_event
from connector.models import Destination, Event, EventStatus
from connector.services import Services
from connector.signals import signal_mask

logger = logging.getLogger(__name__)

# Events of a store with no destination configured yet are kept for this one, with default
# options, and leave as soon as the merchant connects it.
DEFAULT_DESTINATION = "tiktok"
# The table, not the ORM class: a Core INSERT skips the ORM's bulk-persistence layer, which
# cost more than the database itself on the webhook's hot path.
EVENTS = Event.__table__


@dataclass
class RecordResult:
    """What a webhook produced: rows inserted, duplicates ignored, rows skipped on purpose."""

    inserted: int = 0
    duplicates: int = 0
    skipped: int = 0
    destinations_to_deliver: set[int] = field(default_factory=set)


def record_events(
    services: Services, store_id: str, topic: str, source: Order | Checkout
) -> RecordResult:
    """Store the events for every destination of the store and request their delivery.

    Raises the database's error when the rows cannot be stored: the caller answers 503 so
    the store platform retries.
    """
    with services.db.session() as session:
        result = _insert_events(session, store_id, topic, source)
        session.commit()
    for destination_id in result.destinations_to_deliver:
        request_delivery(services, destination_id)
    return result


def _insert_events(
    session: Session, store_id: str, topic: str, source: Order | Checkout
) -> RecordResult:
    result = RecordResult()
    source = with_stored_clicks(session, store_id, source)
    destinations = session.scalars(
        select(Destination).where(Destination.store_id == store_id)
    ).all()
    targets = [(d.kind, d.id, d.options, bool(d.test_event_code)) for d in destinations] or [
        (DEFAULT_DESTINATION, None, None, False)
    ]
    for kind, destination_id, options, test_mode in targets:
        planned = plan_event(source, EventOptions.from_json(options), test_mode=test_mode)
        if planned is None:
            continue
        if not _insert_ignoring_duplicate(session, store_id, kind, topic, planned):
            result.duplicates += 1
        elif planned.skip_reason:
            result.skipped += 1
        else:
            result.inserted += 1
            if destination_id is not None:
                result.destinations_to_deliver.add(destination_id)
    return result


def _insert_ignoring_duplicate(
    session: Session, store_id: str, kind: str, topic: str, planned: PlannedEvent
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on the dedup key; True when a row was added."""
    event = planned.event
    values = {
        "store_id": store_id,
        "destination": kind,
        "event_name": event.event_name,
        "event_id": event.event_id,
        "source_topic": topic,
        "status": EventStatus.SKIPPED if planned.skip_reason else EventStatus.PENDING,
        "last_error": planned.skip_reason,
        "payload": event.to_json(),
        "event_time": event.event_time,
        "click_source": event.click_source,
        "signals": signal_mask(event.user),
    }
    statement = _insert_statement(session).values(**values)
    statement = statement.on_conflict_do_nothing(
        index_elements=["store_id", "destination", "event_name", "event_id"]
    ).returning(EVENTS.c.id)
    return session.execute(statement).first() is not None


def _insert_statement(session: Session):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT; both SQLite and PostgreSQL have it."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(EVENTS)
    if dialect == "sqlite":
        return sqlite.insert(EVENTS)
    raise RuntimeError(f"unsupported database {dialect!r}: use PostgreSQL or SQLite")
