"""Who may see a store's merchant pages, and the headers and checks that keep them safe.

Two ways in, one rule: a browser may act on a store only when it holds a grant for it.

- A **login link** (``connector stores login-link STORE_ID``) for WooCommerce and custom
  stores: a signed, expiring, single-use token (``itsdangerous``). Opening it shows a button,
  and the POST behind the button spends it and sets a session cookie (HttpOnly, SameSite=Lax,
  Secure when ``APP_URL`` is https). The extra click is deliberate: mail scanners fetch links,
  and a GET that logged in would spend the link before the merchant could.
- An **embedded grant** for pages framed by a store platform's admin (Shopify): the platform
  authenticates its own session token, then calls :func:`embedded_grant`. Browsers block or
  partition cookies in third-party frames, so this grant travels in the URL (``?session=``) of
  every link and form of the pages, short-lived, and the pages send no Referer.

Every POST carries a CSRF token derived from the grant (HMAC of the session's id), so a page
of another site cannot submit our forms even while the merchant is logged in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import abort, current_app, g, request, session
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from markupsafe import Markup, escape

from connector.models import Store
from connector.plugins import EmbeddedHead
from connector.web import PLATFORMS_KEY, services

LOGIN_SALT = "merchant-login"
EMBEDDED_SALT = "merchant-embedded"
EMBEDDED_PARAM = "session"
LOGIN_LINK_MINUTES = 30
EMBEDDED_GRANT_SECONDS = 3600
SESSION_HOURS = 12


class LoginLinkError(Exception):
    """A login link cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Grant:
    """The store a browser may act on, and what the pages need to know about how."""

    store_id: str
    session_id: str
    embedded_token: str | None = None
    frame_ancestors: tuple[str, ...] = ()
    platform: str | None = None  # whose admin frames the pages, for an embedded grant


# -- login links -------------------------------------------------------------------------------


def login_token(secret_key: str, store_id: str) -> str:
    """A fresh signed login token for one store; the nonce makes it single-use."""
    serializer = URLSafeTimedSerializer(secret_key, salt=LOGIN_SALT)
    return serializer.dumps({"store": store_id, "nonce": secrets.token_urlsafe(16)})


def read_login_token(signing_keys: list[str], token: str) -> tuple[str, str]:
    """The store id and nonce of a valid, unexpired token, signed with any of the keys
    (``Settings.signing_keys``: a link made before a key change still works)."""
    serializer = URLSafeTimedSerializer(signing_keys, salt=LOGIN_SALT)
    try:
        data = serializer.loads(token, max_age=LOGIN_LINK_MINUTES * 60)
    except SignatureExpired:
        raise LoginLinkError(
            f"this login link has expired (links last {LOGIN_LINK_MINUTES} minutes): ask for "
            "a new one with `connector stores login-link STORE_ID`"
        ) from None
    except BadSignature:
        raise LoginLinkError("this login link is not valid: copy the whole link") from None
    return data["store"], data["nonce"]


def spend_login_nonce(nonce: str) -> bool:
    """True the first time a link's nonce is spent, False ever after (within its lifetime).

    Kept in Redis: a used link must fail on every web process, not only on the one that
    served it.
    """
    key = f"connector:login-link:{nonce}"
    return bool(services().redis.set(key, 1, nx=True, ex=LOGIN_LINK_MINUTES * 60 + 60))


def start_session(store_id: str) -> None:
    """Log this browser in to one store, replacing whatever session it had."""
    session.clear()
    session.permanent = True
    session["store_id"] = store_id
    session["sid"] = secrets.token_urlsafe(16)


# -- embedded grants ---------------------------------------------------------------------------


def embedded_grant(store_id: str, frame_ancestors: tuple[str, ...], platform: str) -> str:
    """A short-lived grant for pages shown inside ``platform``'s admin, which may frame them
    from ``frame_ancestors`` only. The platform calls this after verifying its own session
    token."""
    serializer = URLSafeTimedSerializer(services().settings.signing_keys, salt=EMBEDDED_SALT)
    return serializer.dumps(
        {
            "store": store_id,
            "sid": secrets.token_urlsafe(16),
            "frame": list(frame_ancestors),
            "platform": platform,
        }
    )


def _embedded_from_request() -> Grant | None:
    token = request.args.get(EMBEDDED_PARAM) or request.form.get(EMBEDDED_PARAM)
    if not token:
        return None
    serializer = URLSafeTimedSerializer(services().settings.signing_keys, salt=EMBEDDED_SALT)
    try:
        data = serializer.loads(token, max_age=EMBEDDED_GRANT_SECONDS)
    except BadSignature:
        return None
    frame = tuple(data.get("frame", ()))
    return Grant(data["store"], data["sid"], token, frame, data.get("platform"))


# -- the checks every page runs ----------------------------------------------------------------


def current_grant(*, fresh: bool = False) -> Grant | None:
    """The grant this request carries: an embedded one in the URL, else the session cookie
    (``fresh`` reads the cookie session again, after :func:`start_session`)."""
    if fresh:
        g.merchant_grant = None
        if session.get("store_id") and session.get("sid"):
            g.merchant_grant = Grant(session["store_id"], session["sid"])
    if "merchant_grant" not in g:
        grant = _embedded_from_request()
        if grant is None and session.get("store_id") and session.get("sid"):
            grant = Grant(session["store_id"], session["sid"])
        g.merchant_grant = grant
    return g.merchant_grant


def require_store(store_id: str, *, fresh: bool = False) -> Grant:
    """The grant for ``store_id``, or 403. The same answer whether or not the store exists,
    so store ids cannot be probed."""
    grant = current_grant(fresh=fresh)
    if grant is None:
        abort(403, "you are not logged in: open a new login link for your store")
    if not hmac.compare_digest(grant.store_id, store_id):
        abort(403, "this page belongs to another store: log in to that store first")
    return grant


def guard_store_page(store_id: str, *, platform: str | None = None) -> None:
    """What every page of a store runs first: access (403), then CSRF on a POST (400), then
    the store itself (404 if it is gone, or not of ``platform``), which goes in ``g.store``."""
    require_store(store_id)
    check_csrf()
    with services().db.session() as session:
        store = session.get(Store, store_id)
    if store is None or (platform is not None and store.platform != platform):
        abort(404, "this store is not connected here (or not to this page)")
    g.store = store


def csrf_token() -> str:
    """The token every form of this session must carry back."""
    grant = current_grant()
    if grant is None:
        return ""
    return _csrf_digest(services().settings.secret_key, grant.session_id)


def _csrf_digest(key: str, session_id: str) -> str:
    return hmac.new(key.encode(), f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()


def check_csrf() -> None:
    """400 for a state-changing request without this session's token (made with the current
    key, or a fallback one for a form shown before a key change)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.form.get("csrf_token", "")
    grant = current_grant()
    keys = services().settings.signing_keys
    if grant is None or not any(
        hmac.compare_digest(sent, _csrf_digest(key, grant.session_id)) for key in keys
    ):
        abort(400, "the form expired or came from another site: reload the page and try again")


def csrf_field() -> Markup:
    """The hidden inputs a form needs: the CSRF token, and the embedded grant if any."""
    fields = f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">'
    grant = current_grant()
    if grant is not None and grant.embedded_token:
        fields += (
            f'<input type="hidden" name="{EMBEDDED_PARAM}" value="{escape(grant.embedded_token)}">'
        )
    return Markup(fields)


def add_embedded_grant(endpoint: str, values: dict[str, object]) -> None:
    """``url_for`` keeps an embedded grant in every merchant link, as cookies cannot carry it."""
    grant = g.get("merchant_grant")
    if grant is not None and grant.embedded_token and EMBEDDED_PARAM not in values:
        if current_app.url_map.is_endpoint_expecting(endpoint, "store_id"):
            values[EMBEDDED_PARAM] = grant.embedded_token


def embedded_head() -> EmbeddedHead | None:
    """What the framing admin's platform needs loaded in the pages, when they are framed."""
    grant = g.get("merchant_grant")
    if grant is None or not grant.embedded_token or not grant.platform:
        return None
    platform = current_app.extensions[PLATFORMS_KEY].get(grant.platform)
    if platform is None or platform.embedded_head is None:
        return None
    return platform.embedded_head(services())


def embedded_head_html() -> Markup:
    """The ``<head>`` tags of :func:`embedded_head`, for the base template."""
    head = embedded_head()
    return Markup(head.html if head else "")


def security_headers(response):  # type: ignore[no-untyped-def]
    """Headers for every merchant page: no framing except by the platform's admin, no
    foreign scripts but its own, no caching of private pages, no Referer (it could carry a
    grant)."""
    grant = g.get("merchant_grant")
    ancestors = " ".join(grant.frame_ancestors) if grant and grant.frame_ancestors else "'none'"
    head = embedded_head()
    scripts = " ".join(("'self'", *(head.script_sources if head else ())))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )
    if ancestors == "'none'":
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
