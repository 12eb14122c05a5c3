"""Who may see a store's merchant pages, and the headers and checks that keep them safe.

Two ways in, one rule: a browser may act on a store only when it holds a grant for it.

- A **login link** (``connector stores login-link STORE_ID``) for WooCommerce and custom
  stores: a signed, expiring, single-use token (``itsdangerous``). Opening it shows a button,
  and the POST behind the button spends it and starts a session. The extra click is
  deliberate: mail scanners fetch links, and a GET that logged in would spend the link before
  the merchant could. That POST is refused cross-site (``Origin``, ``Sec-Fetch-Site``) and
  without the form's CSRF token, which is bound to a cookie the login page set, so no other
  site can log a browser in to a store of its choosing (login CSRF).
- A **session** is a row of ``merchant_sessions``; the cookie (HttpOnly, SameSite=Lax, Secure
  when ``APP_URL`` is https, set once at login and never re-issued) holds only a random id
  (signed with the app's keys, so dropping a key ends the sessions made with it), and the row
  only the id's SHA-256. It ends :data:`SESSION_HOURS` after login whatever happens, after
  :data:`SESSION_IDLE_HOURS` unused, on logout, and when the store is uninstalled or deleted.
  Flask's own signed session is not used.
- An **embedded grant** for pages framed by a store platform's admin (Shopify): the platform
  authenticates its own session token, then calls :func:`embedded_grant`. Browsers block or
  partition cookies in third-party frames, so this grant travels in the URL (``?session=``) of
  every link and form of the pages. It stays stateless (signed) but lasts
  :data:`EMBEDDED_GRANT_SECONDS` only, names its store and shop and is refused once the store
  is no longer that shop's or no longer active (an uninstall ends it at once); the pages
  renew it through the platform (App Bridge, ``static/embedded-grant.js``). It never becomes a
  cookie session, the pages send no Referer, and the access log leaves out query strings.

Every POST carries a CSRF token derived from the grant (HMAC of the session's id), so a page
of another site cannot submit our forms even while the merchant is logged in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Response, abort, current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer
from markupsafe import Markup, escape
from sqlalchemy import ColumnElement, delete, or_, update

from connector.models import MerchantSession, Store, utcnow
from connector.plugins import EmbeddedHead
from connector.services import Services
from connector.web import PLATFORMS_KEY, services

LOGIN_SALT = "merchant-login"
EMBEDDED_SALT = "merchant-embedded"
SESSION_SALT = "merchant-session"
EMBEDDED_PARAM = "session"
LOGIN_LINK_MINUTES = 30
EMBEDDED_GRANT_SECONDS = 300
"""Short: the grant is in URLs, so it must be worthless soon after it leaks. The embedded
page renews it through App Bridge before it runs out."""
SESSION_HOURS = 12
"""A session's absolute lifetime, from login: using it does not extend it."""
SESSION_IDLE_HOURS = 2
"""A session unused this long is over (a browser left logged in on a shared computer)."""
LAST_SEEN_EVERY = timedelta(minutes=1)
"""How stale ``last_seen_at`` may get before a request writes it again (one write a minute
per session rather than one per page)."""
LOGIN_CSRF_COOKIE = "connector_login_csrf"


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
    shop: str | None = None  # the store's domain an embedded grant was issued for


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


def login_csrf_token(response: Response) -> str:
    """The token the login page's form carries back, bound to a cookie set here.

    A page of another site can neither read the token nor send the cookie (SameSite=Strict,
    path ``/login/``), so it cannot make a browser log in to the store of its own link."""
    browser = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        browser,
        max_age=LOGIN_LINK_MINUTES * 60,
        path="/login/",
        httponly=True,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        samesite="Strict",
    )
    return _login_csrf_digest(services().settings.secret_key, browser)


def _login_csrf_digest(key: str, browser: str) -> str:
    return hmac.new(key.encode(), f"login-csrf:{browser}".encode(), hashlib.sha256).hexdigest()


def login_post_problem() -> str | None:
    """Why a login POST must be refused, or None: it came from another site (its
    ``Origin`` is not ours, or ``Sec-Fetch-Site`` says cross-site or same-site), or it lacks
    the CSRF token of the login page shown to this browser.

    A browser without those headers (older ones) is still held by the token. ``Origin: null``
    proves nothing either way: our pages' ``Referrer-Policy: no-referrer`` makes browsers send
    it on our own form's POST (https://fetch.spec.whatwg.org/#serializing-a-request-origin),
    and a hostile page can send it too; then ``Sec-Fetch-Site`` and the token decide.
    https://developer.mozilla.org/en-US/docs/Web/HTTP/Reference/Headers/Sec-Fetch-Site
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return "cross-site"
    origin = request.headers.get("Origin")
    if origin not in (None, "null") and origin.rstrip("/") not in _own_origins():
        return "cross-origin"
    browser = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = request.form.get("csrf_token", "")
    keys = services().settings.signing_keys
    if not browser or not any(
        hmac.compare_digest(sent, _login_csrf_digest(key, browser)) for key in keys
    ):
        return "csrf"
    return None


def _own_origins() -> set[str]:
    """Our origin as the browser sees it (this request's host) and as ``APP_URL`` says."""
    own = {request.host_url.rstrip("/")}
    app_url = urlsplit(services().settings.app_url)
    if app_url.scheme and app_url.netloc:
        own.add(f"{app_url.scheme}://{app_url.netloc}")
    return own


# -- server-side sessions ----------------------------------------------------------------------


def _session_cookie() -> str:
    return current_app.config["SESSION_COOKIE_NAME"]


def _cookie_signer() -> Signer:
    """Signs the session id in the cookie with the app's keys, so dropping a key from
    ``SECRET_KEY_FALLBACKS`` still ends the sessions made with it (and a weak key, never in
    ``signing_keys``, ends them at once)."""
    return Signer(services().settings.signing_keys, salt=SESSION_SALT)


def _session_id_from_cookie() -> str | None:
    """The session id of this browser's cookie, if our keys signed it."""
    value = request.cookies.get(_session_cookie())
    if not value:
        return None
    try:
        return _cookie_signer().unsign(value).decode()
    except BadSignature:
        return None


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(response: Response, store_id: str) -> None:
    """Log this browser in to one store: a new session row, its id in the cookie of
    ``response``; the browser's previous session, if any, ends. Sessions past their time are
    swept here, so the table holds live ones only."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with services().db.session() as db:
        db.execute(delete(MerchantSession).where(_over(now)))
        if previous := _session_id_from_cookie():
            db.execute(delete(MerchantSession).where(MerchantSession.id_sha256 == _hash(previous)))
        db.add(
            MerchantSession(
                id_sha256=_hash(session_id),
                store_id=store_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=SESSION_HOURS),
            )
        )
        db.commit()
    config = current_app.config
    response.set_cookie(
        _session_cookie(),
        _cookie_signer().sign(session_id).decode(),
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        secure=config["SESSION_COOKIE_SECURE"],
        samesite=config["SESSION_COOKIE_SAMESITE"],
    )


def end_session(response: Response) -> None:
    """Log this browser out: its session row goes, so a copy of the cookie is worthless."""
    if session_id := _session_id_from_cookie():
        with services().db.session() as db:
            db.execute(
                delete(MerchantSession).where(MerchantSession.id_sha256 == _hash(session_id))
            )
            db.commit()
    response.delete_cookie(_session_cookie())


def end_store_sessions(svc: Services, store_id: str) -> int:
    """End every session of a store (uninstalled, or deleted): its merchants must log in
    again, and an uninstalled store's pages open to no one. Returns how many ended."""
    with svc.db.session() as db:
        ended = db.execute(delete(MerchantSession).where(MerchantSession.store_id == store_id))
        db.commit()
    return ended.rowcount


def _over(now: datetime) -> ColumnElement[bool]:
    """The sessions past their absolute lifetime or their idle timeout."""
    return or_(
        MerchantSession.expires_at <= now,
        MerchantSession.last_seen_at <= now - timedelta(hours=SESSION_IDLE_HOURS),
    )


def _is_over(row: MerchantSession, now: datetime) -> bool:
    return row.expires_at <= now or row.last_seen_at <= now - timedelta(hours=SESSION_IDLE_HOURS)


def _session_from_request() -> Grant | None:
    """The store of this browser's live session, noting that it was used."""
    session_id = _session_id_from_cookie()
    if not session_id:
        return None
    digest, now = _hash(session_id), utcnow()
    with services().db.session() as db:
        row = db.get(MerchantSession, digest)
        if row is None or _is_over(row, now):
            return None
        if now - row.last_seen_at >= LAST_SEEN_EVERY:
            db.execute(
                update(MerchantSession)
                .where(MerchantSession.id_sha256 == digest)
                .values(last_seen_at=now)
            )
            db.commit()
        return Grant(row.store_id, digest)


# -- embedded grants ---------------------------------------------------------------------------


def embedded_grant(
    store_id: str,
    frame_ancestors: tuple[str, ...],
    platform: str | None,
    shop: str | None = None,
) -> str:
    """A short-lived grant for pages shown inside ``platform``'s admin, which may frame them
    from ``frame_ancestors`` only, for ``store_id`` while it is ``shop``'s active store. The
    platform calls this after verifying its own session token."""
    serializer = URLSafeTimedSerializer(services().settings.signing_keys, salt=EMBEDDED_SALT)
    return serializer.dumps(
        {
            "store": store_id,
            "shop": shop,
            "sid": secrets.token_urlsafe(16),
            "frame": list(frame_ancestors),
            "platform": platform,
        }
    )


def embedded_csrf_token(grant: str) -> str:
    """The CSRF token forms must carry with ``grant`` (a renewed grant has a new one)."""
    serializer = URLSafeTimedSerializer(services().settings.signing_keys, salt=EMBEDDED_SALT)
    return _csrf_digest(services().settings.secret_key, serializer.loads(grant)["sid"])


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
    return Grant(data["store"], data["sid"], token, frame, data.get("platform"), data.get("shop"))


def _grant_fits(grant: Grant, store: Store) -> bool:
    """An embedded grant holds for its store only while that store is active and still the
    shop (and platform) it was issued for: an uninstall ends it before it expires."""
    if not grant.embedded_token:
        return True
    return (
        store.status == "active"
        and (grant.shop is None or hmac.compare_digest(grant.shop, store.domain))
        and (grant.platform is None or grant.platform == store.platform)
    )


# -- the checks every page runs ----------------------------------------------------------------


def current_grant() -> Grant | None:
    """The grant this request carries: an embedded one in the URL, else the session cookie."""
    if "merchant_grant" not in g:
        g.merchant_grant = _embedded_from_request() or _session_from_request()
    return g.merchant_grant


def require_store(store_id: str) -> Grant:
    """The grant for ``store_id``, or 403. The same answer whether or not the store exists,
    so store ids cannot be probed."""
    grant = current_grant()
    if grant is None:
        abort(403, "you are not logged in: open a new login link for your store")
    if not hmac.compare_digest(grant.store_id, store_id):
        abort(403, "this page belongs to another store: log in to that store first")
    return grant


def guard_store_page(store_id: str, *, platform: str | None = None) -> None:
    """What every page of a store runs first: access (403), then CSRF on a POST (400), then
    the store itself (404 if it is gone, or not of ``platform``), which goes in ``g.store``."""
    grant = require_store(store_id)
    check_csrf()
    with services().db.session() as session:
        store = session.get(Store, store_id)
    if store is not None and not _grant_fits(grant, store):
        abort(403, "this page's access ended: open the app again from your store's admin")
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
