"""Build and send Google Ads conversions through Google's Data Manager API; classify answers.

Wire contract (https://developers.google.com/data-manager/api/reference/rest/v1/events/ingest):
``POST {base}/v1/events:ingest`` with ``Authorization: Bearer <OAuth access token>`` and a body
``{destinations: [Destination], events: [Event], encoding, validateOnly}``. A destination is
``{operatingAccount: {accountType: GOOGLE_ADS, accountId}, loginAccount?, productDestinationId}``
where ``productDestinationId`` is the conversion action's numeric id and ``loginAccount`` the
manager account the OAuth user signs in through ("Configure destinations",
https://developers.google.com/data-manager/api/devguides/events/send-events). Up to 2,000
events a request ("Limits and quotas", https://developers.google.com/data-manager/api/limits;
the ``events[]`` field says the same). Success is HTTP 200 ``{requestId}``; failure is a
``google.rpc.Status`` ``{error: {code, message, status, details}}`` whose ``status`` names the
canonical code and whose details carry ``ErrorInfo`` (the API's ``ErrorReason``) and
``BadRequest.fieldViolations`` (https://developers.google.com/data-manager/api/devguides/
concepts/understand-errors). A violation names its field by path, list positions in brackets
(``emailAddresses[1].email`` in google/rpc/error_details.proto,
https://github.com/googleapis/googleapis/blob/master/google/rpc/error_details.proto); Google
shows no Data Manager sample, so both the proto form ``events[3].event_timestamp`` and the
JSON form ``events[3].eventTimestamp`` are read. The API
"doesn't support partial failure. If any field of an IngestEventsRequest fails validation,
the Data Manager API rejects the entire request"
(https://developers.google.com/data-manager/api/devguides/events/google-ads/offline/upgrade/field-mappings),
so a 400 that names events refuses exactly those, and the delivery loop sends the rest again
without bisecting. Records can still fail later, while Google processes an accepted request;
:meth:`GoogleDataManager.request_status` reads that (``requestStatus:retrieve``).

Why not Google's ``google-ads-datamanager`` package (PyPI, 0.9.x): it is a gRPC client that
pulls in grpcio, protobuf, proto-plus and google-api-core for one POST and one GET; its
retries and batching would sit under the outbox, which already owns both (per-destination
pacing, Retry-After, bisection, leases); and its exceptions would have to be mapped back to
the same canonical codes the REST error body gives us directly. The REST surface is
documented, small and stable, so plain ``requests`` it is, as for TikTok and Meta.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import requests

from connector.destinations import (
    ConfigField,
    DestinationConfig,
    EnvVar,
    FailureAdvice,
    FollowUp,
    Outcome,
    SendResult,
    frame_elements,
    post_encoded,
    retry_after_seconds,
)
from connector.destinations.google import tokens
from connector.destinations.google.advice import advice
from connector.destinations.google.identity import user_data
from connector.events import ClickIds, ConversionEvent, Shopper

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from connector.models import StoreDestination
    from connector.services import Services

INGEST_PATH = "/v1/events:ingest"
STATUS_PATH = "/v1/requestStatus:retrieve"
MAX_EVENTS = 2000  # https://developers.google.com/data-manager/api/limits
# Google documents no age limit for Data Manager events (its ErrorReason EVENT_TIME_INVALID
# and ProcessingErrorReason EVENT_TOO_OLD exist without a number). Google Ads imports click
# conversions up to 90 days after the click
# (https://developers.google.com/google-ads/api/docs/conversions/legacy_oci_guide, "expired
# event"), so 90 days is the window decided here; an older order is failed before sending.
MAX_EVENT_AGE_SECONDS = 90 * 24 * 3600
MAX_FUTURE_SECONDS = 5 * 60  # decided: clock skew, not a real future order
CLICK_KEYS = ("gclid", "gbraid", "wbraid")

# google.rpc.Code by name (https://github.com/googleapis/googleapis/blob/master/google/rpc/
# code.proto); REST errors name it in error.status.
GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
# The HTTP status each code maps to (https://cloud.google.com/apis/design/errors), read back
# when an answer has no error body (a proxy, a gateway).
HTTP_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 500: 13, 503: 14, 504: 4}
RETRY_CODES = frozenset({1, 2, 4, 8, 10, 13, 14})  # pass with time: quota, outage, timeout
EVENT_PATH = re.compile(r"\bevents\[(\d+)\]")

TOKEN_FIX = tokens.RECONNECT_FIX
PERMISSION_FIX = (
    "Google says the Google account of the refresh token may not send to this Google Ads "
    "account or conversion action. Give that account access in Google Ads (Admin > Access "
    "and security), or, if it reaches the account through a manager account, set the "
    "manager's ID as login customer ID; check the IDs with `connector destinations set "
    "STORE_ID google`. The refresh token must carry the scope "
    "https://www.googleapis.com/auth/datamanager, and the Data Manager API must be enabled "
    "in the OAuth client's Google Cloud project."
)
ADDRESS_FIX = (
    "Check GOOGLE_DATAMANAGER_API_BASE: Google's Data Manager API was not found at that address."
)
DESTINATION_FIX = (
    "Check the Google Ads customer ID and conversion action ID (Google Ads > Goals > "
    "Conversions > the action's details, `ctId` in its URL) with `connector destinations set "
    "STORE_ID google`: the conversion action must exist in that account and be of the Website "
    "(WEBPAGE) kind."
)
ACCOUNT_FIX = (
    "The Google Ads account is not ready for these conversions: read Google's message, fix it "
    "in Google Ads (accept the customer data terms under Goals > Conversions > Settings, or "
    "use a conversion action that takes imported events), then resume the destination."
)
# ErrorReason values (https://developers.google.com/data-manager/api/reference/rest/v1/
# ErrorReason) that concern the account or destination rather than one event: every event
# would fail the same way, so the destination pauses with the fix instead.
ACCOUNT_REASONS = {
    "INVALID_DESTINATION": DESTINATION_FIX,
    "INVALID_CONVERSION_ACTION_ID": DESTINATION_FIX,
    "INVALID_CONVERSION_ACTION_TYPE": DESTINATION_FIX,
    "DESTINATION_ACCOUNT_TYPE_MISMATCH": DESTINATION_FIX,
    "OPERATING_ACCOUNT_LOGIN_ACCOUNT_MISMATCH": DESTINATION_FIX,
    "TERMS_AND_CONDITIONS_NOT_SIGNED": ACCOUNT_FIX,
    "DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED": ACCOUNT_FIX,
    "DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS": ACCOUNT_FIX,
    "NOT_ALLOWLISTED": ACCOUNT_FIX,
}

CUSTOMER_ID_PATTERN = r"\d{3}-?\d{3}-?\d{4}"
ENV = (
    EnvVar(
        "GOOGLE_DATAMANAGER_API_BASE",
        "https://datamanager.googleapis.com",
        "Google's Data Manager API (tests: a stand-in)",
    ),
    EnvVar(tokens.CLIENT_ID, help="The Google OAuth client the refresh tokens were made with"),
    EnvVar(tokens.CLIENT_SECRET, help="Its secret"),
    EnvVar(
        tokens.TOKEN_URL,
        "https://oauth2.googleapis.com/token",
        "Google's OAuth 2.0 token endpoint (tests: a stand-in)",
    ),
)
# A customer ID is shown as 123-456-7890 in Google Ads and sent as 10 digits
# (operatingAccount.accountId); both forms are accepted and the dashes dropped when sending.
FIELDS = (
    ConfigField(
        "customer_id",
        "Google Ads customer ID",
        "The account that records the conversions: top right in Google Ads, 123-456-7890.",
        stored_as="account_id",
        pattern=CUSTOMER_ID_PATTERN,
        example="123-456-7890",
    ),
    ConfigField(
        "conversion_action",
        "Conversion action ID",
        "Google Ads > Goals > Conversions > your purchase action (Website kind): the number "
        "after ctId= in its address.",
        stored_as="setting",
        pattern=r"\d{1,20}",
        example="987654321",
    ),
    ConfigField(
        "refresh_token",
        "Google OAuth refresh token",
        "Made for the connector's OAuth client (GOOGLE_OAUTH_CLIENT_ID) with the scope "
        "https://www.googleapis.com/auth/datamanager, by a Google account with access to the "
        "Google Ads account.",
        stored_as="refresh_token",
        secret=True,
    ),
    ConfigField(
        "login_customer_id",
        "Manager account ID",
        "Optional. When that Google account reaches the Ads account through a manager (MCC) "
        "account: the manager's customer ID.",
        stored_as="setting",
        required=False,
        pattern=CUSTOMER_ID_PATTERN,
        example="111-222-3333",
    ),
)


@dataclass(frozen=True)
class DestinationStatus:
    """How Google processed one destination of an accepted request (``requestStatus``)."""

    status: str  # SUCCESS, PROCESSING, FAILED, PARTIAL_SUCCESS or REQUEST_STATUS_UNKNOWN
    record_count: int | None = None
    errors: Mapping[str, int] = field(default_factory=dict)  # ProcessingErrorReason: records
    warnings: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestStatus:
    """Google's processing report for one ``requestId``; ``problem`` when it could not be read."""

    request_id: str
    destinations: tuple[DestinationStatus, ...] = ()
    problem: str | None = None

    def describe(self) -> str:
        """One line for the delivery log: each destination's status, records and errors."""
        if self.problem:
            return f"status not available yet: {self.problem}"
        parts = []
        for entry in self.destinations:
            words = entry.status
            if entry.record_count is not None:
                words += f", {entry.record_count} record{'' if entry.record_count == 1 else 's'}"
            if entry.errors:
                words += ", errors: " + ", ".join(f"{k} {v}" for k, v in entry.errors.items())
            if entry.warnings:
                warned = ", ".join(f"{k} {v}" for k, v in entry.warnings.items())
                words += f", warnings: {warned}"
            parts.append(words)
        return "; ".join(parts) or "no status reported"

    @property
    def finished(self) -> bool:
        """Every destination reached a final status (Google advises asking again with backoff
        until then, https://developers.google.com/data-manager/api/devguides/diagnostics)."""
        final = {"SUCCESS", "FAILED", "PARTIAL_SUCCESS"}
        return bool(self.destinations) and all(d.status in final for d in self.destinations)


class GoogleDataManager:
    """The Google Ads destination: conversions through the Data Manager API."""

    kind = "google"
    label = "Google Ads"
    env = ENV
    fields = FIELDS
    # The conversion action decides how Google Ads counts the event; the name only labels it
    # here. No checkout moment: a started checkout is not a Google Ads purchase conversion.
    event_names = {"purchase": ("purchase",)}
    click_ids = CLICK_KEYS
    # gbraid and wbraid are click ids too (clicks on iOS), so any of the three is one.
    signal_keys = {
        "click_id": CLICK_KEYS,
        "email": "email",
        "phone": "phone",
        "ip": "ip",
        "user_agent": "user_agent",
    }
    max_batch = MAX_EVENTS
    # "300 requests per minute per project" (https://developers.google.com/data-manager/api/limits);
    # one destination keeps under it alone, several stores share the project's quota.
    max_requests_per_second = 5.0
    test_mode = "validate"
    # Google Ads has no test events: a test order is never sent; the settings card's test
    # button sends a sample with validateOnly, which Google checks without recording.
    test_hint = "Google Ads has no test events; the test button checks the setup instead"
    setup = (
        "In Google Ads, create (or pick) a purchase conversion action of the Website kind and "
        "note its ID and your customer ID. The connector's operator enables the Data Manager "
        "API in a Google Cloud project with an OAuth client (GOOGLE_OAUTH_CLIENT_ID and "
        "GOOGLE_OAUTH_CLIENT_SECRET); a Google account with access to your Ads account makes "
        "a refresh token for it with the scope https://www.googleapis.com/auth/datamanager. "
        "Orders are sent with their order number as transaction ID, so Google deduplicates "
        "them against your Google tag's purchase conversions with the same transaction ID."
    )

    def advice(self, code: int | None) -> FailureAdvice:
        """What a google.rpc code means for the merchant (:mod:`.advice`)."""
        return advice(code)

    def user_data(self, shopper: Shopper, clicks: ClickIds, event_time: int) -> dict[str, Any]:
        """Google's signals (:func:`connector.destinations.google.identity.user_data`)."""
        return user_data(shopper, clicks)

    def problem(self, event: ConversionEvent, now: int) -> str | None:
        """An event Google would refuse whole or could never match, before it costs a batch."""
        timing = self.timing_problem(event.event_time, now)
        if timing:
            return timing
        if not (_user_identifiers(event.user) or _ad_identifiers(event.user)):
            # ErrorReason NO_IDENTIFIERS_PROVIDED: Google refuses the whole request for it.
            return "no click id, email, phone or full address: Google cannot match it"
        return None

    def timing_problem(self, event_time: int, now: int) -> str | None:
        """Google imports events up to 90 days old and none from the future."""
        if now - event_time > MAX_EVENT_AGE_SECONDS:
            return "event is older than 90 days, which Google Ads does not import"
        if event_time - now > MAX_FUTURE_SECONDS:
            return "event time is in the future"
        return None

    def event_element(self, event: ConversionEvent) -> dict[str, Any]:
        """One element of ``events`` (:func:`event_data`)."""
        return event_data(event)

    def access_token(self, services: Services, row: StoreDestination) -> str:
        """A live access token, made from the refresh token when needed (:mod:`.tokens`)."""
        return tokens.access_token_for(services, row)

    def after_send(
        self,
        services: Services,
        row: StoreDestination,
        config: DestinationConfig,
        result: SendResult,
        resend: Callable[[DestinationConfig], SendResult],
    ) -> SendResult:
        """An UNAUTHENTICATED answer renews the access token once and sends again
        (:func:`connector.destinations.google.tokens.send_with_renewed_token`)."""
        return tokens.send_with_renewed_token(services, row, config, result, resend)

    def send(
        self, http: requests.Session, config: DestinationConfig, events: list[ConversionEvent]
    ) -> SendResult:
        """POST one batch of events (:meth:`send_elements`)."""
        return self.send_elements(http, config, [orjson.dumps(event_data(e)) for e in events])

    def send_elements(
        self, http: requests.Session, config: DestinationConfig, elements: list[bytes]
    ) -> SendResult:
        """POST one batch; map transport failures and Google's status onto an :class:`Outcome`."""
        if not config.access_token:
            # No token could be made: answer as Google would, so after_send says why.
            message = "no Google access token could be made from the refresh token"
            return SendResult(Outcome.PAUSE, message, code=tokens.UNAUTHENTICATED, fix=TOKEN_FIX)
        try:
            response = post_encoded(
                http,
                config.api_base + INGEST_PATH,
                frame_elements(envelope(config), "events", elements),
                headers=_auth(config),
                timeout=config.timeout,
            )
        except requests.Timeout:
            return SendResult(Outcome.RETRY, "Google did not answer in time")
        except requests.RequestException as exc:
            return SendResult(Outcome.RETRY, f"cannot reach Google: {type(exc).__name__}")
        return classify(response)

    def follow_up(
        self, http: requests.Session, config: DestinationConfig, request_id: str
    ) -> FollowUp:
        """Google's processing report of an accepted request, in words for the delivery log
        (the core's optional follow-up, :mod:`connector.followup`)."""
        status = self.request_status(http, config, request_id)
        return FollowUp(done=status.finished, message=status.describe())

    def request_status(
        self, http: requests.Session, config: DestinationConfig, request_id: str
    ) -> RequestStatus:
        """How Google processed an accepted request, from ``GET /v1/requestStatus:retrieve``
        (https://developers.google.com/data-manager/api/reference/rest/v1/requestStatus/retrieve).
        Never raises: a failed look-up comes back with ``problem`` set."""
        try:
            response = http.get(
                config.api_base + STATUS_PATH,
                params={"requestId": request_id},
                headers=_auth(config),
                timeout=config.timeout,
            )
        except requests.RequestException as exc:
            return RequestStatus(request_id, problem=f"cannot reach Google: {type(exc).__name__}")
        return read_request_status(request_id, response)


def build_body(config: DestinationConfig, events: list[ConversionEvent]) -> dict[str, Any]:
    """The ``IngestEventsRequest`` for one batch to the configured conversion action.

    ``encoding`` is HEX, the encoding of our SHA-256 digests ("Required for UserData uploads").
    ``validateOnly`` is set for the test button: Google validates and records nothing.
    """
    return {**envelope(config), "events": [event_data(event) for event in events]}


def envelope(config: DestinationConfig) -> dict[str, Any]:
    """The request body around its ``events``: the destination, the encoding, and
    ``validateOnly`` for the test button."""
    body: dict[str, Any] = {"destinations": [destination(config)], "encoding": "HEX"}
    if config.validate_only:
        body["validateOnly"] = True
    return body


def destination(config: DestinationConfig) -> dict[str, Any]:
    """The ``Destination``: customer ID (dashes dropped), conversion action, and the manager
    account as ``loginAccount`` when the merchant named one."""
    found: dict[str, Any] = {
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": _digits(config.account_id)},
        "productDestinationId": str(config.settings.get("conversion_action", "")).strip(),
    }
    login = _digits(str(config.settings.get("login_customer_id") or ""))
    if login:
        found["loginAccount"] = {"accountType": "GOOGLE_ADS", "accountId": login}
    return found


def event_data(event: ConversionEvent) -> dict[str, Any]:
    """One ``Event`` (https://developers.google.com/data-manager/api/reference/rest/v1/events/
    ingest#Event), with only the fields we have.

    ``transactionId`` is the order id (the event id when there is none): Google requires it
    for events that are an additional data source for tag conversions and deduplicates on it.
    ``consent``: the merchant, by connecting, tells Google its shoppers agreed to their order
    data being used for ad measurement, so ``adUserData`` is granted; with the store's
    limited-data-use option ``adPersonalization`` is denied (measurement, no personalised
    ads), else granted. Sending nothing would leave Google to the account's defaults, and
    records whose consent it cannot determine fail (ProcessingErrorReason UNKNOWN_CONSENT).
    """
    user = event.user
    data: dict[str, Any] = {
        "transactionId": str(event.order_id or event.event_id),
        "eventTimestamp": rfc3339(event.event_time),
        "eventSource": "WEB",
        "conversionValue": event.value,
        "currency": event.currency.upper(),
        "consent": {
            "adUserData": "CONSENT_GRANTED",
            "adPersonalization": "CONSENT_DENIED" if event.limited_data_use else "CONSENT_GRANTED",
        },
    }
    identifiers = _user_identifiers(user)
    if identifiers:
        data["userData"] = {"userIdentifiers": identifiers}
    ad = _ad_identifiers(user)
    if ad:
        data["adIdentifiers"] = ad
    device = _present({"userAgent": user.get("user_agent"), "ipAddress": user.get("ip")})
    if device:
        data["eventDeviceInfo"] = device
    items = [_item(content) for content in event.contents]
    if items:
        data["cartData"] = {"items": items}
    return data


def rfc3339(seconds: int) -> str:
    """``eventTimestamp`` in RFC 3339, UTC (``2025-08-08T17:18:44Z``), as the formatting page's
    "Timestamp format" asks for JSON."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def classify(response: requests.Response) -> SendResult:
    """Turn Google's answer into an outcome, keeping its canonical code and words.

    2xx is delivered (``requestId`` kept for ``requestStatus``; a ``validateOnly`` request
    returns no results). 401 UNAUTHENTICATED pauses, unless ``after_send`` can renew the token;
    403 PERMISSION_DENIED and 404 pause with the fix; 429 RESOURCE_EXHAUSTED and 5xx retry,
    after ``Retry-After`` or the ``RetryInfo`` detail when given. 400 INVALID_ARGUMENT refuses
    the events its ``BadRequest`` violations name; one that names the destination, or an
    account-level ``ErrorInfo`` reason, pauses instead, since every event would fail alike.
    """
    status = response.status_code
    body = _json(response)
    if 200 <= status < 300 and isinstance(body, dict):
        return SendResult(Outcome.DELIVERED, "accepted", status, 0, body.get("requestId"))
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _classify_http(status, _retry_after(response, []))
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    name = str(error.get("status") or "")
    code = GRPC_CODES.get(name, HTTP_CODES.get(status))
    reason = _error_reason(details)
    parts = (name, f"({reason})" if reason else "", str(error.get("message") or ""))
    message = " ".join(part for part in parts if part)
    violations = _violations(details)
    refused = _refused(violations)

    def result(outcome: Outcome, fix: str | None = None) -> SendResult:
        named = refused if outcome is Outcome.REJECTED else {}
        retry_after = _retry_after(response, details) if outcome is Outcome.RETRY else None
        return SendResult(outcome, message, status, code, None, retry_after, fix, named)

    if code in RETRY_CODES or status >= 500 or status == 429:
        return result(Outcome.RETRY)
    if code == tokens.UNAUTHENTICATED or status == 401:
        return result(Outcome.PAUSE, TOKEN_FIX)
    if code == GRPC_CODES["PERMISSION_DENIED"] or status == 403:
        return result(Outcome.PAUSE, PERMISSION_FIX)
    if code == GRPC_CODES["NOT_FOUND"] or status == 404:
        return result(Outcome.PAUSE, ADDRESS_FIX)
    if reason in ACCOUNT_REASONS:
        return result(Outcome.PAUSE, ACCOUNT_REASONS[reason])
    if code == GRPC_CODES["FAILED_PRECONDITION"]:
        return result(Outcome.PAUSE, ACCOUNT_FIX)
    if not refused and any(path.startswith("destinations") for path, _ in violations):
        return result(Outcome.PAUSE, DESTINATION_FIX)
    return result(Outcome.REJECTED)


def read_request_status(request_id: str, response: requests.Response) -> RequestStatus:
    """A ``RetrieveRequestStatusResponse``: one entry per destination of the original request,
    in its order, each ``{requestStatus, eventsIngestionStatus {recordCount}, errorInfo
    {errorCounts [{reason, recordCount}]}, warningInfo {warningCounts [...]}}`` (int64 counts
    arrive as JSON strings)."""
    body = _json(response)
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        words = error.get("message") if isinstance(error, dict) else None
        return RequestStatus(request_id, problem=f"HTTP {response.status_code}: {words or ''}")
    entries = body.get("requestStatusPerDestination") or []
    return RequestStatus(
        request_id, tuple(_destination_status(e) for e in entries if isinstance(e, dict))
    )


def _destination_status(entry: dict[str, Any]) -> DestinationStatus:
    ingestion = entry.get("eventsIngestionStatus") or {}
    errors = (entry.get("errorInfo") or {}).get("errorCounts") or []
    warnings = (entry.get("warningInfo") or {}).get("warningCounts") or []
    return DestinationStatus(
        status=str(entry.get("requestStatus") or "REQUEST_STATUS_UNKNOWN"),
        record_count=_int(ingestion.get("recordCount")),
        errors=_counts(errors),
        warnings=_counts(warnings),
    )


def _counts(entries: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, dict) and entry.get("reason"):
            counts[str(entry["reason"])] = _int(entry.get("recordCount")) or 0
    return counts


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _classify_http(status: int, retry_after: float | None) -> SendResult:
    """An answer without Google's JSON: a proxy, a gateway, an outage page. A 2xx of that kind
    is not taken as delivered: nothing shows Google received the batch, so it is sent again
    (Google deduplicates on ``transactionId``)."""
    message = f"Google answered HTTP {status} without a JSON body"
    code = HTTP_CODES.get(status)
    if status >= 500 or status == 429 or status < 300:  # < 300: a portal or proxy page
        return SendResult(Outcome.RETRY, message, status, code, retry_after=retry_after)
    if status == 401:
        return SendResult(Outcome.PAUSE, message, status, code, fix=TOKEN_FIX)
    if status == 403:
        return SendResult(Outcome.PAUSE, message, status, code, fix=PERMISSION_FIX)
    if status == 404:
        return SendResult(Outcome.PAUSE, message, status, code, fix=ADDRESS_FIX)
    return SendResult(Outcome.REJECTED, message, status, code)


def _user_identifiers(user: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``userData.userIdentifiers``: each holds exactly one of email, phone or address."""
    identifiers: list[dict[str, Any]] = []
    if user.get("email"):
        identifiers.append({"emailAddress": user["email"]})
    if user.get("phone"):
        identifiers.append({"phoneNumber": user["phone"]})
    address = {
        "givenName": user.get("given_name"),
        "familyName": user.get("family_name"),
        "regionCode": user.get("region_code"),
        "postalCode": user.get("postal_code"),
    }
    if all(address.values()):
        identifiers.append({"address": address})
    return identifiers


def _ad_identifiers(user: Mapping[str, Any]) -> dict[str, str]:
    """The one click id to send, gclid first.

    Google Ads takes one click id per conversion (its ``ClickConversion`` refuses gclid with
    gbraid or wbraid); the Data Manager reference does not say whether ``AdIdentifiers`` may
    hold more, so we decide to send one, the most specific.
    """
    for key in CLICK_KEYS:
        if user.get(key):
            return {key: user[key]}
    return {}


def _item(content: Any) -> dict[str, Any]:
    """A ``cartData.items`` entry: our product id as ``itemId`` (Google's ``merchantProductId``
    is the Merchant Center id, which the store's ids need not be)."""
    return _present(
        {"itemId": content.content_id, "quantity": content.quantity, "unitPrice": content.price}
    )


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value not in (None, "")}


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def _auth(config: DestinationConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.access_token}"}


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_reason(details: list[dict[str, Any]]) -> str | None:
    """The ``ErrorInfo.reason`` (an ``ErrorReason`` name) among the details, if any."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo") and detail.get("reason"):
            return str(detail["reason"])
    return None


def _violations(details: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``BadRequest.fieldViolations`` as (field path, description) pairs."""
    found: list[tuple[str, str]] = []
    for detail in details:
        if not str(detail.get("@type", "")).endswith("google.rpc.BadRequest"):
            continue
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict):
                path = str(violation.get("field", ""))
                words = str(violation.get("description") or violation.get("reason") or "")
                found.append((path, words))
    return found


def _refused(violations: list[tuple[str, str]]) -> dict[int, str]:
    """The events the violations name by position (``events[3].event_timestamp``, or the JSON
    name ``events[3].eventTimestamp``), each with Google's words about it."""
    refused: dict[int, str] = {}
    for path, words in violations:
        match = EVENT_PATH.match(path)
        if match is None:
            continue
        index, said = int(match.group(1)), f"{path}: {words}".strip(": ")
        refused[index] = f"{refused[index]}; {said}" if index in refused else said
    return refused


def _retry_after(response: requests.Response, details: list[dict[str, Any]]) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date), else a ``RetryInfo``
    detail's ``retryDelay`` (a protobuf Duration in JSON, ``"30s"``)."""
    header = retry_after_seconds(response)
    if header is not None:
        return header
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay", "")).removesuffix("s")
            try:
                return max(0.0, float(delay))
            except ValueError:
                return None
    return None
