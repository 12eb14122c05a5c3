"""The Diagnostics page: what TikTok can match this store's events on, and what to fix first.

The numbers come from :func:`connector.diagnostics.diagnose` (GROUP BY queries, no payloads),
so the page stays fast for a store with a hundred thousand events a month.
"""

from __future__ import annotations

from flask import abort, current_app, g, request

from connector.diagnostics import (
    SIGNAL_LABELS,
    SIGNAL_WEIGHTS,
    TIERS,
    WINDOWS_DAYS,
    diagnose,
)
from connector.web import PLATFORMS_KEY, services
from connector.web.merchant import blueprint, render_merchant


@blueprint.get("/diagnostics")
def diagnostics(store_id: str) -> str:
    """Signal coverage, click-id sources, bots and skips, failures, and the estimated tier."""
    days = _window_days(request.args.get("days"))
    return render_merchant(
        "merchant/diagnostics.html",
        d=diagnose(
            services(),
            store_id,
            days,
            platform=current_app.extensions[PLATFORMS_KEY].get(g.store.platform),
        ),
        windows=WINDOWS_DAYS,
        weights=SIGNAL_WEIGHTS,
        labels=SIGNAL_LABELS,
        tiers=TIERS,
    )


def _window_days(raw: str | None) -> int:
    """The window the switch asked for; the shortest when none was asked."""
    if raw is None:
        return WINDOWS_DAYS[0]
    if raw.isdigit() and int(raw) in WINDOWS_DAYS:
        return int(raw)
    choices = " or ".join(str(days) for days in WINDOWS_DAYS)
    abort(400, f"diagnostics cover the last {choices} days: choose one of those")
