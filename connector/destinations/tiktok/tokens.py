"""OAuth grants on the store's TikTok destination row: save them, and keep the token fresh.

"Connect with TikTok" writes the access token (and, where TikTok issues one, the refresh token
and both expiry times) encrypted onto the ``destinations`` row. Delivery asks
:func:`access_token_for` for the token to send with, which renews it shortly before it
expires, and :func:`send_with_renewed_token` renews it when TikTok answers 40102
ACCESS_TOKEN_EXPIRE anyway (a clock off, a token revoked early), then sends once more.

Renewal happens once for all workers: the destination row is locked while TikTok is asked,
and a worker that finds the token already replaced once it holds the lock uses the new one
instead of spending the refresh token again (TikTok may rotate refresh tokens).

The refresh token is sealed together with a digest of the access token it renews. A token
pasted by hand later (``connector tiktok set`` leaves the OAuth columns alone) therefore never
gets "renewed" into the OAuth account's token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session

from connector.destinations import DestinationConfig, Outcome, SendResult
from connector.destinations.tiktok.oauth import (
    ACCESS_TOKEN_EXPIRED,
    RECONNECT,
    Grant,
    Pixel,
    TikTokOAuthError,
    refresh_grant,
)
from connector.models import Store, StoreDestination, utcnow
from connector.stores import find_destination

if TYPE_CHECKING:
    from connector.crypto import TokenCipher
    from connector.services import Services

logger = logging.getLogger(__name__)

KIND = "tiktok"
REFRESH_MARGIN = timedelta(minutes=10)
"""Renew this long before expiry, so that no batch starts with a dying token."""

CHOOSE_PIXEL = "choose a pixel on the Settings page"
"""The pause a fresh connection starts with: nothing is sent until the merchant picks one."""


def save_grant(services: Services, store_id: str, grant: Grant) -> int:
    """Put a new grant on the store's TikTok destination and pause it until a pixel is chosen.

    A new row gets an empty pixel code; an existing one keeps its options and test event
    code, and its pixel is offered again (the new account may not own it). Returns the row id.
    """
    with services.db.session() as session:
        if session.get(Store, store_id) is None:
            raise TikTokOAuthError(f"There is no store {store_id}.")
        row = find_destination(session, store_id, KIND) or StoreDestination(
            store_id=store_id, kind=KIND, account_id="", options={}
        )
        for column, value in _grant_columns(services.cipher, grant, utcnow()).items():
            setattr(row, column, value)
        row.advertiser_id = None
        row.paused_reason = CHOOSE_PIXEL
        row.paused_at = utcnow()
        session.add(row)
        session.commit()
        return row.id


def choose_pixel(services: Services, store_id: str, pixel: Pixel) -> None:
    """Send to this pixel from now on, and lift the pause that waited for the choice."""
    with services.db.session() as session:
        row = find_destination(session, store_id, KIND)
        if row is None:
            raise TikTokOAuthError("This store is not connected to TikTok. " + RECONNECT)
        row.account_id = pixel.code
        row.advertiser_id = pixel.advertiser_id
        if row.paused_reason == CHOOSE_PIXEL:
            row.paused_reason = None
            row.paused_at = None
        row.updated_at = utcnow()
        session.commit()


def access_token_for(services: Services, row: StoreDestination) -> str:
    """The token to send with, renewed first when it expires within :data:`REFRESH_MARGIN`.

    Never raises for TikTok trouble: if renewal fails the current token is used, and TikTok's
    answer decides (a 40102 comes back to :func:`send_with_renewed_token`).
    """
    token = services.cipher.decrypt(row.access_token_encrypted)
    if not _expires_soon(row) or _refresh_token(services.cipher, row, token) is None:
        return token
    try:
        return renew_access_token(services, row.id, stale_token=token, force=False)
    except TikTokOAuthError as exc:
        logger.warning("tiktok.token-refresh-failed destination=%s code=%s", row.id, exc.code)
        return token


def send_with_renewed_token(
    services: Services,
    row: StoreDestination,
    config: DestinationConfig,
    expired: SendResult,
    send: Callable[[DestinationConfig], SendResult],
) -> SendResult:
    """After TikTok answered ``expired`` (40102): renew an OAuth token and send again.

    Without a refresh token (a pasted token) the answer stands and pauses the destination. A
    renewal TikTok refuses pauses it too, saying to reconnect; one TikTok could not answer
    is retried later instead. The renewal locks the destination row from its own session, so
    the caller's session must hold no uncommitted write to that row (nor, on SQLite, any
    uncommitted write at all).
    """
    if expired.code != ACCESS_TOKEN_EXPIRED or not row.refresh_token_encrypted:
        return expired
    try:
        token = renew_access_token(services, row.id, stale_token=config.access_token, force=True)
    except TikTokOAuthError as exc:
        logger.warning("tiktok.token-renewal-failed destination=%s code=%s", row.id, exc.code)
        if exc.code is None or exc.code >= 50000:
            return replace(expired, outcome=Outcome.RETRY, message=f"{expired.message}; {exc}")
        return replace(expired, fix=str(exc))
    if token == config.access_token:
        return expired
    logger.info("tiktok.token-renewed-after-40102 destination=%s", row.id)
    return send(replace(config, access_token=token))


def renew_access_token(
    services: Services, destination_id: int, *, stale_token: str, force: bool
) -> str:
    """Renew the destination's access token unless another worker already replaced ``stale_token``.

    ``force`` renews even before the recorded expiry (TikTok said the token expired).

    Raises:
        TikTokOAuthError: no usable refresh token, or TikTok refused or did not answer.
    """
    cipher = services.cipher
    with services.db.session() as session:
        _lock_row(session, destination_id)
        row = session.get(StoreDestination, destination_id)
        if row is None:
            raise TikTokOAuthError("The TikTok connection was removed. " + RECONNECT)
        current = cipher.decrypt(row.access_token_encrypted)
        if current != stale_token or not (force or _expires_soon(row)):
            return current  # another worker renewed it while we waited for the lock
        refresh_token = _refresh_token(cipher, row, current)
        if refresh_token is None:
            raise TikTokOAuthError("This TikTok access cannot be renewed. " + RECONNECT)
        grant = refresh_grant(services.http, services.settings, refresh_token)
        refresh_expires_at = row.refresh_expires_at
        for column, value in _grant_columns(cipher, grant, utcnow()).items():
            setattr(row, column, value)
        if grant.refresh_token is None:  # TikTok kept the refresh token: reseal it to the new one
            row.refresh_token_encrypted = _seal(cipher, refresh_token, grant.access_token)
            row.refresh_expires_at = refresh_expires_at
        row.updated_at = utcnow()
        session.commit()
    logger.info("tiktok.token-renewed destination=%s", destination_id)
    return grant.access_token


def _lock_row(session: Session, destination_id: int) -> None:
    """Hold the row until commit, so renewals of one destination run one at a time.

    A write rather than ``SELECT … FOR UPDATE``: on PostgreSQL both take the row lock, and on
    SQLite (no row locks) the write takes the database's write lock, which FOR UPDATE would
    not. The lock is held for one call to TikTok, about once per token lifetime.
    """
    session.execute(
        update(StoreDestination)
        .where(StoreDestination.id == destination_id)
        .values(updated_at=StoreDestination.updated_at)
    )


def _grant_columns(cipher: TokenCipher, grant: Grant, now: datetime) -> dict[str, object]:
    refresh = grant.refresh_token
    return {
        "access_token_encrypted": cipher.encrypt(grant.access_token),
        "token_expires_at": _after(now, grant.expires_in),
        "refresh_token_encrypted": _seal(cipher, refresh, grant.access_token) if refresh else None,
        "refresh_expires_at": _after(now, grant.refresh_token_expires_in) if refresh else None,
    }


def _expires_soon(row: StoreDestination) -> bool:
    return row.token_expires_at is not None and row.token_expires_at - REFRESH_MARGIN <= utcnow()


def _refresh_token(cipher: TokenCipher, row: StoreDestination, access_token: str) -> str | None:
    """The refresh token for this access token, if it has one that has not expired."""
    if not row.refresh_token_encrypted:
        return None
    if row.refresh_expires_at is not None and row.refresh_expires_at <= utcnow():
        return None
    sealed = json.loads(cipher.decrypt(row.refresh_token_encrypted))
    if not hmac.compare_digest(sealed["for"], _digest(access_token)):
        return None  # the access token was replaced by hand since TikTok granted this one
    return sealed["refresh_token"]


def _seal(cipher: TokenCipher, refresh_token: str, access_token: str) -> str:
    return cipher.encrypt(
        json.dumps({"refresh_token": refresh_token, "for": _digest(access_token)})
    )


def _digest(access_token: str) -> str:
    return hashlib.sha256(access_token.encode()).hexdigest()


def _after(now: datetime, seconds: int | None) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds else None
