"""RQ jobs: coalesced delivery per destination, and the sweep that makes Redis disposable.

A webhook asks for "deliver destination D" rather than "deliver event E": while such a job is
waiting, more requests add nothing, so under load one job drains many events in batches, and
a lone event still leaves at once. The database is the truth; :func:`sweep` re-requests every
destination with due rows, which recovers from a flushed Redis, a lost job or a dead worker.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from redis.exceptions import RedisError
from sqlalchemy import Select, exists, select

from connector.delivery import deliver_pending
from connector.models import StoreDestination, utcnow
from connector.queue import QUEUE, QUEUED_EVENTS, due_events
from connector.services import Services, build_services

logger = logging.getLogger(__name__)

WANTED_KEY = "connector:delivery-wanted:{}"
WANTED_TTL_SECONDS = 60
DELIVERING_KEY = "connector:delivering:{}"
COOLDOWN_KEY = "connector:cooldown:{}"

_services: Services | None = None


def use_services(services: Services) -> None:
    """Give jobs run in this process the services the worker built at start."""
    global _services
    _services = services


def current_services() -> Services:
    """The worker's services, built from the environment if the worker set none."""
    global _services
    if _services is None:
        from connector.config import load_settings

        _services = build_services(load_settings())
    return _services


def request_delivery(
    services: Services, destination_id: int, *, trust_flag_for: float | None = None
) -> bool:
    """Enqueue a delivery job for a destination unless one is already waiting.

    ``trust_flag_for`` (seconds; the sweep's interval) is how long the sweep believes the
    "wanted" flag: a job normally starts within moments, so an older flag means its job was
    taken by a worker that died before starting it, and a new job is enqueued rather than
    waiting out the flag's minute. A second job for the same destination is harmless: it
    finds the lock taken or nothing due.

    Returns False when Redis cannot be reached: the caller has stored the events already and
    the sweep will request delivery once Redis is back, so this is never an error to the store.
    """
    try:
        key = WANTED_KEY.format(destination_id)
        wanted = services.redis.set(key, 1, nx=True, ex=WANTED_TTL_SECONDS)
        if not wanted and trust_flag_for is not None:
            age = WANTED_TTL_SECONDS - max(services.redis.pttl(key), 0) / 1000
            if age > trust_flag_for:
                wanted = services.redis.set(key, 1, ex=WANTED_TTL_SECONDS)
        if wanted:
            _enqueue(services, destination_id)
        return True
    except RedisError as exc:
        logger.warning(
            "queue.unavailable destination=%s error=%s", destination_id, type(exc).__name__
        )
        return False


def request_deliveries(services: Services, destination_ids: Collection[int]) -> bool:
    """:func:`request_delivery` for several destinations (one order for each of a store's
    destinations) in one Redis round trip: the "wanted" flags are set together, and a job is
    enqueued only for each destination whose flag was not set yet.

    Returns False when Redis cannot be reached (the sweep requests delivery later).
    """
    ids = list(destination_ids)
    if len(ids) <= 1:
        return all(request_delivery(services, destination_id) for destination_id in ids)
    try:
        pipeline = services.redis.pipeline(transaction=False)
        for destination_id in ids:
            pipeline.set(WANTED_KEY.format(destination_id), 1, nx=True, ex=WANTED_TTL_SECONDS)
        for destination_id, wanted in zip(ids, pipeline.execute(), strict=True):
            if wanted:
                _enqueue(services, destination_id)
        return True
    except RedisError as exc:
        logger.warning("queue.unavailable destinations=%s error=%s", ids, type(exc).__name__)
        return False


def _enqueue(services: Services, destination_id: int) -> None:
    services.queue.enqueue_call(
        deliver_destination,
        args=(destination_id,),
        result_ttl=0,
        failure_ttl=24 * 3600,
        description=f"deliver destination {destination_id}",
    )


def deliver_destination(destination_id: int) -> dict[str, object]:
    """The RQ job: drain one destination's due events, one worker at a time.

    The "wanted" flag is cleared first, so an event stored while this job runs requests a new
    job instead of being left behind. Only one worker delivers for a destination at once (a
    Redis lock), which keeps a store's burst to one connection's pace and within TikTok's
    rate limits while other destinations' jobs run beside it. After a throttling or outage
    answer the destination cools down before anything else is sent to it. Whoever releases
    the lock looks once more for due events, so a job that found the lock taken loses nothing.
    """
    services = current_services()
    redis = services.redis
    redis.delete(WANTED_KEY.format(destination_id))
    if redis.exists(COOLDOWN_KEY.format(destination_id)):
        return {"skipped": "cooling down"}
    lock = redis.lock(
        DELIVERING_KEY.format(destination_id), timeout=services.settings.lease_seconds
    )
    if not lock.acquire(blocking=False):
        return {"skipped": "another worker is delivering"}
    try:
        report = deliver_pending(services, destination_id)
    finally:
        lock.release()
    if report.cooldown_seconds:
        redis.set(
            COOLDOWN_KEY.format(destination_id), 1, px=max(1, int(report.cooldown_seconds * 1000))
        )
    elif not report.paused and has_due_events(services, destination_id):
        request_delivery(services, destination_id)
    return vars(report)


def has_due_events(services: Services, destination_id: int) -> bool:
    """Whether the destination has pending rows ready to send now."""
    with services.db.session() as session:
        query = _due_destinations().where(StoreDestination.id == destination_id)
        return session.scalar(query) is not None


def sweep(services: Services) -> int:
    """Request delivery for every active destination with due events; returns how many.

    This is what makes Redis disposable: retries that came due, jobs lost with a flushed
    Redis and batches a dead worker left leased are all found here, in the database.
    """
    with services.db.session() as session:
        due = session.scalars(_due_destinations()).all()
    for destination_id in due:
        request_delivery(
            services, destination_id, trust_flag_for=services.settings.sweep_interval_seconds
        )
    return len(due)


def _due_destinations() -> Select[tuple[int]]:
    """Ids of unpaused destinations that have at least one event ready to send."""
    ready = (
        select(QUEUE.c.event_id)
        .select_from(QUEUED_EVENTS)
        .where(due_events(StoreDestination.store_id, StoreDestination.kind, utcnow()))
    )
    return select(StoreDestination.id).where(
        StoreDestination.paused_reason.is_(None), exists(ready)
    )
