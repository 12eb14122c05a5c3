"""Forget what is no longer needed, so storage does not grow without bound.

Events that reached a final state (delivered, failed, dead, skipped) and their delivery
attempts are deleted once older than ``EVENT_RETENTION_DAYS`` (30 by default): TikTok takes no
web event older than 7 days and deduplicates within 48 hours, so an older row can neither be
sent again nor prevent a double count; keeping less also means holding less personal data
(even hashed). Pending rows are never deleted: they end as ``dead`` after the retry window.
Kept unreadable webhooks hold raw personal data (encrypted) and are deleted after their own,
shorter ``UNREADABLE_RETENTION_DAYS`` (14 by default): long enough to deploy a fix and run
``connector events reprocess``, while the order can still be sent. Pixel receipts
(:mod:`connector.receipts`) go with the events they prove, after ``EVENT_RETENTION_DAYS``.

The shopper's IP address and user agent (:mod:`connector.privacy`) leave the stored events
well before that: a delivered event loses them when delivered (``connector.delivery``), a
skipped one (never sent) here, and a failed or dead one once ``REPLAY_WINDOW`` (7 days) after
it was received. Until then a replay sends them, as the first attempt did; TikTok and Meta
refuse events older than 7 days anyway (their destinations' ``MAX_EVENT_AGE_SECONDS``, with
sources), and a Google event replayed later goes without them, matched by its click id,
email or phone as Google requires of every event.

Exports written for a ``customers/data_request`` are deleted ``DATA_REQUEST_RETENTION``
(30 days) after they were written: Shopify asks apps to complete a request within 30 days
(https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance), so by then the
merchant has handed it over and our copy is only a liability.

The same run deletes delivery-queue rows whose event is no longer pending
(:mod:`connector.queue`): only a write from outside the connector leaves one.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, and_, delete, or_, select, update

from connector.models import (
    Attempt,
    EventStatus,
    OutboxEvent,
    PixelReceipt,
    UnreadableWebhook,
    utcnow,
)
from connector.queue import strays
from connector.services import Services

logger = logging.getLogger(__name__)

FINAL_STATUSES = (
    EventStatus.DELIVERED,
    EventStatus.FAILED,
    EventStatus.DEAD,
    EventStatus.SKIPPED,
)
CHUNK = 5000  # rows per DELETE, so no statement holds locks for long
REPLAYABLE_STATUSES = (EventStatus.FAILED, EventStatus.DEAD)
REPLAY_WINDOW = timedelta(days=7)
SCRUB_CHUNK = 5000  # events whose IP and user agent one transaction drops
# Where customers/data_request exports are written, under the instance folder: one folder per
# store (so shop/redact removes it whole), readable by the connector's user only.
DATA_REQUESTS_FOLDER = "shopify-data-requests"
DATA_REQUEST_RETENTION = timedelta(days=30)


def purge_expired(services: Services) -> dict[str, int]:
    """Delete final events and attempts older than the retention period, drop the shopper's
    IP and user agent from payloads that no longer need them, and delete expired data-request
    exports; returns the counts."""
    cutoff = utcnow() - timedelta(days=services.settings.retention_days)
    events = _delete_in_chunks(
        services,
        select(OutboxEvent.id).where(
            OutboxEvent.status.in_(FINAL_STATUSES), OutboxEvent.received_at < cutoff
        ),
        OutboxEvent,
    )
    attempts = _delete_in_chunks(
        services, select(Attempt.id).where(Attempt.started_at < cutoff), Attempt
    )
    kept_cutoff = utcnow() - timedelta(days=services.settings.unreadable_retention_days)
    unreadable = _delete_in_chunks(
        services,
        select(UnreadableWebhook.id).where(UnreadableWebhook.received_at < kept_cutoff),
        UnreadableWebhook,
    )
    receipts = _delete_in_chunks(
        services, select(PixelReceipt.id).where(PixelReceipt.received_at < cutoff), PixelReceipt
    )
    scrubbed = scrub_network_signals(services)
    queue_strays = delete_queue_strays(services)
    data_requests = purge_data_requests(services.settings.instance_path / DATA_REQUESTS_FOLDER)
    counts = {
        "events": events,
        "attempts": attempts,
        "unreadable": unreadable,
        "receipts": receipts,
        "scrubbed": scrubbed,
        "data_requests": data_requests,
        "queue_strays": queue_strays,
    }
    if any(counts.values()):
        logger.info(
            "retention.purged %s", " ".join(f"{name}={count}" for name, count in counts.items())
        )
    return counts


def scrub_network_signals(services: Services) -> int:
    """Drop the shopper's IP and user agent from final events that no longer need them (their
    ``network`` column, and the event as sent, ``wire``); returns how many events held them.
    A chunk of ids at a time, so no statement holds locks for long, each going on from the
    last (in the primary key's order: no index names the status, so this is one pass over
    the table, where restarting from the first row for every chunk would be one per chunk);
    a row a replay has made pending again meanwhile is left as it is."""
    done = _done_with_network_signals(utcnow())
    held = select(OutboxEvent.id).where(
        done, or_(OutboxEvent.network.is_not(None), OutboxEvent.wire.is_not(None))
    )
    total = after = 0
    while True:
        with services.db.session() as session:
            chunk = held.where(OutboxEvent.id > after).order_by(OutboxEvent.id)
            ids = list(session.scalars(chunk.limit(SCRUB_CHUNK)))
            if not ids:
                return total
            after = ids[-1]
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids), OutboxEvent.status.in_(FINAL_STATUSES))
                .values(network=None, wire=None)  # the event as sent holds them too
            )
            session.commit()
        total += len(ids)


def delete_queue_strays(services: Services) -> int:
    """Delete delivery-queue rows whose event is no longer pending (``connector.queue``);
    returns how many. Only a write from outside the connector leaves one."""
    with services.db.session() as session:
        deleted = session.execute(strays()).rowcount
        session.commit()
    if deleted:
        logger.warning("retention.queue_strays deleted=%d", deleted)
    return deleted


def _done_with_network_signals(now: datetime) -> ColumnElement[bool]:
    """Delivered and skipped events are never sent again; failed and dead ones may be
    replayed until ``REPLAY_WINDOW`` after they were received."""
    never_sent_again = OutboxEvent.status.in_((EventStatus.DELIVERED, EventStatus.SKIPPED))
    past_replay = and_(
        OutboxEvent.status.in_(REPLAYABLE_STATUSES),
        OutboxEvent.received_at < now - REPLAY_WINDOW,
    )
    return or_(never_sent_again, past_replay)


def purge_data_requests(folder: Path) -> int:
    """Delete data-request exports written more than ``DATA_REQUEST_RETENTION`` ago, and the
    store folders left empty; returns how many files were deleted."""
    if not folder.is_dir():
        return 0
    cutoff = time.time() - DATA_REQUEST_RETENTION.total_seconds()
    old = [path for path in folder.rglob("*.json") if path.stat().st_mtime < cutoff]
    for path in old:
        path.unlink(missing_ok=True)
    for store_folder in folder.iterdir():
        if store_folder.is_dir() and not any(store_folder.iterdir()):
            store_folder.rmdir()
    return len(old)


def _delete_in_chunks(services: Services, ids_query, model) -> int:  # type: ignore[no-untyped-def]
    total = 0
    while True:
        with services.db.session() as session:
            ids = list(session.scalars(ids_query.limit(CHUNK)))
            if not ids:
                return total
            session.execute(delete(model).where(model.id.in_(ids)))
            session.commit()
        total += len(ids)
