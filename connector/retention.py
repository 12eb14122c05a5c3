"""Forget what is no longer needed, so storage does not grow without bound.

Events that reached a final state (delivered, failed, dead, skipped) and their delivery
attempts are deleted once older than ``EVENT_RETENTION_DAYS`` (30 by default): TikTok takes no
web event older than 7 days and deduplicates within 48 hours, so an older row can neither be
sent again nor prevent a double count; keeping less also means holding less personal data
(even hashed). Pending rows are never deleted: they end as ``dead`` after the retry window.
Kept unreadable webhooks hold raw personal data (encrypted) and are deleted after their own,
shorter ``UNREADABLE_RETENTION_DAYS`` (14 by default): long enough to deploy a fix and run
``connector events reprocess``, while the order can still be sent.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select

from connector.models import Attempt, EventStatus, OutboxEvent, UnreadableWebhook, utcnow
from connector.services import Services

logger = logging.getLogger(__name__)

FINAL_STATUSES = (
    EventStatus.DELIVERED,
    EventStatus.FAILED,
    EventStatus.DEAD,
    EventStatus.SKIPPED,
)
CHUNK = 5000  # rows per DELETE, so no statement holds locks for long


def purge_expired(services: Services) -> dict[str, int]:
    """Delete final events and attempts older than the retention period; returns the counts."""
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
    if events or attempts or unreadable:
        logger.info(
            "retention.purged events=%d attempts=%d unreadable=%d", events, attempts, unreadable
        )
    return {"events": events, "attempts": attempts, "unreadable": unreadable}


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
