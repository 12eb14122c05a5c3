"""``/login/<token>``: a login link opens a page whose button logs the browser in.

See :mod:`connector.web.merchant.access` for why the link itself does not log in on GET, and
why the POST checks where it came from and a CSRF token.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, make_response, redirect, render_template, url_for
from redis.exceptions import RedisError

from connector.web import services
from connector.web.merchant.access import (
    LoginLinkError,
    end_session,
    login_csrf_token,
    login_post_problem,
    read_login_token,
    security_headers,
    spend_login_nonce,
    start_session,
)

logger = logging.getLogger(__name__)

blueprint = Blueprint("merchant_login", __name__)
blueprint.after_request(security_headers)


@blueprint.get("/login/<token>")
def confirm(token: str) -> Response | tuple[str, int]:
    """The page behind a login link, with the button that spends it."""
    try:
        read_login_token(services().settings.signing_keys, token)
    except LoginLinkError as exc:
        return render_template("merchant/login.html", error=str(exc)), 400
    response = make_response()
    page = render_template("merchant/login.html", csrf=login_csrf_token(response))
    response.set_data(page)
    return response


@blueprint.post("/login/<token>")
def log_in(token: str) -> Response | tuple[str, int]:
    """Spend the link and start a session for its store, if the merchant's own click on
    the login page sent this (not a page of another site)."""
    if problem := login_post_problem():
        logger.warning("merchant.login-refused reason=%s", problem)
        message = (
            "this login did not come from the login page (another site, or an old page): "
            "open your login link again and click Continue"
        )
        return render_template("merchant/login.html", error=message), 403
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
    response = redirect(url_for("merchant.status", store_id=store_id), code=303)
    start_session(response, store_id)
    logger.info("merchant.login store=%s", store_id)
    return response


@blueprint.post("/logout")
def log_out() -> Response:
    """End the session, server-side too (a CSRF-free POST: the worst a forged one does is
    log out)."""
    response = redirect(url_for("merchant_login.logged_out"), code=303)
    end_session(response)
    return response


@blueprint.get("/logout")
def logged_out() -> str:
    return render_template("merchant/login.html", logged_out=True)
