"""The Google Data Manager client (connector.destinations.google.client).

Covered: the IngestEventsRequest body (destination with and without a manager account,
encoding, validateOnly, each event field, consent, one click id); ``classify`` for each
google.rpc answer (built as ``requests.Response`` objects by hand), refused events named by
their BadRequest paths, Retry-After and RetryInfo; ``problem``; the merchant's fields; real
batches sent to the strict stand-in (delivered, validate-only recording nothing, an expired
access token renewed through ``after_send`` and the batch sent again, a revoked refresh token
pausing with the fix, a token endpoint outage retrying, 5xx retrying, a refused event named
by index, Google unreachable) and ``request_status``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from connector.destinations import DestinationConfig, Outcome, SendResult, load_destinations
from connector.destinations.google import DESTINATION
from connector.destinations.google.client import (
    ACCOUNT_FIX,
    DESTINATION_FIX,
    PERMISSION_FIX,
    TOKEN_FIX,
    build_body,
    classify,
    event_data,
)
from connector.destinations.google.tokens import NO_REFRESH_TOKEN_FIX, RECONNECT_FIX
from connector.events import Content, ConversionEvent
from connector.hashing import sha256_hex
from connector.models import Store, StoreDestination
from connector.services import Services
from connector.standins.google import GoogleStandIn
from tests.support import GOOGLE_ACTION, GOOGLE_CLIENT, GOOGLE_CUSTOMER, GOOGLE_SECRET

CLIENT, SECRET = GOOGLE_CLIENT, GOOGLE_SECRET
CUSTOMER, ACTION = GOOGLE_CUSTOMER, GOOGLE_ACTION
MANAGER = "9999999999"
NOW = int(time.time())


def config(base: str = "https://datamanager.invalid", **changes: Any) -> DestinationConfig:
    fields: dict[str, Any] = {
        "api_base": base,
        "account_id": "123-456-7890",
        "access_token": "ya29.token",
        "test_event_code": None,
        "timeout": 3.0,
        "settings": {"conversion_action": ACTION},
    }
    fields.update(changes)
    return DestinationConfig(**fields)


def conversion(**changes: Any) -> ConversionEvent:
    fields: dict[str, Any] = {
        "event_name": "purchase",
        "event_id": "1001",
        "event_time": NOW - 60,
        "user": {
            "email": sha256_hex("shopper@example.com"),
            "phone": sha256_hex("+16505551212"),
            "given_name": sha256_hex("jane"),
            "family_name": sha256_hex("doe"),
            "region_code": "US",
            "postal_code": "94043",
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
            "gclid": "Cj0KCQ",
        },
        "value": 59.9,
        "currency": "usd",
        "contents": (Content(content_id="42", name="Black tee", price=24.95, quantity=2),),
        "order_id": "1001",
    }
    fields.update(changes)
    return ConversionEvent(**fields)


# -- the request body ------------------------------------------------------------------------


def test_body_destination_and_options() -> None:
    body = build_body(config(), [conversion()])
    assert body["destinations"] == [
        {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CUSTOMER},
            "productDestinationId": ACTION,
        }
    ]
    assert body["encoding"] == "HEX" and "validateOnly" not in body
    managed = config(settings={"conversion_action": ACTION, "login_customer_id": "999-999-9999"})
    assert build_body(managed, [conversion()])["destinations"][0]["loginAccount"] == {
        "accountType": "GOOGLE_ADS",
        "accountId": MANAGER,
    }
    assert build_body(config(validate_only=True), [conversion()])["validateOnly"] is True


def test_event_fields() -> None:
    data = event_data(conversion())
    user = conversion().user
    assert data == {
        "transactionId": "1001",
        "eventTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 60)),
        "eventSource": "WEB",
        "conversionValue": 59.9,
        "currency": "USD",
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "userData": {
            "userIdentifiers": [
                {"emailAddress": user["email"]},
                {"phoneNumber": user["phone"]},
                {
                    "address": {
                        "givenName": user["given_name"],
                        "familyName": user["family_name"],
                        "regionCode": "US",
                        "postalCode": "94043",
                    }
                },
            ]
        },
        "adIdentifiers": {"gclid": "Cj0KCQ"},
        "eventDeviceInfo": {"userAgent": "Mozilla/5.0", "ipAddress": "203.0.113.7"},
        "cartData": {"items": [{"itemId": "42", "quantity": 2, "unitPrice": 24.95}]},
    }


def test_event_without_order_id_limited_data_use_and_one_click_id() -> None:
    data = event_data(
        conversion(
            order_id=None,
            event_id="chk-9",
            limited_data_use=True,
            user={"gbraid": "GB", "wbraid": "WB"},
            contents=(),
        )
    )
    assert data["transactionId"] == "chk-9"
    assert data["consent"]["adPersonalization"] == "CONSENT_DENIED"
    assert data["adIdentifiers"] == {"gbraid": "GB"}
    assert not {"userData", "eventDeviceInfo", "cartData"} & set(data)


# -- classify ----------------------------------------------------------------------------------


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    answer.headers.update(headers or {})
    return answer


def google_error(status: int, name: str, *details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": status, "message": "words", "status": name, "details": list(details)}}


def bad_request(*fields: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": f, "description": "bad"} for f in fields],
    }


def error_info(reason: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}


@pytest.mark.parametrize(
    ("answer", "outcome", "code", "fix"),
    [
        (response(200, {"requestId": "r-1"}), Outcome.DELIVERED, 0, None),
        (response(200, {}), Outcome.DELIVERED, 0, None),
        (response(401, google_error(401, "UNAUTHENTICATED")), Outcome.PAUSE, 16, TOKEN_FIX),
        (response(403, google_error(403, "PERMISSION_DENIED")), Outcome.PAUSE, 7, PERMISSION_FIX),
        (response(429, google_error(429, "RESOURCE_EXHAUSTED")), Outcome.RETRY, 8, None),
        (response(503, google_error(503, "UNAVAILABLE")), Outcome.RETRY, 14, None),
        (response(504, google_error(504, "DEADLINE_EXCEEDED")), Outcome.RETRY, 4, None),
        (response(502, "<html>Bad gateway</html>"), Outcome.RETRY, None, None),
        (response(200, "<html>Sign in to the Wi-Fi</html>"), Outcome.RETRY, None, None),
        (response(401, "<html>no</html>"), Outcome.PAUSE, 16, TOKEN_FIX),
        (response(400, google_error(400, "INVALID_ARGUMENT")), Outcome.REJECTED, 3, None),
        (
            response(400, google_error(400, "INVALID_ARGUMENT", bad_request("destinations[0].x"))),
            Outcome.PAUSE,
            3,
            DESTINATION_FIX,
        ),
        (
            response(
                400,
                google_error(400, "INVALID_ARGUMENT", error_info("INVALID_CONVERSION_ACTION_ID")),
            ),
            Outcome.PAUSE,
            3,
            DESTINATION_FIX,
        ),
        (
            response(400, google_error(400, "FAILED_PRECONDITION")),
            Outcome.PAUSE,
            9,
            ACCOUNT_FIX,
        ),
    ],
)
def test_classify(
    answer: requests.Response, outcome: Outcome, code: int | None, fix: str | None
) -> None:
    result = classify(answer)
    assert (result.outcome, result.code, result.fix) == (outcome, code, fix)


def test_classify_keeps_request_id_and_google_words() -> None:
    assert classify(response(200, {"requestId": "r-1"})).request_id == "r-1"
    result = classify(
        response(400, google_error(400, "INVALID_ARGUMENT", error_info("INVALID_FORMAT")))
    )
    assert result.message == "INVALID_ARGUMENT (INVALID_FORMAT) words"


def test_refused_events_are_named_by_their_paths() -> None:
    answer = response(
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            bad_request("events[1].currency", "events[3].user_data", "events[1].event_timestamp"),
        ),
    )
    result = classify(answer)
    assert result.outcome is Outcome.REJECTED
    assert sorted(result.refused) == [1, 3]
    assert "events[1].currency: bad" in result.refused[1]
    assert "events[1].event_timestamp" in result.refused[1]
    camel = classify(
        response(
            400, google_error(400, "INVALID_ARGUMENT", bad_request("events[2].eventTimestamp"))
        )
    )
    assert list(camel.refused) == [2]


def test_retry_after_header_or_retry_info() -> None:
    header = response(429, google_error(429, "RESOURCE_EXHAUSTED"), {"Retry-After": "30"})
    assert classify(header).retry_after == 30
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}
    assert classify(response(503, google_error(503, "UNAVAILABLE", info))).retry_after == 12


# -- problem and fields ------------------------------------------------------------------------


def test_problem() -> None:
    assert DESTINATION.problem(conversion(), NOW) is None
    assert "90 days" in (DESTINATION.problem(conversion(event_time=NOW - 91 * 86400), NOW) or "")
    assert "future" in (DESTINATION.problem(conversion(event_time=NOW + 3600), NOW) or "")
    lonely = conversion(user={"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"})
    assert "cannot match" in (DESTINATION.problem(lonely, NOW) or "")


def test_advice_for_codes() -> None:
    assert "refresh token" in DESTINATION.advice(16).action
    assert "retries by itself" in DESTINATION.advice(8).action
    assert "90 days" in DESTINATION.advice(None).action
    assert "Report the code" in DESTINATION.advice(12345).action


def test_fields_and_registration() -> None:
    fields = {f.name: f for f in DESTINATION.fields}
    assert fields["customer_id"].problem("123-456-7890") is None
    assert fields["customer_id"].problem("1234567890") is None
    assert fields["customer_id"].problem("12345") is not None
    assert fields["conversion_action"].problem("98765x") is not None
    assert fields["login_customer_id"].problem("") is None
    assert fields["refresh_token"].secret
    assert load_destinations()["google"] is DESTINATION
    assert DESTINATION.env[0].name == "GOOGLE_DATAMANAGER_API_BASE"


# -- against the stand-in ------------------------------------------------------------------------


def connected(services: Services, google: GoogleStandIn) -> tuple[StoreDestination, str]:
    """A Google destination row with a refresh token the stand-in issued, and that token."""
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    with services.db.session() as session:
        session.add(Store(id="store-1", platform="shopify", domain="demo.myshopify.com"))
        row = StoreDestination(
            store_id="store-1",
            kind="google",
            account_id="123-456-7890",
            refresh_token_encrypted=services.cipher.encrypt(refresh),
            settings={"conversion_action": ACTION},
            options={},
        )
        session.add(row)
        session.commit()
    return row, refresh


def live_config(services: Services, row: StoreDestination, **changes: Any) -> DestinationConfig:
    base = services.settings.env("GOOGLE_DATAMANAGER_API_BASE")
    token = DESTINATION.access_token(services, row)
    return config(base, access_token=token, **changes)


def send_and_look_again(
    services: Services, row: StoreDestination, cfg: DestinationConfig, events: list
) -> SendResult:
    """What the delivery loop does: send, then let the destination look at the answer."""
    http = requests.Session()
    first = DESTINATION.send(http, cfg, events)
    return DESTINATION.after_send(
        services, row, cfg, first, lambda renewed: DESTINATION.send(http, renewed, events)
    )


def test_a_batch_is_delivered(google_services: Services, google: GoogleStandIn) -> None:
    row, _ = connected(google_services, google)
    cfg = live_config(google_services, row)
    result = send_and_look_again(google_services, row, cfg, [conversion()])
    assert result.outcome is Outcome.DELIVERED
    assert result.request_id in google.request_ids()
    (received,) = google.accepted_events()
    assert received["transactionId"] == "1001" and received["currency"] == "USD"
    assert google.batches[0].headers["Authorization"] == f"Bearer {cfg.access_token}"


def test_validate_only_records_nothing(google_services: Services, google: GoogleStandIn) -> None:
    row, _ = connected(google_services, google)
    cfg = live_config(google_services, row, validate_only=True)
    result = send_and_look_again(google_services, row, cfg, [conversion()])
    assert (result.outcome, result.request_id) == (Outcome.DELIVERED, None)
    assert google.accepted_events() == [] and google.batches[0].validate_only


def test_an_expired_access_token_is_renewed_and_the_batch_sent_again(
    google_services: Services, google: GoogleStandIn
) -> None:
    row, _ = connected(google_services, google)
    cfg = live_config(google_services, row)
    google.expire_access_tokens()
    result = send_and_look_again(google_services, row, cfg, [conversion()])
    assert result.outcome is Outcome.DELIVERED
    assert [b.http_status for b in google.batches] == [401, 200]
    assert google.batches[1].headers["Authorization"] != f"Bearer {cfg.access_token}"


def test_a_revoked_refresh_token_pauses_with_the_fix(
    google_services: Services, google: GoogleStandIn
) -> None:
    row, refresh = connected(google_services, google)
    cfg = live_config(google_services, row)
    google.revoke(refresh)
    result = send_and_look_again(google_services, row, cfg, [conversion()])
    assert (result.outcome, result.code, result.fix) == (Outcome.PAUSE, 16, RECONNECT_FIX)
    assert google.accepted_events() == []


def test_no_token_at_all_pauses_without_calling_google(
    google_services: Services, google: GoogleStandIn
) -> None:
    row, refresh = connected(google_services, google)
    google.revoke(refresh)
    cfg = live_config(google_services, row)
    assert cfg.access_token == ""
    result = send_and_look_again(google_services, row, cfg, [conversion()])
    assert (result.outcome, result.fix) == (Outcome.PAUSE, RECONNECT_FIX)
    assert google.batches == []
    row.refresh_token_encrypted = None  # a destination never given a refresh token
    unsent = DESTINATION.send(requests.Session(), cfg, [conversion()])
    bare = DESTINATION.after_send(google_services, row, cfg, unsent, never_resend)
    assert (bare.outcome, bare.fix) == (Outcome.PAUSE, NO_REFRESH_TOKEN_FIX)


def never_resend(_config: DestinationConfig) -> SendResult:
    raise AssertionError("nothing to resend with")


def test_a_token_endpoint_outage_retries(google_services: Services, google: GoogleStandIn) -> None:
    row, _ = connected(google_services, google)
    cfg = live_config(google_services, row)
    google.expire_access_tokens()
    google.fail_token_endpoint(1)
    result = send_and_look_again(google_services, row, cfg, [conversion()])
    assert result.outcome is Outcome.RETRY


def test_server_errors_retry_after_the_asked_delay(
    google_services: Services, google: GoogleStandIn
) -> None:
    row, _ = connected(google_services, google)
    google.fail_next(1, http_status=503, retry_after=9)
    result = send_and_look_again(
        google_services, row, live_config(google_services, row), [conversion()]
    )
    assert (result.outcome, result.code, result.retry_after) == (Outcome.RETRY, 14, 9)


def test_a_refused_event_is_named_by_index(
    google_services: Services, google: GoogleStandIn
) -> None:
    row, _ = connected(google_services, google)
    google.reject_transaction_ids({"1002"})
    events = [
        conversion(),
        conversion(order_id="1002", event_id="1002"),
        conversion(order_id="1003"),
    ]
    result = send_and_look_again(google_services, row, live_config(google_services, row), events)
    assert result.outcome is Outcome.REJECTED
    assert list(result.refused) == [1]
    assert google.accepted_events() == []


def test_every_built_event_passes_the_strict_stand_in(
    google_services: Services, google: GoogleStandIn
) -> None:
    row, _ = connected(google_services, google)
    events = [
        conversion(),
        conversion(order_id=None, event_id="e-2", user={"wbraid": "WB"}, contents=()),
        conversion(order_id="3", limited_data_use=True, user={"email": sha256_hex("x@y.z")}),
    ]
    result = send_and_look_again(google_services, row, live_config(google_services, row), events)
    assert result.outcome is Outcome.DELIVERED, result.message
    assert len(google.accepted_events()) == 3


def test_google_unreachable_retries() -> None:
    result = DESTINATION.send(requests.Session(), config("http://127.0.0.1:9"), [conversion()])
    assert (result.outcome, result.code) == (Outcome.RETRY, None)


def test_request_status(google_services: Services, google: GoogleStandIn) -> None:
    row, _ = connected(google_services, google)
    cfg = live_config(google_services, row)
    delivered = send_and_look_again(google_services, row, cfg, [conversion(), conversion()])
    assert delivered.request_id is not None
    status = DESTINATION.request_status(requests.Session(), cfg, delivered.request_id)
    assert status.finished and status.problem is None
    assert [(d.status, d.record_count) for d in status.destinations] == [("SUCCESS", 2)]
    reason = "PROCESSING_ERROR_REASON_EVENT_TOO_OLD"
    google.set_request_status(delivered.request_id, "PARTIAL_SUCCESS", {reason: 1})
    status = DESTINATION.request_status(requests.Session(), cfg, delivered.request_id)
    assert status.destinations[0].errors == {reason: 1}
    unknown = DESTINATION.request_status(requests.Session(), cfg, "no-such-id")
    assert unknown.problem and not unknown.finished
