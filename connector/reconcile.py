"""Reconciliation: orders read back from each store's API, so a missed webhook loses nothing.

Webhooks alone can stop without anyone noticing: Shopify delays or drops deliveries during
incidents and removes subscriptions that keep failing; WooCommerce never retries and disables
a webhook after repeated failures. So every ``RECONCILE_INTERVAL_SECONDS`` (and on
``connector stores reconcile``) each store's platform is asked for the orders changed since
the store's checkpoint, and each runs through :func:`connector.pipeline.record_events`, the
webhook's own path, marked ``reconciled``: the same mapping and the same dedup key, so an order
whose webhook came adds nothing, and one whose webhook never came becomes an event. One read
back too late for the destination (TikTok: older than 7 days) is recorded ``skipped`` with
that reason, not sent (:func:`connector.pipeline.record_events`).

The checkpoint (``stores.reconciled_until``) moves only once a whole read is recorded, to the
latest change seen minus :data:`CHECKPOINT_OVERLAP`: the next run reads those minutes again
(an order already recorded costs an insert that does nothing), so an order the store saved a
little late, or a clock a little off, is not stepped over. A run that fails keeps the
checkpoint and says why in ``stores.reconcile_error``, which the Status page and ``stores list``
show; it is logged once per store and run, and never stops the other stores.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from connector.models import EventSource, EventStatus, OutboxEvent, Store, utcnow
from connector.pipeline import RecordResult, record_events
from connector.plugins import (
    FetchedOrder,
    FetchError,
    NoApiAccess,
    OrderFetcher,
    PeriodicTask,
    in_own_thread,
    load_store_platforms,
)
from connector.services import Services
from connector.stores import StoreError
from connector.unreadable import KeptWebhook, keep_unreadable

logger = logging.getLogger(__name__)

FIRST_LOOKBACK = timedelta(days=2)
"""How far back a store's first run reads (or since the store was added, if later)."""
CHECKPOINT_OVERLAP = timedelta(minutes=5)
RECOVERED_WINDOW = timedelta(days=7)
NO_API_ACCESS = "No API access: "
"""Starts ``reconcile_error`` for a store connected without API access, which the Status page
tells apart from a failed run (one text column holds both)."""
AGE = re.compile(r"(\d+)([dhm])")
AGE_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass
class ReconcileSummary:
    """What one run found for one store."""

    store_id: str
    platform: str
    since: datetime
    orders_seen: int = 0
    inserted: int = 0
    duplicates: int = 0
    skipped: int = 0
    unreadable: int = 0
    reconciled_until: datetime | None = None
    error: str | None = None
    backfill: str | None = None  # the one destination a backfill recorded orders for

    def count(self, result: RecordResult) -> None:
        self.inserted += result.inserted
        self.duplicates += result.duplicates
        self.skipped += result.skipped

    def to_json(self) -> dict[str, Any]:
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


@dataclass(frozen=True)
class ReconcileStatus:
    """What the Status page says about reconciliation for one store."""

    recovered: int
    reconciled_at: datetime | None
    error: str | None
    api_access: bool


# -- runs --------------------------------------------------------------------------------------


def reconcile_store(
    services: Services,
    store_id: str,
    *,
    since: datetime | None = None,
    backfill: str | None = None,
) -> ReconcileSummary:
    """Read the store's orders changed since ``since`` (naive UTC; default: its checkpoint)
    and record the missing ones.

    ``backfill`` names one destination kind to record them for, alone (a destination added
    after the orders came: the outbox holds other platforms' hashes, which cannot be turned
    into its own, so the orders are read again). A backfill leaves the store's checkpoint
    alone: it recorded the orders for one destination, not for the others.

    A store that cannot be read gives a summary with ``error`` (also recorded on the store).
    Raises StoreError for an unknown store or a platform that cannot be read back.
    """
    store, fetch = _store_and_fetcher(services, store_id)
    start = since or _default_since(store)
    summary = ReconcileSummary(store.id, store.platform, start, backfill=backfill)
    latest: datetime | None = None
    try:
        with services.db.engine.connect() as connection:
            for fetched in fetch(services, store, summary.since):
                latest = _later(latest, _naive_utc(fetched.updated_at))
                result = _record(services, connection, summary, fetched)
                if result is not None:
                    summary.count(result)
    except FetchError as exc:
        summary.error = _error_text(exc)
        _log_failure(store, summary.error, quiet=isinstance(exc, NoApiAccess))
    else:
        if latest is not None and backfill is None:
            summary.reconciled_until = latest - CHECKPOINT_OVERLAP
    if backfill is None:
        _save_checkpoint(services, store.id, summary)
    _log_summary(summary)
    return summary


def reconcile_all(services: Services) -> list[ReconcileSummary]:
    """Every active store whose platform can be read back; one store's trouble (a revoked key,
    a database blip, a bug) is logged and the others go on."""
    readable = {p.name for p in load_store_platforms() if p.fetch_orders is not None}
    with services.db.session() as session:
        store_ids = session.scalars(
            select(Store.id)
            .where(Store.status == "active", Store.platform.in_(readable))
            .order_by(Store.created_at)
        ).all()
    summaries = []
    for store_id in store_ids:
        try:
            summaries.append(reconcile_store(services, store_id))
        except Exception as exc:  # the message could quote a row: the type says enough
            logger.error("reconcile.failed store=%s error=%s", store_id, type(exc).__name__)
    return summaries


def reconcile_task(services: Services) -> PeriodicTask:
    """The worker's periodic run, every ``RECONCILE_INTERVAL_SECONDS``, in a thread of its own
    so a slow store never holds up the sweep."""
    return PeriodicTask(
        "reconcile",
        services.settings.reconcile_interval_seconds,
        in_own_thread("reconcile", reconcile_all),
    )


def _default_since(store: Store) -> datetime:
    """Where a run starts: the checkpoint, else the first lookback (never before the store
    was added, less the overlap for a clock a little off)."""
    if store.reconciled_until is not None:
        return store.reconciled_until
    return max(utcnow() - FIRST_LOOKBACK, store.created_at - CHECKPOINT_OVERLAP)


def _store_and_fetcher(services: Services, store_id: str) -> tuple[Store, OrderFetcher]:
    with services.db.session() as session:
        store = session.get(Store, store_id)
    if store is None:
        raise StoreError(f"no store {store_id}: see `connector stores list`")
    fetchers: dict[str, OrderFetcher | None] = {
        p.name: p.fetch_orders for p in load_store_platforms()
    }
    fetch = fetchers.get(store.platform)
    if fetch is None:
        raise StoreError(f"{store.platform} stores cannot be read back: no order API is known")
    return store, fetch


def _record(
    services: Services, connection: Connection, summary: ReconcileSummary, fetched: FetchedOrder
) -> RecordResult | None:
    """One order through the webhook's path; None when it means nothing to send."""
    summary.orders_seen += 1
    if fetched.order is None:
        if fetched.unreadable:
            summary.unreadable += 1
            _keep(services, connection, summary, fetched)
        return None
    return record_events(
        services,
        summary.store_id,
        fetched.topic,
        fetched.order,
        connection=connection,
        origin=EventSource.BACKFILLED if summary.backfill else EventSource.RECONCILED,
        only=summary.backfill,
    )


def _keep(
    services: Services, connection: Connection, summary: ReconcileSummary, fetched: FetchedOrder
) -> None:
    """An order read back that cannot be read is kept like its webhook would have been
    (listed with its reason, recovered by ``events reprocess``); without a body, logged."""
    if fetched.body is None:
        logger.warning(
            "reconcile.unreadable store=%s platform=%s reason=%s",
            summary.store_id,
            summary.platform,
            fetched.unreadable,
        )
        return
    resource = fetched.body.get("id")
    kept = KeptWebhook(
        store_id=summary.store_id,
        platform=summary.platform,
        topic=fetched.topic,
        reason=fetched.unreadable or "could not be read",
        resource_id=str(resource)[:255] if isinstance(resource, int | str) else None,
    )
    keep_unreadable(services, connection, kept, json.dumps(fetched.body).encode())


def _save_checkpoint(services: Services, store_id: str, summary: ReconcileSummary) -> None:
    """When it ran and how it went; the checkpoint only ever moves forward (a manual run
    with an early ``--since`` must not make the next run read it all again)."""
    with services.db.session() as session:
        store = session.get(Store, store_id)
        if store is None:  # deleted while we read
            return
        store.reconciled_at = utcnow()
        store.reconcile_error = summary.error
        if summary.reconciled_until is not None:
            store.reconciled_until = _later(store.reconciled_until, summary.reconciled_until)
        summary.reconciled_until = store.reconciled_until
        session.commit()


def _error_text(exc: FetchError) -> str:
    return f"{NO_API_ACCESS}{exc}" if isinstance(exc, NoApiAccess) else str(exc)


def _log_failure(store: Store, error: str, *, quiet: bool) -> None:
    """A failed read is a WARNING each run (someone must act); a store without API access is
    a choice, said once, when it is first found."""
    if not quiet:
        logger.warning(
            "reconcile.failed store=%s platform=%s error=%s", store.id, store.platform, error
        )
    elif store.reconcile_error != error:
        logger.info("reconcile.no-api-access store=%s platform=%s", store.id, store.platform)


def _log_summary(summary: ReconcileSummary) -> None:
    """Quiet when there was nothing to recover, so an idle worker logs nothing."""
    if summary.inserted or summary.skipped:
        logger.info(
            "reconcile.recovered store=%s platform=%s seen=%d inserted=%d duplicates=%d skipped=%d",
            summary.store_id,
            summary.platform,
            summary.orders_seen,
            summary.inserted,
            summary.duplicates,
            summary.skipped,
        )


def _later(first: datetime | None, second: datetime) -> datetime:
    return second if first is None else max(first, second)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


# -- what people read --------------------------------------------------------------------------


def parse_since(text: str, now: Callable[[], datetime] = utcnow) -> datetime:
    """``2d``, ``12h``, ``30m`` (that long ago) or an ISO 8601 date or date-time (UTC unless
    it says otherwise) as naive UTC; ValueError with the accepted forms otherwise."""
    text = text.strip()
    if match := AGE.fullmatch(text):
        return now() - timedelta(**{AGE_UNITS[match[2]]: int(match[1])})
    try:
        return _naive_utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (2d, 12h, 30m) nor an ISO date (2026-12-01,"
            " 2026-12-01T08:00:00Z)"
        ) from None


def reconciliation_status(session: Session, store_id: str) -> ReconcileStatus:
    """Orders reconciliation recovered in the last 7 days (one per order, whatever the
    number of destinations, and only those not skipped), when it last ran, and its error."""
    store = session.get(Store, store_id)
    recovered = session.scalar(
        select(func.count(func.distinct(OutboxEvent.event_id))).where(
            OutboxEvent.store_id == store_id,
            OutboxEvent.source == EventSource.RECONCILED,
            OutboxEvent.status != EventStatus.SKIPPED,
            OutboxEvent.received_at >= utcnow() - RECOVERED_WINDOW,
        )
    )
    error = store.reconcile_error if store else None
    no_access = bool(error and error.startswith(NO_API_ACCESS))
    return ReconcileStatus(
        recovered=recovered or 0,
        reconciled_at=store.reconciled_at if store else None,
        error=error.removeprefix(NO_API_ACCESS) if error else None,
        api_access=not no_access,
    )
