"""Deliver a destination's pending events: claim a batch, send, record.

At-least-once by design. Due rows are found in the delivery queue (``pending_events``). On
PostgreSQL a batch is claimed by a lock on its queue rows held until its outcome commits; on
SQLite by a written lease (token and expiry). A worker that dies mid-batch frees
its rows (its transaction is rolled back, or its lease expires) and the sweep hands them to the
next worker. The ``event_id`` lets the ad platform drop the rare duplicate this can cause.
Nothing here deletes or forgets a row: it ends ``delivered``, ``failed``, ``dead`` or stays
``pending``.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

import orjson
import requests
from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Text,
    Update,
    any_,
    bindparam,
    case,
    cast,
    delete,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from connector.config import Settings
from connector.destinations import Destination, DestinationConfig, Outcome, SendResult
from connector.events import ConversionEvent
from connector.models import Attempt, EventStatus, StoreDestination, utcnow
from connector.queue import EVENTS, QUEUE, QUEUED_EVENTS, due_events
from connector.services import Services

logger = logging.getLogger(__name__)

RETRY_CAP_SECONDS = 3600.0
# Outcomes are written with Core UPDATEs on the table (``EVENTS``), one per outcome and batch
# rather than one per row through the ORM: at 500 events a batch the per-row path cost more
# CPU than building and sending the request (bench/delivery.py with --py-spy).
LEASE_CLEARED = {"lease_token": None, "lease_expires_at": None}


class Claimed(NamedTuple):
    """A claimed outbox row, as much of it as delivery reads (a tuple: 500 are made a batch).

    ``element`` is the event as its destination sends it, encoded (the row's ``wire``);
    ``event`` is rebuilt from the payload only for a row without one (recorded before events
    were stored as sent, or after its ``wire`` was emptied).
    """

    id: int
    element: bytes | None
    event: ConversionEvent | None
    event_time: int
    attempts: int
    received_at: datetime
    give_up_at: datetime | None


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

    On PostgreSQL a delivered batch is recorded behind (:class:`RecordBehind`): its UPDATE
    and commit run on a helper thread while this one claims and builds the next batch, so
    the database's work overlaps the worker's.
    """
    report = RunReport()
    deadline = time.monotonic() + time_budget
    http = services.http
    pace: Pace | None = None
    with RecordBehind() as behind:
        while time.monotonic() < deadline and not (report.paused or report.cooldown_seconds):
            session = services.db.session()
            handed = False
            try:
                row = session.get(StoreDestination, destination_id)
                if row is None or row.paused_reason:
                    break
                destination = services.destinations[row.kind]
                pace = pace or Pace(requests_per_second(services.settings, destination))
                config = destination_config(services, row, destination)
                batch = claim_batch(session, row, services.settings, destination.max_batch)
                if not batch:
                    break
                parts = (session, row, destination, config, http, batch, services, report, pace)
                handed = _send_batch(*parts, behind=behind)
            finally:
                if not handed:
                    session.close()
    return report


class RecordBehind:
    """Records delivered batches on a helper thread, one at a time, while the caller goes on.

    A delivered batch's outcome is one UPDATE of its rows and a commit, which releases their
    row locks (:func:`claim_batch`). Until then nobody else can claim those rows, and the
    next claim skips them, so nothing is sent twice for it; if the worker dies first, the
    transaction is rolled back and the rows are sent again, as when a worker dies before
    recording in turn (at least once, deduplicated by the platforms). Only a delivered outcome
    goes behind: the others decide what the delivery loop does next. At most one batch is
    behind at a time, and leaving the ``with`` waits for it and raises its error, if any, as
    recording in turn would have.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-behind")
        self._last: Future[None] | None = None

    def submit(self, record: Callable[[], None]) -> None:
        """Run ``record`` on the helper thread, after the batch before it is recorded."""
        self.wait()
        self._last = self._pool.submit(record)

    def wait(self) -> None:
        """Return when the batch behind is recorded; raise what recording it raised."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def __enter__(self) -> RecordBehind:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def requests_per_second(settings: Settings, destination: Destination) -> float:
    """The slower of ``DESTINATION_MAX_QPS`` and the platform's own limit (0: no limit)."""
    limits = [
        r for r in (settings.max_requests_per_second, destination.max_requests_per_second) if r > 0
    ]
    return min(limits, default=0.0)


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
    session: Session, row: StoreDestination, settings: Settings, limit: int
) -> list[Claimed]:
    """Claim up to ``limit`` due rows; a row claimed by a live worker is never claimed twice.

    Due rows are found in the delivery queue (``pending_events``, :class:`PendingEvent`),
    joined to their events for what delivery reads.

    On PostgreSQL the claim is the lock on the queue rows: ``SELECT ... FOR NO KEY UPDATE OF
    pending_events SKIP LOCKED`` in a transaction that stays open until the outcome is written,
    so concurrent workers take different rows and nothing is written to claim them. A worker
    that dies, or whose connection does, releases its rows at once (the server rolls the
    transaction back), and one that hangs loses them after ``lease_seconds``
    (``idle_in_transaction_session_timeout`` ends its session). Writing a lease instead wrote
    every row twice, each time with a new row version and entries in every index: the claim
    and the outcome cost the server 66.5 us of CPU per event with a lease, 38.5 us with the
    lock (``bench/claim_designs.py``, before the queue had a table of its own).

    On SQLite, whose writing transaction locks the whole database (holding it through a
    request would stop every webhook's insert), the claim writes a lease: one ``UPDATE ...
    WHERE id IN (SELECT ... LIMIT n) RETURNING``, committed at once. The writing statement
    holds the database's write lock from its start, so no other worker leases the same rows
    in between; a worker that dies leaves the lease to expire.

    Either way the longest due go first, in the order of the queue's claim index, so the
    LIMIT stops the index scan early, and the statement returns what delivery needs, so each
    row is read once.
    """
    return _claim(session, row.store_id, row.kind, settings, limit)


def _claim(
    session: Session, store_id: str, kind: str, settings: Settings, limit: int
) -> list[Claimed]:
    now = utcnow()
    size = min(limit, settings.batch_size)
    if holds_row_locks(session):
        timeout = int(settings.lease_seconds * 1000)
        session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {timeout}"))
        claim = (
            select(*CLAIMED_COLUMNS["postgresql"])
            .select_from(QUEUED_EVENTS)
            .where(due_events(store_id, kind, now))
            .order_by(QUEUE.c.next_attempt_at)
            .limit(size)
            .with_for_update(skip_locked=True, key_share=True, of=QUEUE)
        )
    else:
        chosen = (
            select(QUEUE.c.event_id)
            .select_from(QUEUED_EVENTS)
            .where(due_events(store_id, kind, now))
            .order_by(QUEUE.c.next_attempt_at)
            .limit(size)
        )
        columns = CLAIMED_COLUMNS["sqlite"]
        claim = _lease(EVENTS.c.id.in_(chosen), settings, now).returning(*columns)
    # Rows unpacked as tuples, in CLAIMED_COLUMNS' order: reading 500 rows' fields by name
    # cost more than the rest of the claim's Python.
    claimed = [
        Claimed(
            id_,
            wire.encode() if wire is not None else None,
            None if wire is not None else _event(payload, network),
            event_time,
            attempts,
            received_at,
            give_up_at,
        )
        for id_, wire, event_time, attempts, payload, network, received_at, give_up_at in (
            session.execute(claim).all()
        )
    ]
    if not holds_row_locks(session):
        session.commit()
    return sorted(claimed, key=lambda c: c.id)


# A row stored as sent needs only its ``wire``; on PostgreSQL the payload and the IP and user
# agent are read (as text, parsed by orjson) only for a row without one. SQLite 3.40's
# ``UPDATE … RETURNING`` gave NULL for such a CASE when the UPDATE's WHERE held a subquery on
# the same table (the lease claim), so there both are read as they are.
_WITHOUT_WIRE = EVENTS.c.wire.is_(None)
_ALWAYS = (EVENTS.c.id, EVENTS.c.wire, EVENTS.c.event_time, EVENTS.c.attempts)
_WHEN = (EVENTS.c.received_at, EVENTS.c.give_up_at)  # the claim unpacks them in this order
CLAIMED_COLUMNS = {
    "postgresql": (
        *_ALWAYS,
        case((_WITHOUT_WIRE, cast(EVENTS.c.payload, Text))).label("payload"),
        case((_WITHOUT_WIRE, cast(EVENTS.c.network, Text))).label("network"),
        *_WHEN,
    ),
    "sqlite": (
        *_ALWAYS,
        cast(EVENTS.c.payload, Text).label("payload"),
        cast(EVENTS.c.network, Text).label("network"),
        *_WHEN,
    ),
}


def _event(payload: str, network: str | None) -> ConversionEvent:
    """The event to send: its stored payload with the IP and user agent put back."""
    event = ConversionEvent.from_json(orjson.loads(payload))
    if network:
        event.user.update(orjson.loads(network))
    return event


def holds_row_locks(session: Session) -> bool:
    """Whether claims on this database are row locks held by the open transaction
    (PostgreSQL) rather than written leases (SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def _lease(which: ColumnElement[bool], settings: Settings, now: datetime) -> Update:
    """An UPDATE writing a new lease on the rows ``which`` selects."""
    return (
        update(EVENTS)
        .where(which)
        .values(
            lease_token=secrets.token_hex(8),
            lease_expires_at=now + timedelta(seconds=settings.lease_seconds),
        )
    )


def in_flight(session: Session, event_id: int) -> bool:
    """Whether a worker holds this outbox row now: a live lease, or on PostgreSQL a lock on
    its row in the delivery queue.

    Asking for the lock with SKIP LOCKED, on a connection of its own, finds one another
    transaction holds; if the row was free, the lock taken here is released at once (that
    connection's transaction is rolled back), and ``session`` is left as it was.
    """
    found = session.execute(
        select(EVENTS.c.lease_expires_at, QUEUE.c.event_id)
        .select_from(EVENTS.outerjoin(QUEUE, QUEUE.c.event_id == EVENTS.c.id))
        .where(EVENTS.c.id == event_id)
    ).first()
    if found is None:
        return False
    if found.lease_expires_at is not None and found.lease_expires_at > utcnow():
        return True
    if found.event_id is None or not holds_row_locks(session):
        return False
    ask = select(QUEUE.c.event_id).where(QUEUE.c.event_id == event_id)
    with session.get_bind().connect() as connection:
        free = connection.scalar(ask.with_for_update(skip_locked=True, key_share=True))
        connection.rollback()
    return free is None


def _send_batch(
    session: Session,
    row: StoreDestination,
    destination: Destination,
    config: DestinationConfig,
    http: requests.Session,
    batch: list[Claimed],
    services: Services,
    report: RunReport,
    pace: Pace,
    *,
    behind: RecordBehind | None = None,
) -> bool:
    """Send a claimed batch, and again whatever part of it an answer leaves unsettled;
    return True when its recording (and closing ``session``) went ``behind``.

    Under a lease (SQLite) every outcome is committed before the next request, so the
    database's write lock is never held through one. Under row locks (PostgreSQL) the
    transaction that claimed the batch stays open through the request and commits with its
    outcome; when an answer leaves part of the batch to send again (a rejected batch being
    halved), the rest is leased before that commit and the batch goes on under the lease.
    Either way nothing this session has written to the destination's row is uncommitted
    during a request: a token renewal during a send writes that row from its own session,
    which must not wait for ours. (A batch recorded behind may hold such a write on the helper
    thread; a renewal then waits for that commit, which waits for nothing of this thread's.)
    """
    locked = holds_row_locks(session)
    sendable, problems = _sendable(batch, destination, int(time.time()))
    report.failed += sum(map(len, problems.values()))
    for problem, ids in problems.items():
        _finish(session, ids, EventStatus.FAILED, problem, None, None, attempted=False)
    if not locked:
        session.commit()
    pending = [sendable] if sendable else []
    while pending and not (report.paused or report.cooldown_seconds):
        part = pending.pop(0)
        pace.wait()
        result = _send(session, row, destination, config, http, part, services, report)
        if locked and behind and not pending and result.outcome is Outcome.DELIVERED:
            behind.submit(partial(_record_and_close, session, row, part, result, services, report))
            return True
        pending[:0] = _settle(session, row, part, result, services, report)
        if locked and pending:
            rest = [claimed.id for part in pending for claimed in part]
            session.execute(_lease(_among(session, rest), services.settings, utcnow()))
            locked = False
        if not locked:
            session.commit()
    unsent = [claimed.id for part in pending for claimed in part]
    if unsent:  # the destination paused or asked to slow down: free them for later
        session.execute(update(EVENTS).where(_among(session, unsent)).values(**LEASE_CLEARED))
    session.commit()
    return False


def _sendable(
    batch: list[Claimed], destination: Destination, now: int
) -> tuple[list[Claimed], dict[str, list[int]]]:
    """The claimed events to send, and the ids of the others by their problem.

    A destination's timing problem is a window of event times (its contract), so when every
    row is stored as sent and the batch's oldest and newest events pass, the events between
    pass too and are not asked one by one.
    """
    if all(claimed.event is None for claimed in batch):
        times = [claimed.event_time for claimed in batch]
        if not any(destination.timing_problem(at, now) for at in (min(times), max(times))):
            return batch, {}
    sendable: list[Claimed] = []
    problems: dict[str, list[int]] = {}
    for claimed in batch:
        problem = (
            destination.problem(claimed.event, now)
            if claimed.event is not None
            else destination.timing_problem(claimed.event_time, now)
        )
        if problem:
            problems.setdefault(problem, []).append(claimed.id)
        else:
            sendable.append(claimed)
    return sendable, problems


def _element_of(claimed: Claimed, destination: Destination) -> bytes:
    """The claimed event as sent: stored so, or built from its rebuilt event."""
    if claimed.element is not None:
        return claimed.element
    assert claimed.event is not None  # a row without a stored element has its payload read
    return orjson.dumps(destination.event_element(claimed.event))


def _record_and_close(
    session: Session,
    row: StoreDestination,
    part: list[Claimed],
    result: SendResult,
    services: Services,
    report: RunReport,
) -> None:
    """Record a delivered batch and commit, releasing its row locks (:class:`RecordBehind`)."""
    try:
        _record(session, row, part, result, services, report)
        session.commit()
    finally:
        session.close()


def _send(
    session: Session,
    row: StoreDestination,
    destination: Destination,
    config: DestinationConfig,
    http: requests.Session,
    part: list[Claimed],
    services: Services,
    report: RunReport,
) -> SendResult:
    elements = [_element_of(claimed, destination) for claimed in part]
    started, clock = utcnow(), time.perf_counter()
    result = destination.send_elements(http, config, elements)
    # E.g. an expired OAuth token: the destination renews it and sends the batch once more.
    result = destination.after_send(
        services,
        row,
        config,
        result,
        lambda renewed: destination.send_elements(http, renewed, elements),
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


def _settle(
    session: Session,
    row: StoreDestination,
    part: list[Claimed],
    result: SendResult,
    services: Services,
    report: RunReport,
) -> list[list[Claimed]]:
    """Record what one answer settles; return the parts of the batch to send again.

    A rejected batch (nothing was taken) or a partly accepted one (some events were) fails
    only the events the platform names, with its words for each: the rest of a rejected batch
    is sent again at once, the rest of a partial one is delivered. When it names none, the
    batch is halved until the refused events stand alone (a handful of requests even for one
    bad event in 1,000), and a lone event refused without a name fails with the message.
    Sending again events a partial answer took is safe: ad platforms drop an ``event_id``
    they already have (TikTok's window is 48 hours).
    """
    if result.outcome not in (Outcome.REJECTED, Outcome.PARTIAL):
        _record(session, row, part, result, services, report)
        return []
    refused = {i: words for i, words in result.refused.items() if 0 <= i < len(part)}
    if not refused:
        if len(part) > 1:
            middle = len(part) // 2
            return [part[:middle], part[middle:]]
        refused = {0: result.message}  # a lone event: it is the one refused
    _fail_refused(session, [(part[i], words) for i, words in refused.items()], result, report)
    rest = [claimed for i, claimed in enumerate(part) if i not in refused]
    if rest and result.outcome is Outcome.PARTIAL:
        _record(session, row, rest, replace(result, outcome=Outcome.DELIVERED), services, report)
        return []
    return [rest] if rest else []


def _fail_refused(
    session: Session, refused: list[tuple[Claimed, str]], result: SendResult, report: RunReport
) -> None:
    """Fail each refused event with what the platform said about it."""
    by_words: dict[str, list[int]] = {}
    for claimed, words in refused:
        by_words.setdefault(words, []).append(claimed.id)
    for words, ids in by_words.items():
        _finish(session, ids, EventStatus.FAILED, words, result.code, result.request_id)
    report.failed += len(refused)


def _record(
    session: Session,
    row: StoreDestination,
    part: list[Claimed],
    result: SendResult,
    services: Services,
    report: RunReport,
) -> None:
    """Write a delivered, pause or retry outcome onto its events (and the destination)."""
    ids = [claimed.id for claimed in part]
    code, request_id = result.code, result.request_id
    if result.outcome is Outcome.DELIVERED:
        now = utcnow()
        _finish(
            session,
            ids,
            EventStatus.DELIVERED,
            None,
            code,
            request_id,
            delivered_at=now,
        )
        latency = services.metrics.latency.labels(row.kind)
        for claimed in part:
            latency.observe((now - claimed.received_at).total_seconds())
        row.last_success_at = now
        report.delivered += len(part)
    elif result.outcome is Outcome.PAUSE:
        row.paused_reason = _pause_reason(result)
        row.paused_at = utcnow()
        _release(session, result, {claimed.id: utcnow() for claimed in part})
        report.paused = True
        logger.warning(
            "delivery.paused destination=%s code=%s http=%s",
            row.id,
            result.code,
            result.http_status,
        )
    else:
        _retry_or_give_up(session, row, part, result, services, report)
        # The destination is throttling or failing: let it recover before the next request.
        base = services.settings.retry_base_seconds
        report.cooldown_seconds = max(result.retry_after or 0.0, base)


def _retry_or_give_up(
    session: Session,
    row: StoreDestination,
    part: list[Claimed],
    result: SendResult,
    services: Services,
    report: RunReport,
) -> None:
    """Events past their horizon are dead; the others come back after a backoff each."""
    horizon = timedelta(seconds=services.settings.retry_horizon_seconds)
    base = services.settings.retry_base_seconds
    dead: list[int] = []
    retry_at: dict[int, datetime] = {}
    for claimed in part:
        if utcnow() > (claimed.give_up_at or claimed.received_at + horizon):
            dead.append(claimed.id)
        else:
            delay = backoff_seconds(claimed.attempts + 1, result.retry_after, base)
            retry_at[claimed.id] = utcnow() + timedelta(seconds=delay)
    if dead:
        _finish(session, dead, EventStatus.DEAD, _retry_message(result), result.code, None)
        report.dead += len(dead)
    if retry_at:
        _release(session, result, retry_at)
        services.metrics.retries.labels(row.kind).inc(len(retry_at))
        report.retried += len(retry_at)


def backoff_seconds(attempts: int, retry_after: float | None, base: float) -> float:
    """Exponential backoff with jitter, at least what the platform asked us to wait.

    "Equal jitter": half the exponential delay is fixed and half random, so a crowd of events
    failed together does not come back together, yet none retries absurdly early.
    """
    ceiling = min(RETRY_CAP_SECONDS, base * 2 ** max(0, attempts - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


def _finish(
    session: Session,
    ids: list[int],
    status: EventStatus,
    error: str | None,
    code: int | None,
    request_id: str | None,
    *,
    attempted: bool = True,
    delivered_at: datetime | None = None,
) -> None:
    """Give these events their final status, in one UPDATE, and take them out of the queue.

    ``attempted`` counts a request made for them (not so for an event refused before
    sending); a request id, when the platform gave one, replaces the one they had. A delivered
    event is never sent again, so the shopper's IP and user agent have done their work: the
    same UPDATE drops them (its ``signals`` still say the event carried them). Failed and dead
    events keep them for a replay; ``connector.retention`` drops them later.
    """
    values: dict[str, Any] = {
        "status": status,
        "last_error": error,
        "last_code": code,
        **LEASE_CLEARED,
    }
    if attempted:
        values["attempts"] = EVENTS.c.attempts + 1
    if request_id:
        values["request_id"] = request_id
    if delivered_at is not None:
        values["delivered_at"] = delivered_at
        values["network"] = None
        values["wire"] = None
    session.execute(update(EVENTS).where(_among(session, ids)).values(**values))
    session.execute(delete(QUEUE).where(_among(session, ids, QUEUE.c.event_id)))


def _among(
    session: Session, ids: list[int], column: ColumnElement[int] = EVENTS.c.id
) -> ColumnElement[bool]:
    """``column`` (an event's id) is one of ``ids``: on PostgreSQL ``= ANY(array)``, one
    parameter, so a batch of 500 is not 500 placeholders to render and parse for every
    statement (a tenth of the worker's CPU per event, ``bench/profile_delivery.py``); SQLite
    has no arrays: ``IN``."""
    if holds_row_locks(session):
        return column == any_(cast(literal(_array_text(ids)), ARRAY(BigInteger)))
    return column.in_(ids)


def _array_text(ids: list[int]) -> str:
    """PostgreSQL's text form of an array of ids, ``{1,2,3}``: a join in C, where psycopg's
    list dumper walked the 500 ids in Python (about 4 ms a batch under cProfile)."""
    return "{" + ",".join(map(str, ids)) + "}"


def _release(session: Session, result: SendResult, retry_at: dict[int, datetime]) -> None:
    """Put attempted events back to pending, each due at its own time (one executemany);
    the trigger that keeps the queue moves their queue rows along."""
    statement = (
        update(EVENTS)
        .where(EVENTS.c.id == bindparam("claimed_id"))
        .values(
            attempts=EVENTS.c.attempts + 1,
            last_error=_retry_message(result),
            last_code=result.code,
            next_attempt_at=bindparam("due_at"),
            **LEASE_CLEARED,
        )
    )
    session.execute(
        statement, [{"claimed_id": id_, "due_at": when} for id_, when in retry_at.items()]
    )


def _retry_message(result: SendResult) -> str:
    return f"{result.message}{_code(result)}"


def _pause_reason(result: SendResult) -> str:
    return f"{result.message}{_code(result)}. {result.fix or 'Check the destination settings.'}"


def _code(result: SendResult) -> str:
    return f" (code {result.code})" if result.code is not None else ""


def destination_config(
    services: Services,
    row: StoreDestination,
    destination: Destination,
    *,
    validate_only: bool = False,
) -> DestinationConfig:
    """What one run sends with: the row's settings, the destination's own environment
    variables (its API base first) and the token, renewed first if it is about to expire."""
    env = {var.name: services.settings.env(var.name) for var in destination.env}
    return DestinationConfig(
        api_base=env[destination.env[0].name] or "",
        account_id=row.account_id,
        access_token=destination.access_token(services, row),
        test_event_code=row.test_event_code,
        timeout=services.settings.http_timeout_seconds,
        settings=dict(row.settings or {}),
        env=env,
        validate_only=validate_only,
    )
