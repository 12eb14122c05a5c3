"""The merchant's pages: status, settings, delivery log, diagnostics, under ``/settings/<id>``.

Every view takes ``store_id``; :func:`guard` has already refused a browser without access to
that store and checked the CSRF token of a POST, and put the store in ``g.store``. A page
module is one file here plus one import line at the end of this file.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, render_template, request

from connector.web.merchant.access import guard_store_page, security_headers

blueprint = Blueprint("merchant", __name__, url_prefix="/settings/<store_id>")


@blueprint.before_request
def guard() -> None:
    """Access, then CSRF, then the store itself (:func:`guard_store_page`)."""
    guard_store_page((request.view_args or {}).get("store_id", ""))


blueprint.after_request(security_headers)


def render_merchant(template: str, **context: Any) -> str:
    """A merchant page: ``template`` extends ``merchant/base.html``, which shows the store."""
    return render_template(template, store=g.store, **context)


import connector.web.merchant.consent  # noqa: E402,F401  (registers the views)
import connector.web.merchant.diagnostics  # noqa: E402,F401  (registers the views)
from connector.web.merchant import pages  # noqa: E402,F401  (registers the views)
