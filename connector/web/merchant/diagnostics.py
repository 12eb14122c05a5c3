"""The Diagnostics page: what each ad platform can match this store's events on, and what to
fix first, one destination at a time.

The numbers come from :func:`connector.diagnostics.diagnose` (GROUP BY queries, no payloads),
so the page stays fast for a store with a hundred thousand events a month.
"""

from __future__ import annotations

from flask import abort, current_app, g, request
from sqlalchemy import select

from connector.destinations import Destination
from connector.diagnostics import (
    SIGNAL_WEIGHTS,
    TIERS,
    WINDOWS_DAYS,
    diagnose,
    signal_labels,
)
from connector.models import StoreDestination
from connector.recovered import RECEIPT_PIXELS, headline, ledger
from connector.web import PLATFORMS_KEY, services
from connector.web.merchant import blueprint, render_merchant


@blueprint.get("/diagnostics")
def diagnostics(store_id: str) -> str:
    """Signal coverage, click-id sources, bots and skips, failures, and the estimated tier."""
    days = _window_days(request.args.get("days"))
    destination = _destination(store_id, request.args.get("destination"))
    platform = current_app.extensions[PLATFORMS_KEY].get(g.store.platform)
    recovered = None
    if destination.kind in RECEIPT_PIXELS:  # the ledger of the pixel the storefront reports on
        recovered = ledger(services(), store_id, days, pixel=destination.kind, platform=platform)
    return render_merchant(
        "merchant/diagnostics.html",
        d=diagnose(
            services(),
            store_id,
            days,
            platform=platform,
            destination=destination,
        ),
        dest=destination,
        destinations=list(services().destinations.values()),
        windows=WINDOWS_DAYS,
        weights=SIGNAL_WEIGHTS,
        signal_labels=signal_labels(destination),
        tiers=TIERS,
        ledger=recovered,
        ledger_headline=headline(recovered) if recovered else None,
        receipt_labels=[
            services().destinations[k].label for k in RECEIPT_PIXELS if k in services().destinations
        ],
    )


def _destination(store_id: str, kind: str | None) -> Destination:
    """The destination asked for; else the store's first connected one, the deployment's
    default ones (``DEFAULT_DESTINATIONS``) first; else the first default."""
    apis = services().destinations
    if kind is not None:
        if kind not in apis:
            abort(400, f"there is no destination {kind!r}")
        return apis[kind]
    with services().db.session() as session:
        connected = session.scalars(
            select(StoreDestination.kind)
            .where(StoreDestination.store_id == store_id)
            .order_by(StoreDestination.kind)
        ).all()
    defaults = list(services().settings.default_destinations)
    candidates = [k for k in connected if k in apis] or [k for k in defaults if k in apis]
    first = min(candidates or sorted(apis), key=lambda k: (k not in defaults, k))
    return apis[first]


def _window_days(raw: str | None) -> int:
    """The window the switch asked for; the shortest when none was asked."""
    if raw is None:
        return WINDOWS_DAYS[0]
    if raw.isdigit() and int(raw) in WINDOWS_DAYS:
        return int(raw)
    choices = " or ".join(str(days) for days in WINDOWS_DAYS)
    abort(400, f"diagnostics cover the last {choices} days: choose one of those")
