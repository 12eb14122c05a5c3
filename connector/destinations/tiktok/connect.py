"""The "Connect with TikTok" pages: TikTok for Business OAuth, then choosing the pixel.

1. ``GET /settings/<store_id>/tiktok/connect`` (the merchant's own store only, by session
   cookie or embedded grant) sends the browser to TikTok's advertiser authorization page with a
   ``state`` that names the store and a nonce, signed and expiring (``itsdangerous``), and
   ``redirect_uri = APP_URL/tiktok/callback``, which must be the app's advertiser redirect URL
   at TikTok. The nonce also goes in a cookie, so only this browser can finish (the OAuth
   ``state`` rule, https://datatracker.ietf.org/doc/html/rfc6749#section-10.12). No session is
   started: an embedded grant in the URL never becomes a cookie session.
2. ``GET /tiktok/callback`` refuses a state we did not sign, that expired, that another browser
   started or that was already used (the nonce is spent in Redis); then exchanges TikTok's
   ``auth_code`` and stores the token encrypted on the store's TikTok destination, paused until
   a pixel is chosen (:func:`connector.destinations.tiktok.tokens.save_grant`), so nothing
   reaches a wrong pixel.
3. ``GET /settings/<store_id>/tiktok/pixels`` lists the pixels of every ad account the merchant
   granted; its form (CSRF-checked) sets the pixel and lifts that pause. A browser without a
   session of the store (one that started from a store platform's admin) gets there with a
   short grant of its own (:func:`connector.web.merchant.access.embedded_grant`, framed by no
   one).

Every refusal renders a page saying what happened and what to do. The pages are disabled, with
that explanation, until the operator sets ``TIKTOK_APP_ID`` and ``TIKTOK_APP_SECRET``.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from redis.exceptions import RedisError

from connector.config import Settings
from connector.destinations.tiktok.oauth import (
    NOT_SET_UP,
    Advertiser,
    Pixel,
    TikTokOAuthError,
    authorize_url,
    exchange_auth_code,
    list_advertisers,
    list_pixels,
    oauth_enabled,
)
from connector.destinations.tiktok.tokens import (
    CHOOSE_PIXEL,
    KIND,
    access_token_for,
    choose_pixel,
    save_grant,
)
from connector.jobs import request_delivery
from connector.models import Store, StoreDestination
from connector.stores import find_destination
from connector.web import services
from connector.web.merchant.access import (
    current_grant,
    embedded_grant,
    guard_store_page,
    security_headers,
)

logger = logging.getLogger(__name__)

blueprint = Blueprint("tiktok_connect", __name__)
blueprint.after_request(security_headers)

CALLBACK_PATH = "/tiktok/callback"
STATE_SALT = "tiktok-oauth-state"
STATE_MAX_AGE_SECONDS = 15 * 60
"""How long a merchant may spend on TikTok's consent screens."""
NONCE_COOKIE = "tiktok_oauth_nonce"

START_AGAIN = "Open your store's Settings page and click Connect with TikTok again."


@blueprint.before_request
def guard() -> None:
    """The store pages: this browser's store only, CSRF on POST, the store in ``g.store``.

    The callback carries no store in its path; it checks its signed state instead.
    """
    store_id = (request.view_args or {}).get("store_id")
    if store_id is not None:
        guard_store_page(store_id)


@blueprint.get("/settings/<store_id>/tiktok/connect")
def start(store_id: str) -> Response | tuple[str, int]:
    """Send the merchant to TikTok to grant access to their ad accounts."""
    settings = services().settings
    if not oauth_enabled(settings):
        return _problem("Connect with TikTok is not available here.", NOT_SET_UP, 404)
    nonce = secrets.token_urlsafe(24)
    state = _serializer(settings).dumps({"store": store_id, "nonce": nonce})
    response = redirect(authorize_url(settings, redirect_uri=callback_url(settings), state=state))
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        max_age=STATE_MAX_AGE_SECONDS,
        path="/tiktok/",
        httponly=True,
        secure=settings.app_url.startswith("https://"),
        samesite="Lax",  # sent on TikTok's top-level redirect back to the callback
    )
    return response


@blueprint.get(CALLBACK_PATH)
def callback() -> Response | tuple[str, int]:
    """TikTok sends the merchant back here with an ``auth_code`` (or none, if they declined)."""
    settings = services().settings
    problem = _state_problem(settings, request.args.get("state"))
    if problem:
        return problem
    code = request.args.get("auth_code") or request.args.get("code")
    if not code:
        return _problem(
            "TikTok did not grant access: the connection was declined or cancelled.",
            "To connect, click Connect with TikTok again and confirm on TikTok's page. "
            "You can also paste a pixel code and access token on the Settings page instead.",
            400,
        )
    try:
        grant = exchange_auth_code(services().http, settings, code)
        save_grant(services(), g.store.id, grant)
    except TikTokOAuthError as exc:
        logger.warning("tiktok.connect-failed store=%s code=%s", g.store.id, exc.code)
        return _problem("TikTok refused the connection.", str(exc), 502)
    logger.info("tiktok.connected store=%s advertisers=%d", g.store.id, len(grant.advertiser_ids))
    response = redirect(_pixels_url(g.store))
    response.delete_cookie(NONCE_COOKIE, path="/tiktok/")
    return response


@blueprint.get("/settings/<store_id>/tiktok/pixels")
def pixels(store_id: str) -> str | tuple[str, int]:
    """The pixels of the granted ad accounts, to choose the one conversions go to."""
    return _pixels_page(store_id)


@blueprint.post("/settings/<store_id>/tiktok/pixels")
def choose(store_id: str) -> str | tuple[str, int]:
    """Send conversions to the chosen pixel, if it is one of the granted accounts' pixels."""
    found = _accounts(store_id)
    if isinstance(found, tuple):
        return found
    chosen = next(
        (
            pixel
            for _account, pixels in found
            for pixel in pixels
            if f"{pixel.advertiser_id}/{pixel.code}" == request.form.get("pixel", "")
        ),
        None,
    )
    if chosen is None:
        return _pixels_page(store_id, error="Choose one of the pixels listed below."), 400
    choose_pixel(services(), store_id, chosen)
    request_delivery(services(), _destination(store_id).id)  # events that waited go out now
    return _pixels_page(store_id, chosen=chosen)


def callback_url(settings: Settings) -> str:
    """The redirect URL TikTok must know for this app: ``APP_URL/tiktok/callback``."""
    return settings.app_url + CALLBACK_PATH


def _state_problem(settings: Settings, state: str | None) -> tuple[str, int] | None:
    """Why this callback must be refused, as a page, or None (then ``g.store`` is set)."""
    try:
        data = _serializer(settings).loads(state or "", max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired:
        return _problem("The connection took too long.", START_AGAIN, 400)
    except BadSignature:
        return _problem(
            "This link back from TikTok is not valid: it was not started here, or was changed.",
            START_AGAIN,
            400,
        )
    if not hmac.compare_digest(request.cookies.get(NONCE_COOKIE, ""), data.get("nonce", "")):
        return _problem(
            "This connection was started in another browser session.",
            "Connect from your store's Settings page in this browser.",
            403,
        )
    try:
        first_use = _spend_nonce(data["nonce"])
    except RedisError:
        logger.error("tiktok.connect-unavailable reason=redis")
        return _problem("The connector cannot finish this right now.", START_AGAIN, 503)
    if not first_use:
        return _problem("This link back from TikTok was already used.", START_AGAIN, 400)
    with services().db.session() as session:
        g.store = session.get(Store, data["store"])
    if g.store is None:
        return _problem("This store is not connected here any more.", START_AGAIN, 404)
    return None


def _spend_nonce(nonce: str) -> bool:
    """True the first time a state comes back, False ever after: a state seen in a browser's
    history or a log cannot finish a connection again. In Redis, so every web process
    agrees."""
    key = f"connector:tiktok-state:{nonce}"
    return bool(services().redis.set(key, 1, nx=True, ex=STATE_MAX_AGE_SECONDS + 60))


def _pixels_url(store: Store) -> str:
    """The pixel page, for this browser's session of the store, or, for a browser that came
    from a store platform's admin (no session), with a short grant of its own."""
    grant = current_grant()
    if grant is not None and not grant.embedded_token and grant.store_id == store.id:
        return url_for(".pixels", store_id=store.id)
    own = embedded_grant(store.id, (), None, shop=store.domain)
    return url_for(".pixels", store_id=store.id, session=own)


def _pixels_page(
    store_id: str, *, error: str | None = None, chosen: Pixel | None = None
) -> str | tuple[str, int]:
    found = _accounts(store_id)
    if isinstance(found, tuple):
        return found
    row = _destination(store_id)
    return render_template(
        "merchant/tiktok_pixels.html",
        store=g.store,
        accounts=found,
        current=row.account_id if row else "",
        waiting=bool(row and row.paused_reason == CHOOSE_PIXEL),
        error=error,
        chosen=chosen,
    )


def _accounts(store_id: str) -> list[tuple[Advertiser, list[Pixel]]] | tuple[str, int]:
    """Each granted ad account with its pixels, or the page explaining why there are none."""
    settings = services().settings
    if not oauth_enabled(settings):
        return _problem("Connect with TikTok is not available here.", NOT_SET_UP, 404)
    row = _destination(store_id)
    if row is None or not row.access_token_encrypted:
        return _problem(
            "This store is not connected to TikTok yet.",
            "Click Connect with TikTok on the Settings page first.",
            404,
        )
    http = services().http
    try:
        token = access_token_for(services(), row)
        return [
            (account, list_pixels(http, settings, token, account.advertiser_id))
            for account in list_advertisers(http, settings, token)
        ]
    except TikTokOAuthError as exc:
        return _problem("TikTok did not list your pixels.", str(exc), 502)


def _problem(what: str, todo: str, status: int) -> tuple[str, int]:
    """A page saying what happened and what to do, in the merchant's layout when we know the
    store."""
    page = render_template("merchant/tiktok_error.html", store=g.get("store"), what=what, todo=todo)
    return page, status


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_keys, salt=STATE_SALT)


def _destination(store_id: str) -> StoreDestination | None:
    with services().db.session() as session:
        return find_destination(session, store_id, KIND)
