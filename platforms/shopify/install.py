"""``GET /shopify/install`` and ``GET /shopify/callback``: the Shopify app's OAuth install.

The authorization code grant, as Shopify describes it
(https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant):

1. Shopify opens ``/shopify/install?shop=...&timestamp=...&hmac=...``. We check the shop, the
   hmac and the age, then send the browser to the shop's consent screen with a ``state``
   nonce. The state is signed (``itsdangerous``, expires after 10 minutes) and its nonce is
   also put in a cookie, so only the browser that started the install can finish it.
2. Shopify sends the merchant back to ``/shopify/callback?code=...&state=...&hmac=...``. We
   check everything again plus the state, exchange the code for an expiring offline token,
   store it encrypted and create (or reactivate) the store.

The app is embedded (``shopify.app.toml``: ``embedded = true``, application URL
``/shopify/app``), with Shopify-managed installation, which Shopify recommends for new apps:
Shopify grants the TOML's scopes itself, then opens ``/shopify/app`` in the admin with an App
Bridge session token (``id_token`` on the first document request, ``Authorization: Bearer`` on
later fetches). The token authenticates the page, and when the store has no access token yet
it is exchanged for one (token exchange), then the store is set up as above
(https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/token-exchange).
Then the merchant pages open with an embedded grant (connector/web/merchant/access.py): five
minutes long, for this shop's store only; the pages renew it with a fresh session token
(``shopify.idToken()``, https://shopify.dev/docs/api/app-bridge-library/apis/id-token) posted
to ``/shopify/app/grant`` (``static/embedded-grant.js``). The redirect routes stay for
installs started from a link (``/shopify/install?shop=...``), which end in the same app.

Webhooks are the TOML's app-specific subscriptions, the same for every shop; an install only
removes shop-specific duplicates an older version made (:func:`remove_duplicate_webhooks`,
also run daily by the worker for stores installed before).

Install is disabled (404 with the fix) until ``SHOPIFY_API_KEY`` and ``SHOPIFY_API_SECRET``
are set. Tests point Shopify's admin at a stand-in with ``SHOPIFY_ADMIN_BASE_URL`` (see
:func:`platforms.shopify.tokens.admin_base_url`).
"""

from __future__ import annotations

import logging
import secrets
from html import escape

from flask import Blueprint, Response, jsonify, redirect, request, url_for
from sqlalchemy import select

from connector.config import Settings
from connector.models import ShopifyToken, Store, StoreDestination, utcnow
from connector.plugins import EmbeddedHead, PeriodicTask, in_own_thread
from connector.services import Services
from connector.stores import add_store, find_store
from connector.web import services
from connector.web.merchant.access import embedded_csrf_token, embedded_grant
from platforms.shopify.admin_api import (
    AdminApiError,
    activate_pixel,
    primary_domain,
    remove_shop_webhooks,
)
from platforms.shopify.compliance import UNINSTALLED_REASON
from platforms.shopify.oauth import (
    STATE_MAX_AGE_SECONDS,
    OAuthError,
    StateError,
    authorize_url,
    check_state,
    decode_session_token,
    new_state,
    verify_query,
)
from platforms.shopify.tokens import (
    TokenError,
    TokenGrant,
    admin_base_url,
    exchange_code,
    exchange_session_token,
    save_grant,
)

logger = logging.getLogger(__name__)

blueprint = Blueprint("shopify_install", __name__)

NONCE_COOKIE = "shopify_oauth_nonce"


@blueprint.get("/shopify/install")
def install() -> Response | tuple[Response, int]:
    """Check Shopify's signed request and send the merchant to the consent screen."""
    settings = services().settings
    if disabled := _disabled(settings):
        return disabled
    try:
        shop = verify_query(settings.shopify_api_secret or "", _query())
    except OAuthError as exc:
        return _refused(exc)
    nonce = secrets.token_urlsafe(24)
    target = authorize_url(
        _admin_base(settings, shop),
        api_key=settings.shopify_api_key or "",
        scopes=settings.shopify_scopes,
        redirect_uri=f"{settings.app_url}/shopify/callback",
        state=new_state(settings.secret_key, shop, nonce),
    )
    response = redirect(target)
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        max_age=STATE_MAX_AGE_SECONDS,
        path="/shopify/",
        httponly=True,
        secure=settings.app_url.startswith("https://"),
        samesite="Lax",  # sent on Shopify's top-level redirect back to the callback
    )
    return response


@blueprint.get("/shopify/callback")
def callback() -> Response | tuple[Response, int]:
    """Finish the install: token, store, webhook subscriptions."""
    svc = services()
    settings = svc.settings
    if disabled := _disabled(settings):
        return disabled
    params = _query()
    try:
        shop = verify_query(settings.shopify_api_secret or "", params)
        check_state(
            settings.signing_keys,
            params.get("state"),
            shop=shop,
            browser_nonce=request.cookies.get(NONCE_COOKIE),
        )
        code = params.get("code")
        if not isinstance(code, str) or not code:
            raise OAuthError("Shopify sent no authorization code: start the install again")
    except OAuthError as exc:
        return _refused(exc)
    admin_base = _admin_base(settings, shop)
    try:
        grant = exchange_code(
            svc,
            admin_base,
            api_key=settings.shopify_api_key or "",
            secret=settings.shopify_api_secret or "",
            code=code,
        )
        _finish_install(svc, shop, admin_base, grant)
    except (TokenError, AdminApiError) as exc:
        logger.warning("shopify.install-failed reason=%s", type(exc).__name__)
        return jsonify(error=f"the install could not finish: {exc}"), 502
    response = Response(_installed_page(shop, settings.shopify_api_key or ""), mimetype="text/html")
    response.delete_cookie(NONCE_COOKIE, path="/shopify/")
    return response


@blueprint.get("/shopify/app")
def embedded_home() -> Response | tuple[Response, int]:
    """The embedded app's entry, authenticated by the App Bridge session token; the first
    visit of a shop without a token installs it by token exchange. Opens the store's pages."""
    svc = services()
    settings = svc.settings
    if disabled := _disabled(settings):
        return disabled
    id_token = request.args.get("id_token") or _bearer()
    try:
        shop = _shop_of(settings, id_token)
    except OAuthError as exc:
        return jsonify(error=f"{exc}: open the app from the Shopify admin"), 401
    admin_base = _admin_base(settings, shop)
    try:
        store_id = _installed_store(svc, shop)
        if store_id is None:
            grant = exchange_session_token(
                svc,
                admin_base,
                api_key=settings.shopify_api_key or "",
                secret=settings.shopify_api_secret or "",
                id_token=id_token,
            )
            store_id = _finish_install(svc, shop, admin_base, grant)
    except (TokenError, AdminApiError) as exc:
        logger.warning("shopify.install-failed reason=%s", type(exc).__name__)
        return jsonify(error=f"the install could not finish: {exc}"), 502
    # The merchant pages, with a grant carried in their URLs (cookies do not survive in the
    # admin's iframe).
    grant = _grant_for(store_id, shop)
    return redirect(url_for("merchant.status", store_id=store_id, session=grant), code=303)


RENEW_GRANT_PATH = "/shopify/app/grant"


@blueprint.post(RENEW_GRANT_PATH)
def renew_grant() -> tuple[Response, int]:
    """A fresh embedded grant, for the pages' script, in exchange for a fresh App Bridge
    session token (``Authorization: Bearer``): the grant is for the token's shop, and only
    while its store is installed. A header, not a cookie, authenticates this POST, so no
    other site can make a browser send it."""
    settings = services().settings
    if disabled := _disabled(settings):
        return disabled
    try:
        shop = _shop_of(settings, _bearer())
    except OAuthError as exc:
        return jsonify(error=f"{exc}: reload the app from the Shopify admin"), 401
    store_id = _installed_store(services(), shop)
    if store_id is None:
        return jsonify(error="this shop has not installed the app: open it from the admin"), 403
    grant = _grant_for(store_id, shop)
    return jsonify(session=grant, csrf_token=embedded_csrf_token(grant)), 200


def _grant_for(store_id: str, shop: str) -> str:
    """An embedded grant for the shop's store, which only the shop's admin may frame
    (Shopify's rule for embedded apps)."""
    frames = (f"https://{shop}", "https://admin.shopify.com")
    return embedded_grant(store_id, frames, platform="shopify", shop=shop)


def _bearer() -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def _shop_of(settings: Settings, id_token: str) -> str:
    """The shop of a valid App Bridge session token (OAuthError if it is not one)."""
    return decode_session_token(
        f"Bearer {id_token}",
        api_key=settings.shopify_api_key or "",
        secret=settings.shopify_api_secret or "",
    )


APP_BRIDGE_SCRIPT = "https://cdn.shopify.com/shopifycloud/app-bridge.js"


def app_bridge_head(svc: Services) -> EmbeddedHead:
    """App Bridge, which Shopify requires of embedded app pages: its script from Shopify's CDN
    and the app's API key (https://shopify.dev/docs/api/app-bridge-library, "Setup"); then our
    script that renews the pages' short grant through it."""
    api_key = escape(svc.settings.shopify_api_key or "")
    renew = escape(url_for("static", filename="embedded-grant.js"))
    endpoint = escape(request.script_root + RENEW_GRANT_PATH)
    return EmbeddedHead(
        html=f'<meta name="shopify-api-key" content="{api_key}">'
        f'<script src="{APP_BRIDGE_SCRIPT}"></script>'
        f'<script src="{renew}" data-renew-url="{endpoint}" defer></script>',
        script_sources=("https://cdn.shopify.com",),
    )


def _finish_install(svc: Services, shop: str, admin_base: str, grant: TokenGrant) -> str:
    """Store, token, storefront domain and the click-capture pixel for a shop that just
    granted access, and no shop-specific webhook left beside the app's. A pixel that cannot
    be activated, a primary domain that cannot be read or a duplicate that cannot be removed
    does not fail the install: orders still convert (with the landing-page click id), and the
    log says why."""
    store_id = _activate_store(svc, shop)
    save_grant(svc, store_id, grant)
    _remove_duplicates(svc, store_id, admin_base)
    try:
        _save_storefront_domain(svc, store_id, shop, primary_domain(svc, store_id, admin_base))
    except AdminApiError as exc:
        logger.warning("shopify.storefront-domain-unknown store=%s reason=%s", store_id, exc)
    try:
        activate_pixel(svc, store_id, admin_base, f"{svc.settings.app_url}/collect")
    except AdminApiError as exc:
        logger.warning("shopify.pixel-not-activated store=%s reason=%s", store_id, exc)
    logger.info("shopify.installed store=%s", store_id)
    return store_id


DUPLICATE_WEBHOOKS_EVERY_SECONDS = 24 * 3600.0


def remove_duplicate_webhooks(svc: Services) -> None:
    """Remove the shop-specific webhook subscriptions of every store installed through the
    app (a token of ours), which older versions made beside the TOML's and which made
    Shopify deliver each event twice. Custom-app stores are left alone: their webhooks belong
    to the merchant's own app and are its only ones. Once a store has none, each run costs
    one query for it."""
    with svc.db.session() as session:
        installed = session.execute(
            select(Store.id, Store.domain)
            .join(ShopifyToken, ShopifyToken.store_id == Store.id)
            .where(Store.platform == "shopify", Store.status == "active")
        ).all()
    for store_id, shop in installed:
        _remove_duplicates(svc, store_id, _admin_base(svc.settings, shop))


REMOVE_DUPLICATE_WEBHOOKS = PeriodicTask(
    "shopify-duplicate-webhooks",
    DUPLICATE_WEBHOOKS_EVERY_SECONDS,
    in_own_thread("shopify-duplicate-webhooks", remove_duplicate_webhooks),
)
"""Runs when a worker starts, then daily: upgrading removes the duplicates at once. In a
thread of its own, so stores that answer slowly never hold up the sweep."""


def _remove_duplicates(svc: Services, store_id: str, admin_base: str) -> None:
    try:
        remove_shop_webhooks(svc, store_id, admin_base)
    except (TokenError, AdminApiError) as exc:
        logger.warning("shopify.shop-webhooks-not-removed store=%s reason=%s", store_id, exc)


def _save_storefront_domain(svc: Services, store_id: str, shop: str, host: str) -> None:
    """Keep the shop's primary domain as its storefront domain, which ``POST /collect``
    accepts as an Origin; none when it is the ``*.myshopify.com`` domain itself. A reinstall
    replaces it, so a changed domain is picked up."""
    with svc.db.session() as session:
        store = session.get(Store, store_id)
        store.storefront_domains = [] if host == shop else [host]
        session.commit()


def _installed_store(svc: Services, shop: str) -> str | None:
    """The id of the shop's store when it is active and holds a token, else None."""
    with svc.db.session() as session:
        store = find_store(session, platform="shopify", domain=shop)
        if store is None or store.status != "active":
            return None
        return store.id if session.get(ShopifyToken, store.id) is not None else None


def _activate_store(svc: Services, shop: str) -> str:
    """The store for this shop, created on first install, reactivated on a reinstall (which
    lifts only the pause ``app/uninstalled`` set, never one TikTok caused)."""
    with svc.db.session() as session:
        store = find_store(session, platform="shopify", domain=shop)
        if store is None:
            return add_store(svc, platform="shopify", domain=shop, webhook_secret=None).id
        store.status = "active"
        paused = select(StoreDestination).where(
            StoreDestination.store_id == store.id,
            StoreDestination.paused_reason == UNINSTALLED_REASON,
        )
        for destination in session.scalars(paused):
            destination.paused_reason, destination.paused_at = None, None
            destination.updated_at = utcnow()
        session.commit()
        return store.id


def _query() -> dict[str, object]:
    """The query string as ``query_hmac`` expects: ``name[]`` parameters keep every value."""
    return {
        key: request.args.getlist(key) if key.endswith("[]") else request.args[key]
        for key in request.args
    }


def _admin_base(settings: Settings, shop: str) -> str:
    return admin_base_url(shop, settings.shopify_admin_base_url)


def _disabled(settings: Settings) -> tuple[Response, int] | None:
    if settings.shopify_api_key and settings.shopify_api_secret:
        return None
    message = "Shopify install is disabled: set SHOPIFY_API_KEY and SHOPIFY_API_SECRET"
    return jsonify(error=message), 404


def _refused(error: OAuthError) -> tuple[Response, int]:
    logger.warning("shopify.install-refused")
    return jsonify(error=str(error)), 403 if isinstance(error, StateError) else 400


def _installed_page(shop: str, api_key: str) -> str:
    """After the redirect install: where the merchant goes next, the app in their admin
    (``https://<shop>/admin/apps/<api key>``), whose Settings page connects ad platforms."""
    app_in_admin = f"https://{shop}/admin/apps/{api_key}"
    return (
        "<!doctype html><title>Connected</title>"
        f"<h1>{escape(shop)} is connected</h1>"
        "<p>Orders and checkouts now reach the connector. Next, connect ad platforms on the app's "
        f'Settings page: <a href="{escape(app_in_admin)}">open the app in your Shopify admin</a>.'
        "</p>"
    )
