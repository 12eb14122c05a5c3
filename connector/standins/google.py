"""A strict local stand-in for Google's OAuth 2.0 token endpoint and the Data Manager API.

Why it exists: tests must not call Google, yet they must fail when the connector sends what
Google would refuse. This serves a real HTTP server on 127.0.0.1 that plays three endpoints:

- ``POST /token``, Google's OAuth token endpoint for the refresh-token grant: form fields
  ``grant_type=refresh_token``, ``client_id``, ``client_secret``, ``refresh_token``; answers
  ``{access_token, expires_in: 3599, scope, token_type: "Bearer"}``, ``invalid_client`` (401)
  for an unknown client or wrong secret, ``invalid_grant`` (400) for a refresh token it did not
  issue to that client or that was revoked
  (G1 https://developers.google.com/identity/protocols/oauth2/web-server#offline).
- ``POST /v1/events:ingest`` (G2 https://developers.google.com/data-manager/api/reference/rest/
  v1/events/ingest): a Bearer token it issued and that has not expired, else 401
  UNAUTHENTICATED; each destination's customer (and manager, as ``loginAccount``) reachable by
  that token's Google user and the conversion action existing in the customer, else 403
  PERMISSION_DENIED; 1 to 2,000 events (G3 https://developers.google.com/data-manager/api/
  limits); each event checked field by field (below). Problems answer 400 INVALID_ARGUMENT
  with a ``google.rpc.BadRequest`` naming every bad event by path (``events[3].currency``) and
  an ``ErrorInfo`` whose reason is an ``ErrorReason`` (G4 https://developers.google.com/
  data-manager/api/reference/rest/v1/ErrorReason), the whole request refused, as the API
  "doesn't support partial failure" (G5 https://developers.google.com/data-manager/api/
  devguides/events/google-ads/offline/upgrade/field-mappings). Success answers
  ``{requestId}``; ``validateOnly`` checks everything, records nothing and answers ``{}``
  ("Only errors are returned, not results", G2).
- ``GET /v1/requestStatus:retrieve?requestId=`` (G6 https://developers.google.com/data-manager/
  api/reference/rest/v1/requestStatus/retrieve): ``{requestStatusPerDestination: [...]}`` for a
  request it accepted, ``INVALID_REQUEST_ID`` otherwise (G4: status exists only for requests
  that succeeded without ``validateOnly``).

Field rules (G7 "Format user data", https://developers.google.com/data-manager/api/
get-started/formatting, and the Event, UserData and DeviceInfo messages of
google/ads/datamanager/v1): ``transactionId`` a non-empty string; ``eventTimestamp`` RFC 3339;
``conversionValue`` a number; ``currency`` three capital letters; ``eventSource`` and consent
values from their enums; ``userData.userIdentifiers`` 1 to 10, each exactly one of
``emailAddress``, ``phoneNumber`` (SHA-256, hex with ``encoding: HEX``; hex case does not
matter, G7) or ``address`` with all of ``givenName``, ``familyName`` (hashed), ``regionCode``
(two capital letters) and ``postalCode`` (neither hashed); ``eventDeviceInfo.ipAddress`` an IP
address; an event with neither user nor click identifiers is refused (NO_IDENTIFIERS_PROVIDED,
G4); unknown field names are refused, as Google's JSON parsing does.

Decided here, not confirmed by any source found:
  - The event time window: 90 days back (Google Ads' import window for click conversions) and
    5 minutes ahead; beyond it EVENT_TIME_INVALID.
  - Violation paths use the proto field names (``events[0].event_timestamp``), messages and
    descriptions are our wording, and the ``domain`` of ErrorInfo is the API's host name.
  - A 401 body is Google's usual one for a bad OAuth token (``Request had invalid
    authentication credentials...``); access tokens look like ``ya29.`` + hex.
  - requestStatus answers SUCCESS with the event count unless a test sets another status.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, Response, request

from connector.standins.server import LocalServer, ServedStandIn

TOKEN_PATH = "/token"
INGEST_PATH = "/v1/events:ingest"
STATUS_PATH = "/v1/requestStatus:retrieve"
SCOPE = "https://www.googleapis.com/auth/datamanager"
DOMAIN = "datamanager.googleapis.com"

ACCESS_TOKEN_SECONDS = 3599  # G1's example answer
MAX_EVENTS = 2000  # G3
MAX_DESTINATIONS = 10  # G4 TOO_MANY_DESTINATIONS
MAX_IDENTIFIERS = 10  # G3
MAX_EVENT_AGE_SECONDS = 90 * 24 * 3600  # decided
MAX_FUTURE_SECONDS = 5 * 60  # decided

STATUS_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
CUSTOMER_ID = re.compile(r"\d{10}")
EVENT_SOURCES = frozenset({"WEB", "APP", "IN_STORE", "PHONE", "MESSAGE", "OTHER"})
CONSENT_VALUES = frozenset({"CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED"})
REQUEST_FIELDS = frozenset(
    {"destinations", "events", "consent", "validateOnly", "encoding", "encryptionInfo"}
)
DESTINATION_FIELDS = frozenset(
    {"reference", "loginAccount", "linkedAccount", "operatingAccount", "productDestinationId"}
)
EVENT_FIELDS = frozenset(
    {
        "destinationReferences",
        "transactionId",
        "eventTimestamp",
        "lastUpdatedTimestamp",
        "userData",
        "consent",
        "adIdentifiers",
        "currency",
        "conversionValue",
        "conversionCount",
        "eventSource",
        "eventDeviceInfo",
        "cartData",
        "customVariables",
        "experimentalFields",
        "userProperties",
        "eventName",
    }
)
AD_IDENTIFIER_FIELDS = frozenset(
    {"sessionAttributes", "gclid", "gbraid", "wbraid", "landingPageDeviceInfo"}
)
DEVICE_FIELDS = frozenset({"userAgent", "ipAddress", "category", "languageCode"})
ITEM_FIELDS = frozenset({"itemId", "merchantProductId", "quantity", "unitPrice"})
ADDRESS_FIELDS = ("givenName", "familyName", "regionCode", "postalCode")


@dataclass
class Account:
    """A Google Ads account: its conversion actions, and the manager account above it."""

    customer_id: str
    conversion_actions: set[str]
    manager: str | None = None


@dataclass
class ReceivedIngest:
    """One request that reached events:ingest, and what the stand-in answered."""

    body: dict
    headers: dict[str, str]
    http_status: int
    answer: dict
    validate_only: bool = False


@dataclass
class TokenCall:
    """One request to the token endpoint (secrets left out) and the OAuth error, if any."""

    client_id: str
    http_status: int
    error: str | None


@dataclass
class _RefreshGrant:
    client_id: str
    customer_ids: frozenset[str]
    revoked: bool = False


@dataclass
class _Accepted:
    destinations: list[dict]
    event_count: int
    status: str = "SUCCESS"
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Fault:
    http_status: int
    retry_after: int | None


class _Reject(Exception):
    """Becomes a google.rpc.Status error body."""

    def __init__(
        self,
        http_status: int,
        message: str,
        reason: str | None = None,
        violations: list[tuple[str, str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.reason = reason
        self.violations = violations or []


def error_body(
    http_status: int,
    message: str,
    reason: str | None = None,
    violations: list[tuple[str, str, str]] | None = None,
) -> dict[str, Any]:
    """Google's REST error: ``{error: {code, message, status, details}}``."""
    details: list[dict[str, Any]] = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": DOMAIN,
            }
        )
    if violations:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": path, "description": words, "reason": why}
                    for path, words, why in violations
                ],
            }
        )
    status = STATUS_BY_HTTP.get(http_status, "UNKNOWN")
    error = {"code": http_status, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


# ---------------------------------------------------------------------------------------
# Field checks: each returns (path, description, ErrorReason) for the first problem, or None.
# ---------------------------------------------------------------------------------------

Problem = tuple[str, str, str] | None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _unknown(obj: dict, known: frozenset[str], path: str) -> Problem:
    for key in obj:
        if key not in known:
            return (
                f"{path}.{_snake(key)}",
                f'Unknown name "{key}": Cannot find field.',
                "INVALID_ARGUMENT",
            )
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_hash(value: Any, encoding: str | None) -> bool:
    if not isinstance(value, str):
        return False
    if encoding == "BASE64":
        return len(value) == 44 and value.endswith("=")
    return HEX_SHA256.fullmatch(value) is not None


def check_timestamp(value: Any, path: str, now: float) -> Problem:
    """RFC 3339 (G7 "Timestamp format"), within the decided window."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        return (path, "Invalid RFC 3339 timestamp.", "INVALID_FORMAT")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    if moment < now - MAX_EVENT_AGE_SECONDS or moment > now + MAX_FUTURE_SECONDS:
        return (
            path,
            "Event did not occur within the acceptable time window.",
            "EVENT_TIME_INVALID",
        )
    return None


def check_user_data(user: Any, path: str, encoding: str | None) -> Problem:
    if not isinstance(user, dict) or set(user) != {"userIdentifiers"}:
        return (path, "Must hold userIdentifiers only.", "INVALID_ARGUMENT")
    identifiers = user["userIdentifiers"]
    if not isinstance(identifiers, list) or not identifiers:
        return (
            f"{path}.user_identifiers",
            "At least one identifier is required.",
            "REQUIRED_FIELD_MISSING",
        )
    if len(identifiers) > MAX_IDENTIFIERS:
        return (f"{path}.user_identifiers", "At most 10 identifiers.", "TOO_MANY_USER_IDENTIFIERS")
    if encoding not in ("HEX", "BASE64"):
        return ("encoding", "Required for UserData uploads.", "REQUIRED_FIELD_MISSING")
    for index, identifier in enumerate(identifiers):
        problem = check_identifier(identifier, f"{path}.user_identifiers[{index}]", encoding)
        if problem:
            return problem
    return None


def check_identifier(identifier: Any, path: str, encoding: str) -> Problem:
    if not isinstance(identifier, dict) or len(identifier) != 1:
        return (path, "Exactly one of email_address, phone_number, address.", "INVALID_ARGUMENT")
    ((key, value),) = identifier.items()
    if key in ("emailAddress", "phoneNumber"):
        if not _is_hash(value, encoding):
            return (
                f"{path}.{_snake(key)}",
                "Not a SHA-256 hash in the request's encoding.",
                "INVALID_SHA256_FORMAT",
            )
        return None
    if key != "address":
        return (f"{path}.{_snake(key)}", f'Unknown name "{key}".', "INVALID_ARGUMENT")
    return check_address(value, f"{path}.address", encoding)


def check_address(address: Any, path: str, encoding: str) -> Problem:
    if not isinstance(address, dict):
        return (path, "Must be an object.", "INVALID_ARGUMENT")
    problem = _unknown(address, frozenset(ADDRESS_FIELDS), path)
    if problem:
        return problem
    for key in ADDRESS_FIELDS:
        if not isinstance(address.get(key), str) or not address[key].strip():
            return (f"{path}.{_snake(key)}", "Required.", "REQUIRED_FIELD_MISSING")
    for key in ("givenName", "familyName"):
        if not _is_hash(address[key], encoding):
            return (f"{path}.{_snake(key)}", "Not a SHA-256 hash.", "INVALID_SHA256_FORMAT")
    if not re.fullmatch(r"[A-Z]{2}", address["regionCode"]):
        return (f"{path}.region_code", "Not an ISO-3166-1 alpha-2 code.", "INVALID_REGION_CODE")
    if (
        HEX_SHA256.fullmatch(address["postalCode"])
        or address["postalCode"] != address["postalCode"].strip()
    ):
        return (
            f"{path}.postal_code",
            "Postal code is not valid (send it unhashed, trimmed).",
            "INVALID_POSTAL_CODE",
        )
    return None


def check_ad_identifiers(ad: Any, path: str) -> Problem:
    if not isinstance(ad, dict):
        return (path, "Must be an object.", "INVALID_ARGUMENT")
    problem = _unknown(ad, AD_IDENTIFIER_FIELDS, path)
    if problem:
        return problem
    for key in ("gclid", "gbraid", "wbraid", "sessionAttributes"):
        if key in ad and (not isinstance(ad[key], str) or not ad[key].strip()):
            return (f"{path}.{_snake(key)}", "Must be a non-empty string.", "INVALID_FORMAT")
    if "landingPageDeviceInfo" in ad:
        return check_device(ad["landingPageDeviceInfo"], f"{path}.landing_page_device_info")
    return None


def check_device(device: Any, path: str) -> Problem:
    if not isinstance(device, dict):
        return (path, "Must be an object.", "INVALID_ARGUMENT")
    problem = _unknown(device, DEVICE_FIELDS, path)
    if problem:
        return problem
    if "userAgent" in device and not isinstance(device["userAgent"], str):
        return (f"{path}.user_agent", "Must be a string.", "INVALID_FORMAT")
    if "ipAddress" in device:
        try:
            ipaddress.ip_address(device["ipAddress"])
        except ValueError:
            return (f"{path}.ip_address", "Not an IP address.", "INVALID_FORMAT")
    return None


def check_cart(cart: Any, path: str) -> Problem:
    if not isinstance(cart, dict) or not isinstance(cart.get("items", []), list):
        return (path, "Must be an object with a list of items.", "INVALID_ARGUMENT")
    for index, item in enumerate(cart.get("items", [])):
        item_path = f"{path}.items[{index}]"
        if not isinstance(item, dict):
            return (item_path, "Must be an object.", "INVALID_ARGUMENT")
        problem = _unknown(item, ITEM_FIELDS, item_path)
        if problem:
            return problem
        if "quantity" in item and (
            not isinstance(item["quantity"], int) or isinstance(item["quantity"], bool)
        ):
            return (f"{item_path}.quantity", "Must be an integer.", "INVALID_NUMBER_FORMAT")
        if "unitPrice" in item and not _is_number(item["unitPrice"]):
            return (f"{item_path}.unit_price", "Must be a number.", "INVALID_NUMBER_FORMAT")
    return None


def check_consent(consent: Any, path: str) -> Problem:
    if not isinstance(consent, dict):
        return (path, "Must be an object.", "INVALID_ARGUMENT")
    problem = _unknown(consent, frozenset({"adUserData", "adPersonalization"}), path)
    if problem:
        return problem
    for key, value in consent.items():
        if value not in CONSENT_VALUES:
            return (f"{path}.{_snake(key)}", f"Invalid value {value!r}.", "INVALID_ENUM_VALUE")
    return None


def check_event(event: Any, path: str, encoding: str | None, now: float) -> Problem:
    """The first problem of one event, Google's way (see the module docstring)."""
    if not isinstance(event, dict):
        return (path, "Must be an object.", "INVALID_EVENT")
    problem = _unknown(event, EVENT_FIELDS, path)
    if problem:
        return problem
    transaction = event.get("transactionId")
    if not isinstance(transaction, str) or not transaction.strip():
        return (
            f"{path}.transaction_id",
            "Required for tag conversion events.",
            "REQUIRED_FIELD_MISSING",
        )
    if "eventTimestamp" not in event:
        return (f"{path}.event_timestamp", "Required.", "REQUIRED_FIELD_MISSING")
    problem = check_timestamp(event["eventTimestamp"], f"{path}.event_timestamp", now)
    if problem:
        return problem
    if "conversionValue" in event and not _is_number(event["conversionValue"]):
        return (f"{path}.conversion_value", "Must be a number.", "INVALID_NUMBER_FORMAT")
    if "currency" in event and not (
        isinstance(event["currency"], str) and re.fullmatch(r"[A-Z]{3}", event["currency"])
    ):
        return (f"{path}.currency", "The currency code is not supported.", "INVALID_CURRENCY_CODE")
    if "eventSource" in event and event["eventSource"] not in EVENT_SOURCES:
        return (
            f"{path}.event_source",
            f"Invalid value {event['eventSource']!r}.",
            "INVALID_ENUM_VALUE",
        )
    checks = (
        ("userData", "user_data", lambda v, p: check_user_data(v, p, encoding)),
        ("adIdentifiers", "ad_identifiers", check_ad_identifiers),
        ("eventDeviceInfo", "event_device_info", check_device),
        ("cartData", "cart_data", check_cart),
        ("consent", "consent", check_consent),
    )
    for key, name, check in checks:
        if key in event:
            problem = check(event[key], f"{path}.{name}")
            if problem:
                return problem
    clicks = event.get("adIdentifiers") or {}
    if "userData" not in event and not any(clicks.get(k) for k in ("gclid", "gbraid", "wbraid")):
        return (
            path,
            "Events data contains no user identifiers or ad identifiers.",
            "NO_IDENTIFIERS_PROVIDED",
        )
    return None


def check_destination(dest: Any, path: str) -> Problem:
    if not isinstance(dest, dict):
        return (path, "Must be an object.", "INVALID_DESTINATION")
    problem = _unknown(dest, DESTINATION_FIELDS, path)
    if problem:
        return problem
    for key in ("operatingAccount", "loginAccount"):
        if key not in dest and key == "loginAccount":
            continue
        account = dest.get(key)
        account_path = f"{path}.{_snake(key)}"
        if not isinstance(account, dict) or account.get("accountType") != "GOOGLE_ADS":
            return (
                f"{account_path}.account_type",
                "Must be GOOGLE_ADS here.",
                "INVALID_DESTINATION",
            )
        if not isinstance(account.get("accountId"), str) or not CUSTOMER_ID.fullmatch(
            account["accountId"]
        ):
            return (
                f"{account_path}.account_id",
                "A customer ID is 10 digits without dashes.",
                "INVALID_DESTINATION",
            )
    product = dest.get("productDestinationId")
    if not isinstance(product, str) or not product.isdigit():
        return (
            f"{path}.product_destination_id",
            "The numeric conversion action ID.",
            "INVALID_CONVERSION_ACTION_ID",
        )
    return None


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------


class GoogleStandIn(ServedStandIn):
    """Google's token endpoint and Data Manager API on 127.0.0.1.

    Use as ``google = GoogleStandIn().start()``; point GOOGLE_DATAMANAGER_API_BASE at
    ``google.base_url`` and GOOGLE_OAUTH_TOKEN_URL at ``google.token_url``; set it up with
    :meth:`register_client`, :meth:`add_account` and :meth:`issue_refresh_token`; ``stop()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app = self._build_app()
        self._http = LocalServer(self._app, "google-standin")
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    # -- configuration and faults -------------------------------------------------------------

    def reset(self) -> None:
        """Forget clients, accounts, tokens, requests and faults."""
        with self._lock:
            self.clients: dict[str, str] = {}
            self.accounts: dict[str, Account] = {}
            self.batches: list[ReceivedIngest] = []
            self.token_calls: list[TokenCall] = []
            self._refresh: dict[str, _RefreshGrant] = {}
            self._access: dict[str, tuple[str, float]] = {}
            self._accepted: dict[str, _Accepted] = {}
            self._faults: deque[_Fault] = deque()
            self._token_faults: deque[int] = deque()
            self._rejected_transactions: set[str] = set()

    def register_client(self, client_id: str, secret: str) -> None:
        with self._lock:
            self.clients[client_id] = secret

    def add_account(
        self, customer_id: str, conversion_actions: set[str], manager: str | None = None
    ) -> Account:
        account = Account(customer_id, set(conversion_actions), manager)
        with self._lock:
            self.accounts[customer_id] = account
        return account

    def issue_refresh_token(self, client_id: str, customer_ids: set[str]) -> str:
        """A refresh token of a Google user with access to these customers (or managers)."""
        token = "1//" + secrets.token_hex(24)
        with self._lock:
            self._refresh[token] = _RefreshGrant(client_id, frozenset(customer_ids))
        return token

    def revoke(self, refresh_token: str) -> None:
        """The user revoked access: the refresh token and its access tokens stop working."""
        with self._lock:
            self._refresh[refresh_token].revoked = True
            for access, (refresh, _) in list(self._access.items()):
                if refresh == refresh_token:
                    del self._access[access]

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = {k: (r, time.time() - 1) for k, (r, _) in self._access.items()}

    def issued_access_tokens(self) -> list[str]:
        with self._lock:
            return list(self._access)

    def fail_next(self, n: int, *, http_status: int = 503, retry_after: int | None = None) -> None:
        """The next n events:ingest requests get this error instead of being checked."""
        with self._lock:
            self._faults.extend([_Fault(http_status, retry_after)] * n)

    def fail_token_endpoint(self, n: int, *, http_status: int = 503) -> None:
        with self._lock:
            self._token_faults.extend([http_status] * n)

    def reject_transaction_ids(self, ids: set[str]) -> None:
        """Refuse events with these transaction ids (INVALID_EVENT), named by path."""
        with self._lock:
            self._rejected_transactions.update(ids)

    def set_request_status(
        self, request_id: str, status: str, errors: dict[str, int] | None = None
    ) -> None:
        with self._lock:
            accepted = self._accepted[request_id]
            accepted.status, accepted.errors = status, dict(errors or {})

    # -- what was received ---------------------------------------------------------------------

    def accepted_events(self) -> list[dict]:
        with self._lock:
            return [
                event
                for batch in self.batches
                if batch.http_status == 200 and not batch.validate_only
                for event in batch.body["events"]
            ]

    def request_ids(self) -> list[str]:
        with self._lock:
            return list(self._accepted)

    # -- request handling ------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("google_standin")
        app.add_url_rule(TOKEN_PATH, "token", self._token, methods=["POST"])
        app.add_url_rule(INGEST_PATH, "ingest", self._ingest, methods=["POST"])
        app.add_url_rule(STATUS_PATH, "status", self._status, methods=["GET"])

        @app.errorhandler(404)
        def not_found(_error: Exception) -> tuple[dict, int]:
            return error_body(404, f"Method not found: {request.path}"), 404

        @app.errorhandler(405)
        def wrong_method(_error: Exception) -> tuple[dict, int]:
            return error_body(404, f"{request.method} is not allowed on {request.path}"), 404

        return app

    def _token(self) -> Response:
        form = request.form
        client_id = form.get("client_id", "")
        with self._lock:
            fault = self._token_faults.popleft() if self._token_faults else None
            status, answer = (
                (fault, {"error": "internal_failure"}) if fault else self._grant(form, client_id)
            )
            self.token_calls.append(TokenCall(client_id, status, answer.get("error")))
        return Response(json.dumps(answer), status=status, mimetype="application/json")

    def _grant(self, form: Any, client_id: str) -> tuple[int, dict[str, Any]]:
        """Called with the lock held."""
        if request.mimetype != "application/x-www-form-urlencoded":
            return 400, {"error": "invalid_request", "error_description": "Form body expected."}
        if form.get("grant_type") != "refresh_token":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type.",
            }
        if self.clients.get(client_id) is None or self.clients[client_id] != form.get(
            "client_secret"
        ):
            return 401, {
                "error": "invalid_client",
                "error_description": "The OAuth client was not found.",
            }
        grant = self._refresh.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked or grant.client_id != client_id:
            return 400, {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
        access = "ya29." + secrets.token_hex(24)
        self._access[access] = (form["refresh_token"], time.time() + ACCESS_TOKEN_SECONDS)
        return 200, {
            "access_token": access,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": SCOPE,
            "token_type": "Bearer",
        }

    def _customers_for(self, authorization: str) -> frozenset[str]:
        """The customers the Bearer token's user may reach; called with the lock held."""
        scheme, _, token = authorization.partition(" ")
        found = self._access.get(token.strip()) if scheme == "Bearer" else None
        if found is None or found[1] <= time.time():
            raise _Reject(
                401,
                UNAUTHENTICATED_MESSAGE,
                "ACCESS_TOKEN_EXPIRED" if found else "CREDENTIALS_MISSING",
            )
        return self._refresh[found[0]].customer_ids

    def _ingest(self) -> Response:
        body = _parsed(request.get_data())
        validate_only = isinstance(body, dict) and body.get("validateOnly") is True
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            status, answer = (
                fault.http_status,
                error_body(fault.http_status, "The service is currently unavailable."),
            )
        else:
            try:
                status, answer = 200, self._accept(body, validate_only)
            except _Reject as reject:
                status = reject.http_status
                answer = error_body(status, reject.message, reject.reason, reject.violations)
        with self._lock:
            recorded = body if isinstance(body, dict) else {"_raw": body}
            self.batches.append(
                ReceivedIngest(recorded, dict(request.headers), status, answer, validate_only)
            )
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        if fault is not None and fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    def _accept(self, body: Any, validate_only: bool) -> dict[str, Any]:
        with self._lock:
            customers = self._customers_for(request.headers.get("Authorization", ""))
        if request.mimetype != "application/json" or not isinstance(body, dict):
            raise _Reject(400, "Invalid JSON payload received.", "INVALID_FORMAT")
        problem = _unknown(body, REQUEST_FIELDS, "request")
        if problem:
            raise _Reject(400, "Invalid JSON payload received.", "INVALID_ARGUMENT", [problem])
        destinations = body.get("destinations")
        if not isinstance(destinations, list) or not 1 <= len(destinations) <= MAX_DESTINATIONS:
            raise _Reject(
                400,
                "Between 1 and 10 destinations are required.",
                "INVALID_DESTINATION",
                [("destinations", "1 to 10 destinations.", "INVALID_DESTINATION")],
            )
        for index, dest in enumerate(destinations):
            problem = check_destination(dest, f"destinations[{index}]")
            if problem:
                raise _Reject(400, "Request contains an invalid argument.", problem[2], [problem])
            self._check_permission(dest, customers)
        events = body.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            raise _Reject(
                400,
                "Between 1 and 2000 events are required.",
                "TOO_MANY_EVENTS",
                [("events", "1 to 2000 events.", "TOO_MANY_EVENTS")],
            )
        self._check_events(events, body.get("encoding"))
        if validate_only:
            return {}
        request_id = str(uuid.uuid4())  # decided: the form of a requestId is not documented
        with self._lock:
            self._accepted[request_id] = _Accepted(destinations, len(events))
        return {"requestId": request_id}

    def _check_permission(self, dest: dict, customers: frozenset[str]) -> None:
        operating = dest["operatingAccount"]["accountId"]
        login = (dest.get("loginAccount") or {}).get("accountId")
        with self._lock:
            account = self.accounts.get(operating)
        through = login if login else operating
        reachable = through in customers and account is not None
        if reachable and login:
            reachable = operating == login or account.manager == login  # type: ignore[union-attr]
        if not reachable or dest["productDestinationId"] not in account.conversion_actions:  # type: ignore[union-attr]
            raise _Reject(403, "The caller does not have permission", "PERMISSION_DENIED")

    def _check_events(self, events: list, encoding: Any) -> None:
        now = time.time()
        with self._lock:
            rejected = set(self._rejected_transactions)
        violations = []
        for index, event in enumerate(events):
            path = f"events[{index}]"
            problem = check_event(event, path, encoding, now)
            if problem is None and event.get("transactionId") in rejected:
                problem = (f"{path}.transaction_id", "This event is not valid.", "INVALID_EVENT")
            if problem:
                violations.append(problem)
        if violations:
            raise _Reject(
                400, "Request contains an invalid argument.", violations[0][2], violations
            )

    def _status(self) -> Response:
        try:
            with self._lock:
                self._customers_for(request.headers.get("Authorization", ""))
                accepted = self._accepted.get(request.args.get("requestId", ""))
            if accepted is None:
                raise _Reject(
                    400,
                    "The request ID is not valid.",
                    "INVALID_REQUEST_ID",
                    [("request_id", "Unknown request ID.", "INVALID_REQUEST_ID")],
                )
            status, answer = (
                200,
                {
                    "requestStatusPerDestination": [
                        _status_entry(d, accepted) for d in accepted.destinations
                    ]
                },
            )
        except _Reject as reject:
            status = reject.http_status
            answer = error_body(status, reject.message, reject.reason, reject.violations)
        return Response(json.dumps(answer), status=status, mimetype="application/json")


def _status_entry(destination: dict, accepted: _Accepted) -> dict[str, Any]:
    """One ``RequestStatusPerDestination``; int64 counts as JSON strings, as Google sends them."""
    entry: dict[str, Any] = {
        "destination": destination,
        "requestStatus": accepted.status,
        "eventsIngestionStatus": {"recordCount": str(accepted.event_count)},
    }
    if accepted.errors:
        entry["errorInfo"] = {
            "errorCounts": [
                {"reason": r, "recordCount": str(n)} for r, n in accepted.errors.items()
            ]
        }
    return entry


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
