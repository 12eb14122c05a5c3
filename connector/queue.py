"""The delivery queue: which outbox rows wait to be sent, read from ``pending_events``.

A pending event has a row in ``pending_events`` (:class:`connector.models.PendingEvent`,
kept by triggers as events become pending, deleted by delivery as they become final). Every
question "what waits to be sent?" is asked here, of the queue joined to its events, and never
of ``events.status``: no index of ``events`` names the status, so that recording an outcome
changes no indexed column (migration 0009 says what that saves).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Delete, Select, and_, delete, func, or_, select

from connector.models import EventStatus, OutboxEvent, PendingEvent

EVENTS = OutboxEvent.__table__
QUEUE = PendingEvent.__table__
QUEUED_EVENTS = QUEUE.join(EVENTS, EVENTS.c.id == QUEUE.c.event_id)


def due_events(store_id: Any, kind: Any, now: datetime) -> ColumnElement[bool]:
    """The condition, over ``QUEUED_EVENTS``, for rows ready to send: due, pending, and not
    leased by a live worker.

    ``store_id`` and ``kind`` may be values or columns (for a correlated EXISTS). The status
    is read from the event, so a queue row an out-of-band write left behind is never sent.
    """
    return and_(
        QUEUE.c.store_id == store_id,
        QUEUE.c.destination == kind,
        QUEUE.c.next_attempt_at <= now,
        EVENTS.c.status == EventStatus.PENDING,
        or_(EVENTS.c.lease_expires_at.is_(None), EVENTS.c.lease_expires_at < now),
    )


def waiting(store_id: str | None = None) -> Select[tuple[int, datetime | None]]:
    """How many events wait to be sent, and when the longest-waiting one was received, for
    one store or for all."""
    query = (
        select(func.count(), func.min(EVENTS.c.received_at))
        .select_from(QUEUED_EVENTS)
        .where(EVENTS.c.status == EventStatus.PENDING)
    )
    return query if store_id is None else query.where(QUEUE.c.store_id == store_id)


def strays() -> Delete:
    """Deletes queue rows whose event is no longer pending.

    Delivery takes a row out of the queue when it finishes its event; only a write from
    elsewhere (an operator's UPDATE) leaves one behind. It is never sent (``due_events`` reads
    the status), but it would keep the sweep asking for a delivery that finds nothing.

    On PostgreSQL both rows are locked first, skipping any another transaction holds: a
    replay making the event pending again at that moment either holds its row (the stray is
    left for the next run) or waits for this DELETE and then puts the event back in the
    queue, so the DELETE never takes the row of an event that has just become pending.
    """
    gone = (
        select(QUEUE.c.event_id)
        .select_from(QUEUED_EVENTS)
        .where(EVENTS.c.status != EventStatus.PENDING)
        .with_for_update(skip_locked=True, of=(QUEUE, EVENTS))
    )
    return delete(QUEUE).where(QUEUE.c.event_id.in_(gone))
