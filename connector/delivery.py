"""Deliver a destination's pending events: claim a batch under a lease, send, record.

At-least-once by design. A row is claimed by writing a lease (token and expiry) on it; a
worker that dies mid-batch leaves the lease to expire and the sweep hands the row to the next
worker. The ``event_id`` lets the ad platform drop the rare duplicate this can cause. Nothing
here deletes or forgets a row: it ends ``delivered``, ``failed``, ``dead`` or stays ``pending``.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from connector.config import Settings
from connector.destinations import Destination, DestinationConfig, Outcome, SendResult
from connector.destinations.tiktok.tokens import access_token_for, send_with_renewed_token
from connector.events import ConversionEvent
from connector.models import Attempt, Event, EventStatus, utcnow
from connector.models import Destination as DestinationRow
from connector.services import Services

logger = logging.getLogger(__name__)

RETRY_CAP_SECONDS = 3600.0


@dataclass
class RunReport:
    """What one delivery run did, for logs and tests."""

    requests: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    paused: bool = False
    cooldown_seconds: float = 0.0  # set when the destination asked us to slow down or failed


def deliver_pending(
    services: Services,
    destination_id: int,
    *,
    time_budget: float = 30.0,
) -> RunReport:
    """Send batches for one destination until none is due or the time budget is spent.

    The budget keeps a job short, so a worker stopping for a deploy (SIGTERM, 30 s on
    Heroku) finishes it; whatever is left is picked up by the next job or the sweep.
    """
    report = RunReport()
    deadline = time.monotonic() + time_budget
    http = services.http
    pace = Pace(services.settings.max_requests_per_second)
    while time.monotonic() < deadline and not (report.paused or report.cooldown_seconds):
        with services.db.session() as session:
            row = session.get(DestinationRow, destination_id)
            if row is None or row.paused_reason:
                break
            destination = services.destinations[row.kind]
            config = _config(services, row)
            batch = claim_batch(session, row, services.settings, destination.max_batch)
            if not batch:
                break
            _send_batch(session, row, destination, config, http, batch, services, report, pace)
    return report


class Pace:
    """Spaces requests to one destination to at most ``per_second`` (0: no limit)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.last = 0.0

    def wait(self) -> None:
        if self.interval:
            time.sleep(max(0.0, self.last + self.interval - time.monotonic()))
            self.last = time.monotonic()


def claim_batch(
    session: Session, row: DestinationRow, settings: Settings, limit: int
) -> list[Event]:
    """Lease up to ``limit`` due rows; a row leased by a live worker is never claimed twice.

    On PostgreSQL the candidate rows are locked with SKIP LOCKED so concurrent workers take
    different rows; the lease condition in the UPDATE guards SQLite and every other case.
    """
    now = utcnow()
    size = min(limit, settings.batch_size)
    claimable = due_events(row.store_id, row.kind, now)
    candidates = (
        select(Event.id)
        .where(claimable)
        .order_by(Event.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if not ids:
        session.rollback()
        return []
    token = secrets.token_hex(8)
    session.execute(
        update(Event)
        .where(Event.id.in_(ids), claimable)
        .values(lease_token=token, lease_expires_at=now + timedelta(seconds=settings.lease_seconds))
    )
    session.commit()
    return list(session.scalars(select(Event).where(Event.lease_token == token).order_by(Event.id)))


def due_events(store_id: Any, kind: Any, now: datetime) -> ColumnElement[bool]:
    """The condition for rows ready to send: pending, due, and not leased by a live worker.

    ``store_id`` and ``kind`` may be values or columns (for a correlated EXISTS).
    """
    return and_(
        Event.store_id == store_id,
        Event.destination == kind,
        Event.status == EventStatus.PENDING,
        Event.next_attempt_at <= now,
        or_(Event.lease_expires_at.is_(None), Event.lease_expires_at < now),
    )


def _send_batch(
    session: Session,
    row: DestinationRow,
    destination: Destination,
    config: DestinationConfig,
    http: requests.Session,
    batch: list[Event],
    services: Services,
    report: RunReport,
    pace: Pace,
) -> None:
    """Send a claimed batch; a rejected batch is split so that only the bad events fail.

    When the platform names the bad event (TikTok's message gives its ``data.<i>`` path), it
    fails alone and the rest is sent again at once; otherwise the batch is halved until the
    bad events stand alone (a handful of requests even for one bad event in 1,000).
    """
    now = int(time.time())
    sendable: list[Event] = []
    for event in batch:
        problem = destination.problem(ConversionEvent.from_json(event.payload), now)
        if problem:
            _finish(event, EventStatus.FAILED, problem, None, None)
            report.failed += 1
        else:
            sendable.append(event)
    session.commit()
    pending = [sendable] if sendable else []
    while pending and not (report.paused or report.cooldown_seconds):
        part = pending.pop(0)
        pace.wait()
        result = _send(session, row, destination, config, http, part, services, report)
        if result.outcome is Outcome.REJECTED and len(part) > 1:
            bad = result.bad_index
            if bad is not None and 0 <= bad < len(part):
                _record(session, row, [part[bad]], result, services, report)
                pending.insert(0, part[:bad] + part[bad + 1 :])
            else:
                middle = len(part) // 2
                pending[:0] = [part[:middle], part[middle:]]
            continue
        _record(session, row, part, result, services, report)
        session.commit()
    for part in pending:  # not sent, because the destination paused or asked to slow down
        for event in part:
            event.lease_token = None
            event.lease_expires_at = None
    session.commit()


def _send(
    session: Session,
    row: DestinationRow,
    destination: Destination,
    config: DestinationConfig,
    http: requests.Session,
    part: list[Event],
    services: Services,
    report: RunReport,
) -> SendResult:
    events = [ConversionEvent.from_json(event.payload) for event in part]
    started, clock = utcnow(), time.perf_counter()
    result = destination.send(http, config, events)
    # An OAuth token TikTok says has expired (40102) is renewed once and the batch sent again.
    result = send_with_renewed_token(
        services, row, config, result, lambda renewed: destination.send(http, renewed, events)
    )
    report.requests += 1
    metrics = services.metrics
    code = "" if result.code is None else str(result.code)
    metrics.requests.labels(row.kind, result.outcome.value, code).inc()
    metrics.batch_size.labels(row.kind).observe(len(part))
    session.add(
        Attempt(
            destination_id=row.id,
            started_at=started,
            duration_ms=int((time.perf_counter() - clock) * 1000),
            event_count=len(part),
            outcome=result.outcome.value,
            http_status=result.http_status,
            code=result.code,
            message=result.message[:1000],
            request_id=result.request_id,
        )
    )
    logger.info(
        "delivery.attempt destination=%s events=%d outcome=%s code=%s request_id=%s",
        row.id,
        len(part),
        result.outcome.value,
        result.code,
        result.request_id,
    )
    return result


def _record(
    session: Session,
    row: DestinationRow,
    part: list[Event],
    result: SendResult,
    services: Services,
    report: RunReport,
) -> None:
    """Write the outcome of one request onto its events (and the destination, if paused)."""
    for event in part:
        event.attempts += 1
    if result.outcome is Outcome.DELIVERED:
        for event in part:
            _finish(event, EventStatus.DELIVERED, None, result.code, result.request_id)
            event.delivered_at = utcnow()
            latency = (event.delivered_at - event.received_at).total_seconds()
            services.metrics.latency.labels(row.kind).observe(latency)
        row.last_success_at = utcnow()
        report.delivered += len(part)
    elif result.outcome is Outcome.REJECTED:
        for event in part:
            _finish(event, EventStatus.FAILED, result.message, result.code, result.request_id)
        report.failed += len(part)
    elif result.outcome is Outcome.PAUSE:
        row.paused_reason = _pause_reason(result)
        row.paused_at = utcnow()
        for event in part:
            _release(event, result, retry_at=utcnow())
        report.paused = True
        logger.warning(
            "delivery.paused destination=%s code=%s http=%s",
            row.id,
            result.code,
            result.http_status,
        )
    else:
        horizon = timedelta(seconds=services.settings.retry_horizon_seconds)
        for event in part:
            if utcnow() > (event.give_up_at or event.received_at + horizon):
                _finish(event, EventStatus.DEAD, _retry_message(result), result.code, None)
                report.dead += 1
            else:
                delay = backoff_seconds(
                    event.attempts, result.retry_after, services.settings.retry_base_seconds
                )
                _release(event, result, retry_at=utcnow() + timedelta(seconds=delay))
                services.metrics.retries.labels(row.kind).inc()
                report.retried += 1
        # The destination is throttling or failing: let it recover before the next request.
        base = services.settings.retry_base_seconds
        report.cooldown_seconds = max(result.retry_after or 0.0, base)


def backoff_seconds(attempts: int, retry_after: float | None, base: float) -> float:
    """Exponential backoff with jitter, at least what the platform asked us to wait.

    "Equal jitter": half the exponential delay is fixed and half random, so a crowd of events
    failed together does not come back together, yet none retries absurdly early.
    """
    ceiling = min(RETRY_CAP_SECONDS, base * 2 ** max(0, attempts - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


def _finish(
    event: Event, status: EventStatus, error: str | None, code: int | None, request_id: str | None
) -> None:
    event.status = status
    event.last_error = error
    event.last_code = code
    event.request_id = request_id or event.request_id
    event.lease_token = None
    event.lease_expires_at = None


def _release(event: Event, result: SendResult, *, retry_at: datetime) -> None:
    event.last_error = _retry_message(result)
    event.last_code = result.code
    event.next_attempt_at = retry_at
    event.lease_token = None
    event.lease_expires_at = None


def _retry_message(result: SendResult) -> str:
    return f"{result.message}{_code(result)}"


def _pause_reason(result: SendResult) -> str:
    return f"{result.message}{_code(result)}. {result.fix or 'Check the destination settings.'}"


def _code(result: SendResult) -> str:
    return f" (code {result.code})" if result.code is not None else ""


def _config(services: Services, row: DestinationRow) -> DestinationConfig:
    return DestinationConfig(
        api_base=services.settings.tiktok_api_base,
        pixel_code=row.pixel_code,
        access_token=access_token_for(services, row),  # renewed first when close to expiry
        test_event_code=row.test_event_code,
        timeout=services.settings.http_timeout_seconds,
    )
