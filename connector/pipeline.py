"""Record the events a verified webhook means, then ask for their delivery.

This runs inside the webhook request, so it does only local work: map, hash, one INSERT per
destination (ignored when the row exists, which is how repeated deliveries and the same order
seen through two topics collapse into one event), one commit, and a cheap Redis call. No
outbound HTTP happens here.

It is the hot path of ingest, so it speaks SQLAlchemy Core on one connection with statements
built once (bench/profile_webhook.py measured the ORM session, and building each statement
anew, at several times the cost of the database work itself).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from connector.clicks import with_stored_clicks
from connector.consent import ConsentPolicy, decide
from connector.destinations import Destination
from connector.events import Checkout, Order
from connector.jobs import request_delivery
from connector.mapping import EventOptions, PlannedEvent, plan_event
from connector.models import EventSource, EventStatus, OutboxEvent, Store, StoreDestination
from connector.services import Services
from connector.signals import signal_mask
from connector.useragent import browser_family, device_class

logger = logging.getLogger(__name__)

# The tables, not the ORM classes: Core statements skip the ORM's session and persistence
# layers, which cost more than the database itself on the webhook's hot path.
EVENTS = OutboxEvent.__table__
DESTINATIONS = StoreDestination.__table__
STORES = Store.__table__
DESTINATIONS_OF_STORE = (
    select(
        STORES.c.consent_policy,
        STORES.c.consent_unknown,
        DESTINATIONS.c.kind,
        DESTINATIONS.c.id,
        DESTINATIONS.c.options,
        DESTINATIONS.c.test_event_code,
    )
    .select_from(STORES.outerjoin(DESTINATIONS, DESTINATIONS.c.store_id == STORES.c.id))
    .where(STORES.c.id == bindparam("store_id"))
)
"""The store's consent policy and its destinations, in one round trip: one row per
destination, or one with a NULL kind for a store that has none yet."""
POLICY = ConsentPolicy()
"""The default policy, for a store the database does not hold (its rows will not insert)."""
DEDUP_KEY = ["store_id", "destination", "event_name", "event_id"]
# INSERT ... ON CONFLICT DO NOTHING on the dedup key, per dialect (both have it); the values
# come as execution parameters, so each statement is compiled once per process.
INSERT_IGNORING_DUPLICATE = {
    "postgresql": postgresql.insert(EVENTS)
    .on_conflict_do_nothing(index_elements=DEDUP_KEY)
    .returning(EVENTS.c.id),
    "sqlite": sqlite.insert(EVENTS)
    .on_conflict_do_nothing(index_elements=DEDUP_KEY)
    .returning(EVENTS.c.id),
}


@dataclass
class RecordResult:
    """What a webhook produced: rows inserted, duplicates ignored, rows skipped on purpose."""

    inserted: int = 0
    duplicates: int = 0
    skipped: int = 0
    destinations_to_deliver: set[int] = field(default_factory=set)


def record_events(
    services: Services,
    store_id: str,
    topic: str,
    source: Order | Checkout,
    *,
    connection: Connection | None = None,
    origin: EventSource = EventSource.WEBHOOK,
    only: str | None = None,
) -> RecordResult:
    """Store the events for every destination of the store and request their delivery.

    The rows are committed on ``connection`` when given (a webhook's own, so it needs no
    second checkout from the pool), else on a connection of their own. ``origin`` says how
    the order reached us (its webhook, reconciliation, a reprocessed unreadable webhook);
    ``only`` records it for that one destination kind (a backfill).
    Raises the database's error when the rows cannot be stored: the caller answers 503 so the
    store platform retries.
    """
    if connection is None:
        with services.db.engine.connect() as own:
            return record_events(
                services, store_id, topic, source, connection=own, origin=origin, only=only
            )
    result = _insert_events(connection, store_id, topic, source, origin, services, only)
    connection.commit()
    for destination_id in result.destinations_to_deliver:
        request_delivery(services, destination_id)
    return result


def _insert_events(
    connection: Connection,
    store_id: str,
    topic: str,
    source: Order | Checkout,
    origin: EventSource,
    services: Services,
    only: str | None,
) -> RecordResult:
    result = RecordResult()
    source = with_stored_clicks(connection, store_id, source)
    policy, targets = _policy_and_targets(connection, store_id, services)
    consent = decide(policy, source.consent)
    for target in [t for t in targets if only is None or t.api.kind == only]:
        planned = plan_event(
            source,
            target.api,
            EventOptions.from_json(target.options),
            test_mode=target.test_mode,
            consent=consent,
        )
        if planned is None:
            continue
        if origin in (EventSource.RECONCILED, EventSource.BACKFILLED):
            planned = _skipped_when_too_late(planned, target.api)
        row = _row(store_id, target.api, topic, planned, origin, source)
        row["consent"] = consent.state
        if not _insert_ignoring_duplicate(connection, row):
            result.duplicates += 1
        elif planned.skip_reason:
            result.skipped += 1
        else:
            result.inserted += 1
            if target.destination_id is not None:
                result.destinations_to_deliver.add(target.destination_id)
    return result


@dataclass(frozen=True)
class _Target:
    """A destination an order's events are recorded for; ``destination_id`` is None for a
    default destination the store has not configured yet."""

    api: Destination
    destination_id: int | None
    options: dict[str, Any] | None
    test_mode: bool


def _policy_and_targets(
    connection: Connection, store_id: str, services: Services
) -> tuple[ConsentPolicy, list[_Target]]:
    """The store's consent policy, and its configured destinations; with none yet, the
    deployment's default ones (``DEFAULT_DESTINATIONS``), whose events wait until the
    merchant connects them.

    A configured kind whose package is gone (an old row after a destination was removed
    from the code) is left out, with a warning, rather than failing every webhook.
    """
    rows = connection.execute(DESTINATIONS_OF_STORE, {"store_id": store_id}).all()
    policy = ConsentPolicy(rows[0].consent_policy, rows[0].consent_unknown) if rows else POLICY
    apis = services.destinations
    if not rows or rows[0].kind is None:
        defaults = services.settings.default_destinations
        return policy, [_Target(apis[kind], None, None, False) for kind in defaults if kind in apis]
    targets = []
    for row in rows:
        if row.kind not in apis:
            logger.warning("pipeline.unknown-destination store=%s kind=%s", store_id, row.kind)
            continue
        targets.append(_Target(apis[row.kind], row.id, row.options, bool(row.test_event_code)))
    return policy, targets


def _skipped_when_too_late(planned: PlannedEvent, api: Destination) -> PlannedEvent:
    """An order read back by reconciliation can be older than the destination accepts (TikTok
    and Meta: 7 days): it is recorded skipped, with the destination's reason, rather than
    queued only to fail. A webhook comes as the order happens; delivery checks its age when it
    sends."""
    if planned.skip_reason:
        return planned
    problem = api.problem(planned.event, int(time.time()))
    return replace(planned, skip_reason=problem) if problem else planned


def _row(
    store_id: str,
    api: Destination,
    topic: str,
    planned: PlannedEvent,
    origin: EventSource,
    source: Order | Checkout,
) -> dict[str, Any]:
    """The outbox row of one planned event; its ``consent`` is the caller's."""
    event = planned.event
    user_agent = source.shopper.user_agent
    return {
        "store_id": store_id,
        "destination": api.kind,
        "event_name": event.event_name,
        "event_id": event.event_id,
        "source_topic": topic,
        "status": EventStatus.SKIPPED if planned.skip_reason else EventStatus.PENDING,
        "last_error": planned.skip_reason,
        "payload": event.to_json(),
        "event_time": event.event_time,
        "click_source": event.click_source,
        "signals": signal_mask(event.user, api.signal_keys),
        "source": origin,
        "parse_notes": "; ".join(source.notes) or None,
        "consent_source": source.consent.source,
        "browser": browser_family(user_agent),
        "device": device_class(user_agent),
    }


def _insert_ignoring_duplicate(connection: Connection, row: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on the dedup key; True when a row was added."""
    return connection.execute(_insert_statement(connection), row).first() is not None


def _insert_statement(connection: Connection):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT."""
    dialect = connection.dialect.name
    try:
        return INSERT_IGNORING_DUPLICATE[dialect]
    except KeyError:
        raise RuntimeError(f"unsupported database {dialect!r}: use PostgreSQL or SQLite") from None
