"""Verified webhooks we could not read: kept, shown, and read again once the code is fixed.

A store platform signs every webhook; once the signature holds, refusing the body for its
content loses the order. Shopify would retry the same body for four hours, get the same
answer and give up (and count the failures toward removing the subscription); WooCommerce
never retries and disables the webhook after a few failures, for every order after it. So a
body we cannot map gets its 200 and is kept here instead: encrypted (it holds the shopper's
raw email and phone), one copy per store and body however often the platform resends it,
for ``UNREADABLE_RETENTION_DAYS``. ``connector events reprocess`` (and the Delivery log's
button) reads the kept bodies again with the code deployed now: what reads becomes normal
events, deduplicated as always, and its record goes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from connector.models import EventSource, UnreadableWebhook, utcnow
from connector.pipeline import record_events
from connector.plugins import load_store_platforms
from connector.services import Services

logger = logging.getLogger(__name__)

UNREADABLE = UnreadableWebhook.__table__
MAX_REASON_CHARS = 500
# One copy per store and body: a platform's retries of the same body insert nothing.
INSERT_ONCE = {
    "postgresql": postgresql.insert(UNREADABLE).on_conflict_do_nothing(
        index_elements=["store_id", "body_sha256"]
    ),
    "sqlite": sqlite.insert(UNREADABLE).on_conflict_do_nothing(
        index_elements=["store_id", "body_sha256"]
    ),
}


@dataclass(frozen=True)
class KeptWebhook:
    """Where a verified webhook that could not be read came from, and why it could not."""

    store_id: str
    platform: str
    topic: str
    reason: str
    resource_id: str | None = None


def keep_unreadable(
    services: Services, connection: Connection, kept: KeptWebhook, body: bytes
) -> None:
    """Store the raw body, encrypted, and commit; a resent body adds nothing.

    Raises the database's error when it cannot be stored (the caller answers 503, so the
    platform sends it again). The log line names the store, topic and resource, never a
    value from the body.
    """
    connection.rollback()  # whatever the failed reading left half-done is not kept
    statement = INSERT_ONCE[connection.dialect.name]
    connection.execute(
        statement,
        {
            "store_id": kept.store_id,
            "platform": kept.platform,
            "topic": kept.topic[:64],
            "resource_id": kept.resource_id,
            "reason": kept.reason[:MAX_REASON_CHARS],
            "body_encrypted": services.cipher.encrypt(body.decode("utf-8")),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "received_at": utcnow(),
        },
    )
    connection.commit()
    logger.warning(
        "webhook.unreadable platform=%s store=%s topic=%s resource=%s reason=%s",
        kept.platform,
        kept.store_id,
        kept.topic,
        kept.resource_id or "-",
        kept.reason,
    )


def unreadable_records(
    services: Services, *, store_id: str | None = None, limit: int = 100
) -> list[UnreadableWebhook]:
    """Kept records, newest first (the body stays encrypted on them)."""
    query = select(UnreadableWebhook).order_by(UnreadableWebhook.id.desc()).limit(limit)
    if store_id:
        query = query.where(UnreadableWebhook.store_id == store_id)
    with services.db.session() as session:
        return list(session.scalars(query))


def count_unreadable(services: Services, store_id: str, since: datetime | None = None) -> int:
    """How many kept records a store has (received after ``since`` when given)."""
    query = select(func.count()).where(UnreadableWebhook.store_id == store_id)
    if since is not None:
        query = query.where(UnreadableWebhook.received_at >= since)
    with services.db.session() as session:
        return session.scalar(query) or 0


def describe(record: UnreadableWebhook) -> dict[str, Any]:
    """A record as the JSON line ``connector events list --status unreadable`` prints."""
    return {
        "id": record.id,
        "store_id": record.store_id,
        "platform": record.platform,
        "topic": record.topic,
        "resource_id": record.resource_id,
        "status": "unreadable",
        "reason": record.reason,
        "received_at": record.received_at.isoformat(timespec="seconds") + "Z",
        "reprocessed_at": (
            record.reprocessed_at.isoformat(timespec="seconds") + "Z"
            if record.reprocessed_at
            else None
        ),
    }


@dataclass
class ReprocessReport:
    """What reading the kept bodies again did."""

    recovered: int = 0  # bodies that now read; their record is gone
    events: int = 0  # events they added (duplicates of events already there are not counted)
    ignored: int = 0  # bodies that now read as nothing to send (an unpaid order...)
    still_unreadable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def reprocess(services: Services, *, store_id: str | None = None) -> ReprocessReport:
    """Read every kept body (of one store, or all) again with the code deployed now."""
    readers = {p.name: p.read_webhook for p in load_store_platforms() if p.read_webhook}
    report = ReprocessReport()
    for record_id, platform, record_store, topic, ciphertext in _kept(services, store_id):
        reader = readers.get(platform)
        try:
            if reader is None:
                raise LookupError(f"no store platform {platform!r} is installed")
            source = reader(topic, json.loads(services.cipher.decrypt(ciphertext)))
            if source is not None:
                result = record_events(
                    services, record_store, topic, source, origin=EventSource.REPROCESSED
                )
        except SQLAlchemyError:
            raise  # the database, not the body: nothing is marked, run it again later
        except Exception as exc:  # what failed before may fail again, in any way
            _still_unreadable(services, record_id, reason_of(exc), report)
            continue
        if source is None:
            report.ignored += 1
        else:
            report.events += result.inserted + result.skipped
        _forget(services, record_id)
        report.recovered += 1
    logger.info(
        "unreadable.reprocessed store=%s recovered=%d events=%d still_unreadable=%d",
        store_id or "all",
        report.recovered,
        report.events,
        report.still_unreadable,
    )
    return report


def reason_of(exc: BaseException) -> str:
    """What to tell a merchant about a body that could not be read, without its values.

    The platforms' parsers name the field in their errors (``UnreadablePayload``); anything
    else that escaped is a defect of ours, named by its type only, since its message may
    quote the body.
    """
    message = getattr(exc, "reason", None)
    if isinstance(message, str) and message:
        return message
    if isinstance(exc, RecursionError):
        return "the JSON body is nested too deeply to read"
    return f"the connector could not map this body ({type(exc).__name__})"


def _kept(services: Services, store_id: str | None) -> Iterator[tuple[int, str, str, str, str]]:
    """The kept records' ids and what reading one needs, oldest first."""
    query = select(
        UnreadableWebhook.id,
        UnreadableWebhook.platform,
        UnreadableWebhook.store_id,
        UnreadableWebhook.topic,
        UnreadableWebhook.body_encrypted,
    ).order_by(UnreadableWebhook.id)
    if store_id:
        query = query.where(UnreadableWebhook.store_id == store_id)
    with services.db.session() as session:
        rows = session.execute(query).all()
    yield from (tuple(row) for row in rows)


def _still_unreadable(
    services: Services, record_id: int, reason: str, report: ReprocessReport
) -> None:
    with services.db.session() as session:
        session.execute(
            update(UnreadableWebhook)
            .where(UnreadableWebhook.id == record_id)
            .values(reason=reason[:MAX_REASON_CHARS], reprocessed_at=utcnow())
        )
        session.commit()
    report.still_unreadable += 1
    report.reasons[reason] = report.reasons.get(reason, 0) + 1


def _forget(services: Services, record_id: int) -> None:
    with services.db.session() as session:
        session.execute(delete(UnreadableWebhook).where(UnreadableWebhook.id == record_id))
        session.commit()
