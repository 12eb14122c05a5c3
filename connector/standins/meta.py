"""A strict local stand-in for Meta's Graph API ``POST /{version}/{pixel id}/events``.

Why it exists: tests must not call Meta, yet they must fail when the connector sends
something Meta would refuse. This module serves a real HTTP server on 127.0.0.1 that checks
each batch the way Meta documents it, answers with Graph's error object or its success body,
records everything it received, and injects the faults the connector must survive: rate
limits, a 5xx storm and a revoked token.

Evidence (M# tags are cited in comments below):
  M1  Conversions API, "Using the API"
      (https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api):
      the endpoint, ``data`` of up to 1,000 events, "if any event you send in a batch is
      invalid, we reject the entire batch", ``test_event_code``.
  M2  Ads Pixel Events reference
      (https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/ads-pixel/events):
      the answer ``{events_received, messages, fbtrace_id}``.
  M3  Server Event Parameters
      (https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/server-event):
      event_name, event_time (seconds, at most 7 days old, or "we return an error for the
      entire request"), action_source values, event_id.
  M4  Parameters (https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters):
      "Website events ... require the client_user_agent, action_source, and event_source_url
      parameters"; em, ph, fn, ln, ge, db, ct, st, zp, country: "Hashing required";
      external_id "Hashing recommended"; client_ip_address, client_user_agent, fbc, fbp:
      "Do not hash".
  M5  Graph API, "Handling Errors" (https://developers.facebook.com/docs/graph-api/guides/error-handling):
      the error object, codes 1, 2, 4, 17, 341 (retry), 10, 200-299 (permission), 190 with
      subcode 460 (session invalidated).
  M6  Real answers kept in rudderlabs/rudder-transformer (facebook_pixel network mocks and
      ``src/v0/util/facebookUtils/networkHandler.js``): 100/2804003 "Event Timestamp Too Old"
      with its user message, naming no event; 100/33 for a pixel that does not exist or the
      token may not use.
  M7  A real 100/2804019 "Server-side API parameter error" answer naming the field by path,
      "The parameter $['data'][0]['event_time'] is required."
      (https://www.volcengine.com/article/2490042).
  M8  Custom Data Parameters
      (https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/custom-data):
      value and currency are required for Purchase; currency an ISO 4217 code; contents items
      ``{id, quantity, item_price}``.
  M9  Data Processing Options for US Users
      (https://developers.facebook.com/docs/marketing-apis/data-processing-options):
      ``data_processing_options`` ``[]`` or ``["LDU"]``, country and state as integers (0 lets
      Meta geolocate).
  M10 Graph API, "Securing Requests" (https://developers.facebook.com/docs/graph-api/guides/secure-requests):
      appsecret_proof = HMAC-SHA256(app secret, token) in hex.

Decided here, not confirmed by a source found:
  - HTTP statuses: 401 for an unknown token, 400 for the other Graph errors (Meta answers 4xx
    for invalid payloads, Conversions API "Troubleshooting"), 500 for the 5xx storm.
  - Wording of messages other than M6/M7's; every field error uses M7's form (subcode
    2804019, "The parameter $['data'][i]... <reason>") so it names the event.
  - external_id must be hashed: Meta only recommends it (M4), but the connector promises it.
  - The 5-minute tolerance for event times in the future (Meta documents none).
  - fbc must look like ``fb.<n>.<13-digit ms>.<click id>`` with an optional appendix;
    fbp like ``fb.<n>.<ms>.<digits>``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

from connector.standins.server import LocalServer, ServedStandIn

MAX_BATCH_SIZE = 1000  # M1
MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600  # M3
MAX_FUTURE_SKEW_SECONDS = 5 * 60  # decided
MILLISECONDS_THRESHOLD = 100_000_000_000

CODE_INVALID_PARAMETER = 100
SUBCODE_UNKNOWN_OBJECT = 33  # M6
SUBCODE_TOO_OLD = 2804003  # M6
SUBCODE_PARAMETER = 2804019  # M7
CODE_TOKEN = 190  # M5
SUBCODE_SESSION_INVALIDATED = 460  # M5
CODE_NO_TOKEN = 104
CODE_SERVICE = 2  # M5: "Temporary issue due to downtime"

ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)  # M3
HASHED_FIELDS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
LOOKS_HASHED = re.compile(r"[0-9a-fA-F]{64}")
FBC = re.compile(r"fb\.\d\.\d{13}\.[^.\s]+(\.[^.\s]+)?")
FBP = re.compile(r"fb\.\d\.\d{13}\.\d+(\.[^.\s]+)?")
CURRENCY = re.compile(r"[A-Za-z]{3}")
CONTENT_TYPES = frozenset({"product", "product_group"})
PATH = re.compile(r"/(?P<version>v\d+\.\d+)/(?P<pixel>\d+)/events")

TOO_OLD_TITLE = "Event Timestamp Too Old"  # M6
TOO_OLD_MESSAGE = (
    "The timestamp for this event is too far in the past. Events need to be sent from your "
    "server within 7 days of when they occurred. Enter a timestamp that has occurred within "
    "the last 7 days."
)  # M6


@dataclass
class ReceivedBatch:
    """One request that reached the events edge, and what the stand-in answered."""

    pixel_id: str
    body: dict
    query: dict[str, str]
    headers: dict[str, str]
    answer: dict
    http_status: int


@dataclass(frozen=True)
class _Fault:
    http_status: int
    error: dict[str, Any]
    retry_after: int | None = None


class GraphError(Exception):
    """Raised by a check; becomes Graph's error object (M5) with this HTTP status."""

    def __init__(self, http_status: int, **error: Any) -> None:
        super().__init__(error.get("message"))
        self.http_status = http_status
        self.error = error


def new_fbtrace_id() -> str:
    """An id shaped like Graph's ``fbtrace_id`` (23 URL-safe characters, M6/M7)."""
    return secrets.token_urlsafe(18)[:23]


def graph_error(error: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"type": "OAuthException", **error, "fbtrace_id": new_fbtrace_id()}}


def parameter_error(path: str, reason: str) -> GraphError:
    """M7's shape: Invalid parameter, 100/2804019, the user message naming the field."""
    return GraphError(
        400,
        message="Invalid parameter",
        code=CODE_INVALID_PARAMETER,
        error_subcode=SUBCODE_PARAMETER,
        is_transient=False,
        error_user_title="Server-side API parameter error",
        error_user_msg=f"The parameter {path} {reason}",
    )


def _path(*keys: str | int) -> str:
    """``("data", 0, "event_time")`` -> ``$['data'][0]['event_time']`` (M7)."""
    return "$" + "".join(f"[{key}]" if isinstance(key, int) else f"['{key}']" for key in keys)


# ---------------------------------------------------------------------------------------
# Field checks. Each raises GraphError naming the first bad field.
# ---------------------------------------------------------------------------------------


def _require(obj: dict, key: str, *where: str | int) -> Any:
    if obj.get(key) in (None, ""):
        raise parameter_error(_path(*where, key), "is required.")
    return obj[key]


def _check_string(value: Any, *where: str | int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise parameter_error(_path(*where), "must be a non-empty string.")


def _check_integer(value: Any, *where: str | int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise parameter_error(_path(*where), "must be an integer.")


def _check_number(value: Any, *where: str | int) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise parameter_error(_path(*where), "must be a number.")


def _check_object(value: Any, *where: str | int) -> dict:
    if not isinstance(value, dict):
        raise parameter_error(_path(*where), "must be an object.")
    return value


def _check_list(value: Any, *where: str | int) -> list:
    if not isinstance(value, list):
        raise parameter_error(_path(*where), "must be an array.")
    return value


def check_event_time(value: Any, index: int, now: float | None = None) -> None:
    """Unix seconds, at most 7 days old (M3, M6's answer) and at most 5 minutes ahead."""
    _check_integer(value, "data", index, "event_time")
    now = time.time() if now is None else now
    if value >= MILLISECONDS_THRESHOLD:
        raise parameter_error(_path("data", index, "event_time"), "must be in seconds.")
    if value < now - MAX_EVENT_AGE_SECONDS:
        raise GraphError(
            400,
            message="Invalid parameter",
            code=CODE_INVALID_PARAMETER,
            error_subcode=SUBCODE_TOO_OLD,
            is_transient=False,
            error_user_title=TOO_OLD_TITLE,
            error_user_msg=TOO_OLD_MESSAGE,
        )
    if value > now + MAX_FUTURE_SKEW_SECONDS:
        raise parameter_error(_path("data", index, "event_time"), "is in the future.")


def _check_hash(value: Any, *where: str | int) -> None:
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise parameter_error(_path(*where), "must be a lowercase SHA-256 hex digest.")


def check_user_data(user: Any, index: int, website: bool) -> None:
    """Hashed fields hashed (a digest or a non-empty list of digests), plain ones plain (M4)."""
    where = ("data", index, "user_data")
    user = _check_object(user, *where)
    if not user:
        raise parameter_error(_path(*where), "must not be empty.")
    for key in HASHED_FIELDS:
        if key not in user:
            continue
        values = user[key] if isinstance(user[key], list) else [user[key]]
        if not values:
            raise parameter_error(_path(*where, key), "must not be empty.")
        for value in values:
            _check_hash(value, *where, key)
    for key in ("client_ip_address", "client_user_agent", "fbc", "fbp"):
        if key in user:
            _check_string(user[key], *where, key)
            if LOOKS_HASHED.fullmatch(user[key]):
                raise parameter_error(_path(*where, key), "must not be hashed.")
    if website:
        _require(user, "client_user_agent", *where)
    _check_plain_formats(user, where)


def _check_plain_formats(user: dict, where: tuple[str | int, ...]) -> None:
    if "client_ip_address" in user:
        try:
            ipaddress.ip_address(user["client_ip_address"])
        except ValueError:
            reason = "must be an IPv4 or IPv6 address."
            raise parameter_error(_path(*where, "client_ip_address"), reason) from None
    if "fbc" in user and not FBC.fullmatch(user["fbc"]):
        reason = "must look like fb.<subdomain index>.<creation time in ms>.<fbclid>."
        raise parameter_error(_path(*where, "fbc"), reason)
    if "fbp" in user and not FBP.fullmatch(user["fbp"]):
        reason = "must look like fb.<subdomain index>.<creation time in ms>.<random number>."
        raise parameter_error(_path(*where, "fbp"), reason)


def check_custom_data(custom: Any, index: int, event_name: str) -> None:
    """Money, contents and order fields (M8); value and currency required for Purchase."""
    where = ("data", index, "custom_data")
    custom = _check_object(custom, *where)
    if event_name == "Purchase":
        _require(custom, "value", *where)
        _require(custom, "currency", *where)
    if "value" in custom:
        _check_number(custom["value"], *where, "value")
    if "currency" in custom:
        currency = custom["currency"]
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            raise parameter_error(_path(*where, "currency"), "must be an ISO 4217 code.")
    if "content_type" in custom and custom["content_type"] not in CONTENT_TYPES:
        reason = "must be product or product_group."
        raise parameter_error(_path(*where, "content_type"), reason)
    if "order_id" in custom:
        _check_string(custom["order_id"], *where, "order_id")
    if "num_items" in custom:
        _check_integer(custom["num_items"], *where, "num_items")
    for position, item in enumerate(_check_list(custom.get("contents", []), *where, "contents")):
        item = _check_object(item, *where, "contents", position)
        at = (*where, "contents", position)
        _check_string(_require(item, "id", *at), *at, "id")
        if "quantity" in item:
            _check_integer(item["quantity"], *at, "quantity")
        if "item_price" in item:
            _check_number(item["item_price"], *at, "item_price")


def check_data_processing(event: dict, index: int) -> None:
    """``[]`` or ``["LDU"]``, country and state integers (M9)."""
    options = event.get("data_processing_options", [])
    options = _check_list(options, "data", index, "data_processing_options")
    if any(option != "LDU" for option in options):
        reason = 'may only hold "LDU".'
        raise parameter_error(_path("data", index, "data_processing_options"), reason)
    for key in ("data_processing_options_country", "data_processing_options_state"):
        if key in event:
            _check_integer(event[key], "data", index, key)


def check_event(event: Any, index: int, now: float | None = None) -> None:
    """One element of ``data`` (M3, M4)."""
    event = _check_object(event, "data", index)
    _check_string(_require(event, "event_name", "data", index), "data", index, "event_name")
    check_event_time(_require(event, "event_time", "data", index), index, now)
    action_source = _require(event, "action_source", "data", index)
    if action_source not in ACTION_SOURCES:
        reason = f"must be one of {', '.join(sorted(ACTION_SOURCES))}."
        raise parameter_error(_path("data", index, "action_source"), reason)
    website = action_source == "website"
    if website:
        url = _require(event, "event_source_url", "data", index)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            reason = "must begin with http:// or https://."
            raise parameter_error(_path("data", index, "event_source_url"), reason)
    if "event_id" in event:
        _check_string(event["event_id"], "data", index, "event_id")
    check_user_data(_require(event, "user_data", "data", index), index, website)
    if "custom_data" in event:
        check_custom_data(event["custom_data"], index, event["event_name"])
    check_data_processing(event, index)


def check_data(body: dict, now: float | None = None) -> list[dict]:
    """``data``: a non-empty list of at most 1,000 valid events (M1)."""
    data = _require(body, "data")
    if isinstance(data, str):  # the form encoding of M1's curl sample: a JSON string
        try:
            data = json.loads(data)
        except ValueError:
            raise parameter_error(_path("data"), "must be a JSON array.") from None
    data = _check_list(data, "data")
    if not data:
        raise parameter_error(_path("data"), "is required.")
    if len(data) > MAX_BATCH_SIZE:
        raise parameter_error(_path("data"), f"may hold at most {MAX_BATCH_SIZE} events.")
    if "test_event_code" in body:
        _check_string(body["test_event_code"], "test_event_code")
    for index, event in enumerate(data):
        check_event(event, index, now)
    return data


@dataclass
class _Accounts:
    """Which tokens exist, which pixels each may send to, and which were revoked."""

    tokens: dict[str, set[str]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)


class MetaStandIn(ServedStandIn):
    """A real HTTP server answering ``POST /{version}/{pixel id}/events`` like Meta.

    Use as ``with MetaStandIn({"token": {"PIXEL_ID"}}) as meta:`` (or ``.start()`` and
    ``.stop()``), and point ``META_API_BASE`` at ``meta.base_url``. ``app_secret`` makes it
    require a matching ``appsecret_proof`` (M10), as an app with "Require App Secret" does.
    """

    def __init__(
        self, tokens: dict[str, set[str]] | None = None, *, app_secret: str | None = None
    ) -> None:
        self._accounts = _Accounts({key: set(value) for key, value in (tokens or {}).items()})
        self.app_secret = app_secret
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.batches: list[ReceivedBatch] = []
        self._faults: deque[_Fault] = deque()
        self._app = self._build_app()
        self._http = LocalServer(self._app, "meta-standin")

    # -- configuration and faults ----------------------------------------------------------

    def allow(self, token: str, pixel_id: str) -> None:
        with self._lock:
            self._accounts.tokens.setdefault(token, set()).add(pixel_id)

    def revoke(self, token: str) -> None:
        """From now on the token is answered 190/460, as when its session was invalidated (M5)."""
        with self._lock:
            self._accounts.revoked.add(token)

    def fail_next(
        self,
        n: int,
        *,
        code: int,
        http_status: int = 400,
        message: str = "Error",
        is_transient: bool = False,
        error_subcode: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next n requests get this Graph error instead of being checked."""
        error: dict[str, Any] = {"message": message, "code": code, "is_transient": is_transient}
        if error_subcode is not None:
            error["error_subcode"] = error_subcode
        with self._lock:
            self._faults.extend([_Fault(http_status, error, retry_after)] * n)

    def rate_limit(self, n: int = 1, *, code: int = 17, retry_after: int | None = None) -> None:
        """Throttle the next n requests: 4 (application), 17 (user) or 613 (custom) (M5)."""
        messages = {
            4: "(#4) Application request limit reached",
            17: "(#17) User request limit reached",
            613: "(#613) Calls to this api have exceeded the rate limit.",
        }
        message = messages.get(code, "Rate limit reached")
        self.fail_next(n, code=code, message=message, is_transient=True, retry_after=retry_after)

    def server_errors(self, n: int = 1, *, http_status: int = 500) -> None:
        """A 5xx storm: code 2, "Temporary issue due to downtime" (M5)."""
        message = "An unexpected error has occurred. Please retry your request later."
        self.fail_next(
            n, code=CODE_SERVICE, http_status=http_status, message=message, is_transient=True
        )

    def reset(self) -> None:
        """Forget batches, faults and revocations."""
        with self._lock:
            self.batches.clear()
            self._faults.clear()
            self._accounts.revoked.clear()

    # -- what was received -----------------------------------------------------------------

    def accepted_events(self) -> list[dict]:
        with self._lock:
            return self._accepted_locked()

    def wait_for_events(self, n: int, timeout: float = 15.0) -> list[dict]:
        """Block until at least n events were accepted; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._accepted_locked()) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self._accepted_locked())
                    raise AssertionError(f"Meta stand-in: wanted {n} accepted events, got {got}")
                self._changed.wait(left)
            return self._accepted_locked()

    def _accepted_locked(self) -> list[dict]:
        events: list[dict] = []
        for batch in self.batches:
            if batch.http_status == 200:
                events.extend(batch.body.get("data", []))
        return events

    # -- request handling ------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("meta_standin")

        @app.post("/<version>/<pixel_id>/events")
        def events(version: str, pixel_id: str) -> Response:
            return self._handle(version, pixel_id)

        @app.errorhandler(404)
        @app.errorhandler(405)
        def unknown_path(_error: Exception) -> Response:
            error = {"message": f"Unknown path components: {request.path}", "code": 2500}
            return _json(graph_error(error), 400)

        return app

    def _handle(self, version: str, pixel_id: str) -> Response:
        body = self._read_body()
        fault = self._take_fault()
        if fault is not None:
            answer, status = graph_error(fault.error), fault.http_status
        else:
            try:
                data = self._check(version, pixel_id, body)
            except GraphError as refused:
                answer, status = graph_error(refused.error), refused.http_status
            else:
                answer = {"events_received": len(data), "messages": []}
                answer["fbtrace_id"] = new_fbtrace_id()
                status = 200
                body = {**body, "data": data}
        query, headers = dict(request.args), dict(request.headers)
        self._record(ReceivedBatch(pixel_id, body, query, headers, answer, status))
        response = _json(answer, status)
        if fault is not None and fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    @staticmethod
    def _read_body() -> dict:
        if request.mimetype == "application/json":
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                return {"_raw": request.get_data(as_text=True)}
            return body if isinstance(body, dict) else {"_raw": body}
        return dict(request.form)

    def _check(self, version: str, pixel_id: str, body: dict) -> list[dict]:
        """Raise what Meta would answer, in Graph's order: path, token, proof, pixel, data."""
        if not PATH.fullmatch(f"/{version}/{pixel_id}/events"):
            error = {"message": f"Unknown path components: {request.path}", "code": 2500}
            raise GraphError(400, **error)
        token = self._token(body)
        with self._lock:
            pixels = self._accounts.tokens.get(token)
            revoked = token in self._accounts.revoked
        if pixels is None:
            raise GraphError(
                401, message="Invalid OAuth access token - Cannot parse access token", code=190
            )
        if revoked:
            raise GraphError(
                400,
                message="Error validating access token: The session has been invalidated "
                "because the user changed their password or Facebook has changed the session "
                "for security reasons.",
                code=CODE_TOKEN,
                error_subcode=SUBCODE_SESSION_INVALIDATED,
            )
        self._check_proof(token, body)
        if pixel_id not in pixels:
            raise GraphError(
                400,
                type="GraphMethodException",
                message=f"Unsupported post request. Object with ID '{pixel_id}' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this "
                "operation. Please read the Graph API documentation at "
                "https://developers.facebook.com/docs/graph-api",
                code=CODE_INVALID_PARAMETER,
                error_subcode=SUBCODE_UNKNOWN_OBJECT,
            )
        return check_data(body)

    @staticmethod
    def _token(body: dict) -> str:
        """The token from ``Authorization: Bearer``, ``?access_token=`` or the body;
        a request with none is answered 104."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip()
        token = request.args.get("access_token") or body.get("access_token")
        if isinstance(token, str) and token.strip():
            return token.strip()
        raise GraphError(
            400, message="An access token is required to request this resource.", code=104
        )

    def _check_proof(self, token: str, body: dict) -> None:
        if not self.app_secret:
            return
        proof = request.args.get("appsecret_proof") or body.get("appsecret_proof")
        if not proof:
            message = "API calls from the server require an appsecret_proof argument"
            raise GraphError(400, type="GraphMethodException", message=message, code=100)
        expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(str(proof), expected):
            message = "Invalid appsecret_proof provided in the API argument"
            raise GraphError(400, type="GraphMethodException", message=message, code=100)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, batch: ReceivedBatch) -> None:
        with self._changed:
            self.batches.append(batch)
            self._changed.notify_all()


def _json(answer: dict, status: int) -> Response:
    return Response(json.dumps(answer), status=status, mimetype="application/json")
