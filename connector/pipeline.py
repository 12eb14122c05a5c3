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

import orjson
from sqlalchemy import Connection, Row, and_, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from connector.clicks import (
    CLICK_RECORDS,
    CONSENT_COLUMNS,
    REMEMBER_ORDER,
    STORED_COLUMNS,
    click_tokens,
    with_click_records,
)
from connector.consent import ConsentDecision, ConsentPolicy, decide
from connector.destinations import Destination
from connector.events import Checkout, Order
from connector.jobs import request_deliveries
from connector.mapping import EventOptions, PlannedEvent, plan_event
from connector.models import (
    EventSource,
    EventStatus,
    OutboxEvent,
    Store,
    StoreDestination,
    utcnow,
)
from connector.privacy import split_network_signals
from connector.services import Services
from connector.signals import signal_mask
from connector.useragent import browser_family, device_class

logger = logging.getLogger(__name__)

# The tables, not the ORM classes: Core statements skip the ORM's session and persistence
# layers, which cost more than the database itself on the webhook's hot path.
EVENTS = OutboxEvent.__table__
DESTINATIONS = StoreDestination.__table__
STORES = Store.__table__
_LIVE_CLICK_RECORD = and_(
    CLICK_RECORDS.c.store_id == STORES.c.id,
    CLICK_RECORDS.c.expires_at > bindparam("now"),
    or_(
        and_(
            CLICK_RECORDS.c.token_kind == "checkout",
            CLICK_RECORDS.c.token == bindparam("checkout"),
        ),
        and_(CLICK_RECORDS.c.token_kind == "cart", CLICK_RECORDS.c.token == bindparam("cart")),
    ),
)
STORE_DESTINATIONS_AND_CLICKS = (
    select(
        STORES.c.platform,
        STORES.c.domain,
        STORES.c.webhook_secret_encrypted,
        STORES.c.consent_policy,
        STORES.c.consent_unknown,
        DESTINATIONS.c.kind,
        DESTINATIONS.c.id,
        DESTINATIONS.c.options,
        DESTINATIONS.c.test_event_code,
        CLICK_RECORDS.c.id.label("click_record_id"),
        CLICK_RECORDS.c.token_kind,
        *(CLICK_RECORDS.c[name] for name in STORED_COLUMNS),
        *(CLICK_RECORDS.c[column] for column in CONSENT_COLUMNS.values()),
    )
    .select_from(
        STORES.outerjoin(DESTINATIONS, DESTINATIONS.c.store_id == STORES.c.id).outerjoin(
            CLICK_RECORDS, _LIVE_CLICK_RECORD
        )
    )
    .where(STORES.c.id == bindparam("store_id"))
)
"""Everything recording needs to read, in one round trip: the store's identity and secret (to
check a webhook's cached copy, :class:`StoreChanged`), its consent policy, its destinations
and the live click records of the order's checkout and cart tokens. One row per pair of
destination and record (a store has at most a few of each), NULL where there is none."""
_CLICK_COLUMNS = ("token_kind", *STORED_COLUMNS, *CONSENT_COLUMNS.values())
POLICY = ConsentPolicy()
"""The default policy, for a store the database does not hold (its rows will not insert)."""
DEDUP_KEY = ["store_id", "destination", "event_name", "event_id"]
# INSERT ... ON CONFLICT DO NOTHING on the dedup key, per dialect (both have it); the values
# come as execution parameters, so each statement is compiled once per process.
# Several destinations' rows go in one statement: SQLAlchemy's "insertmanyvalues" turns the
# list of parameter sets into one multi-row INSERT ... RETURNING, one round trip however many
# destinations the store has. RETURNING names each inserted row's destination, so a row that
# hit the key (a duplicate) is the one whose destination is missing.
INSERT_IGNORING_DUPLICATE = {
    "postgresql": postgresql.insert(EVENTS)
    .on_conflict_do_nothing(index_elements=DEDUP_KEY)
    .returning(EVENTS.c.destination),
    "sqlite": sqlite.insert(EVENTS)
    .on_conflict_do_nothing(index_elements=DEDUP_KEY)
    .returning(EVENTS.c.destination),
}


class StoreChanged(Exception):
    """The store's row no longer says what the caller verified the webhook with (its secret,
    platform or domain changed, or it is gone): nothing was written, and the caller reads the
    store again and verifies again (``connector.web.intake``)."""


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
    verified_with: tuple[str, str, str | None] | None = None,
) -> RecordResult:
    """Store the events for every destination of the store and request their delivery.

    The rows are committed on ``connection`` when given (a webhook's own, so it needs no
    second checkout from the pool), else on a connection of their own. ``origin`` says how
    the order reached us (its webhook, reconciliation, a reprocessed unreadable webhook);
    ``only`` records it for that one destination kind (a backfill). ``verified_with`` is the
    store's (platform, domain, encrypted webhook secret) as a webhook that was verified with
    a remembered copy of the store saw them: when the row says otherwise, nothing is written
    and :class:`StoreChanged` is raised.

    Two statements when nothing is remembered on a click record: one read (store,
    destinations, click records) and one INSERT of every destination's row. On a connection
    in autocommit (a webhook's) that INSERT is its own transaction, durable when it returns.
    Raises the database's error when the rows cannot be stored: the caller answers 503 so the
    store platform retries.
    """
    if connection is None:
        with services.db.engine.connect() as own:
            return record_events(
                services, store_id, topic, source, connection=own, origin=origin, only=only
            )
    result = _insert_events(
        connection, store_id, topic, source, origin, services, only, verified_with
    )
    connection.commit()
    request_deliveries(services, result.destinations_to_deliver)
    return result


def _insert_events(
    connection: Connection,
    store_id: str,
    topic: str,
    source: Order | Checkout,
    origin: EventSource,
    services: Services,
    only: str | None,
    verified_with: tuple[str, str, str | None] | None,
) -> RecordResult:
    result = RecordResult()
    tokens = click_tokens(source)
    rows = connection.execute(
        STORE_DESTINATIONS_AND_CLICKS, {"store_id": store_id, "now": utcnow(), **tokens}
    ).all()
    if verified_with is not None and (not rows or tuple(rows[0][:3]) != tuple(verified_with)):
        raise StoreChanged(store_id)
    source, remembered = with_click_records(source, _click_records(rows))
    if remembered:
        connection.execute(REMEMBER_ORDER, {"ids": remembered, "order_id": source.order_id})
    policy, targets = _policy_and_targets(rows, store_id, services)
    consent = decide(policy, source.consent)
    shared = _source_columns(source, consent)
    planned_rows: list[tuple[dict[str, Any], PlannedEvent, _Target]] = []
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
        planned = _skipped_when_refused(planned, target.api, origin)
        row = _row(store_id, target.api, topic, planned, origin) | shared
        planned_rows.append((row, planned, target))
    inserted = _insert_ignoring_duplicates(connection, [row for row, _, _ in planned_rows])
    for row, planned, target in planned_rows:
        if row["destination"] not in inserted:
            result.duplicates += 1
        elif planned.skip_reason:
            result.skipped += 1
        else:
            result.inserted += 1
            if target.destination_id is not None:
                result.destinations_to_deliver.add(target.destination_id)
    return result


def _click_records(rows: list[Row[Any]]) -> list[dict[str, Any]]:
    """The distinct click records among the joined rows, as :func:`with_click_records` reads
    them."""
    records: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.click_record_id is not None and row.click_record_id not in records:
            mapping = row._mapping
            records[row.click_record_id] = {
                "id": row.click_record_id,
                **{column: mapping[column] for column in _CLICK_COLUMNS},
            }
    return list(records.values())


@dataclass(frozen=True)
class _Target:
    """A destination an order's events are recorded for; ``destination_id`` is None for a
    default destination the store has not configured yet."""

    api: Destination
    destination_id: int | None
    options: dict[str, Any] | None
    test_mode: bool


def _policy_and_targets(
    rows: list[Row[Any]], store_id: str, services: Services
) -> tuple[ConsentPolicy, list[_Target]]:
    """The store's consent policy, and its configured destinations; with none yet, the
    deployment's default ones (``DEFAULT_DESTINATIONS``), whose events wait until the
    merchant connects them.

    A configured kind whose package is gone (an old row after a destination was removed
    from the code) is left out, with a warning, rather than failing every webhook.
    """
    policy = ConsentPolicy(rows[0].consent_policy, rows[0].consent_unknown) if rows else POLICY
    apis = services.destinations
    if not rows or rows[0].kind is None:
        defaults = services.settings.default_destinations
        return policy, [_Target(apis[kind], None, None, False) for kind in defaults if kind in apis]
    targets: dict[int, _Target] = {}
    for row in rows:
        if row.id in targets:  # the same destination again, with another click record
            continue
        if row.kind not in apis:
            logger.warning("pipeline.unknown-destination store=%s kind=%s", store_id, row.kind)
            continue
        targets[row.id] = _Target(apis[row.kind], row.id, row.options, bool(row.test_event_code))
    return policy, list(targets.values())


def _skipped_when_refused(
    planned: PlannedEvent, api: Destination, origin: EventSource
) -> PlannedEvent:
    """An event the destination would never take is recorded skipped, with its reason, rather
    than queued only to fail: one no time will mend (Google: nothing to match it by), and, for
    an order read back by reconciliation or a backfill, one older than the destination accepts
    (TikTok and Meta: 7 days). A webhook comes as the order happens; delivery checks the time
    when it sends (``Destination.timing_problem``)."""
    if planned.skip_reason:
        return planned
    now = int(time.time())
    problem = api.problem(planned.event, now)
    read_back = origin in (EventSource.RECONCILED, EventSource.BACKFILLED)
    if problem and (read_back or not api.timing_problem(planned.event.event_time, now)):
        return replace(planned, skip_reason=problem)
    return planned


def _row(
    store_id: str,
    api: Destination,
    topic: str,
    planned: PlannedEvent,
    origin: EventSource,
) -> dict[str, Any]:
    """The outbox row of one planned event, but for :func:`_source_columns`."""
    event = planned.event
    payload, network = split_network_signals(event.to_json(), api)
    wire = None if planned.skip_reason else orjson.dumps(api.event_element(event)).decode()
    return {
        "store_id": store_id,
        "destination": api.kind,
        "event_name": event.event_name,
        "event_id": event.event_id,
        "source_topic": topic,
        "status": EventStatus.SKIPPED if planned.skip_reason else EventStatus.PENDING,
        "last_error": planned.skip_reason,
        "payload": payload,
        "network": network,
        "wire": wire,
        "event_time": event.event_time,
        "click_source": event.click_source,
        "value": event.value,
        "currency": event.currency,
        "signals": signal_mask(event.user, api.signal_keys),
        "source": origin,
    }


def _source_columns(source: Order | Checkout, consent: ConsentDecision) -> dict[str, Any]:
    """The columns every destination's row of one order or checkout shares, worked out once:
    its parse notes, the consent applied, and the shopper's browser family and device."""
    user_agent = source.shopper.user_agent
    return {
        "parse_notes": "; ".join(source.notes) or None,
        "consent": consent.state,
        "consent_source": source.consent.source,
        "browser": browser_family(user_agent),
        "device": device_class(user_agent),
    }


def _insert_ignoring_duplicates(connection: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """INSERT ... ON CONFLICT DO NOTHING on the dedup key, every row in one statement; the
    destinations whose row was added (a store has one row per destination)."""
    if not rows:
        return set()
    statement = _insert_statement(connection)
    result = connection.execute(statement, rows if len(rows) > 1 else rows[0])
    return set(result.scalars())


def _insert_statement(connection: Connection):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT."""
    dialect = connection.dialect.name
    try:
        return INSERT_IGNORING_DUPLICATE[dialect]
    except KeyError:
        raise RuntimeError(f"unsupported database {dialect!r}: use PostgreSQL or SQLite") from None
