"""Ask a platform, after the fact, how it processed the requests it accepted.

Some platforms answer a request before processing it: Google's Data Manager API returns a
``requestId`` at once and reports later, through ``requestStatus:retrieve``, how many events it
recorded and which it could not (its diagnostics guide,
https://developers.google.com/data-manager/api/devguides/diagnostics, advises asking some
minutes later and again, with backoff, until the status is final). A destination that offers
``follow_up`` is asked about each of its delivered requests from :data:`FIRST_ASK_AFTER` on,
every :data:`ASK_EVERY`, until its answer is final or :data:`GIVE_UP_AFTER` passes; the answer
is kept on the attempt and shown beside the events of that request in the delivery log.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select

from connector.delivery import destination_config
from connector.destinations import Outcome
from connector.models import Attempt, StoreDestination, utcnow
from connector.plugins import PeriodicTask
from connector.services import Services

logger = logging.getLogger(__name__)

FIRST_ASK_AFTER = timedelta(minutes=15)
ASK_EVERY = timedelta(minutes=30)
GIVE_UP_AFTER = timedelta(days=2)
BATCH = 200
RUN_EVERY_SECONDS = 300.0


def follow_up_task() -> PeriodicTask:
    """The worker's periodic run."""
    return PeriodicTask("follow-up", RUN_EVERY_SECONDS, follow_up_requests)


def follow_up_requests(services: Services) -> int:
    """Ask about the delivered requests that are due; returns how many were asked about."""
    kinds = [kind for kind, api in services.destinations.items() if hasattr(api, "follow_up")]
    if not kinds:
        return 0
    now = utcnow()
    with services.db.session() as session:
        due = session.execute(
            select(Attempt, StoreDestination)
            .join(StoreDestination, StoreDestination.id == Attempt.destination_id)
            .where(
                StoreDestination.kind.in_(kinds),
                StoreDestination.paused_reason.is_(None),
                Attempt.outcome == Outcome.DELIVERED.value,
                Attempt.request_id.is_not(None),
                or_(Attempt.follow_up_done.is_(None), Attempt.follow_up_done.is_(False)),
                Attempt.started_at <= now - FIRST_ASK_AFTER,
                Attempt.started_at >= now - GIVE_UP_AFTER,
                or_(Attempt.followed_up_at.is_(None), Attempt.followed_up_at <= now - ASK_EVERY),
            )
            .order_by(Attempt.id)
            .limit(BATCH)
        ).all()
        for attempt, row in due:
            api = services.destinations[row.kind]
            config = destination_config(services, row, api)
            answer = api.follow_up(services.http, config, attempt.request_id)
            attempt.follow_up = answer.message[:1000]
            attempt.follow_up_done = answer.done
            attempt.followed_up_at = utcnow()
            session.commit()  # each answer kept at once: the next may take a while
            logger.info(
                "followup.asked destination=%s request_id=%s done=%s",
                row.id,
                attempt.request_id,
                answer.done,
            )
    return len(due)
