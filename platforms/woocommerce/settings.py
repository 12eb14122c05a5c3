"""What a WooCommerce merchant does from the Settings page, under
``/settings/<store_id>/woocommerce``: repair the order webhooks, download the click-capture
plugin, and, for a store added by hand, see the webhook secret.

Guarded exactly like the merchant pages (:mod:`connector.web.merchant`): a browser without a
grant for this store gets 403, a POST without this session's CSRF token 400, and every answer
carries the pages' security headers. The blueprint is nested in the WooCommerce blueprint
rather than part of it, because the metrics count every route of a ``*_webhooks`` blueprint as
a webhook.

Why the webhook secret sits behind a *Show secret* button instead of on the Settings page: a
merchant who adds the webhooks by hand needs it, and must not need the command line that
printed it when the store was added. But whoever holds it can sign made-up orders, which the
connector would report to TikTok as sales. The Settings page is shown on every visit, left open
on screens, screenshotted for help requests; so the secret shows only on a page of its own,
answered to a POST that carries this session's CSRF token, never in a URL (no browser history,
access log or Referer), with ``Cache-Control: no-store``, and every showing is logged (without
the secret). A store connected with REST API keys never needs it: a repair hands it to
WooCommerce directly, so for such a store the route refuses.
"""

from __future__ import annotations

import io
import logging
import tempfile
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, abort, g, redirect, request, send_file, url_for

from connector.services import Services
from connector.stores import StoreError
from connector.web import services
from connector.web.merchant import render_merchant
from connector.web.merchant.access import guard_store_page, security_headers
from platforms.woocommerce.build_plugin import build_plugin_zip
from platforms.woocommerce.connect import PLATFORM, check_store, webhook_secret
from platforms.woocommerce.panel import (
    REPAIR_OUTCOMES,
    REPAIR_PARAM,
    TookTooLong,
    finish_within,
    manual_setup,
)
from platforms.woocommerce.rest import RestError

logger = logging.getLogger(__name__)

REPAIR_WAIT_SECONDS = 20.0
"""How long the Repair button's request waits: under gunicorn's default 30 s worker timeout
(``connector web`` sets none), while a repair that creates a webhook waits for WooCommerce to
ping us first. A slower repair goes on in the background and the page says so."""

blueprint = Blueprint(
    "woocommerce_settings", __name__, url_prefix="/settings/<store_id>/woocommerce"
)


@blueprint.before_request
def guard() -> None:
    """Access, then CSRF, then the store, which must be a WooCommerce store."""
    guard_store_page((request.view_args or {}).get("store_id", ""), platform=PLATFORM)


blueprint.after_request(security_headers)


@blueprint.post("/repair")
def repair(store_id: str) -> Response:
    """Run the repair ``connector stores check --repair`` runs, then back to the Settings page,
    which shows the outcome and the webhooks as the store now reports them."""
    if not g.store.access_token_encrypted:
        abort(400, "this store was added by hand: fix its webhooks in WooCommerce as the "
                   "Settings page shows")  # fmt: skip
    outcome = repair_outcome(services(), store_id)
    target = url_for(
        "merchant.settings",
        store_id=store_id,
        _anchor="woocommerce-webhooks",
        **{REPAIR_PARAM: outcome},
    )
    return redirect(target, code=303)


def repair_outcome(services: Services, store_id: str) -> str:
    """Repair the store's webhooks; the outcome as a key of :data:`REPAIR_OUTCOMES`."""
    try:
        report = finish_within(
            REPAIR_WAIT_SECONDS,
            lambda: check_store(services, store_id, repair=True),
            name="woocommerce-repair",
        )
    except TookTooLong:
        return "running"
    except RestError as exc:  # its message holds no key, secret or word the store answered
        logger.warning(
            "woocommerce.webhook.repair-failed store=%s reason=%s message=%s",
            store_id,
            exc.reason,
            exc,
        )
        return exc.reason if exc.reason in REPAIR_OUTCOMES else "failed"
    except StoreError:
        return "keys-unusable"
    except Exception:  # the merchant gets a page that says to try again, the log the cause
        logger.exception("woocommerce.webhook.repair-failed store=%s", store_id)
        return "failed"
    if any(p["problem"] == "webhook_url_unknown" for p in report["problems"]):
        return "address-unknown"
    if any(w["problems"] for w in report["webhooks"]):
        return "incomplete"
    return "repaired" if any(w["fixed"] for w in report["webhooks"]) else "healthy"


@blueprint.get("/plugin.zip")
def plugin_zip(store_id: str) -> Response:
    """The click-capture WordPress plugin, ready for Plugins > Add New > Upload Plugin."""
    name, data = built_plugin()
    return send_file(
        io.BytesIO(data), mimetype="application/zip", as_attachment=True, download_name=name
    )


@lru_cache(maxsize=1)
def built_plugin() -> tuple[str, bytes]:
    """The plugin's zip name and bytes, built once per process: its files change only with a
    deploy, which starts new processes."""
    with tempfile.TemporaryDirectory() as folder:
        path = build_plugin_zip(Path(folder))
        return path.name, path.read_bytes()


@blueprint.post("/webhook-secret")
def show_webhook_secret(store_id: str) -> str:
    """The steps for adding the webhooks by hand, this time with the secret to paste."""
    if g.store.access_token_encrypted:
        abort(400, "this store is connected with REST API keys: its webhooks get the secret "
                   "from the Repair button on the Settings page")  # fmt: skip
    try:
        secret, problem = webhook_secret(services(), g.store), None
    except StoreError as exc:
        secret, problem = None, str(exc)
    logger.info("woocommerce.webhook-secret.shown store=%s", store_id)
    return render_merchant(
        "woocommerce/webhook_secret.html",
        secret=secret,
        problem=problem,
        **manual_setup(services(), store_id),
    )
