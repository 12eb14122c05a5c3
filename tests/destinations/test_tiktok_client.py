"""The TikTok Events API 2.0 client (connector.destinations.tiktok.client).

Covered: the request body (``build_body``/``event_data``: source, pixel, test event code,
string ids, dropped empty fields, contents, page); ``classify`` for TikTok's result codes and
for answers without TikTok's envelope (built as ``requests.Response`` objects by hand); real
batches sent to the strict TikTok stand-in (accepted, wrong token, stand-in down, stand-in too
slow); and ``problem`` refusing events older than 7 days.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests

from connector.destinations import DestinationConfig, Outcome
from connector.destinations.tiktok import DESTINATION
from connector.destinations.tiktok import DESTINATION as TIKTOK
from connector.destinations.tiktok.client import (
    TRACK_PATH,
    TikTokEventsApi,
    build_body,
    classify,
    event_data,
)
from connector.events import Content, ConversionEvent
from connector.hashing import sha256_hex
from connector.mapping import EventOptions, plan_event
from tests.support import PIXEL_CODE, TIKTOK_TOKEN, make_order

EMAIL_HASH = sha256_hex("shopper@example.com")


def config(base: str = "https://tiktok.invalid", **changes: object) -> DestinationConfig:
    fields: dict[str, object] = {
        "api_base": base,
        "account_id": PIXEL_CODE,
        "access_token": TIKTOK_TOKEN,
        "test_event_code": None,
        "timeout": 3.0,
    }
    fields.update(changes)
    return DestinationConfig(**fields)  # type: ignore[arg-type]


def conversion(**changes: object) -> ConversionEvent:
    fields: dict[str, object] = {
        "event_name": "CompletePayment",
        "event_id": "1001",
        "event_time": 1_700_000_000,
        "user": {"email": EMAIL_HASH, "ttclid": "E.C.P.x", "ip": "203.0.113.7"},
        "value": 59.9,
        "currency": "USD",
        "contents": (
            Content(content_id="42", name="Black tee", price=24.95, quantity=2, brand="Demo"),
        ),
        "order_id": "1001",
    }
    fields.update(changes)
    return ConversionEvent(**fields)  # type: ignore[arg-type]


def order_events(*order_ids: str) -> list[ConversionEvent]:
    """Real events from the mapping, fresh enough for the stand-in's time window."""
    events = []
    for order_id in order_ids:
        planned = plan_event(make_order(order_id), TIKTOK, EventOptions(), test_mode=False)
        assert planned is not None
        events.append(planned.event)
    return events


def response(
    status: int, body: object = None, *, raw: bytes | None = None, headers: dict | None = None
) -> requests.Response:
    """A ``requests.Response`` as if TikTok (or something in front of it) had answered."""
    answer = requests.Response()
    answer.status_code = status
    answer._content = raw if raw is not None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    answer.url = "https://business-api.tiktok.com" + TRACK_PATH
    return answer


def tiktok_answer(code: int, message: str = "msg", status: int = 200, **kwargs: object):  # type: ignore[no-untyped-def]
    body = {"code": code, "message": message, "request_id": "20240101000000ABCDEF", "data": {}}
    return response(status, body, **kwargs)  # type: ignore[arg-type]


# -- the request body ----------------------------------------------------------------------


def test_body_names_web_source_and_the_pixel():
    body = build_body(config(), [conversion()])
    assert body["event_source"] == "web"
    assert body["event_source_id"] == PIXEL_CODE
    assert len(body["data"]) == 1
    assert "test_event_code" not in body


def test_body_carries_the_test_event_code_only_when_set():
    assert build_body(config(test_event_code="TEST42"), [])["test_event_code"] == "TEST42"
    assert "test_event_code" not in build_body(config(test_event_code=""), [])


def test_event_data_shape():
    assert event_data(conversion()) == {
        "event": "CompletePayment",
        "event_time": 1_700_000_000,
        "event_id": "1001",
        "user": {"email": EMAIL_HASH, "ttclid": "E.C.P.x", "ip": "203.0.113.7"},
        "properties": {
            "currency": "USD",
            "value": 59.9,
            "content_type": "product",
            "contents": [
                {
                    "content_id": "42",
                    "content_type": "product",
                    "content_name": "Black tee",
                    "price": 24.95,
                    "quantity": 2,
                    "brand": "Demo",
                }
            ],
            "order_id": "1001",
        },
        "limited_data_use": False,
    }


def test_event_id_is_sent_as_a_string():
    assert event_data(conversion(event_id=1001))["event_id"] == "1001"  # type: ignore[arg-type]


def test_empty_fields_are_dropped():
    event = conversion(
        user={"email": None, "phone": "", "ttp": "ttp-1"},
        contents=(),
        order_id=None,
        page_url="",
        referrer=None,
    )
    data = event_data(event)
    assert data["user"] == {"ttp": "ttp-1"}
    assert data["properties"] == {"currency": "USD", "value": 59.9, "content_type": "product"}
    assert "page" not in data


def test_zero_value_and_false_flags_are_kept():
    data = event_data(conversion(value=0.0, limited_data_use=False))
    assert data["properties"]["value"] == 0.0
    assert data["limited_data_use"] is False


def test_content_without_optional_fields():
    event = conversion(contents=(Content(content_id="SKU-1", name=None, price=5.0, quantity=1),))
    assert event_data(event)["properties"]["contents"] == [
        {"content_id": "SKU-1", "content_type": "product", "price": 5.0, "quantity": 1}
    ]


def test_page_is_sent_when_present():
    data = event_data(conversion(page_url="https://shop.example/thanks"))
    assert data["page"] == {"url": "https://shop.example/thanks"}
    both = event_data(conversion(page_url="https://a.example/", referrer="https://b.example/"))
    assert both["page"] == {"url": "https://a.example/", "referrer": "https://b.example/"}


def test_limited_data_use_is_sent():
    assert event_data(conversion(limited_data_use=True))["limited_data_use"] is True


def test_checkout_event_has_no_order_id():
    data = event_data(conversion(event_name="InitiateCheckout", event_id="tok", order_id=None))
    assert "order_id" not in data["properties"]
    assert (data["event"], data["event_id"]) == ("InitiateCheckout", "tok")


# -- classify: TikTok's envelope -----------------------------------------------------------


def test_code_0_is_delivered():
    result = classify(tiktok_answer(0, "OK"))
    assert result.outcome is Outcome.DELIVERED
    assert (result.code, result.message, result.http_status) == (0, "OK", 200)
    assert result.request_id == "20240101000000ABCDEF"


def test_partial_success_names_each_refused_event_with_its_words():
    message = (
        "Partial success. data.1.event_id: Invalid value 'b'.; "
        "data.4.properties.value: Not a valid number.; data.4.user.email: PII is not hashed."
    )
    result = classify(tiktok_answer(20001, message))
    assert (result.outcome, result.code, result.message) == (Outcome.PARTIAL, 20001, message)
    assert result.refused == {
        1: "data.1.event_id: Invalid value 'b'.",
        4: "data.4.properties.value: Not a valid number.; data.4.user.email: PII is not hashed.",
    }


def test_partial_success_that_names_nothing_is_not_delivered():
    result = classify(tiktok_answer(20001, "Partial success."))
    assert (result.outcome, result.refused) == (Outcome.PARTIAL, {})


def test_partial_success_keeps_what_tiktok_puts_in_data():
    body = {"code": 20001, "message": "Partial success.", "data": {"failed": 2}}
    assert classify(response(200, body)).message == 'Partial success. {"failed":2}'


@pytest.mark.parametrize(("status", "outcome"), [(400, Outcome.REJECTED), (403, Outcome.PAUSE)])
def test_success_code_with_an_error_status_is_not_delivered(status, outcome):
    assert classify(tiktok_answer(0, "OK", status=status)).outcome is outcome


@pytest.mark.parametrize("code", [40100, 40132, 61000, 50000, 51012, 60001])
def test_throttling_and_tiktok_faults_are_retried(code):
    result = classify(tiktok_answer(code, "Too many requests."))
    assert result.outcome is Outcome.RETRY
    assert (result.code, result.message) == (code, "Too many requests.")


@pytest.mark.parametrize("code", [40001, 40102, 40104, 40105])
def test_token_and_permission_codes_pause_with_the_fix(code):
    result = classify(tiktok_answer(code, "Access token is incorrect or has been revoked."))
    assert result.outcome is Outcome.PAUSE
    assert result.code == code
    assert "connector tiktok set" in result.fix


@pytest.mark.parametrize("code", [40002, 40061, 40062])
def test_payload_errors_are_rejected(code):
    result = classify(tiktok_answer(code, "data.0.event_id: Not a valid string."))
    assert result.outcome is Outcome.REJECTED
    assert (result.code, result.message) == (code, "data.0.event_id: Not a valid string.")


# -- classify: HTTP status, with or without the envelope -----------------------------------


def test_http_500_with_envelope_is_retried():
    result = classify(tiktok_answer(50000, "System error.", status=500))
    assert (result.outcome, result.http_status, result.code) == (Outcome.RETRY, 500, 50000)


def test_http_500_without_envelope_is_retried():
    result = classify(response(500, raw=b"<html>Internal Server Error</html>"))
    assert (result.outcome, result.http_status, result.code) == (Outcome.RETRY, 500, None)
    assert result.message == "TikTok answered HTTP 500 without a result code"


def test_http_429_is_retried_after_the_hint():
    result = classify(tiktok_answer(40100, status=429, headers={"Retry-After": "120"}))
    assert (result.outcome, result.http_status, result.retry_after) == (Outcome.RETRY, 429, 120.0)


def test_http_429_without_envelope_keeps_the_hint():
    result = classify(response(429, raw=b"slow down", headers={"Retry-After": "7.5"}))
    assert (result.outcome, result.retry_after) == (Outcome.RETRY, 7.5)


@pytest.mark.parametrize("raw", ["soon", "-5", ""])
def test_unusable_retry_after_is_ignored_or_clamped(raw):
    result = classify(response(429, raw=b"", headers={"Retry-After": raw}))
    assert result.outcome is Outcome.RETRY
    assert result.retry_after == {"soon": None, "-5": 0.0, "": None}[raw]


def test_http_401_without_envelope_pauses():
    result = classify(response(401, raw=b"Unauthorized"))
    assert (result.outcome, result.http_status, result.code) == (Outcome.PAUSE, 401, None)


@pytest.mark.parametrize("raw", [b"Not Found", b'{"code": 40400, "message": "Not found"}'])
def test_wrong_api_address_pauses_instead_of_failing_events(raw):
    result = classify(response(404, raw=raw))
    assert result.outcome is Outcome.PAUSE
    assert "TIKTOK_API_BASE" in result.fix


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC).timestamp() + 90
    header = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    result = classify(response(503, raw=b"", headers={"Retry-After": header}))
    assert 80 <= result.retry_after <= 91


def test_http_400_without_envelope_is_rejected():
    result = classify(response(400, raw=b"Bad Request"))
    assert (result.outcome, result.http_status) == (Outcome.REJECTED, 400)


def test_http_200_with_non_json_is_retried():
    result = classify(response(200, raw=b"<html>maintenance</html>"))
    assert (result.outcome, result.http_status, result.code) == (Outcome.RETRY, 200, None)


def test_http_200_with_json_but_no_code_is_retried():
    assert classify(response(200, {"message": "OK"})).outcome is Outcome.RETRY


# -- real batches against the stand-in -----------------------------------------------------


def test_batch_is_accepted_by_the_stand_in(tiktok):
    events = order_events("2001", "2002")
    result = TikTokEventsApi().send(requests.Session(), config(tiktok.base_url), events)
    assert (result.outcome, result.code, result.message) == (Outcome.DELIVERED, 0, "OK")
    [batch] = tiktok.batches
    assert result.request_id == batch.answer["request_id"]
    assert batch.headers["Access-Token"] == TIKTOK_TOKEN
    assert batch.body == build_body(config(tiktok.base_url), events)
    assert tiktok.accepted_event_ids() == ["2001", "2002"]


def test_test_event_code_reaches_the_stand_in(tiktok):
    cfg = config(tiktok.base_url, test_event_code="TEST77")
    result = TikTokEventsApi().send(requests.Session(), cfg, order_events("2003"))
    assert result.outcome is Outcome.DELIVERED
    assert tiktok.batches[0].body["test_event_code"] == "TEST77"


def test_wrong_token_is_unauthorized(tiktok):
    cfg = config(tiktok.base_url, access_token="revoked-token")
    result = TikTokEventsApi().send(requests.Session(), cfg, order_events("2004"))
    assert (result.outcome, result.code) == (Outcome.PAUSE, 40105)
    assert result.message == "Access token is incorrect or has been revoked."
    assert tiktok.accepted_events() == []


def test_stand_in_down_is_retry_without_raising(tiktok):
    tiktok.go_down()
    try:
        result = TikTokEventsApi().send(
            requests.Session(), config(tiktok.base_url), order_events("2005")
        )
    finally:
        tiktok.come_up()
    assert result.outcome is Outcome.RETRY
    assert result.message == "cannot reach TikTok: ConnectionError"
    assert (result.http_status, result.code) == (None, None)


def test_slow_stand_in_beyond_the_timeout_is_retry(tiktok):
    tiktok.delay_seconds = 2.0
    cfg = config(tiktok.base_url, timeout=0.3)
    started = time.monotonic()
    result = TikTokEventsApi().send(requests.Session(), cfg, order_events("2006"))
    assert time.monotonic() - started < 1.5
    assert (result.outcome, result.message) == (Outcome.RETRY, "TikTok did not answer in time")


# -- events TikTok would never accept ------------------------------------------------------


def test_event_older_than_seven_days_is_a_problem():
    now = int(datetime(2024, 6, 10, tzinfo=UTC).timestamp())
    eight_days_old = conversion(event_time=now - 8 * 24 * 3600)
    assert DESTINATION.problem(eight_days_old, now) == (
        "event is older than 7 days, which TikTok does not accept"
    )


def test_events_up_to_seven_days_old_are_fine():
    now = int(datetime(2024, 6, 10, tzinfo=UTC).timestamp())
    assert DESTINATION.problem(conversion(event_time=now - 7 * 24 * 3600), now) is None
    assert DESTINATION.problem(conversion(event_time=now - 60), now) is None


def test_destination_identity():
    assert (DESTINATION.kind, DESTINATION.max_batch) == ("tiktok", 1000)


@pytest.mark.parametrize(
    ("message", "index"),
    [
        ("data.3.properties.value: Not a valid number.", 3),
        ("Batch.0.properties.contents.0.content_id: Not a valid string", 0),
        ("Invalid parameters.", None),
    ],
)
def test_a_rejection_names_the_bad_event_when_tiktok_does(message, index):
    result = classify(tiktok_answer(40002, message))
    named = {} if index is None else {index: message}
    assert (result.outcome, result.refused) == (Outcome.REJECTED, named)


def test_a_path_inside_another_word_names_no_event():
    assert classify(tiktok_answer(40002, "metadata.2.x: Unknown field.")).refused == {}


def test_a_refused_pixel_code_pauses_instead_of_failing_every_event():
    result = classify(
        tiktok_answer(40002, "Invalid value for event_source_id: not a valid string.")
    )
    assert result.outcome is Outcome.PAUSE
    assert "pixel code" in result.fix
