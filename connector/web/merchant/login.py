"""``/login/<token>``: a login link opens a page whose button logs the browser in.

See :mod:`connector.web.merchant.access` for why the link itself does not log in on GET.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, render_template, session, url_for
from redis.exceptions import RedisError

from connector.web import services
from connector.web.merchant.access import (
    LoginLinkError,
    read_login_token,
    security_headers,
    spend_login_nonce,
    start_session,
)

logger = logging.getLogger(__name__)

blueprint = Blueprint("merchant_login", __name__)
blueprint.after_request(security_headers)


@blueprint.get("/login/<token>")
def confirm(token: str) -> str | tuple[str, int]:
    """The page behind a login link, with the button that spends it."""
    try:
        read_login_token(services().settings.signing_keys, token)
    except LoginLinkError as exc:
        return render_template("merchant/login.html", error=str(exc)), 400
    return render_template("merchant/login.html", token=token)


@blueprint.post("/login/<token>")
def log_in(token: str) -> Response | tuple[str, int]:
    """Spend the link and start a session for its store."""
    try:
        store_id, nonce = read_login_token(services().settings.signing_keys, token)
        spent = spend_login_nonce(nonce)
    except LoginLinkError as exc:
        return render_template("merchant/login.html", error=str(exc)), 400
    except RedisError:
        logger.error("merchant.login-unavailable reason=redis")
        message = "the connector cannot check this link right now (its queue is down): retry soon"
        return render_template("merchant/login.html", error=message), 503
    if not spent:
        message = (
            "this login link was already used: ask for a new one with "
            "`connector stores login-link STORE_ID`"
        )
        return render_template("merchant/login.html", error=message), 400
    start_session(store_id)
    logger.info("merchant.login store=%s", store_id)
    return redirect(url_for("merchant.status", store_id=store_id), code=303)


@blueprint.post("/logout")
def log_out() -> Response:
    """Forget the session (a CSRF-free POST: the worst a forged one does is log out)."""
    session.clear()
    return redirect(url_for("merchant_login.logged_out"), code=303)


@blueprint.get("/logout")
def logged_out() -> str:
    return render_template("merchant/login.html", logged_out=True)
