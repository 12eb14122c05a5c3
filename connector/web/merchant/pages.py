"""Status, settings, test event and delivery log: what a merchant configures and checks.

The forms post back to the page they are on and the page answers with what happened (saved,
refused and why, TikTok's answer), so a shop owner never needs the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Response, current_app, g, redirect, request, url_for
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.jobs import request_delivery
from connector.mapping import (
    CONTENT_ID_SOURCES,
    ORDER_TRIGGERS,
    PURCHASE_EVENT_NAMES,
    VALUE_BASES,
    EventOptions,
)
from connector.models import Destination, Event, EventStatus, utcnow
from connector.reconcile import ReconcileStatus, reconciliation_status
from connector.replay import REPLAYABLE, replay_events
from connector.stores import StoreError, find_destination, set_destination
from connector.testevent import send_test_event
from connector.unreadable import count_unreadable, reprocess, unreadable_records
from connector.web import PLATFORMS_KEY, services
from connector.web.merchant import blueprint, render_merchant

LOG_PAGE_SIZE = 50
STATUSES = tuple(EventStatus)
UNREADABLE = "unreadable"  # the Delivery log's filter for kept webhooks, beside the statuses
# What each option means, in the words the settings form shows.
OPTION_LABELS = {
    "purchase_event": {
        "CompletePayment": "CompletePayment (TikTok's usual purchase event)",
        "Purchase": "Purchase (TikTok's newer name)",
        "PlaceAnOrder": "PlaceAnOrder",
    },
    "order_trigger": {"created": "when the order is placed", "paid": "when the order is paid"},
    "value_basis": {"total": "order total (with tax and shipping)", "subtotal": "subtotal"},
    "content_id": {"variant": "variant id", "sku": "SKU", "product": "product id"},
}


@dataclass(frozen=True)
class StoreStatus:
    """The numbers on the status page."""

    destination: Destination | None
    pending: int
    oldest_pending_seconds: float | None
    counts_24h: dict[str, int]


# -- status ------------------------------------------------------------------------------------


@blueprint.get("/")
def status(store_id: str) -> str:
    """Is the connector doing its job for this store, and if not, what to do."""
    return render_merchant(
        "merchant/status.html",
        status=_store_status(store_id),
        reconciliation=_reconciliation(store_id),
        reconcile_every=services().settings.reconcile_interval_seconds,
        platform_notices=_platform_notices(store_id),
        unreadable=count_unreadable(services(), store_id),
    )


def _reconciliation(store_id: str) -> ReconcileStatus | None:
    """What reading orders back from the store recovered; None when its platform cannot."""
    platform = current_app.extensions[PLATFORMS_KEY].get(g.store.platform)
    if platform is None or platform.fetch_orders is None:
        return None
    with services().db.session() as session:
        return reconciliation_status(session, store_id)


def _store_status(store_id: str) -> StoreStatus:
    since = utcnow() - timedelta(hours=24)
    with services().db.session() as session:
        destination = _tiktok(session, store_id)
        pending, oldest = session.execute(
            select(func.count(), func.min(Event.received_at)).where(
                Event.store_id == store_id, Event.status == EventStatus.PENDING
            )
        ).one()
        counts = session.execute(
            select(Event.status, func.count())
            .where(Event.store_id == store_id, Event.received_at >= since)
            .group_by(Event.status)
        ).all()
    return StoreStatus(
        destination=destination,
        pending=pending,
        oldest_pending_seconds=(utcnow() - oldest).total_seconds() if oldest else None,
        counts_24h={status: count for status, count in counts},
    )


# -- settings ----------------------------------------------------------------------------------


@blueprint.get("/settings")
def settings(store_id: str) -> str:
    return _settings_page(store_id)


@blueprint.post("/settings")
def save_settings(store_id: str) -> str | tuple[str, int]:
    """Save the TikTok connection and event options; a new token un-pauses delivery."""
    form = request.form
    with services().db.session() as session:
        current = _tiktok(session, store_id)
    token = form.get("access_token", "").strip()
    if not token and current is not None:
        token = services().cipher.decrypt(current.access_token_encrypted)
    pixel_code = form.get("pixel_code", "").strip()
    problem = _connection_problem(pixel_code, token)
    if problem:
        return _settings_page(store_id, error=problem), 400
    options = {
        "purchase_event": form.get("purchase_event", ""),
        "order_trigger": form.get("order_trigger", ""),
        "value_basis": form.get("value_basis", ""),
        "content_id": form.get("content_id", ""),
        "send_initiate_checkout": form.get("send_initiate_checkout") == "on",
        "send_test_orders": form.get("send_test_orders") == "on",
        "limited_data_use": form.get("limited_data_use") == "on",
    }
    try:
        destination = set_destination(
            services(),
            store_id,
            kind="tiktok",
            pixel_code=pixel_code,
            access_token=token,
            test_event_code=form.get("test_event_code", "").strip() or None,
            options=options,
        )
    except (StoreError, ValueError, TypeError) as exc:
        return _settings_page(store_id, error=str(exc)), 400
    request_delivery(services(), destination.id)
    return _settings_page(store_id, saved=True)


def _connection_problem(pixel_code: str, token: str) -> str | None:
    if not pixel_code:
        return "Enter your TikTok pixel code (TikTok Events Manager > Data sources > your pixel)."
    if not token:
        return (
            "Enter the Events API access token (TikTok Events Manager > your pixel > Settings "
            "> Generate access token)."
        )
    return None


def _settings_page(
    store_id: str, *, error: str | None = None, saved: bool = False, test: dict | None = None
) -> str:
    with services().db.session() as session:
        destination = _tiktok(session, store_id)
    options = EventOptions.from_json(destination.options if destination else None)
    return render_merchant(
        "merchant/settings.html",
        destination=destination,
        options=options,
        choices={
            "purchase_event": PURCHASE_EVENT_NAMES,
            "order_trigger": ORDER_TRIGGERS,
            "value_basis": VALUE_BASES,
            "content_id": CONTENT_ID_SOURCES,
        },
        labels=OPTION_LABELS,
        connect_url=_connect_url(store_id),
        platform_panel=_platform_panel(store_id),
        error=error,
        saved=saved,
        test=test,
    )


def _connect_url(store_id: str) -> str | None:
    """The "Connect with TikTok" link when the TikTok destination offers OAuth and it is set up."""
    settings = services().settings
    endpoint = "tiktok_connect.start"
    if endpoint not in current_app.view_functions:
        return None
    if not (settings.tiktok_app_id and settings.tiktok_app_secret):
        return None
    return url_for(endpoint, store_id=store_id)


def _platform_notices(store_id: str) -> list[str]:
    """What the store's platform says the merchant must know (plain sentences)."""
    platform = current_app.extensions[PLATFORMS_KEY].get(g.store.platform)
    if platform is None or platform.status_notices is None:
        return []
    return platform.status_notices(services(), store_id)


def _platform_panel(store_id: str) -> Markup | None:
    """What the store's platform asks the merchant to do in their store (its own HTML)."""
    platform = current_app.extensions[PLATFORMS_KEY].get(g.store.platform)
    if platform is None or platform.settings_panel is None:
        return None
    return Markup(platform.settings_panel(services(), store_id))


@blueprint.post("/test-event")
def test_event(store_id: str) -> str | tuple[str, int]:
    """Send a test purchase through the whole pipeline and show TikTok's answer."""
    try:
        outcome = send_test_event(services(), store_id)
    except StoreError as exc:
        return _settings_page(store_id, error=str(exc)), 400
    return _settings_page(store_id, test=outcome)


# -- delivery log ------------------------------------------------------------------------------


@blueprint.get("/log")
def delivery_log(store_id: str) -> str:
    """Recent events, newest first, filtered by status and event name, fifty a page."""
    chosen_status = request.args.get("status", "")
    chosen_event = request.args.get("event", "")
    before = request.args.get("before", type=int)
    query = select(Event).where(Event.store_id == store_id)
    if chosen_status == UNREADABLE:
        query = query.where(False)  # kept webhooks are listed apart; they are not events yet
    elif chosen_status in STATUSES:
        query = query.where(Event.status == chosen_status)
    if chosen_event:
        query = query.where(Event.event_name == chosen_event)
    if before:
        query = query.where(Event.id < before)
    with services().db.session() as session:
        events = session.scalars(query.order_by(Event.id.desc()).limit(LOG_PAGE_SIZE + 1)).all()
        names = session.scalars(
            select(Event.event_name).where(Event.store_id == store_id).distinct()
        ).all()
        replayable = session.scalar(
            select(func.count()).where(Event.store_id == store_id, Event.status.in_(REPLAYABLE))
        )
    more = len(events) > LOG_PAGE_SIZE
    events = events[:LOG_PAGE_SIZE]
    return render_merchant(
        "merchant/log.html",
        events=events,
        unreadable=unreadable_records(services(), store_id=store_id, limit=LOG_PAGE_SIZE),
        reprocessed=request.args.get("reprocessed", type=int),
        unreadable_days=services().settings.unreadable_retention_days,
        statuses=(*STATUSES, UNREADABLE),
        event_names=sorted(names),
        chosen_status=chosen_status,
        chosen_event=chosen_event,
        next_before=events[-1].id if more else None,
        replayable=replayable,
        replayed=request.args.get("replayed", type=int),
        now=utcnow(),
    )


@blueprint.post("/log/replay")
def replay(store_id: str) -> Response:
    """Put one failed or dead event, or all of them, back in the queue."""
    ids = [int(value) for value in request.form.getlist("event") if value.isdigit()]
    everything = request.form.get("all") == "yes"
    count = 0
    if ids or everything:  # no ids and no "all" means nothing was chosen, not everything
        count = replay_events(services(), ids=ids, status=None, store_id=store_id)
    return redirect(url_for("merchant.delivery_log", store_id=store_id, replayed=count), code=303)


@blueprint.post("/log/reprocess")
def reprocess_kept(store_id: str) -> Response:
    """Read this store's kept unreadable webhooks again with the code deployed now."""
    report = reprocess(services(), store_id=store_id)
    return redirect(
        url_for("merchant.delivery_log", store_id=store_id, reprocessed=report.recovered),
        code=303,
    )


def _tiktok(session: Session, store_id: str) -> Destination | None:
    return find_destination(session, store_id, "tiktok")


def age(seconds: float | None) -> str:
    """Seconds as a short human duration ("3 min", "2 h")."""
    if seconds is None:
        return "none"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def since(moment: datetime | None) -> str:
    """How long ago a stored (naive UTC) time was."""
    return "never" if moment is None else age((utcnow() - moment).total_seconds()) + " ago"


blueprint.add_app_template_filter(age)
blueprint.add_app_template_filter(since)
