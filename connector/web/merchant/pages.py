"""Status, settings, test event and delivery log: what a merchant configures and checks.

The forms post back to the page they are on and the page answers with what happened (saved,
refused and why, the platform's answer), so a shop owner never needs the command line. The
settings page has one card per destination, drawn from the destination's own fields
(``Destination.fields``), so a new ad platform brings its card with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Response, abort, current_app, g, redirect, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import func, select

from connector.destinations import Destination
from connector.jobs import request_delivery
from connector.mapping import CONTENT_ID_SOURCES, ORDER_TRIGGERS, VALUE_BASES, EventOptions
from connector.models import (
    Attempt,
    EventStatus,
    OutboxEvent,
    PixelReceipt,
    StoreDestination,
    utcnow,
)
from connector.queue import waiting
from connector.reconcile import ReconcileStatus, reconciliation_status
from connector.recovered import (
    BROWSER_OUTCOMES,
    DEFAULT_DAYS,
    DEFAULT_PIXEL,
    Ledger,
    browser_outcome,
    headline,
    ledger,
    money,
    outcome_is,
    percent,
    receipt_purchases,
    with_receipts,
)
from connector.replay import REPLAYABLE, replay_events
from connector.stores import StoreError, find_destination, remove_destination, set_destination
from connector.testevent import send_test_event
from connector.unreadable import count_unreadable, reprocess, unreadable_records
from connector.web import PLATFORMS_KEY, services
from connector.web.merchant import blueprint, render_merchant

LOG_PAGE_SIZE = 50
STATUSES = tuple(EventStatus)
UNREADABLE = "unreadable"  # the Delivery log's filter for kept webhooks, beside the statuses
# What each option means, in the words the settings form shows.
OPTION_LABELS = {
    "order_trigger": {"created": "when the order is placed", "paid": "when the order is paid"},
    "value_basis": {"total": "order total (with tax and shipping)", "subtotal": "subtotal"},
    "content_id": {"variant": "variant id", "sku": "SKU", "product": "product id"},
}


@dataclass(frozen=True)
class DestinationCard:
    """One destination on the settings and status pages: the platform's code, the store's
    row for it (None when not connected) and the options in force."""

    api: Destination
    row: StoreDestination | None
    options: EventOptions
    connect_url: str | None = None

    @property
    def kind(self) -> str:
        return self.api.kind


@dataclass(frozen=True)
class StoreStatus:
    """The numbers on the status page."""

    destinations: tuple[DestinationCard, ...]
    pending: int
    oldest_pending_seconds: float | None
    counts_24h: dict[str, int]


# -- status ------------------------------------------------------------------------------------


@blueprint.get("/")
def status(store_id: str) -> str:
    """Is the connector doing its job for this store, and if not, what to do."""
    status = _store_status(store_id)
    recovered = _ledger(store_id, status)
    return render_merchant(
        "merchant/status.html",
        ledger=recovered,
        ledger_headline=headline(recovered) if recovered else None,
        status=status,
        reconciliation=_reconciliation(store_id),
        reconcile_every=services().settings.reconcile_interval_seconds,
        platform_notices=_platform_notices(store_id),
        unreadable=count_unreadable(services(), store_id),
    )


def _ledger(store_id: str, status: StoreStatus) -> Ledger | None:
    """The recovered-conversions ledger of the last 30 days (connector.recovered); None when
    the receipt-bearing destination is neither connected nor ever was sent a purchase."""
    if DEFAULT_PIXEL not in services().destinations:
        return None
    platform = current_app.extensions[PLATFORMS_KEY].get(g.store.platform)
    found = ledger(services(), store_id, DEFAULT_DAYS, platform=platform)
    connected = any(card.kind == DEFAULT_PIXEL for card in status.destinations)
    return found if connected or found.purchases else None


def _reconciliation(store_id: str) -> ReconcileStatus | None:
    """What reading orders back from the store recovered; None when its platform cannot."""
    platform = current_app.extensions[PLATFORMS_KEY].get(g.store.platform)
    if platform is None or platform.fetch_orders is None:
        return None
    with services().db.session() as session:
        return reconciliation_status(session, store_id)


def _store_status(store_id: str) -> StoreStatus:
    since = utcnow() - timedelta(hours=24)
    cards = _cards(store_id)
    with services().db.session() as session:
        pending, oldest = session.execute(waiting(store_id)).one()
        counts = session.execute(
            select(OutboxEvent.status, func.count())
            .where(OutboxEvent.store_id == store_id, OutboxEvent.received_at >= since)
            .group_by(OutboxEvent.status)
        ).all()
    return StoreStatus(
        destinations=tuple(card for card in cards if card.row is not None),
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
    """Save one destination's connection and event options (the form's ``kind``); new
    credentials un-pause its delivery."""
    form = request.form
    api = _destination_api(form.get("kind") or _default_kind())
    current = _row(store_id, api.kind)
    values = {}
    for field in api.fields:
        value = form.get(field.name, "").strip()
        if field.secret and not value and current is not None:
            continue  # an empty secret keeps the stored one
        values[field.name] = value
    options: dict[str, object] = {
        "purchase_event": form.get("purchase_event") or None,
        "order_trigger": form.get("order_trigger", ""),
        "value_basis": form.get("value_basis", ""),
        "content_id": form.get("content_id", ""),
        "send_initiate_checkout": form.get("send_initiate_checkout") == "on",
        "send_test_orders": form.get("send_test_orders") == "on",
        "limited_data_use": form.get("limited_data_use") == "on",
    }
    try:
        destination = set_destination(
            services(), store_id, kind=api.kind, values=values, options=options
        )
    except (StoreError, ValueError, TypeError) as exc:
        return _settings_page(store_id, error=str(exc), kind=api.kind), 400
    request_delivery(services(), destination.id)
    return _settings_page(store_id, saved=api.kind)


@blueprint.post("/settings/remove")
def remove_settings(store_id: str) -> str:
    """Disconnect one destination: nothing more is sent to it, and its events and log go."""
    api = _destination_api(request.form.get("kind", ""))
    remove_destination(services(), store_id, api.kind)
    return _settings_page(store_id, removed=api.kind)


def _destination_api(kind: str) -> Destination:
    api = services().destinations.get(kind)
    if api is None:
        abort(400, f"there is no destination {kind!r}")
    return api


def _default_kind() -> str:
    """The destination a form without ``kind`` is about (a form from before there were
    several): the deployment's first default destination."""
    return [*services().settings.default_destinations, *sorted(services().destinations)][0]


def _row(store_id: str, kind: str) -> StoreDestination | None:
    with services().db.session() as session:
        return find_destination(session, store_id, kind)


def _cards(store_id: str) -> list[DestinationCard]:
    """Every destination the connector knows, the store's connected ones first."""
    with services().db.session() as session:
        rows = {
            row.kind: row
            for row in session.scalars(
                select(StoreDestination).where(StoreDestination.store_id == store_id)
            )
        }
    cards = [
        DestinationCard(
            api,
            rows.get(kind),
            EventOptions.from_json(rows[kind].options if kind in rows else None),
            _connect_url(api, store_id),
        )
        for kind, api in services().destinations.items()
    ]
    return sorted(cards, key=lambda card: (card.row is None, card.api.label))


def _settings_page(
    store_id: str,
    *,
    error: str | None = None,
    kind: str | None = None,
    saved: str | None = None,
    removed: str | None = None,
    test: dict | None = None,
) -> str:
    return render_merchant(
        "merchant/settings.html",
        cards=_cards(store_id),
        choices={
            "order_trigger": ORDER_TRIGGERS,
            "value_basis": VALUE_BASES,
            "content_id": CONTENT_ID_SOURCES,
        },
        labels=OPTION_LABELS,
        platform_panel=_platform_panel(store_id),
        error=error,
        error_kind=kind,
        saved=saved,
        removed=removed,
        test=test,
    )


def _connect_url(api: Destination, store_id: str) -> str | None:
    """The destination's own "Connect with ..." page, when it has one and it is set up
    (``connect_url`` on the destination, beside its optional blueprint)."""
    connect = getattr(api, "connect_url", None)
    return connect(services().settings, store_id) if connect else None


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
    """Send a test purchase to one destination and show the platform's answer."""
    api = _destination_api(request.form.get("kind") or _default_kind())
    try:
        outcome = send_test_event(services(), store_id, api.kind)
    except StoreError as exc:
        return _settings_page(store_id, error=str(exc), kind=api.kind), 400
    return _settings_page(store_id, test={**outcome, "label": api.label})


# -- delivery log ------------------------------------------------------------------------------


@blueprint.get("/log")
def delivery_log(store_id: str) -> str:
    """Recent events, newest first, filtered by destination, status, event name and what the
    browser pixel did (its receipt), fifty a page."""
    chosen_status = request.args.get("status", "")
    chosen_browser = request.args.get("browser", "")
    chosen_event = request.args.get("event", "")
    chosen_destination = request.args.get("destination", "")
    before = request.args.get("before", type=int)
    query = (
        select(OutboxEvent, PixelReceipt.outcome)
        .select_from(with_receipts())
        .where(OutboxEvent.store_id == store_id)
    )
    if chosen_status == UNREADABLE:
        query = query.where(False)  # kept webhooks are listed apart; they are not events yet
    elif chosen_status in STATUSES:
        query = query.where(OutboxEvent.status == chosen_status)
    if chosen_event:
        query = query.where(OutboxEvent.event_name == chosen_event)
    if chosen_destination:
        query = query.where(OutboxEvent.destination == chosen_destination)
    if chosen_browser in BROWSER_OUTCOMES:
        query = query.where(receipt_purchases(services()), outcome_is(chosen_browser))
    if before:
        query = query.where(OutboxEvent.id < before)
    with services().db.session() as session:
        rows = session.execute(query.order_by(OutboxEvent.id.desc()).limit(LOG_PAGE_SIZE + 1)).all()
        names = session.scalars(
            select(OutboxEvent.event_name).where(OutboxEvent.store_id == store_id).distinct()
        ).all()
        replayable = session.scalar(
            select(func.count()).where(
                OutboxEvent.store_id == store_id,
                OutboxEvent.status.in_(REPLAYABLE),
                *([OutboxEvent.destination == chosen_destination] if chosen_destination else []),
            )
        )
    more = len(rows) > LOG_PAGE_SIZE
    events = [event for event, _outcome in rows[:LOG_PAGE_SIZE]]
    browser = {
        event.id: browser_outcome(services(), event, outcome)
        for event, outcome in rows[:LOG_PAGE_SIZE]
    }
    follow_ups = _follow_ups([e.request_id for e in events if e.request_id])
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
        labels={kind: api.label for kind, api in services().destinations.items()},
        chosen_destination=chosen_destination,
        browser_outcomes=BROWSER_OUTCOMES,
        chosen_browser=chosen_browser,
        browser=browser,
        follow_ups=follow_ups,
        next_before=events[-1].id if more else None,
        replayable=replayable,
        replayed=request.args.get("replayed", type=int),
        now=utcnow(),
    )


def _follow_ups(request_ids: list[str]) -> dict[str, str]:
    """What platforms reported later about these requests (connector.followup), by id."""
    if not request_ids:
        return {}
    with services().db.session() as session:
        rows = session.execute(
            select(Attempt.request_id, Attempt.follow_up).where(
                Attempt.request_id.in_(set(request_ids)), Attempt.follow_up.is_not(None)
            )
        ).all()
    return {request_id: words for request_id, words in rows}


@blueprint.post("/log/replay")
def replay(store_id: str) -> Response:
    """Put one failed or dead event, or all of them, back in the queue."""
    ids = [int(value) for value in request.form.getlist("event") if value.isdigit()]
    everything = request.form.get("all") == "yes"
    kind = request.form.get("destination") or None
    count = 0
    if ids or everything:  # no ids and no "all" means nothing was chosen, not everything
        count = replay_events(services(), ids=ids, status=None, store_id=store_id, kind=kind)
    return redirect(
        url_for("merchant.delivery_log", store_id=store_id, replayed=count, destination=kind),
        code=303,
    )


@blueprint.post("/log/reprocess")
def reprocess_kept(store_id: str) -> Response:
    """Read this store's kept unreadable webhooks again with the code deployed now."""
    report = reprocess(services(), store_id=store_id)
    return redirect(
        url_for("merchant.delivery_log", store_id=store_id, reprocessed=report.recovered),
        code=303,
    )


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


def code_spans(text: str) -> Markup:
    """Plain text whose `backquoted` spans are commands, shown as code (the ledger's install
    hints name the command that prints the custom pixel)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


blueprint.add_app_template_filter(money)
blueprint.add_app_template_filter(percent)
blueprint.add_app_template_filter(code_spans)
