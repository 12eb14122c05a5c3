"""Build and send TikTok Events API 2.0 batches, and classify TikTok's answers.

Wire contract (TikTok Events API 2.0,
https://business-api.tiktok.com/portal/docs?id=1771100779668482): ``POST
{base}/open_api/v1.3/event/track/`` with an ``Access-Token`` header and a body of
``{event_source: "web", event_source_id: <pixel code>, data: [...]}`` holding up to 1,000
events. TikTok reports most errors as HTTP 200 with a non-zero ``code`` in the envelope
``{code, message, request_id, data}``, so the code, never the HTTP status alone, decides
success (RudderStack's ``tiktok_ads/networkHandler.js`` does the same). The codes are those of
TikTok's SDK, ``business_api_client/tiktok_business/tiktok_code.py``.
"""

from __future__ import annotations

import json
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
from connector.destinations.tiktok.advice import advice
from connector.destinations.tiktok.identity import user_data
from connector.destinations.tiktok.tokens import access_token_for, send_with_renewed_token
from connector.events import ClickIds, ConversionEvent, Shopper

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Blueprint

    from connector.config import Settings
    from connector.models import StoreDestination
    from connector.services import Services

TRACK_PATH = "/open_api/v1.3/event/track/"
MAX_EVENT_AGE_SECONDS = 7 * 24 * 3600

OK_CODE = 0
# "Partial success" (ERROR_CODE_PARTIAL_OK in TikTok's SDK, tiktok_code.py): see classify.
PARTIAL_CODE = 20001
# Throttling (40100 REQUEST_TOO_FREQUENT, 40132 frequency limited, 61000 blacklisted for too
# many requests) and TikTok-side faults (5xxxx system, RPC and database errors; 60001
# maintenance) pass with time.
RETRYABLE_CODES = frozenset({40100, 40132, 61000, 60001})
# Permission on the pixel, and every token problem: sending again cannot help until the
# merchant reconnects, so the destination pauses instead of hammering TikTok.
AUTH_CODES = frozenset({40001, 40003, 40102, 40103, 40104, 40105, 40107, 40130})
BAD_EVENT_PATH = re.compile(r"\b(?:data|Batch)\.(\d+)\.")
TOKEN_FIX = (
    "Connect with TikTok again on the Settings page, or generate a new Events API access token "
    "in TikTok Events Manager (pixel settings, by an admin or operator of the ad account) and "
    "enter it on the Settings page or with `connector tiktok set`."
)
PIXEL_FIX = (
    "Check the pixel code (TikTok Events Manager) and run `connector destinations set STORE_ID "
    "tiktok`."
)
ADDRESS_FIX = "Check TIKTOK_API_BASE: TikTok's Events API was not found at that address."


API_BASE = EnvVar(
    "TIKTOK_API_BASE",
    "https://business-api.tiktok.com",
    "TikTok's Business API (tests: a stand-in)",
)
ENV = (
    API_BASE,
    EnvVar("TIKTOK_APP_ID", help="The TikTok for Business app of 'Connect with TikTok'"),
    EnvVar("TIKTOK_APP_SECRET", help="Its secret"),
    # TikTok's advertiser authorization page, the first step of "Connect with TikTok" (TikTok
    # API for Business, "Authorization"; Airbyte's TikTokMarketingOAuthFlow builds the same).
    EnvVar("TIKTOK_AUTH_URL", "https://ads.tiktok.com/marketing_api/auth"),
)
FIELDS = (
    ConfigField(
        "pixel_code",
        "Pixel code",
        "TikTok Events Manager > Data sources > your web pixel: the code under its name.",
        stored_as="account_id",
        pattern=r"[A-Za-z0-9]{1,64}",
        example="C4ABCDEFGHIJKLMNOPQR",
    ),
    ConfigField(
        "access_token",
        "Events API access token",
        "Your pixel's Settings > Events API > Generate Access Token (an admin or operator of "
        "the ad account); TikTok shows it once.",
        stored_as="access_token",
        secret=True,
    ),
    ConfigField(
        "test_event_code",
        "Test event code",
        "Optional. Your pixel's Test events tab: while set, everything is sent as test events "
        "(and the store's test orders too), which never count as conversions.",
        stored_as="test_event_code",
        required=False,
    ),
)
# TikTok's purchase names: Purchase since about May 2025, CompletePayment before it (still
# accepted, and what pixels installed earlier send), PlaceAnOrder for order-then-pay flows
# (https://ads.tiktok.com/help/article/supported-standard-events). The default stays what
# this connector always sent, so a merchant's pixel and server keep deduplicating.
EVENT_NAMES = {
    "purchase": ("CompletePayment", "Purchase", "PlaceAnOrder"),
    "checkout": ("InitiateCheckout",),
}


class TikTokEventsApi:
    """The TikTok destination: payload builder and HTTP client."""

    kind = "tiktok"
    label = "TikTok"
    env = ENV
    fields = FIELDS
    event_names = EVENT_NAMES
    click_ids = ("ttclid", "ttp")
    signal_keys = {
        "click_id": "ttclid",
        "email": "email",
        "phone": "phone",
        "external_id": "external_id",
        "ip": "ip",
        "user_agent": "user_agent",
        "browser_id": "ttp",
    }
    max_batch = 1000
    max_requests_per_second = 0.0  # none documented for event/track; DESTINATION_MAX_QPS
    test_mode = "code"
    test_hint = "set a TikTok test event code to send test orders"
    setup = (
        "Create a web pixel in TikTok Events Manager (or use the one your store has), then "
        "connect with TikTok or paste the pixel code and an Events API access token. Your "
        "browser pixel deduplicates with these events when it sends the same event name with "
        "event_id set to the order id (the checkout token for InitiateCheckout)."
    )

    def advice(self, code: int | None) -> FailureAdvice:
        """What a TikTok code means for the merchant (:mod:`.advice`)."""
        return advice(code)

    def user_data(self, shopper: Shopper, clicks: ClickIds, event_time: int) -> dict[str, Any]:
        """TikTok's ``user`` object (:func:`connector.destinations.tiktok.identity.user_data`)."""
        return user_data(shopper, clicks)

    @property
    def blueprint(self) -> Blueprint:
        """The "Connect with TikTok" pages, imported only by the web app that registers them,
        so a worker never loads Flask views."""
        from connector.destinations.tiktok.connect import blueprint

        return blueprint

    def connect_url(self, settings: Settings, store_id: str) -> str | None:
        """The "Connect with TikTok" page of a store, when a TikTok app is configured
        (``TIKTOK_APP_ID``, ``TIKTOK_APP_SECRET``); called while a page is being built."""
        from flask import url_for

        from connector.destinations.tiktok.oauth import oauth_enabled

        if not oauth_enabled(settings):
            return None
        return url_for("tiktok_connect.start", store_id=store_id)

    def problem(self, event: ConversionEvent, now: int) -> str | None:
        """Only its age keeps TikTok from taking an event (:meth:`timing_problem`)."""
        return self.timing_problem(event.event_time, now)

    def timing_problem(self, event_time: int, now: int) -> str | None:
        """TikTok accepts web events up to 7 days old; older ones would fail the whole batch."""
        if now - event_time > MAX_EVENT_AGE_SECONDS:
            return "event is older than 7 days, which TikTok does not accept"
        return None

    def event_element(self, event: ConversionEvent) -> dict[str, Any]:
        """One element of ``data`` (:func:`event_data`)."""
        return event_data(event)

    def access_token(self, services: Services, row: StoreDestination) -> str:
        """The pasted token, or the OAuth one, renewed first when it is about to expire."""
        return access_token_for(services, row)

    def after_send(
        self,
        services: Services,
        row: StoreDestination,
        config: DestinationConfig,
        result: SendResult,
        resend: Callable[[DestinationConfig], SendResult],
    ) -> SendResult:
        """An OAuth token TikTok says has expired (40102) is renewed once and the batch sent
        again (:func:`connector.destinations.tiktok.tokens.send_with_renewed_token`)."""
        return send_with_renewed_token(services, row, config, result, resend)

    def send(
        self, http: requests.Session, config: DestinationConfig, events: list[ConversionEvent]
    ) -> SendResult:
        """POST one batch of events (:meth:`send_elements`)."""
        return self.send_elements(http, config, [orjson.dumps(event_data(e)) for e in events])

    def send_elements(
        self, http: requests.Session, config: DestinationConfig, elements: list[bytes]
    ) -> SendResult:
        """POST one batch; map transport failures and TikTok codes onto an :class:`Outcome`."""
        try:
            response = post_encoded(
                http,
                config.api_base + TRACK_PATH,
                frame_elements(envelope(config), "data", elements),
                headers={"Access-Token": config.access_token},
                timeout=config.timeout,
            )
        except requests.Timeout:
            return SendResult(Outcome.RETRY, "TikTok did not answer in time")
        except requests.RequestException as exc:
            return SendResult(Outcome.RETRY, f"cannot reach TikTok: {type(exc).__name__}")
        return classify(response)


def build_body(config: DestinationConfig, events: list[ConversionEvent]) -> dict[str, Any]:
    """The request body for one batch of web events."""
    return {**envelope(config), "data": [event_data(event) for event in events]}


def envelope(config: DestinationConfig) -> dict[str, Any]:
    """The request body around its ``data``: the pixel, and the test event code when set."""
    body: dict[str, Any] = {"event_source": "web", "event_source_id": config.account_id}
    if config.test_event_code:
        body["test_event_code"] = config.test_event_code
    return body


def event_data(event: ConversionEvent) -> dict[str, Any]:
    """One element of ``data``: ids as strings, time in seconds, only the fields we have."""
    data: dict[str, Any] = {
        "event": event.event_name,
        "event_time": event.event_time,
        "event_id": str(event.event_id),
        "user": _present(event.user),
        "properties": _properties(event),
        "limited_data_use": event.limited_data_use,
    }
    page = _present({"url": event.page_url, "referrer": event.referrer})
    if page:
        data["page"] = page
    return data


def classify(response: requests.Response) -> SendResult:
    """Turn TikTok's answer into an outcome, keeping its code, message and request id.

    ``20001`` is TikTok's "partial success" (``ERROR_CODE_PARTIAL_OK`` in TikTok's SDK,
    tiktok/tiktok-business-api-sdk ``business_api_client/tiktok_business/tiktok_code.py``).
    Neither the SDK nor any public TikTok page we found says how such an answer tells which
    events were not accepted (RudderStack's ``tiktok_ads/networkHandler.js`` counts it as a
    success without looking). So no event of it is counted as delivered on trust: events the
    message names by their path (``data.<i>.``, the form of TikTok's 40002 messages) are
    refused with TikTok's words for them and the rest delivered; when it names none, the
    delivery loop sends the batch again in halves until each refused event stands alone, and a
    lone event answered 20001 fails with TikTok's message. Sending an accepted event again
    counts nothing twice: TikTok deduplicates an ``event`` and ``event_id`` it received in the
    last 48 hours (https://ads.tiktok.com/help/article/event-deduplication). The answer's
    ``data``, where TikTok would say more, is kept with the message.
    """
    status = response.status_code
    retry_after = retry_after_seconds(response)
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        return _classify_http(status, retry_after)
    code = envelope["code"]
    message = str(envelope.get("message") or "")
    request_id = envelope.get("request_id")
    if code == PARTIAL_CODE and envelope.get("data"):
        message = f"{message} {json.dumps(envelope['data'], separators=(',', ':'))}"

    def result(outcome: Outcome, fix: str | None = None) -> SendResult:
        named = outcome in (Outcome.REJECTED, Outcome.PARTIAL)
        refused = _refused(message) if named else {}
        return SendResult(outcome, message, status, code, request_id, retry_after, fix, refused)

    if status >= 500 or status == 429:
        return result(Outcome.RETRY)
    if code == OK_CODE and status < 300:
        return result(Outcome.DELIVERED)
    if code == PARTIAL_CODE and status < 300:
        return result(Outcome.PARTIAL)
    if code in RETRYABLE_CODES or code >= 50000:
        return result(Outcome.RETRY)
    if code in AUTH_CODES or status in (401, 403):
        return result(Outcome.PAUSE, TOKEN_FIX)
    if status == 404:
        return result(Outcome.PAUSE, ADDRESS_FIX)
    if "event_source_id" in message:
        # The pixel code itself is refused (stape-io/tiktok-tag#33 shows this answer): every
        # event would fail the same way, so stop and ask for the right code instead.
        return result(Outcome.PAUSE, PIXEL_FIX)
    return result(Outcome.REJECTED)


def _classify_http(status: int, retry_after: float | None) -> SendResult:
    """An answer without TikTok's envelope: a proxy, a gateway, an outage page."""
    message = f"TikTok answered HTTP {status} without a result code"
    if status >= 500 or status == 429 or status < 300:
        return SendResult(Outcome.RETRY, message, status, retry_after=retry_after)
    if status in (401, 403):
        return SendResult(Outcome.PAUSE, message, status, fix=TOKEN_FIX)
    if status == 404:
        return SendResult(Outcome.PAUSE, message, status, fix=ADDRESS_FIX)
    return SendResult(Outcome.REJECTED, message, status)


def _properties(event: ConversionEvent) -> dict[str, Any]:
    contents = [
        _present(
            {
                "content_id": content.content_id,
                "content_type": event.content_type,
                "content_name": content.name,
                "content_category": content.category,
                "price": content.price,
                "quantity": content.quantity,
                "brand": content.brand,
            }
        )
        for content in event.contents
    ]
    properties = {
        "currency": event.currency,
        "value": event.value,
        "content_type": event.content_type,
        "contents": contents,
        "order_id": event.order_id,
    }
    return _present(properties)


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop empty fields (None, empty strings, lists and objects) but keep zeros and False:
    TikTok validates the type of every field that is there. Written as ``value or value ==
    0`` because nearly every value is a non-empty string, which that settles at once; it runs
    for every field of every event a worker sends."""
    return {key: value for key, value in fields.items() if value or value == 0}


def _refused(message: str) -> dict[int, str]:
    """The events a message names, as in ``data.3.properties.value: Not a valid number``,
    each with the part of the message about it (up to the next path).

    TikTok names the failing field by its path (RudderStack's mocks show
    ``Batch.0.properties.contents.0.content_id: Not a valid string``); a message that names
    no event gives nothing, and the delivery loop bisects instead.
    """
    paths = list(BAD_EVENT_PATH.finditer(message))
    bounds = [path.start() for path in paths] + [len(message)]
    refused: dict[int, str] = {}
    for path, end in zip(paths, bounds[1:], strict=True):
        index, words = int(path.group(1)), message[path.start() : end].strip(" ;,")
        refused[index] = f"{refused[index]}; {words}" if index in refused else words
    return refused
