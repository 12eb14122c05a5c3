"""Google OAuth 2.0 access tokens for the Data Manager API, made from the row's refresh token.

The merchant gives us a refresh token (``connector destinations set STORE google
--refresh-token``), made for the OAuth client named by ``GOOGLE_OAUTH_CLIENT_ID`` and
``GOOGLE_OAUTH_CLIENT_SECRET`` with the scope ``https://www.googleapis.com/auth/datamanager``
(the scope every Data Manager method lists, e.g.
https://developers.google.com/data-manager/api/reference/rest/v1/requestStatus/retrieve).
Google's access tokens live an hour (``expires_in`` 3599), so :func:`access_token_for` makes
one from the refresh token when the row has none or it expires within :data:`REFRESH_MARGIN`,
and :func:`send_with_renewed_token` makes a new one when Google answers 401 UNAUTHENTICATED
anyway (a token revoked early, a clock off), then sends once more.

The refresh request is Google's documented one
(https://developers.google.com/identity/protocols/oauth2/web-server#offline): a form POST of
``client_id``, ``client_secret``, ``refresh_token`` and ``grant_type=refresh_token`` to the
token endpoint, answered ``{access_token, expires_in, scope, token_type}`` or an OAuth error
``{error, error_description}``; ``invalid_grant`` means the refresh token was revoked or has
expired (https://developers.google.com/identity/protocols/oauth2#expiration), which only the
merchant can fix.

Renewal happens once for all workers: the row is locked while Google is asked, and a worker
that finds a fresh token once it holds the lock uses it. The access token is stored sealed
with a digest of the refresh token it was made from, so a refresh token replaced by the
merchant never keeps sending with the old account's access token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

import requests
from sqlalchemy import update
from sqlalchemy.orm import Session

from connector.destinations import DestinationConfig, Outcome, SendResult
from connector.models import StoreDestination, utcnow

if TYPE_CHECKING:
    from connector.services import Services

logger = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/datamanager"
CLIENT_ID = "GOOGLE_OAUTH_CLIENT_ID"
CLIENT_SECRET = "GOOGLE_OAUTH_CLIENT_SECRET"
TOKEN_URL = "GOOGLE_OAUTH_TOKEN_URL"
REFRESH_MARGIN = timedelta(minutes=5)
"""Renew this long before expiry, so that no batch starts with a dying token."""

UNAUTHENTICATED = 16  # google.rpc.Code, what the Data Manager API answers an expired token

RECONNECT_FIX = (
    "Google refused the refresh token (revoked, expired, or made for another OAuth client). "
    "Make a new refresh token with the scope https://www.googleapis.com/auth/datamanager, as a "
    "Google account that can use this Google Ads account, and save it with `connector "
    "destinations set STORE_ID google --refresh-token TOKEN`."
)
CLIENT_FIX = (
    "Set GOOGLE_OAUTH_CLIENT_ID and GOOGLE_OAUTH_CLIENT_SECRET to the OAuth client the "
    "refresh token was made with (Google Cloud console > APIs & Services > Credentials), then "
    "restart the connector."
)
NO_REFRESH_TOKEN_FIX = (
    "Save a Google refresh token with `connector destinations set STORE_ID google "
    "--refresh-token TOKEN`."
)


@dataclass(frozen=True)
class Grant:
    """A new access token from Google's token endpoint."""

    access_token: str
    expires_in: int
    refresh_token: str | None = None  # Google rarely sends one on refresh; kept if it does


class TokenError(Exception):
    """Google would not make an access token; ``fix`` says what the merchant does about it,
    ``transient`` that trying later may work (Google or the network was down)."""

    def __init__(self, message: str, *, fix: str, transient: bool = False) -> None:
        super().__init__(message)
        self.fix = fix
        self.transient = transient


def refresh_grant(
    http: requests.Session,
    token_url: str | None,
    client_id: str | None,
    client_secret: str | None,
    refresh_token: str,
    timeout: float = 10.0,
) -> Grant:
    """Ask Google's token endpoint for an access token.

    Raises:
        TokenError: the OAuth client is not configured, Google refused, or did not answer.
    """
    if not (client_id and client_secret and token_url):
        raise TokenError("the Google OAuth client is not configured", fix=CLIENT_FIX)
    form = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    try:
        response = http.post(token_url, data=form, timeout=timeout)
    except requests.RequestException as exc:
        message = f"cannot reach Google's token endpoint: {type(exc).__name__}"
        raise TokenError(message, fix=RECONNECT_FIX, transient=True) from None
    return _grant_from(response)


def access_token_for(services: Services, row: StoreDestination) -> str:
    """The token to send with: the stored one while it lives, else a new one.

    Never raises for Google's trouble: when no token can be made it returns the stored one if
    it has not expired yet, else ``""``, and the send that follows is answered (or, for an
    empty token, refused before sending) as UNAUTHENTICATED, which :func:`send_with_renewed_token`
    turns into a pause with the fix or a retry.
    """
    current = _stored_token(services, row)
    if current and not _expires_soon(row):
        return current
    try:
        return renew_access_token(services, row.id, stale_token=current or "", force=False)
    except TokenError as exc:
        logger.warning("google.token-refresh-failed destination=%s reason=%s", row.id, exc)
        expired = row.token_expires_at is not None and row.token_expires_at <= utcnow()
        return current if current and not expired else ""


def send_with_renewed_token(
    services: Services,
    row: StoreDestination,
    config: DestinationConfig,
    result: SendResult,
    send: Callable[[DestinationConfig], SendResult],
) -> SendResult:
    """After an UNAUTHENTICATED answer: make a new access token and send once more.

    A refresh token Google refuses pauses the destination with :data:`RECONNECT_FIX`, a
    missing OAuth client with :data:`CLIENT_FIX`; a token endpoint that could not answer makes
    the batch retry later. The renewal locks the row from its own session, so the caller's
    session must hold no uncommitted write to it (nor, on SQLite, any uncommitted write).
    """
    if result.code != UNAUTHENTICATED:
        return result
    if not row.refresh_token_encrypted:
        return replace(result, fix=NO_REFRESH_TOKEN_FIX)
    try:
        token = renew_access_token(services, row.id, stale_token=config.access_token, force=True)
    except TokenError as exc:
        logger.warning("google.token-renewal-failed destination=%s reason=%s", row.id, exc)
        message = f"{result.message}; {exc}"
        if exc.transient:
            return replace(result, outcome=Outcome.RETRY, message=message, fix=None)
        return replace(result, message=message, fix=exc.fix)
    if token == config.access_token:
        return result
    logger.info("google.token-renewed-after-401 destination=%s", row.id)
    return send(replace(config, access_token=token))


def renew_access_token(
    services: Services, destination_id: int, *, stale_token: str, force: bool
) -> str:
    """A new access token on the row, unless another worker already replaced ``stale_token``.

    ``force`` renews a token that has not reached its recorded expiry (Google said it is no
    longer valid).

    Raises:
        TokenError: no refresh token, no OAuth client, or Google refused or did not answer.
    """
    settings = services.settings
    with services.db.session() as session:
        _lock_row(session, destination_id)
        row = session.get(StoreDestination, destination_id)
        if row is None or not row.refresh_token_encrypted:
            raise TokenError("this Google destination has no refresh token", fix=RECONNECT_FIX)
        current = _stored_token(services, row)
        fresh = current and not _expires_soon(row)
        if fresh and (not force or current != stale_token):
            return current  # another worker renewed it while we waited for the lock
        try:
            refresh_token = services.cipher.decrypt(row.refresh_token_encrypted)
        except ValueError:
            raise TokenError("the stored refresh token cannot be read", fix=RECONNECT_FIX) from None
        grant = refresh_grant(
            services.http,
            settings.env(TOKEN_URL),
            settings.env(CLIENT_ID),
            settings.env(CLIENT_SECRET),
            refresh_token,
            settings.http_timeout_seconds,
        )
        refresh_token = grant.refresh_token or refresh_token
        if grant.refresh_token:
            row.refresh_token_encrypted = services.cipher.encrypt(refresh_token)
        row.access_token_encrypted = _seal(services, grant.access_token, refresh_token)
        row.token_expires_at = utcnow() + timedelta(seconds=grant.expires_in)
        row.updated_at = utcnow()
        session.commit()
    logger.info("google.token-renewed destination=%s", destination_id)
    return grant.access_token


def _grant_from(response: requests.Response) -> Grant:
    """Google's answer as a grant, or the :class:`TokenError` it amounts to."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if response.ok and isinstance(token, str) and token and isinstance(expires_in, int):
        refresh = body.get("refresh_token")
        return Grant(token, expires_in, refresh if isinstance(refresh, str) else None)
    error = str(body.get("error") or f"HTTP {response.status_code}")
    message = f"Google's token endpoint answered {error}"
    if body.get("error_description"):
        message += f": {body['error_description']}"
    if response.status_code >= 500 or response.status_code == 429:
        raise TokenError(message, fix=RECONNECT_FIX, transient=True)
    if error in ("invalid_client", "unauthorized_client"):
        raise TokenError(message, fix=CLIENT_FIX)
    raise TokenError(message, fix=RECONNECT_FIX)


def _lock_row(session: Session, destination_id: int) -> None:
    """Hold the row until commit, so renewals of one destination run one at a time.

    A write rather than ``SELECT … FOR UPDATE``: on PostgreSQL both take the row lock, and on
    SQLite (no row locks) the write takes the database's write lock, which FOR UPDATE would
    not. The lock is held for one call to Google, about once an hour.
    """
    session.execute(
        update(StoreDestination)
        .where(StoreDestination.id == destination_id)
        .values(updated_at=StoreDestination.updated_at)
    )


def _stored_token(services: Services, row: StoreDestination) -> str | None:
    """The row's access token, if it was made from the row's current refresh token."""
    if not row.access_token_encrypted or not row.refresh_token_encrypted:
        return None
    try:
        sealed = json.loads(services.cipher.decrypt(row.access_token_encrypted))
        refresh_token = services.cipher.decrypt(row.refresh_token_encrypted)
    except ValueError:  # not one of ours, or sealed with a key we no longer have
        return None
    if not isinstance(sealed, dict) or not isinstance(sealed.get("access_token"), str):
        return None
    if not hmac.compare_digest(str(sealed.get("for", "")), _digest(refresh_token)):
        return None  # the refresh token was replaced since this access token was made
    return sealed["access_token"]


def _seal(services: Services, access_token: str, refresh_token: str) -> str:
    sealed = {"access_token": access_token, "for": _digest(refresh_token)}
    return services.cipher.encrypt(json.dumps(sealed))


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _expires_soon(row: StoreDestination) -> bool:
    expires_at = row.token_expires_at
    return expires_at is None or expires_at - REFRESH_MARGIN <= utcnow()
