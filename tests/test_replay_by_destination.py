"""Replaying one destination's failed events leaves every other destination's alone: the
Delivery log's "Replay all" form filtered to one destination, and
``connector events replay --status failed --destination KIND``.

The store has TikTok and Meta, and one order failed at both: after the merchant fixed Meta's
cause, only Meta's copy goes back in the queue; TikTok's stays failed until its own cause is
fixed (replaying it unfixed would only fail it again).
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, update

from connector.models import EventStatus, OutboxEvent
from connector.pipeline import record_events
from tests.support import connect_meta, connect_tiktok, invoke_connector, log_in, make_order

pytestmark = pytest.mark.postgres

ORDER = "820982911946154508"


@pytest.fixture
def failed_at_both(services, shopify_store) -> str:  # type: ignore[no-untyped-def]
    """The store, with one order recorded for TikTok and Meta and failed at each."""
    connect_tiktok(services, shopify_store)
    connect_meta(services, shopify_store)
    record_events(services, shopify_store, "orders/create", make_order(ORDER))
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(status=EventStatus.FAILED, last_error="refused"))
        session.commit()
    assert statuses(services) == {"tiktok": "failed", "meta": "failed"}
    return shopify_store


def statuses(services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        rows = session.execute(select(OutboxEvent.destination, OutboxEvent.status)).all()
    return dict(rows)


def form_fields(page: str, form_id: str) -> dict[str, str]:
    """The hidden fields of one form of a page, as a browser would submit them."""
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.DOTALL)
    assert form, f"the page has no form #{form_id}"
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(0))
    return dict(fields)


def test_the_logs_replay_all_for_one_destination_replays_only_its_events(
    client, services, failed_at_both
):
    store_id = failed_at_both
    log_in(client, services, store_id)
    page = client.get(f"/settings/{store_id}/log?destination=meta").get_data(as_text=True)
    assert "1 failed or dead event." in page  # Meta's, not TikTok's as well
    fields = form_fields(page, "replay-all")
    assert (fields["all"], fields["destination"]) == ("yes", "meta")
    answer = client.post(f"/settings/{store_id}/log/replay", data=fields)
    assert answer.status_code == 303
    assert "replayed=1" in answer.headers["Location"]
    assert "destination=meta" in answer.headers["Location"]
    assert statuses(services) == {"tiktok": "failed", "meta": "pending"}


def test_events_replay_by_destination_replays_only_its_events(settings, services, failed_at_both):
    result = invoke_connector(
        settings, "events", "replay", "--status", "failed", "--destination", "meta"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"replayed": 1}
    assert statuses(services) == {"tiktok": "failed", "meta": "pending"}
    with services.db.session() as session:
        meta = session.scalar(select(OutboxEvent).where(OutboxEvent.destination == "meta"))
    assert meta.event_id == ORDER and meta.next_attempt_at is not None
