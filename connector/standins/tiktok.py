"""A strict local stand-in for TikTok's Business API, Events API 2.0 (`/event/track/`).

Why it exists: our end-to-end tests must not call TikTok, yet they must fail when the
connector sends something TikTok would refuse. This module serves a real HTTP server on
127.0.0.1 that checks each batch the way TikTok does (as far as public evidence shows),
answers with TikTok's envelope, records everything it received, and can inject the faults
the connector must survive: rate limits, HTTP 5xx/429, slow answers, rejected rows and a
server that refuses connections. It also plays TikTok for Business OAuth ("Connect with
TikTok"): the advertiser authorization page, the token exchange and refresh, the advertiser and
pixel lists (`stand_in.oauth`, see the O# evidence further down).

Evidence used (S# tags are cited in comments below):
  S1  tiktok/tiktok-business-api-sdk, python_sdk/business_api_client/tiktok_business/
      tiktok_code.py: numeric codes 0 OK, 20001 PARTIAL_OK, 40001 permission, 40002 param error,
      40061 INVALID_BATCH_SIZE, 40062 PII_NOT_HASHED, 40100 REQUEST_TOO_FREQUENT,
      40104 EMPTY_ACCESS_TOKEN, 40105 INVALID_ACCESS_TOKEN, 50000 SYS_ERROR.
      event_callback_api.py sends the token as the `Access-Token` header.
  S2  rudderlabs/rudder-transformer, test/integrations/destinations/tiktok_ads network
      mocks: errors come back as HTTP 200 with a non-zero code, e.g.
      {code: 40100, message: "Too many requests. Please retry in some time."},
      {code: 40001, message: "No permission to operate pixel code: <code>. You must be an
      admin or operator of this advertiser account."},
      {code: 40002, message: "Batch.0.properties.contents.0.content_id: Not a valid string"}.
  S3  rudderlabs/rudder-transformer src/v0/destinations/tiktok_ads/config.js:
      maxBatchSizeV2 = 1000 for /open_api/v1.3/event/track/ (cites TikTok doc
      id=1771100779668482).
  S4  github.com/stape-io/tiktok-tag/issues/10 and /issues/33 (real answers):
      {"code":40002,"message":"Invalid value for event_id: not a valid string.",
       "request_id":"202303141300390EF6F5D96D1798201C51"} and, from /event/track/ in 2025,
      {"code":40002,"message":"Invalid value for event_source_id: not a valid string.",
       "request_id":"20250103073127BF3B94E1C8AF2EC6xxxxxx"}.
      So request_id = UTC YYYYMMDDHHMMSS + uppercase hex.
  S5  Events Manager's generated curl sample (copied on https://cozyclimb.store):
      event_time "Use unix timestamp. Example: 1697783008" (seconds); email, phone and
      external_id "must be hashed with SHA-256 on the client side"; value is a number;
      currency "The 4217 currency code"; content_type "Either product or product_group".
  S6  TikTok Events API 2.0 reference,
      https://business-api.tiktok.com/portal/docs?id=1771100779668482 (field list of the
      2.0 body, page/limited_data_use at event level, hashing of name and zip fields).
  S7  ISO 4217 List One, published 2026-01-01 (as shipped in the PyPI package
      `iso4217` 1.16.20260101, used only to check the set below).

Decided here, not confirmed by any source found:
  - The event_time window. No TikTok document found states one (searched the stored
    docs, code and issues; Amperity only says events older than 28 days are not
    attributed). We use 7 days in the past and 5 minutes in the future, and reject
    values that look like milliseconds.
  - Messages use `<path>: <reason>` with marshmallow-style reasons ("Not a valid
    string.", "Missing data for required field."), following S2's path form; the paths
    start at `data.<i>` because the 2.0 body names the list `data`.
  - 40061 for an empty or >1000 `data` list (S1 names the code; no wire sample seen).
  - 40062 for unhashed PII (S1 names the code; no wire sample seen). Upper-case hex and
    empty strings count as unhashed.
  - `event_id` is required here (TikTok treats it as optional), because the connector's
    deduplication depends on it.
  - `content_type` must be "product" or "product_group" at both levels (S5), although S2's
    1.0-era mocks show TikTok once accepted other values.
  - Events API 1.0 names (`timestamp`, `context`, `user.phone_number`) are rejected so a
    mix-up between the two API versions fails loudly.
  - Wording of 40104/40105/50000 messages and of the 404 body.
  - What a 20001 (partial success, S1) answer says: no public source shows one. Here the
    batch is kept but for the dropped events, which the message names by their `data.<i>`
    path as 40002 messages do (`Partial success. data.1.event_id: ...; data.4.event_id: ...`),
    or, with `name_path=False`, not at all (`Partial success.`); `data` stays `{}`.
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, request
from markupsafe import escape

from connector.standins.server import LocalServer, ServedStandIn

TRACK_PATH = "/open_api/v1.3/event/track/"

CODE_OK = 0
CODE_PARTIAL_OK = 20001
CODE_PERMISSION = 40001
CODE_PARAM_ERROR = 40002
CODE_INVALID_BATCH_SIZE = 40061
CODE_PII_NOT_HASHED = 40062
CODE_TOO_MANY_REQUESTS = 40100
CODE_EMPTY_ACCESS_TOKEN = 40104
CODE_INVALID_ACCESS_TOKEN = 40105
CODE_SYS_ERROR = 50000

MAX_BATCH_SIZE = 1000  # S3
MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600  # decided, see module docstring
MAX_FUTURE_SKEW_SECONDS = 5 * 60  # decided
MILLISECONDS_THRESHOLD = 100_000_000_000  # year 5138 in seconds; any ms timestamp is above

DEFAULT_MESSAGES: dict[int, str] = {
    CODE_TOO_MANY_REQUESTS: "Too many requests. Please retry in some time.",  # S2
    CODE_EMPTY_ACCESS_TOKEN: "Access token is empty.",
    CODE_INVALID_ACCESS_TOKEN: "Access token is incorrect or has been revoked.",
    CODE_PARAM_ERROR: "Invalid parameter.",
    CODE_SYS_ERROR: "System error. Please retry in some time.",
}

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
HASHED_USER_FIELDS = ("email", "phone", "external_id", "first_name", "last_name", "zip_code")
PLAIN_USER_FIELDS = (
    "ttclid",
    "ttp",
    "ip",
    "user_agent",
    "locale",
    "city",
    "state",
    "country",
)
CONTENT_TYPES = frozenset({"product", "product_group"})  # S5
LEGACY_EVENT_FIELDS = {"timestamp": "event_time", "context": "user/page"}
LEGACY_USER_FIELDS = {"phone_number": "phone"}

# ISO 4217 List One, published 2026-01-01 (S7): every code, fund codes included, minus the
# X-codes that are not money (metals XAG/XAU/XPD/XPT, bond units XBA-XBD, XDR, XSU, XUA,
# XAD, test XTS, none XXX). BGN and ANG are gone from that edition (euro; XCG).
ISO_4217_CODES = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD
    OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE
    SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI
    UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)


@dataclass
class ReceivedBatch:
    """One request that reached the track endpoint, and what the stand-in answered."""

    body: dict
    headers: dict[str, str]
    answer: dict
    http_status: int
    dropped: frozenset[str] = frozenset()  # event_ids a 20001 answer did not keep


@dataclass(frozen=True)
class _Fault:
    code: int
    http_status: int
    message: str
    retry_after: int | None


class _Reject(Exception):
    """Raised by a check; becomes a TikTok envelope with this code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_request_id() -> str:
    """A request_id shaped like TikTok's (S4): UTC timestamp digits then uppercase hex."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def envelope(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": new_request_id(), "data": {}}


def _partial_message(dropped: dict[str, str | None]) -> str:
    """A 20001 message naming each dropped event by its path, when the path is to be named."""
    named = [f"{path}: Invalid value {event_id!r}." for event_id, path in dropped.items() if path]
    return " ".join(["Partial success.", "; ".join(named)]).strip()


# ---------------------------------------------------------------------------------------
# Field checks. Each raises _Reject naming the JSON path of the first bad field.
# ---------------------------------------------------------------------------------------


def _param_error(path: str, reason: str) -> _Reject:
    return _Reject(CODE_PARAM_ERROR, f"{path}: {reason}")


def _join(path: str, key: str | int) -> str:
    """`data.0` + `event_id` -> `data.0.event_id`; an empty parent names the field alone."""
    return f"{path}.{key}" if path else str(key)


def _require(obj: dict, key: str, path: str) -> Any:
    if key not in obj:
        raise _param_error(_join(path, key), "Missing data for required field.")
    if obj[key] is None:
        raise _param_error(_join(path, key), "Field may not be null.")
    return obj[key]


def _check_string(value: Any, path: str, *, non_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise _param_error(path, "Not a valid string.")
    if non_empty and not value.strip():
        raise _param_error(path, "Shorter than minimum length 1.")


def _check_number(value: Any, path: str) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise _param_error(path, "Not a valid number.")


def _check_integer(value: Any, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _param_error(path, "Not a valid integer.")


def _check_object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise _param_error(path, "Invalid input type.")
    return value


def _check_list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise _param_error(path, "Not a valid list.")
    return value


def _check_choice(value: Any, path: str, choices: Iterable[str]) -> None:
    _check_string(value, path)
    if value not in choices:
        raise _param_error(path, f"Must be one of: {', '.join(sorted(choices))}.")


def _check_optional_strings(obj: dict, keys: Iterable[str], path: str) -> None:
    for key in keys:
        if key in obj:
            _check_string(obj[key], _join(path, key))


def _reject_legacy(obj: dict, legacy: dict[str, str], path: str) -> None:
    for old, new in legacy.items():
        if old in obj:
            reason = f"Unknown field. Events API 1.0 name; 2.0 uses {new}."
            raise _param_error(_join(path, old), reason)


def _check_hash(value: Any, path: str) -> None:
    _check_string(value, path)
    if not SHA256_HEX.fullmatch(value):
        message = f"{path}: PII is not hashed. Send a lowercase SHA-256 hex digest."
        raise _Reject(CODE_PII_NOT_HASHED, message)


def _check_hashed_field(value: Any, path: str) -> None:
    """A hashed user field is one digest or a non-empty list of digests (S6)."""
    if isinstance(value, list):
        if not value:
            raise _param_error(path, "Shorter than minimum length 1.")
        for index, item in enumerate(value):
            _check_hash(item, f"{path}.{index}")
    else:
        _check_hash(value, path)


def check_event_time(value: Any, path: str, now: float | None = None) -> None:
    """Unix seconds within [now - 7 days, now + 5 minutes] (window decided, see top)."""
    _check_integer(value, path)
    now = time.time() if now is None else now
    if value >= MILLISECONDS_THRESHOLD:
        raise _param_error(path, "Must be a Unix timestamp in seconds, not milliseconds.")
    if value < now - MAX_EVENT_AGE_SECONDS:
        raise _param_error(path, "Event is older than 7 days.")
    if value > now + MAX_FUTURE_SKEW_SECONDS:
        raise _param_error(path, "Event is more than 5 minutes in the future.")


def check_user(user: Any, path: str) -> None:
    user = _check_object(user, path)
    _reject_legacy(user, LEGACY_USER_FIELDS, path)
    for key in HASHED_USER_FIELDS:
        if key in user:
            _check_hashed_field(user[key], f"{path}.{key}")
    _check_optional_strings(user, PLAIN_USER_FIELDS, path)


def check_content(item: Any, path: str) -> None:
    item = _check_object(item, path)
    _check_optional_strings(item, ("content_id", "content_name", "content_category"), path)
    _check_optional_strings(item, ("brand",), path)
    if "content_type" in item:
        _check_choice(item["content_type"], f"{path}.content_type", CONTENT_TYPES)
    if "price" in item:
        _check_number(item["price"], f"{path}.price")
    if "quantity" in item:
        _check_integer(item["quantity"], f"{path}.quantity")


def _check_money(props: dict, path: str) -> None:
    if "value" in props:
        _check_number(props["value"], f"{path}.value")
        _require(props, "currency", path)
    if "currency" in props:
        currency = props["currency"]
        _check_string(currency, f"{path}.currency")
        if currency not in ISO_4217_CODES:
            raise _param_error(f"{path}.currency", "Not a valid ISO 4217 currency code.")


def check_properties(props: Any, path: str) -> None:
    props = _check_object(props, path)
    _check_money(props, path)
    if "contents" in props:
        for index, item in enumerate(_check_list(props["contents"], f"{path}.contents")):
            check_content(item, f"{path}.contents.{index}")
    if "content_type" in props:
        _check_choice(props["content_type"], f"{path}.content_type", CONTENT_TYPES)
    text_keys = ("order_id", "shop_id", "description", "query", "search_string")
    _check_optional_strings(props, text_keys, path)
    if "num_items" in props:
        _check_integer(props["num_items"], f"{path}.num_items")
    if "content_ids" in props:
        for index, item in enumerate(_check_list(props["content_ids"], f"{path}.content_ids")):
            _check_string(item, f"{path}.content_ids.{index}")


def check_page(page: Any, path: str) -> None:
    page = _check_object(page, path)
    _check_optional_strings(page, ("url", "referrer"), path)


def check_event(event: Any, path: str, now: float | None = None) -> None:
    event = _check_object(event, path)
    _reject_legacy(event, LEGACY_EVENT_FIELDS, path)
    _check_string(_require(event, "event", path), f"{path}.event", non_empty=True)
    _check_string(_require(event, "event_id", path), f"{path}.event_id", non_empty=True)
    check_event_time(_require(event, "event_time", path), f"{path}.event_time", now)
    if "user" in event:
        check_user(event["user"], f"{path}.user")
    if "properties" in event:
        check_properties(event["properties"], f"{path}.properties")
    if "page" in event:
        check_page(event["page"], f"{path}.page")
    if "limited_data_use" in event and not isinstance(event["limited_data_use"], bool):
        raise _param_error(f"{path}.limited_data_use", "Not a valid boolean.")


def check_source_id(body: dict) -> str:
    """event_source_id, with the wording of S4's real answer."""
    if body.get("event_source_id") is None:
        raise _param_error("event_source_id", "Missing data for required field.")
    source_id = body["event_source_id"]
    if not isinstance(source_id, str) or not source_id:
        message = "Invalid value for event_source_id: not a valid string."
        raise _Reject(CODE_PARAM_ERROR, message)
    return source_id


def check_batch(body: dict, now: float | None = None) -> None:
    """Everything after authentication and permission: source, options, data[]."""
    _check_choice(_require(body, "event_source", ""), "event_source", ("web",))
    _check_optional_strings(body, ("test_event_code", "partner_name"), "")
    data = _check_list(_require(body, "data", ""), "data")
    if not 1 <= len(data) <= MAX_BATCH_SIZE:
        message = f"data: batch size must be between 1 and {MAX_BATCH_SIZE}, got {len(data)}."
        raise _Reject(CODE_INVALID_BATCH_SIZE, message)
    for index, event in enumerate(data):
        check_event(event, f"data.{index}", now)


def parse_body(raw: bytes, mimetype: str) -> dict:
    if mimetype != "application/json":
        raise _param_error("Content-Type", "Must be application/json.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _param_error("body", "Invalid JSON.") from None
    if not isinstance(body, dict):
        raise _param_error("body", "Must be a JSON object.")
    return body


# ---------------------------------------------------------------------------------------
# TikTok for Business OAuth: the advertiser authorization page, tokens, accounts and pixels
# ---------------------------------------------------------------------------------------
#
# Evidence (O# tags are cited below):
#   O1  TikTok API for Business, "Authorization" (ads.tiktok.com/marketing_api/auth) and Airbyte's
#       TikTokMarketingOAuthFlow(.kt) with its test: the authorization page is
#       https://ads.tiktok.com/marketing_api/auth?app_id=…&redirect_uri=…&state=…, TikTok sends
#       the browser back with `auth_code` (Airbyte also reads `code`), and
#       POST /open_api/v1.3/oauth2/access_token/ takes JSON {app_id, secret, auth_code} and
#       answers the envelope with data.access_token.
#   O2  TikTok SDK docs AuthenticationApi.md: oauth2/access_token "Get access_token and
#       refresh_token by auth_code … access token is valid for 24 hours and the refresh token
#       is valid for one year" (creator tokens); oauth2/advertiser/get(app_id, secret,
#       access_token) lists the advertisers that authorized an app. Public clients read
#       data.advertiser_ids, data.scope (a list of numbers), data.list[].advertiser_id and
#       advertiser_name, and on refresh data.expires_in / refresh_token_expires_in.
#   O3  SDK tiktok_code.py: 40001 permission, 40002 param error, 40102 ACCESS_TOKEN_EXPIRE,
#       40103 REFRESH_TOKEN_EXPIRE, 40104 empty token, 40105 invalid token, 40107
#       INVALID_REFRESH_TOKEN, 40108 INVALID_GRANT_TYPE, 40110 AUTH_CODE_ERROR.
#   O4  Pixel list (TikTok docs id 1740858697598978 and public clients):
#       GET /open_api/v1.3/pixel/list/?advertiser_id=…&page=…&page_size=… with Access-Token,
#       data.pixels[] {pixel_id, pixel_code, pixel_name, …} and data.page_info
#       {page, page_size, total_number, total_page}.
#
# Decided here, not confirmed by any source found:
#   - Advertiser tokens are long-term by default (no refresh token, as the reference says);
#     `token_lifetime` makes the stand-in issue expiring tokens with a refresh token, which
#     it rotates on every refresh.
#   - A wrong app_id or secret answers 40001; an unknown, used or expired auth code 40110.
#   - Auth codes are single-use and live 10 minutes; a denial sends the browser back with
#     the `state` and no `auth_code`.
#   - page_size defaults to 10 and may be 1..20; the message wordings.

AUTHORIZE_PATH = "/marketing_api/auth"
TOKEN_PATH = "/open_api/v1.3/oauth2/access_token/"
REFRESH_PATH = "/open_api/v1.3/oauth2/refresh_token/"
ADVERTISERS_PATH = "/open_api/v1.3/oauth2/advertiser/get/"
PIXEL_LIST_PATH = "/open_api/v1.3/pixel/list/"

CODE_ACCESS_TOKEN_EXPIRED = 40102
CODE_REFRESH_TOKEN_EXPIRED = 40103
CODE_INVALID_REFRESH_TOKEN = 40107
CODE_INVALID_GRANT_TYPE = 40108
CODE_AUTH_CODE_ERROR = 40110

AUTH_CODE_SECONDS = 600
MAX_PIXEL_PAGE_SIZE = 20
SCOPES = [4, 9, 10]  # numbers as in O2; their meaning is not checked by anything


@dataclass
class OAuthApp:
    """A TikTok for Business developer app: credentials and its advertiser redirect URL."""

    app_id: str
    secret: str
    redirect_uri: str


@dataclass
class Advertiser:
    """An ad account with its pixels (code -> name)."""

    advertiser_id: str
    name: str
    pixels: dict[str, str]


@dataclass
class _Authorization:
    """What an auth code, access token or refresh token stands for."""

    app_id: str
    advertiser_ids: tuple[str, ...]
    expires_at: float | None


@dataclass
class OAuthCall:
    """One request to an OAuth or account endpoint, and TikTok's code in the answer."""

    path: str
    body: dict
    code: int


class TikTokOAuth:
    """The advertiser-authorization side of the stand-in; reach it as `stand_in.oauth`.

    Configure with `register_app(...)` and `add_advertiser(...)`. A browser (or `requests`)
    opens `authorize_url`, follows the "Grant" (or "Deny") link and lands on the app's
    redirect URL. Tokens it issues are accepted by /event/track/ for the pixels of the
    advertisers they cover.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.clear()

    def clear(self) -> None:
        """Forget apps, advertisers, grants and calls; long-term tokens again."""
        self.apps: dict[str, OAuthApp] = {}
        self.advertisers: dict[str, Advertiser] = {}
        self.calls: list[OAuthCall] = []
        self.deny = False  # the next grants are refused as if the merchant clicked "Deny"
        self.grant_advertiser_ids: list[str] | None = None  # None: every advertiser
        self.token_lifetime: int | None = None  # seconds; None: long-term, no refresh token
        self.refresh_token_lifetime = 365 * 86400
        self.auth_code_seconds = AUTH_CODE_SECONDS
        self.delay_seconds = 0.0  # before answering a JSON endpoint, to widen races
        self._faults: deque[tuple[int, str]] = deque()
        self._codes: dict[str, _Authorization] = {}
        self._tokens: dict[str, _Authorization] = {}
        self._refresh_tokens: dict[str, _Authorization] = {}

    # -- configuration ---------------------------------------------------------------------

    def register_app(self, app_id: str, secret: str, redirect_uri: str) -> OAuthApp:
        app = OAuthApp(app_id, secret, redirect_uri)
        with self._lock:
            self.apps[app_id] = app
        return app

    def add_advertiser(
        self, advertiser_id: str, name: str, pixels: dict[str, str] | None = None
    ) -> Advertiser:
        advertiser = Advertiser(advertiser_id, name, dict(pixels or {}))
        with self._lock:
            self.advertisers[advertiser_id] = advertiser
        return advertiser

    def fail_next(self, n: int, *, code: int = CODE_SYS_ERROR, message: str | None = None) -> None:
        """The next n calls to the JSON endpoints (not the page) answer this code instead."""
        text = message if message is not None else DEFAULT_MESSAGES.get(code, "Error.")
        with self._lock:
            self._faults.extend([(code, text)] * n)

    def expire_token(self, token: str) -> None:
        """Make an issued access token expired now (TikTok then answers 40102)."""
        with self._lock:
            self._tokens[token].expires_at = time.time() - 1

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def calls_to(self, path: str) -> list[OAuthCall]:
        with self._lock:
            return [call for call in self.calls if call.path == path]

    # -- used by the track endpoint --------------------------------------------------------

    def pixels_for(self, token: str) -> set[str] | None:
        """The pixel codes an OAuth token may send to; None for a token it never issued.

        Raises _Reject 40102 for an expired token.
        """
        with self._lock:
            grant = self._tokens.get(token)
            if grant is None:
                return None
            if grant.expires_at is not None and grant.expires_at <= time.time():
                raise _Reject(CODE_ACCESS_TOKEN_EXPIRED, "Access token has expired.")
            return {
                code
                for advertiser_id in grant.advertiser_ids
                if advertiser_id in self.advertisers
                for code in self.advertisers[advertiser_id].pixels
            }

    # -- routes ----------------------------------------------------------------------------

    def register_routes(self, app: Flask) -> None:
        app.add_url_rule(AUTHORIZE_PATH, "authorize", self._authorize_page)
        app.add_url_rule(AUTHORIZE_PATH + "/confirm", "confirm", self._confirm)
        app.add_url_rule(AUTHORIZE_PATH + "/deny", "deny", self._deny)
        for path, handler, method in (
            (TOKEN_PATH, self._exchange, "POST"),
            (REFRESH_PATH, self._refresh, "POST"),
            (ADVERTISERS_PATH, self._advertiser_get, "GET"),
            (PIXEL_LIST_PATH, self._pixel_list, "GET"),
        ):
            app.add_url_rule(
                path, path, self._api(path, handler, from_json=method == "POST"), methods=[method]
            )

    # The authorization page. TikTok shows its login and consent screens; the stand-in
    # shows the app and accounts, and two links.

    def _authorize_page(self) -> tuple[str, int]:
        try:
            app, redirect_uri, state = self._authorize_request()
        except _Reject as reject:
            return _page("Authorization failed", f"<p id='error'>{escape(reject.message)}</p>"), 400
        query = urlencode({"app_id": app.app_id, "redirect_uri": redirect_uri, "state": state})
        with self._lock:
            names = [escape(a.name) for a in self.advertisers.values()]
        body = (
            f"<p>The app {escape(app.app_id)} asks to manage your ad accounts: "
            f"{', '.join(names) or 'none'}.</p>"
            f"<p><a id='grant' href='{AUTHORIZE_PATH}/confirm?{escape(query)}'>Grant</a> "
            f"<a id='deny' href='{AUTHORIZE_PATH}/deny?{escape(query)}'>Deny</a></p>"
        )
        return _page("TikTok for Business", body), 200

    def _confirm(self) -> Response | tuple[str, int]:
        try:
            app, redirect_uri, state = self._authorize_request()
        except _Reject as reject:
            return _page("Authorization failed", f"<p id='error'>{escape(reject.message)}</p>"), 400
        with self._lock:
            if self.deny:
                return _redirect(redirect_uri, {"state": state})
            code = "ac_" + secrets.token_hex(16)
            self._codes[code] = _Authorization(
                app.app_id, self._granted_ids(), time.time() + self.auth_code_seconds
            )
        return _redirect(redirect_uri, {"auth_code": code, "code": code, "state": state})

    def _deny(self) -> Response | tuple[str, int]:
        try:
            _app, redirect_uri, state = self._authorize_request()
        except _Reject as reject:
            return _page("Authorization failed", f"<p id='error'>{escape(reject.message)}</p>"), 400
        return _redirect(redirect_uri, {"state": state})

    def _authorize_request(self) -> tuple[OAuthApp, str, str]:
        app_id = request.args.get("app_id", "")
        redirect_uri = request.args.get("redirect_uri", "")
        with self._lock:
            app = self.apps.get(app_id)
        if app is None:
            raise _Reject(CODE_PERMISSION, f"app_id {app_id!r} is not a registered app.")
        if redirect_uri != app.redirect_uri:
            raise _Reject(
                CODE_PARAM_ERROR,
                f"redirect_uri {redirect_uri!r} does not match the app's advertiser redirect URL.",
            )
        return app, redirect_uri, request.args.get("state", "")

    def _granted_ids(self) -> tuple[str, ...]:
        wanted = self.grant_advertiser_ids
        return tuple(self.advertisers if wanted is None else wanted)

    # The JSON API.

    def _api(self, path: str, handler: Any, *, from_json: bool) -> Any:
        def view() -> Response:
            body: dict = {}
            if self.delay_seconds > 0:
                time.sleep(self.delay_seconds)
            try:
                with self._lock:
                    fault = self._faults.popleft() if self._faults else None
                if fault is not None:
                    raise _Reject(*fault)
                if from_json:
                    body = parse_body(request.get_data(), request.mimetype)
                else:
                    body = request.args.to_dict()
                answer = envelope(CODE_OK, "OK")
                answer["data"] = handler(body)
            except _Reject as reject:
                answer = envelope(reject.code, reject.message)
            with self._lock:
                self.calls.append(OAuthCall(path, _redacted(body), answer["code"]))
            return Response(json.dumps(answer), mimetype="application/json")

        return view

    def _exchange(self, body: dict) -> dict[str, Any]:
        app_id = self._check_app(body)
        code = _required_string(body, "auth_code")
        with self._lock:
            grant = self._codes.pop(code, None)  # single use, even when it fails below
        if grant is None or grant.app_id != app_id or _expired(grant):
            raise _Reject(CODE_AUTH_CODE_ERROR, "Auth code is invalid, used or expired.")
        return self._issue(app_id, grant.advertiser_ids, with_scope=True)

    def _refresh(self, body: dict) -> dict[str, Any]:
        app_id = self._check_app(body)
        refresh_token = _required_string(body, "refresh_token")
        if "grant_type" in body and body["grant_type"] != "refresh_token":
            raise _Reject(CODE_INVALID_GRANT_TYPE, "grant_type must be refresh_token.")
        with self._lock:
            grant = self._refresh_tokens.get(refresh_token)
            if grant is None or grant.app_id != app_id:
                raise _Reject(CODE_INVALID_REFRESH_TOKEN, "Refresh token is invalid.")
            if _expired(grant):
                raise _Reject(CODE_REFRESH_TOKEN_EXPIRED, "Refresh token has expired.")
            del self._refresh_tokens[refresh_token]  # rotated: each one works once
        return self._issue(app_id, grant.advertiser_ids, with_scope=False)

    def _advertiser_get(self, params: dict) -> dict[str, Any]:
        self._check_app(params)
        grant = self._check_token()
        with self._lock:
            found = [self.advertisers[i] for i in grant.advertiser_ids if i in self.advertisers]
        return {
            "list": [{"advertiser_id": a.advertiser_id, "advertiser_name": a.name} for a in found]
        }

    def _pixel_list(self, params: dict) -> dict[str, Any]:
        grant = self._check_token()
        advertiser_id = _required_string(params, "advertiser_id")
        page = _positive_int(params, "page", 1)
        size = _positive_int(params, "page_size", 10)
        if size > MAX_PIXEL_PAGE_SIZE:
            raise _param_error("page_size", f"Must be between 1 and {MAX_PIXEL_PAGE_SIZE}.")
        with self._lock:
            advertiser = self.advertisers.get(advertiser_id)
            if advertiser is None or advertiser_id not in grant.advertiser_ids:
                raise _Reject(
                    CODE_PERMISSION, f"No permission to operate advertiser {advertiser_id}."
                )
            pixels = sorted(advertiser.pixels.items())
        shown = pixels[(page - 1) * size : page * size]
        return {
            "pixels": [
                {
                    "pixel_id": f"{advertiser_id}{index:04d}",
                    "pixel_code": code,
                    "pixel_name": name,
                    "pixel_category": "ONLINE_STORE",
                }
                for index, (code, name) in enumerate(shown, start=(page - 1) * size)
            ],
            "page_info": {
                "page": page,
                "page_size": size,
                "total_number": len(pixels),
                "total_page": max(1, math.ceil(len(pixels) / size)),
            },
        }

    def _check_app(self, fields: dict) -> str:
        app_id = _required_string(fields, "app_id")
        secret = _required_string(fields, "secret")
        with self._lock:
            app = self.apps.get(app_id)
        if app is None or not secrets.compare_digest(app.secret, secret):
            raise _Reject(CODE_PERMISSION, "app_id or secret is invalid.")
        return app_id

    def _check_token(self) -> _Authorization:
        token = request.headers.get("Access-Token", "").strip()
        if not token:
            raise _Reject(CODE_EMPTY_ACCESS_TOKEN, DEFAULT_MESSAGES[CODE_EMPTY_ACCESS_TOKEN])
        with self._lock:
            grant = self._tokens.get(token)
        if grant is None:
            raise _Reject(CODE_INVALID_ACCESS_TOKEN, DEFAULT_MESSAGES[CODE_INVALID_ACCESS_TOKEN])
        if _expired(grant):
            raise _Reject(CODE_ACCESS_TOKEN_EXPIRED, "Access token has expired.")
        return grant

    def _issue(
        self, app_id: str, advertiser_ids: tuple[str, ...], *, with_scope: bool
    ) -> dict[str, Any]:
        token = "act." + secrets.token_hex(20)
        now = time.time()
        with self._lock:
            lifetime = self.token_lifetime
            expires = now + lifetime if lifetime else None
            self._tokens[token] = _Authorization(app_id, advertiser_ids, expires)
            data: dict[str, Any] = {"access_token": token}
            if with_scope:
                data.update(advertiser_ids=list(advertiser_ids), scope=list(SCOPES))
            if lifetime:
                refresh = "rft." + secrets.token_hex(20)
                self._refresh_tokens[refresh] = _Authorization(
                    app_id, advertiser_ids, now + self.refresh_token_lifetime
                )
                data.update(
                    refresh_token=refresh,
                    expires_in=lifetime,
                    refresh_token_expires_in=self.refresh_token_lifetime,
                )
        return data


def _required_string(fields: dict, key: str) -> str:
    value = _require(fields, key, "")
    _check_string(value, key, non_empty=True)
    return value


def _positive_int(params: dict, key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    if isinstance(raw, str) and raw.isdigit() and int(raw) > 0:
        return int(raw)
    raise _param_error(key, "Not a valid integer.")


def _expired(grant: _Authorization) -> bool:
    return grant.expires_at is not None and grant.expires_at <= time.time()


def _redacted(body: dict) -> dict:
    """What a test may look at: secrets replaced by a marker, so no assertion prints them."""
    return {k: ("<set>" if k == "secret" else v) for k, v in body.items()}


def _redirect(target: str, params: dict[str, str]) -> Response:
    separator = "&" if "?" in target else "?"
    response = Response(status=302)
    response.headers["Location"] = target + separator + urlencode(params)
    return response


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------


class TikTokStandIn(ServedStandIn):
    """A real HTTP server answering `POST /open_api/v1.3/event/track/` like TikTok.

    Use as `stand_in = TikTokStandIn({"token": {"PIXEL"}}).start()`, point the app's
    TIKTOK_API_BASE at `stand_in.base_url` (and TIKTOK_AUTH_URL at `authorize_url`), and call
    `stop()` at the end.
    """

    def __init__(self, tokens: dict[str, set[str]] | None = None) -> None:
        self._tokens: dict[str, set[str]] = {k: set(v) for k, v in (tokens or {}).items()}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.batches: list[ReceivedBatch] = []
        self.delay_seconds: float = 0.0
        self._queued_faults: deque[_Fault] = deque()
        self._random: random.Random | None = None
        self._rate_limit_share = 0.0
        self._http_500_share = 0.0
        self._rejected_ids: dict[str, tuple[int, bool]] = {}
        self._dropped_ids: dict[str, bool] = {}
        self._generation = 0  # bumped by reset(); requests begun before it are not recorded
        self._in_flight = 0
        self.oauth = TikTokOAuth(self._lock)
        self._app = self._build_app()
        self._http = LocalServer(self._app, "tiktok-standin")
        self._down = False

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        """The advertiser authorization page, as ads.tiktok.com/marketing_api/auth."""
        return self.base_url + AUTHORIZE_PATH

    def go_down(self) -> None:
        """Stop listening and cut open connections: new connections are refused.

        A request in flight (e.g. sleeping in `delay_seconds`) loses its connection and is
        not recorded: nothing reaches TikTok while it is down.
        """
        with self._lock:
            self._down = True
        self._http.close()

    def come_up(self) -> None:
        """Listen again on the same port as before."""
        if not self._http.serving:
            self._http.listen(self._http.port)
        with self._lock:
            self._down = False

    # -- configuration and faults ----------------------------------------------------------

    def allow(self, token: str, pixel_code: str) -> None:
        with self._lock:
            self._tokens.setdefault(token, set()).add(pixel_code)

    def fail_next(
        self,
        n: int,
        *,
        code: int | None = None,
        http_status: int = 200,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next n requests get this answer instead of being checked.

        Without `code`: 40100 for HTTP 200 and 429, 50000 for other statuses.
        """
        if code is None:
            code = CODE_TOO_MANY_REQUESTS if http_status in (200, 429) else CODE_SYS_ERROR
        text = message if message is not None else DEFAULT_MESSAGES.get(code, "Error.")
        fault = _Fault(code, http_status, text, retry_after)
        with self._lock:
            self._queued_faults.extend([fault] * n)

    def set_random_faults(
        self, *, rate_limit: float = 0.0, http_500: float = 0.0, seed: int = 0
    ) -> None:
        """Answer this share of requests with 40100 (HTTP 200) or HTTP 500, seeded."""
        if rate_limit < 0 or http_500 < 0 or rate_limit + http_500 > 1:
            raise ValueError("fault shares must be >= 0 and add up to at most 1")
        with self._lock:
            self._random = random.Random(seed)
            self._rate_limit_share = rate_limit
            self._http_500_share = http_500

    def reject_event_ids(
        self, ids: set[str], code: int = CODE_PARAM_ERROR, *, name_path: bool = True
    ) -> None:
        """Fail any batch holding one of these event_ids, whole, as TikTok fails a batch.

        ``name_path=False`` answers without naming the event, so a client cannot tell which
        one is at fault (and must find it another way).
        """
        with self._lock:
            self._rejected_ids.update(dict.fromkeys(ids, (code, name_path)))

    def drop_event_ids(self, ids: set[str], *, name_path: bool = True) -> None:
        """Answer 20001 (partial success) to a batch holding one of these event_ids: keep the
        other events, drop these.

        ``name_path=False`` says only "Partial success.", so a client cannot tell which events
        were dropped (and must find them another way).
        """
        with self._lock:
            self._dropped_ids.update(dict.fromkeys(ids, name_path))

    def reset(self) -> None:
        """Forget batches and faults, set the delay to 0, and come up if down.

        A request still in flight (e.g. sleeping in `delay_seconds`) is not recorded later.
        """
        with self._lock:
            self._generation += 1
            self.batches.clear()
            self._queued_faults.clear()
            self._random = None
            self._rate_limit_share = self._http_500_share = 0.0
            self._rejected_ids.clear()
            self._dropped_ids.clear()
            self.delay_seconds = 0.0
            self.oauth.clear()
        if self._down:
            self.come_up()

    # -- what was received -----------------------------------------------------------------

    def accepted_events(self) -> list[dict]:
        with self._lock:
            return self._accepted_events_locked()

    def accepted_event_ids(self) -> list[str]:
        return [event.get("event_id") for event in self.accepted_events()]

    def wait_for_events(self, n: int, timeout: float = 15.0) -> list[dict]:
        """Block until at least n events were accepted; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._accepted_events_locked()) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(self._summary_locked(n, timeout))
                self._changed.wait(left)
            return self._accepted_events_locked()

    def _accepted_events_locked(self) -> list[dict]:
        events: list[dict] = []
        for batch in self.batches:
            if batch.http_status == 200 and batch.answer.get("code") in (CODE_OK, CODE_PARTIAL_OK):
                kept = (e for e in batch.body.get("data", []) if e["event_id"] not in batch.dropped)
                events.extend(kept)
        return events

    def _summary_locked(self, n: int, timeout: float) -> str:
        accepted = len(self._accepted_events_locked())
        lines = [
            f"TikTok stand-in: waited {timeout}s for {n} accepted events, got {accepted}; "
            f"{len(self.batches)} requests received"
        ]
        for batch in self.batches[-10:]:
            answer = batch.answer
            lines.append(
                f"  HTTP {batch.http_status} code={answer.get('code')}: {answer.get('message')}"
            )
        return "\n".join(lines)

    # -- request handling ------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("tiktok_standin")

        @app.post(TRACK_PATH)
        def track() -> Response:
            return self._handle_track()

        self.oauth.register_routes(app)

        @app.errorhandler(404)
        def not_found(_error: Exception) -> tuple[dict, int]:
            return envelope(40400, f"Route not found: {request.path}"), 404

        @app.errorhandler(405)
        def wrong_method(_error: Exception) -> tuple[dict, int]:
            return envelope(40400, f"Method {request.method} not allowed here."), 405

        return app

    def in_flight(self) -> int:
        """How many track requests are being answered right now (e.g. sleeping on a delay)."""
        with self._lock:
            return self._in_flight

    def _handle_track(self) -> Response:
        with self._lock:
            generation = self._generation
            self._in_flight += 1
        try:
            return self._answer_track(generation)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer_track(self, generation: int) -> Response:
        if self.delay_seconds > 0:
            time.sleep(self.delay_seconds)
        raw = request.get_data()
        body = self._body_for_record(raw)
        fault = self._take_fault()
        dropped: frozenset[str] = frozenset()
        if fault is not None:
            answer, status = envelope(fault.code, fault.message), fault.http_status
        else:
            (answer, dropped), status = self._answer(raw, request.mimetype), 200
        received = ReceivedBatch(body, dict(request.headers), answer, status, dropped)
        self._record(received, generation)
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        if fault is not None and fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    def _answer(self, raw: bytes, mimetype: str) -> tuple[dict[str, Any], frozenset[str]]:
        """TikTok's answer, and the event_ids of the batch it did not keep."""
        try:
            dropped = self._check_request(raw, mimetype)
        except _Reject as reject:
            return envelope(reject.code, reject.message), frozenset()
        if dropped:
            return envelope(CODE_PARTIAL_OK, _partial_message(dropped)), frozenset(dropped)
        return envelope(CODE_OK, "OK"), frozenset()

    def _check_request(self, raw: bytes, mimetype: str) -> dict[str, str | None]:
        """Raise the first problem; return the dropped events' ids with their paths."""
        token = request.headers.get("Access-Token", "").strip()
        if not token:
            raise _Reject(CODE_EMPTY_ACCESS_TOKEN, DEFAULT_MESSAGES[CODE_EMPTY_ACCESS_TOKEN])
        with self._lock:
            pixels = set(self._tokens[token]) if token in self._tokens else None
            rejected = dict(self._rejected_ids)
            droppable = dict(self._dropped_ids)
        if pixels is None:
            pixels = self.oauth.pixels_for(token)  # tokens of "Connect with TikTok"
        if pixels is None:
            raise _Reject(CODE_INVALID_ACCESS_TOKEN, DEFAULT_MESSAGES[CODE_INVALID_ACCESS_TOKEN])
        body = parse_body(raw, mimetype)
        pixel_code = check_source_id(body)
        if pixel_code not in pixels:
            raise _Reject(
                CODE_PERMISSION,
                f"No permission to operate pixel code: {pixel_code}. "
                "You must be an admin or operator of this advertiser account.",
            )
        check_batch(body)
        self._check_rejected_ids(body["data"], rejected)
        return {
            event["event_id"]: f"data.{index}.event_id" if droppable[event["event_id"]] else None
            for index, event in enumerate(body["data"])
            if event["event_id"] in droppable
        }

    @staticmethod
    def _check_rejected_ids(data: list[dict], rejected: dict[str, tuple[int, bool]]) -> None:
        for index, event in enumerate(data):
            if event["event_id"] not in rejected:
                continue
            code, name_path = rejected[event["event_id"]]
            if not name_path:
                raise _Reject(code, "Invalid parameters.")
            path = f"data.{index}.event_id"
            raise _Reject(code, f"{path}: Invalid value {event['event_id']!r}.")

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if self._queued_faults:
                return self._queued_faults.popleft()
            if self._random is None:
                return None
            draw = self._random.random()
        if draw < self._rate_limit_share:
            return _Fault(
                CODE_TOO_MANY_REQUESTS, 200, DEFAULT_MESSAGES[CODE_TOO_MANY_REQUESTS], None
            )
        if draw < self._rate_limit_share + self._http_500_share:
            return _Fault(CODE_SYS_ERROR, 500, DEFAULT_MESSAGES[CODE_SYS_ERROR], None)
        return None

    @staticmethod
    def _body_for_record(raw: bytes) -> dict:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return {"_raw": raw.decode("utf-8", "replace")}
        return body if isinstance(body, dict) else {"_raw": body}

    def _record(self, batch: ReceivedBatch, generation: int) -> None:
        with self._changed:
            if generation != self._generation or self._down:
                return
            self.batches.append(batch)
            self._changed.notify_all()
