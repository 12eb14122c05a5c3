"""Build and send Meta Conversions API batches, and classify Meta's answers.

Wire contract (Conversions API, "Using the API",
https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api):
``POST {META_API_BASE}/{version}/{pixel id}/events`` with a JSON body
``{"data": [...], "test_event_code"?}``; Meta answers
``{"events_received": n, "messages": [], "fbtrace_id": ...}`` (Ads Pixel Events reference,
https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/ads-pixel/events).
Up to 1,000 events go in one request, and "if any event you send in a batch is invalid, we
reject the entire batch" (Using the API, Batch Requests).

The access token goes in an ``Authorization: Bearer`` header rather than the
``?access_token=`` of Meta's curl samples: Graph takes either, and a header stays out of the
URLs that proxies, access logs and ``requests`` exception messages repeat (Segment's
``facebook-conversions-api`` destination sends its token the same way). When
``META_APP_SECRET`` is set, ``appsecret_proof`` = HMAC-SHA256(app secret, token) in hex goes
with it as a query parameter (Graph API, "Securing Requests",
https://developers.facebook.com/docs/graph-api/guides/secure-requests), so an app that requires
the proof keeps working; the proof is useless without the token.

``META_API_VERSION`` defaults to ``v26.0``, the newest Graph version (released 2026-07-29, Graph
API changelog, https://developers.facebook.com/docs/graph-api/changelog). Conversions API
versions stay supported for at least two years (Using the API), so a pinned default is safe and
an operator moves it with the variable.

Why not Meta's official ``facebook-business`` SDK: the connector's outbox already owns
batching, retries, backoff and the token, which is most of what the SDK's ``EventRequest`` and
``BatchProcessor`` add; it pulls in ``pycountry``, ``curlify``, ``aiohttp`` and its own
``requests`` session; and its normaliser (``adobjects/serverside/normalize.py``) departs from
Meta's documented rules: it keeps punctuation in names, does not cut a US ZIP+4 to 5 digits,
and keeps the trunk ``(0)`` of ``+44 (0)20...``, so its hashes would match fewer people than
:mod:`connector.destinations.meta.identity`. A plain JSON POST is all the wire needs.

Errors are Graph's error object ``{"error": {message, type, code, error_subcode, is_transient,
error_user_title, error_user_msg, fbtrace_id}}`` (Graph API, "Handling Errors",
https://developers.facebook.com/docs/graph-api/guides/error-handling); :func:`classify` says
how each is acted on.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any

import orjson
import requests

from connector.destinations import (
    ConfigField,
    DestinationConfig,
    EnvVar,
    FailureAdvice,
    Outcome,
    SendResult,
    frame_elements,
    post_encoded,
    retry_after_seconds,
)
from connector.destinations.meta.identity import user_data
from connector.events import ClickIds, ConversionEvent, Shopper

if TYPE_CHECKING:
    from collections.abc import Callable

    from connector.models import StoreDestination
    from connector.services import Services

DEFAULT_API_VERSION = "v26.0"
# "The event_time can be up to 7 days before you send an event to Facebook. If any event_time
# in data is greater than 7 days in the past, we return an error for the entire request"
# (Server Event Parameters,
# https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/server-event).
MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600
# Meta documents no future limit, but refuses events stamped ahead of its clock (reported in
# Adsmurai-Google-Tag-Manager-Templates/adsmurai-facebook-pixel-and-conversions-api#3); a few
# minutes cover clock skew between the store and us.
MAX_FUTURE_SKEW_SECONDS = 5 * 60

# Graph's "Handling Errors" table: 1 (API Unknown) and 2 (API Service) are temporary
# downtime, 4, 17 and 341 throttling ("wait and retry"), 368 a temporary block. 32 (Pages) and
# 613 (custom) limits and the 80000-80014 business use case limits (Rate Limits,
# https://developers.facebook.com/docs/graph-api/overview/rate-limiting/) are retried too: a
# resent batch counts nothing twice, since Meta keeps one event per event_name and event_id
# within 48 hours (Server Event Parameters, cited above).
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613})
BUSINESS_RATE_LIMIT_CODES = range(80000, 80015)
# 190 "Access token has expired", 102 "API Session", 104 (no token at all): get a new token.
TOKEN_CODES = frozenset({102, 104, 190})
# 3 "API Method" (capability), 10 "API Permission Denied", 200-299 "API Permission".
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
INVALID_PARAMETER = 100
# 100/33: "Object with ID ... does not exist, cannot be loaded due to missing permissions, or
# does not support this operation" (rudderlabs/rudder-transformer,
# src/v0/util/facebookUtils/networkHandler.js): the pixel id is wrong or not shared with the
# token's system user, so every event would fail the same way.
UNKNOWN_OBJECT_SUBCODE = 33
# 2500 "Unknown path components": the API base or version is wrong for every event alike.
UNKNOWN_PATH_CODE = 2500
# Graph names a bad field by its JSON path, as in "The parameter $['data'][0]['event_time'] is
# required." (code 100, subcode 2804019, quoted on https://www.volcengine.com/article/2490042).
EVENT_PATH = re.compile(r"\$\['data'\]\[(\d+)\]")

TOKEN_FIX = (
    "Generate a new access token in Meta Events Manager (your dataset > Settings > "
    "Conversions API > Generate access token, or a system user's token in Business Settings) "
    "and enter it on the Settings page or with `connector destinations set STORE_ID meta`."
)
PERMISSION_FIX = (
    "The access token may not send events to this dataset: generate the token from this "
    "dataset's own Settings in Events Manager (or give the system user access to the dataset "
    "in Business Settings), then save it on the Settings page."
)
PIXEL_FIX = (
    "Check the Pixel (dataset) ID in Meta Events Manager and that the access token was made "
    "for that dataset, then run `connector destinations set STORE_ID meta`."
)
PROOF_FIX = (
    "The Meta app behind the access token requires appsecret_proof: set META_APP_SECRET to that "
    "app's secret (App Dashboard > App settings > Basic) and restart the connector."
)
ADDRESS_FIX = "Check META_API_BASE and META_API_VERSION: Meta's Graph API was not found there."

ENV = (
    EnvVar("META_API_BASE", "https://graph.facebook.com", "Meta's Graph API (tests: a stand-in)"),
    EnvVar("META_API_VERSION", DEFAULT_API_VERSION, "The Graph API version events are sent to"),
    EnvVar(
        "META_APP_SECRET",
        help="Optional: the secret of the Meta app the tokens belong to, to send appsecret_proof",
    ),
)
FIELDS = (
    ConfigField(
        "pixel_id",
        "Pixel (dataset) ID",
        "Meta Events Manager > Data sources > your pixel (dataset): the number under its name, "
        "also on its Settings tab.",
        stored_as="account_id",
        pattern=r"\d{5,20}",
        example="123456789012345",
    ),
    ConfigField(
        "access_token",
        "Conversions API access token",
        "Events Manager > your dataset > Settings > Conversions API > Generate access token "
        "(an admin of the dataset); Meta shows it once.",
        stored_as="access_token",
        secret=True,
    ),
    ConfigField(
        "test_event_code",
        "Test event code",
        "Optional. Events Manager > your dataset > Test events: the code shown there (TEST12345). "
        "While set, everything is sent as test events, which never count as conversions.",
        stored_as="test_event_code",
        required=False,
    ),
)
# Meta's standard event names, the same the browser pixel sends, so the two deduplicate.
EVENT_NAMES = {"purchase": ("Purchase",), "checkout": ("InitiateCheckout",)}

_TOKEN_ADVICE = FailureAdvice(
    "Meta's access token expired, was revoked or is not valid",
    "Generate a new Conversions API access token in Meta Events Manager, save it on the "
    "Settings page, then replay these events from the Delivery log.",
)
_PERMISSION_ADVICE = FailureAdvice(
    "the access token may not send events to this dataset",
    "Generate the token from this dataset's Settings in Events Manager (or give its system "
    "user access to the dataset), save it, then replay these events from the Delivery log.",
)
_RATE_ADVICE = FailureAdvice(
    "Meta asked us to send more slowly, or had a temporary outage, and our retries ran out",
    "Nothing to change: replay these events from the Delivery log.",
)
_UNKNOWN_ADVICE = FailureAdvice(
    "a code this page does not know yet",
    "Report the code and message to whoever runs this connector.",
)
FAILURE_ADVICE: dict[int | None, FailureAdvice] = {
    None: FailureAdvice(
        "no answer code: Meta could not be reached (network error or timeout), or the event "
        "was not sent at all",
        "If the message says Meta did not answer or could not be reached, replay these events "
        "from the Delivery log. An event more than 7 days old cannot be sent: Meta refuses "
        "website events that old.",
    ),
    INVALID_PARAMETER: FailureAdvice(
        "Meta refused a field of the event (the message names it and says why)",
        "Read the message: a product id, price or currency points to that product or order in "
        "your store; an event older than 7 days cannot be sent at all; anything else, report "
        "to whoever runs this connector. Replay after the fix.",
    ),
    **dict.fromkeys(TOKEN_CODES, _TOKEN_ADVICE),
    **dict.fromkeys(PERMISSION_CODES, _PERMISSION_ADVICE),
    **dict.fromkeys(TRANSIENT_CODES, _RATE_ADVICE),
}
"""Graph codes ("Handling Errors", cited at the top) in a shop owner's words; token and
permission codes pause the destination rather than fail events, so they show here only for
events failed earlier."""


class MetaConversionsApi:
    """The Meta destination: payload builder and HTTP client."""

    kind = "meta"
    label = "Meta"
    env = ENV
    fields = FIELDS
    event_names = EVENT_NAMES
    click_ids = ("fbc", "fbclid", "fbp")
    signal_keys = {
        "click_id": "fbc",
        "email": "em",
        "phone": "ph",
        "external_id": "external_id",
        "ip": "client_ip_address",
        "user_agent": "client_user_agent",
        "browser_id": "fbp",
    }
    max_batch = 1000
    # Conversions API calls count against no documented per-pixel rate; throttling comes as
    # codes 4, 17, 613 and 80000-80014, which retry (Rate Limits,
    # https://developers.facebook.com/docs/graph-api/overview/rate-limiting/).
    max_requests_per_second = 0.0
    test_mode = "code"
    test_hint = "set a Meta test event code (Events Manager > Test events) to send test orders"
    setup = (
        "Use the Meta pixel (dataset) your store already has, or create one in Meta Events "
        "Manager, and generate a Conversions API access token in its Settings; paste both "
        "here. Meta counts a purchase once when your browser pixel sends the same event with "
        "eventID set to the order id (the checkout token for InitiateCheckout), so set that in "
        "the pixel's Purchase call."
    )

    def advice(self, code: int | None) -> FailureAdvice:
        """What a Graph error code means for the merchant; any business rate limit code
        (80000-80014) reads as throttling."""
        if code in FAILURE_ADVICE:
            return FAILURE_ADVICE[code]
        if code in BUSINESS_RATE_LIMIT_CODES:
            return _RATE_ADVICE
        return _UNKNOWN_ADVICE

    def user_data(self, shopper: Shopper, clicks: ClickIds, event_time: int) -> dict[str, Any]:
        """Meta's ``user_data`` (:func:`connector.destinations.meta.identity.user_data`)."""
        return user_data(shopper, clicks, event_time)

    def problem(self, event: ConversionEvent, now: int) -> str | None:
        """Only its time keeps Meta from taking an event (:meth:`timing_problem`)."""
        return self.timing_problem(event.event_time, now)

    def timing_problem(self, event_time: int, now: int) -> str | None:
        """Meta refuses a whole batch holding one event over 7 days old, so such an event is
        never sent; one stamped well ahead of now would fail the same way."""
        if now - event_time > MAX_EVENT_AGE_SECONDS:
            return "event is older than 7 days, which Meta does not accept"
        if event_time - now > MAX_FUTURE_SKEW_SECONDS:
            return "event time is more than 5 minutes in the future, which Meta does not accept"
        return None

    def event_element(self, event: ConversionEvent) -> dict[str, Any]:
        """One element of ``data`` (:func:`event_data`)."""
        return event_data(event)

    def access_token(self, services: Services, row: StoreDestination) -> str:
        """The pasted token, decrypted. Meta's system-user tokens from Events Manager do not
        expire, so there is nothing to renew. A row without one sends an empty token, which
        Meta answers 104 and :func:`classify` turns into a pause asking for a token."""
        if not row.access_token_encrypted:
            return ""
        return services.cipher.decrypt(row.access_token_encrypted)

    def after_send(
        self,
        services: Services,
        row: StoreDestination,
        config: DestinationConfig,
        result: SendResult,
        resend: Callable[[DestinationConfig], SendResult],
    ) -> SendResult:
        """The answer as it is: a token Meta refuses needs the merchant (:data:`TOKEN_FIX`),
        since there is no refresh token to renew it with."""
        return result

    def send(
        self, http: requests.Session, config: DestinationConfig, events: list[ConversionEvent]
    ) -> SendResult:
        """POST one batch of events (:meth:`send_elements`)."""
        return self.send_elements(http, config, [orjson.dumps(event_data(e)) for e in events])

    def send_elements(
        self, http: requests.Session, config: DestinationConfig, elements: list[bytes]
    ) -> SendResult:
        """POST one batch; map transport failures and Graph errors onto an :class:`Outcome`."""
        try:
            response = post_encoded(
                http,
                events_url(config),
                frame_elements(envelope(config), "data", elements),
                params=_proof_params(config),
                headers={"Authorization": f"Bearer {config.access_token}"},
                timeout=config.timeout,
            )
        except requests.Timeout:
            return SendResult(Outcome.RETRY, "Meta did not answer in time")
        except requests.RequestException as exc:
            return SendResult(Outcome.RETRY, f"cannot reach Meta: {type(exc).__name__}")
        return classify(response)


def events_url(config: DestinationConfig) -> str:
    """``{base}/{version}/{pixel id}/events``."""
    version = config.env.get("META_API_VERSION") or DEFAULT_API_VERSION
    return f"{config.api_base.rstrip('/')}/{version}/{config.account_id}/events"


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256 of the token keyed by the app secret, in hex (Securing Requests)."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def _proof_params(config: DestinationConfig) -> dict[str, str]:
    secret = config.env.get("META_APP_SECRET")
    return {"appsecret_proof": appsecret_proof(secret, config.access_token)} if secret else {}


def build_body(config: DestinationConfig, events: list[ConversionEvent]) -> dict[str, Any]:
    """The request body for one batch of website events."""
    return {**envelope(config), "data": [event_data(event) for event in events]}


def envelope(config: DestinationConfig) -> dict[str, Any]:
    """The request body around its ``data``: the test event code, when set."""
    return {"test_event_code": config.test_event_code} if config.test_event_code else {}


def event_data(event: ConversionEvent) -> dict[str, Any]:
    """One element of ``data`` (Server Event Parameters, cited above).

    ``event_id`` is what the browser pixel sends as ``eventID`` (the order id, the checkout
    token), so Meta keeps one of the two. ``event_source_url`` is required for website events
    (Parameters, https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters);
    when the store gave no page we leave it out rather than invent one, and Meta's answer, which
    names the field, says so on the event.
    """
    data: dict[str, Any] = {
        "event_name": event.event_name,
        "event_time": event.event_time,
        "event_id": str(event.event_id),
        "action_source": "website",
        "user_data": wire_user_data(event.user),
        "custom_data": custom_data(event),
        **data_processing(event.limited_data_use),
    }
    if event.page_url:
        data["event_source_url"] = event.page_url
    if event.referrer:
        data["referrer_url"] = event.referrer
    return data


def wire_user_data(user: dict[str, Any]) -> dict[str, Any]:
    """The stored ``user_data`` for the wire: ``em`` and ``ph`` as lists of hashes, the form of
    Meta's own request example (Using the API), every other key as its one string."""
    wire: dict[str, Any] = {}
    for key, value in user.items():
        if value in (None, "", []):
            continue
        wire[key] = [value] if key in ("em", "ph") and isinstance(value, str) else value
    return wire


def custom_data(event: ConversionEvent) -> dict[str, Any]:
    """``custom_data`` (Custom Data Parameters,
    https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/custom-data):
    value and currency (required for Purchase), contents as ``{id, quantity, item_price}``,
    content_type, order_id and num_items."""
    contents = [
        {"id": content.content_id, "quantity": content.quantity, "item_price": content.price}
        for content in event.contents
    ]
    data: dict[str, Any] = {
        "value": event.value,
        "currency": event.currency,
        "content_type": event.content_type,
    }
    if contents:
        data["contents"] = contents
        data["num_items"] = sum(content.quantity for content in event.contents)
    if event.order_id:
        data["order_id"] = str(event.order_id)
    return data


def data_processing(limited_data_use: bool) -> dict[str, Any]:
    """Limited Data Use: ``["LDU"]`` with country and state 0, which asks Meta to geolocate the
    event itself; an empty list says LDU is explicitly off (Data Processing Options for US
    Users, https://developers.facebook.com/docs/marketing-apis/data-processing-options)."""
    if not limited_data_use:
        return {"data_processing_options": []}
    return {
        "data_processing_options": ["LDU"],
        "data_processing_options_country": 0,
        "data_processing_options_state": 0,
    }


def classify(response: requests.Response) -> SendResult:
    """Turn Meta's answer into an outcome, keeping its code, words and ``fbtrace_id``.

    - 200 with ``events_received``: delivered.
    - HTTP 5xx or 429, ``is_transient: true``, or a throttling/outage code: retry, honouring
      ``Retry-After``.
    - Token codes (190, 102, 104): pause; the merchant generates a new token.
    - Permission codes (3, 10, 200-299), 100/33 (the pixel does not exist for this token) and
      2500 (unknown path: a wrong base or version), and a missing or wrong appsecret_proof
      (``META_APP_SECRET``): pause; every event would fail alike.
    - 100 and anything else: the batch is rejected. Meta rejects the whole batch for one bad
      event; events its message names by path (``$['data'][3]...``) are refused with its
      words, and when it names none (an old event, subcode 2804003, names none) the delivery
      loop sends the batch again in halves until the bad event stands alone.
    """
    status = response.status_code
    retry_after = retry_after_seconds(response)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return _classify_http(status, retry_after)
    error = answer.get("error")
    if not isinstance(error, dict):
        return _classify_success(answer, status, retry_after)
    code = error.get("code") if isinstance(error.get("code"), int) else None
    subcode = error.get("error_subcode")
    message = _error_words(error)

    def result(outcome: Outcome, fix: str | None = None) -> SendResult:
        refused = _refused(error) if outcome is Outcome.REJECTED else {}
        trace = error.get("fbtrace_id")
        return SendResult(outcome, message, status, code, trace, retry_after, fix, refused)

    if status >= 500 or status == 429 or error.get("is_transient") is True:
        return result(Outcome.RETRY)
    if code in TRANSIENT_CODES or code in BUSINESS_RATE_LIMIT_CODES:
        return result(Outcome.RETRY)
    if code in TOKEN_CODES:
        return result(Outcome.PAUSE, TOKEN_FIX)
    if code in PERMISSION_CODES:
        return result(Outcome.PAUSE, PERMISSION_FIX)
    if code == INVALID_PARAMETER and subcode == UNKNOWN_OBJECT_SUBCODE:
        return result(Outcome.PAUSE, PIXEL_FIX)
    if code == INVALID_PARAMETER and "appsecret_proof" in message:
        # Graph's "API calls from the server require an appsecret_proof argument" and "Invalid
        # appsecret_proof provided in the API argument" (Securing Requests): a setting of ours.
        return result(Outcome.PAUSE, PROOF_FIX)
    if code == UNKNOWN_PATH_CODE:
        return result(Outcome.PAUSE, ADDRESS_FIX)
    if code is None and status in (401, 403):
        return result(Outcome.PAUSE, TOKEN_FIX)
    if code is None and status == 404:
        return result(Outcome.PAUSE, ADDRESS_FIX)
    return result(Outcome.REJECTED)


def _classify_success(answer: dict[str, Any], status: int, retry_after: float | None) -> SendResult:
    received = answer.get("events_received")
    if status != 200 or not isinstance(received, int):
        return _classify_http(status, retry_after)
    messages = [str(item) for item in answer.get("messages") or []]
    text = "; ".join([f"{received} events received", *messages])
    return SendResult(Outcome.DELIVERED, text, status, request_id=answer.get("fbtrace_id"))


def _classify_http(status: int, retry_after: float | None) -> SendResult:
    """An answer without Graph's JSON: a proxy, a gateway, an outage page."""
    message = f"Meta answered HTTP {status} without a Graph answer"
    if status >= 500 or status == 429 or status < 300:
        return SendResult(Outcome.RETRY, message, status, retry_after=retry_after)
    if status in (401, 403):
        return SendResult(Outcome.PAUSE, message, status, fix=TOKEN_FIX)
    if status == 404:
        return SendResult(Outcome.PAUSE, message, status, fix=ADDRESS_FIX)
    return SendResult(Outcome.REJECTED, message, status)


def _error_words(error: dict[str, Any]) -> str:
    """``message (code/subcode): title: user message``, what a person needs to act on it."""
    codes = "/".join(str(error[key]) for key in ("code", "error_subcode") if key in error)
    parts = [str(error.get("message") or "Graph error") + (f" ({codes})" if codes else "")]
    parts += [str(error[key]) for key in ("error_user_title", "error_user_msg") if error.get(key)]
    return ": ".join(parts)


def _refused(error: dict[str, Any]) -> dict[int, str]:
    """The events Meta's words name by their ``$['data'][i]`` path, each with those words."""
    words = " ".join(str(error.get(key) or "") for key in ("message", "error_user_msg"))
    detail = str(error.get("error_user_msg") or error.get("message") or "refused by Meta")
    return {int(found.group(1)): detail for found in EVENT_PATH.finditer(words)}
