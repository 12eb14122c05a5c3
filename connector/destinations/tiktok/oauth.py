"""TikTok for Business OAuth ("Connect with TikTok"): authorize, exchange, refresh, pixels.

The advertiser authorization flow, as TikTok's API for Business runs it:

1. The merchant's browser goes to ``{TIKTOK_AUTH_URL}?app_id=…&redirect_uri=…&state=…``
   (``https://ads.tiktok.com/marketing_api/auth``: TikTok API for Business, "Authorization",
   and Airbyte's ``TikTokMarketingOAuthFlow`` builds the same URL). TikTok sends it back
   to ``redirect_uri`` with ``auth_code`` (Airbyte also accepts ``code``) and the ``state``.
2. ``POST {TIKTOK_API_BASE}/open_api/v1.3/oauth2/access_token/`` with JSON
   ``{app_id, secret, auth_code}`` answers TikTok's envelope ``{code, message, request_id,
   data}`` with ``data = {access_token, advertiser_ids, scope}`` (field names as in Airbyte's
   flow and in TikTok SDK's ``AuthenticationApi.oauth2_access_token``). Advertiser tokens are
   long-term; where TikTok issues expiring tokens (the SDK documents 24 h access and one-year
   refresh tokens) the answer adds ``refresh_token``, ``expires_in`` and
   ``refresh_token_expires_in`` in seconds.
3. ``POST …/oauth2/refresh_token/`` with ``{app_id, secret, refresh_token, grant_type:
   "refresh_token"}`` answers the same token fields (the body of Ocean Engine's, TikTok's
   sister API's, ``RefreshToken`` and the field names of public TikTok clients).
4. ``GET …/oauth2/advertiser/get/?app_id=…&secret=…`` with the ``Access-Token`` header lists
   the advertiser accounts that granted the app (``data.list[].advertiser_id``,
   ``advertiser_name``; SDK ``oauth2_advertiser_get``), and ``GET …/pixel/list/
   ?advertiser_id=…&page=…&page_size=…`` lists each account's pixels (``data.pixels[]`` with
   ``pixel_code`` and ``pixel_name``, ``data.page_info.total_page``; TikTok's docs id
   1740858697598978).

Every call goes through the process's HTTP session with the configured timeout. A refusal
becomes :class:`TikTokOAuthError` carrying TikTok's code and message and what to do; error
codes are those of the SDK's ``tiktok_code.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from connector.config import Settings

TOKEN_PATH = "/open_api/v1.3/oauth2/access_token/"
REFRESH_PATH = "/open_api/v1.3/oauth2/refresh_token/"
ADVERTISERS_PATH = "/open_api/v1.3/oauth2/advertiser/get/"
PIXEL_LIST_PATH = "/open_api/v1.3/pixel/list/"

PIXEL_PAGE_SIZE = 20
MAX_PIXEL_PAGES = 50  # 1,000 pixels: far more than any shop has, and a bound on a loop

ACCESS_TOKEN_EXPIRED = 40102
REFRESH_TOKEN_EXPIRED = 40103
INVALID_REFRESH_TOKEN = 40107
AUTH_CODE_ERROR = 40110

RECONNECT = "Connect with TikTok again on the Settings page."
CHECK_APP = (
    "The connector's TikTok app is refused: the operator should check TIKTOK_APP_ID and "
    "TIKTOK_APP_SECRET against the app in TikTok's developer portal."
)
# What the merchant or operator can do about a refusal, by TikTok code.
ADVICE: dict[int, str] = {
    40001: "TikTok refused the permission: " + CHECK_APP,
    40002: "TikTok refused a parameter: " + CHECK_APP,
    40102: "The TikTok access has expired. " + RECONNECT,
    40103: "The TikTok access can no longer be renewed. " + RECONNECT,
    40104: "No TikTok access token was sent. " + RECONNECT,
    40105: "The TikTok access was revoked or is invalid. " + RECONNECT,
    40107: "The TikTok access can no longer be renewed. " + RECONNECT,
    AUTH_CODE_ERROR: "The TikTok authorization was already used or expired. " + RECONNECT,
    40113: "TikTok has disabled the connector's app: the operator should check it in "
    "TikTok's developer portal.",
    40130: "The connector's TikTok app lacks a permission: the operator should add the Pixel "
    "management (Measurement) permission to the app, then connect again.",
}
RETRY_LATER = "TikTok is busy or unavailable; try again in a few minutes."
NOT_SET_UP = (
    "Connect with TikTok is not set up on this connector: the operator must set "
    "TIKTOK_APP_ID and TIKTOK_APP_SECRET (see the README). Until then, paste a pixel code and "
    "an Events API access token on the Settings page."
)


class TikTokOAuthError(Exception):
    """TikTok refused or did not answer an OAuth or account call.

    The message names TikTok's code and words and says what to do.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Grant:
    """What TikTok granted: tokens (in memory only until encrypted) and the accounts."""

    access_token: str
    advertiser_ids: tuple[str, ...]
    expires_in: int | None = None
    refresh_token: str | None = None
    refresh_token_expires_in: int | None = None


@dataclass(frozen=True)
class Advertiser:
    """An advertiser account that granted the app."""

    advertiser_id: str
    name: str


@dataclass(frozen=True)
class Pixel:
    """A pixel of an advertiser account: the code events are sent to, and its name."""

    advertiser_id: str
    code: str
    name: str


def oauth_enabled(settings: Settings) -> bool:
    """Whether the operator configured a TikTok for Business app (else tokens are pasted)."""
    return bool(settings.env("TIKTOK_APP_ID") and settings.env("TIKTOK_APP_SECRET"))


def authorize_url(settings: Settings, *, redirect_uri: str, state: str) -> str:
    """TikTok's advertiser authorization page for this app, coming back to ``redirect_uri``."""
    app_id, _ = _credentials(settings)
    query = urlencode({"app_id": app_id, "redirect_uri": redirect_uri, "state": state})
    return f"{settings.env('TIKTOK_AUTH_URL')}?{query}"


def exchange_auth_code(http: requests.Session, settings: Settings, auth_code: str) -> Grant:
    """The access token (and the advertiser accounts) for the ``auth_code`` TikTok sent back."""
    app_id, secret = _credentials(settings)
    body = {"app_id": app_id, "secret": secret, "auth_code": auth_code}
    return _grant(_call(http, settings, "POST", TOKEN_PATH, json=body))


def refresh_grant(http: requests.Session, settings: Settings, refresh_token: str) -> Grant:
    """A new access token (and refresh token) for a refresh token."""
    app_id, secret = _credentials(settings)
    body = {
        "app_id": app_id,
        "secret": secret,
        "refresh_token": refresh_token,
        "grant_type": "refresh_token",
    }
    return _grant(_call(http, settings, "POST", REFRESH_PATH, json=body))


def list_advertisers(
    http: requests.Session, settings: Settings, access_token: str
) -> list[Advertiser]:
    """The advertiser accounts this access token may act for."""
    app_id, secret = _credentials(settings)
    params = {"app_id": app_id, "secret": secret}
    data = _call(http, settings, "GET", ADVERTISERS_PATH, params=params, token=access_token)
    return [
        Advertiser(str(item["advertiser_id"]), str(item.get("advertiser_name") or ""))
        for item in _list(data, "list")
        if isinstance(item, dict) and item.get("advertiser_id") is not None
    ]


def list_pixels(
    http: requests.Session, settings: Settings, access_token: str, advertiser_id: str
) -> list[Pixel]:
    """Every pixel of one advertiser account, page after page."""
    pixels: list[Pixel] = []
    for page in range(1, MAX_PIXEL_PAGES + 1):
        params = {"advertiser_id": advertiser_id, "page": page, "page_size": PIXEL_PAGE_SIZE}
        data = _call(http, settings, "GET", PIXEL_LIST_PATH, params=params, token=access_token)
        pixels.extend(
            Pixel(advertiser_id, str(item["pixel_code"]), str(item.get("pixel_name") or ""))
            for item in _list(data, "pixels")
            if isinstance(item, dict) and item.get("pixel_code")
        )
        page_info = data.get("page_info")
        total_pages = page_info.get("total_page") if isinstance(page_info, dict) else None
        if not isinstance(total_pages, int) or page >= total_pages:
            break
    return pixels


def _call(
    http: requests.Session,
    settings: Settings,
    method: str,
    path: str,
    *,
    json: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """One request; TikTok's ``data`` on code 0, else :class:`TikTokOAuthError`."""
    headers = {"Access-Token": token} if token else {}
    try:
        response = http.request(
            method,
            f"{settings.env('TIKTOK_API_BASE')}{path}",
            json=json,
            params=params,
            headers=headers,
            timeout=settings.http_timeout_seconds,
        )
    except requests.RequestException as exc:
        raise TikTokOAuthError(
            f"TikTok did not answer ({type(exc).__name__}). {RETRY_LATER}"
        ) from None
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        raise TikTokOAuthError(
            f"TikTok answered HTTP {response.status_code} without a result. {RETRY_LATER}"
        )
    code = envelope["code"]
    if code != 0:
        message = str(envelope.get("message") or "no message")
        advice = ADVICE.get(code, RETRY_LATER if code >= 50000 else CHECK_APP)
        raise TikTokOAuthError(f"TikTok refused: {message} (code {code}). {advice}", code=code)
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}


def _grant(data: dict[str, Any]) -> Grant:
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise TikTokOAuthError(f"TikTok's answer has no access token. {RETRY_LATER}")
    refresh = data.get("refresh_token")
    return Grant(
        access_token=token,
        advertiser_ids=tuple(str(item) for item in _list(data, "advertiser_ids")),
        expires_in=_seconds(data.get("expires_in")),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        refresh_token_expires_in=_seconds(data.get("refresh_token_expires_in")),
    )


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _seconds(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _credentials(settings: Settings) -> tuple[str, str]:
    app_id, secret = settings.env("TIKTOK_APP_ID"), settings.env("TIKTOK_APP_SECRET")
    if not (app_id and secret):
        raise TikTokOAuthError(NOT_SET_UP)
    return app_id, secret
