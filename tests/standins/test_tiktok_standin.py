"""Tests for the TikTok stand-in, over real HTTP.

Why they exist: the end-to-end tests trust the stand-in to refuse what TikTok refuses and
to inject faults on demand. If a check silently stopped working, the connector's tests
would pass against a stand-in that accepts anything. Each test here asserts the exact code
and the path named in the message, so a broken check makes it fail.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connector.standins.tiktok import TRACK_PATH, TikTokStandIn, check_event_time, new_request_id

TOKEN = "tok-good"
PIXEL = "CPIXEL123"
OTHER_PIXEL = "COTHERPIXEL"
HASH = hashlib.sha256(b"shopper@example.com").hexdigest()

Mutator = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def server() -> Iterator[TikTokStandIn]:
    stand_in = TikTokStandIn({TOKEN: {PIXEL}}).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def standin(server: TikTokStandIn) -> TikTokStandIn:
    server.reset()
    return server


def make_event(event_id: str = "order_1001", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "Purchase",
        "event_id": event_id,
        "event_time": int(time.time()),
        "user": {
            "email": HASH,
            "phone": [HASH, HASH],
            "external_id": HASH,
            "ttclid": "E.C.P.abc",
            "ttp": "2F7h37YkS1j57AYSKTI7IHhJPYH",
            "ip": "203.0.113.4",
            "user_agent": "Mozilla/5.0",
            "locale": "en-US",
        },
        "page": {"url": "https://shop.example/thanks", "referrer": "https://shop.example/"},
        "properties": {
            "currency": "USD",
            "value": 20.5,
            "content_type": "product",
            "order_id": "1001",
            "contents": [
                {
                    "content_id": "SKU1",
                    "content_name": "Shirt",
                    "content_type": "product",
                    "price": 10.25,
                    "quantity": 2,
                    "brand": "Acme",
                }
            ],
        },
        "limited_data_use": False,
    }
    event.update(overrides)
    return event


def make_body(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_source": "web",
        "event_source_id": PIXEL,
        "partner_name": "OurConnector",
        "test_event_code": "TEST123",
        "data": list(events) or [make_event()],
    }


def post(
    standin: TikTokStandIn,
    body: Any,
    *,
    token: str | None = TOKEN,
    timeout: float = 5.0,
) -> requests.Response:
    """POST a body as JSON (NaN allowed, unlike requests' json=, to test the server)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Access-Token"] = token
    url = standin.base_url + TRACK_PATH
    return requests.post(url, data=json.dumps(body), headers=headers, timeout=timeout)


def assert_answer(response: requests.Response, code: int, message: str) -> None:
    """HTTP 200 with TikTok's envelope, this code and exactly this message."""
    answer = response.json()
    assert response.status_code == 200
    assert answer["code"] == code, answer
    assert answer["message"] == message, answer
    assert answer["data"] == {}
    assert answer["request_id"]


# ---------------------------------------------------------------------------------------
# Success
# ---------------------------------------------------------------------------------------


def test_valid_batch_is_accepted_and_recorded(standin: TikTokStandIn) -> None:
    body = make_body(make_event("order_1"), make_event("order_2"))
    response = post(standin, body)
    assert_answer(response, 0, "OK")
    assert response.json()["message"] == "OK"
    assert standin.accepted_event_ids() == ["order_1", "order_2"]
    batch = standin.batches[0]
    assert batch.body == body
    assert batch.headers["Access-Token"] == TOKEN
    assert batch.http_status == 200 and batch.answer == response.json()


def test_request_id_looks_like_tiktoks() -> None:
    request_id = new_request_id()
    assert request_id[:14].isdigit() and request_id[:2] == "20"
    assert len(request_id) == 34 and int(request_id[14:], 16) >= 0
    assert new_request_id() != request_id


def test_thousand_events_are_accepted(standin: TikTokStandIn) -> None:
    events = [make_event(f"order_{i}") for i in range(1000)]
    assert_answer(post(standin, make_body(*events)), 0, "OK")
    assert len(standin.accepted_events()) == 1000


def test_other_path_is_json_404(standin: TikTokStandIn) -> None:
    response = requests.post(standin.base_url + "/open_api/v1.3/pixel/track/", json={}, timeout=5)
    assert response.status_code == 404
    assert response.json()["message"] == "Route not found: /open_api/v1.3/pixel/track/"
    assert standin.batches == []


# ---------------------------------------------------------------------------------------
# Authentication and permission
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        (None, 40104, "Access token is empty."),
        ("", 40104, "Access token is empty."),
        ("tok-unknown", 40105, "Access token is incorrect or has been revoked."),
    ],
)
def test_token_is_checked(
    standin: TikTokStandIn, token: str | None, code: int, message: str
) -> None:
    assert_answer(post(standin, make_body(), token=token), code, message)
    assert standin.accepted_events() == []


def test_token_without_pixel_gets_40001(standin: TikTokStandIn) -> None:
    body = make_body()
    body["event_source_id"] = OTHER_PIXEL
    expected = (
        f"No permission to operate pixel code: {OTHER_PIXEL}. "
        "You must be an admin or operator of this advertiser account."
    )
    response = post(standin, body)
    assert_answer(response, 40001, expected)
    assert response.json()["message"] == expected


def test_allow_grants_a_pixel(standin: TikTokStandIn) -> None:
    body = make_body()
    body["event_source_id"] = OTHER_PIXEL
    standin.allow("tok-second", OTHER_PIXEL)
    assert_answer(post(standin, body, token="tok-second"), 0, "OK")


# ---------------------------------------------------------------------------------------
# Body shape
# ---------------------------------------------------------------------------------------


def test_non_json_content_type_is_rejected(standin: TikTokStandIn) -> None:
    response = requests.post(
        standin.base_url + TRACK_PATH,
        data="event_source=web",
        headers={"Access-Token": TOKEN, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert_answer(response, 40002, "Content-Type: Must be application/json.")


@pytest.mark.parametrize(
    ("raw", "message"),
    [("{not json", "body: Invalid JSON."), ("[1, 2]", "body: Must be a JSON object.")],
)
def test_body_must_be_a_json_object(standin: TikTokStandIn, raw: str, message: str) -> None:
    response = requests.post(
        standin.base_url + TRACK_PATH,
        data=raw,
        headers={"Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=5,
    )
    assert_answer(response, 40002, message)


def set_top(key: str, value: Any) -> Mutator:
    def mutate(body: dict[str, Any]) -> None:
        body[key] = value

    return mutate


def drop_top(key: str) -> Mutator:
    def mutate(body: dict[str, Any]) -> None:
        del body[key]

    return mutate


MISSING = "Missing data for required field."
STR = "Not a valid string."
INT = "Not a valid integer."
NUM = "Not a valid number."
TYPE = "Invalid input type."
PII = "PII is not hashed. Send a lowercase SHA-256 hex digest."
SIZE = "batch size must be between 1 and 1000, got"
NO_SOURCE_ID = "Invalid value for event_source_id: not a valid string."

BODY_CASES: list[tuple[str, Mutator, int, str]] = [
    ("source_id_missing", drop_top("event_source_id"), 40002, f"event_source_id: {MISSING}"),
    ("source_id_number", set_top("event_source_id", 123), 40002, NO_SOURCE_ID),
    ("source_missing", drop_top("event_source"), 40002, f"event_source: {MISSING}"),
    ("source_app", set_top("event_source", "app"), 40002, "event_source: Must be one of: web."),
    ("test_code_number", set_top("test_event_code", 5), 40002, f"test_event_code: {STR}"),
    ("partner_number", set_top("partner_name", 5), 40002, f"partner_name: {STR}"),
    ("data_missing", drop_top("data"), 40002, f"data: {MISSING}"),
    ("data_object", set_top("data", {}), 40002, "data: Not a valid list."),
    ("data_empty", set_top("data", []), 40061, f"data: {SIZE} 0."),
    (
        "data_1001",
        set_top("data", [make_event(f"o{i}") for i in range(1001)]),
        40061,
        f"data: {SIZE} 1001.",
    ),
    ("event_not_object", set_top("data", ["Purchase"]), 40002, f"data.0: {TYPE}"),
]


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [case[1:] for case in BODY_CASES],
    ids=[case[0] for case in BODY_CASES],
)
def test_body_field_is_checked(
    standin: TikTokStandIn, mutate: Mutator, code: int, message: str
) -> None:
    body = make_body()
    mutate(body)
    assert_answer(post(standin, body), code, message)
    assert standin.accepted_events() == []


# ---------------------------------------------------------------------------------------
# Event fields: every bad case sits in the second event, so the path must say data.1
# ---------------------------------------------------------------------------------------


def at(path: str, value: Any) -> Mutator:
    """Set a dotted path inside the event ("properties.contents.0.price")."""

    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def without(path: str) -> Mutator:
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


NOW = int(time.time())
CONTENT = "properties.contents.0"
LEGACY = "Unknown field. Events API 1.0 name; 2.0 uses"
CHOICE = "Must be one of: product, product_group."

# (test id, change to the second event, code, path under data.1, reason)
EVENT_CASES: list[tuple[str, Mutator, int, str, str]] = [
    ("event_missing", without("event"), 40002, "event", MISSING),
    ("event_empty", at("event", ""), 40002, "event", "Shorter than minimum length 1."),
    ("event_number", at("event", 7), 40002, "event", STR),
    ("event_id_number", at("event_id", 1001), 40002, "event_id", STR),
    ("event_id_missing", without("event_id"), 40002, "event_id", MISSING),
    ("event_id_null", at("event_id", None), 40002, "event_id", "Field may not be null."),
    ("time_missing", without("event_time"), 40002, "event_time", MISSING),
    ("time_string", at("event_time", str(NOW)), 40002, "event_time", INT),
    ("time_float", at("event_time", NOW + 0.5), 40002, "event_time", INT),
    ("time_bool", at("event_time", True), 40002, "event_time", INT),
    (
        "time_ms",
        at("event_time", NOW * 1000),
        40002,
        "event_time",
        "Must be a Unix timestamp in seconds, not milliseconds.",
    ),
    (
        "time_old",
        at("event_time", NOW - 8 * 86400),
        40002,
        "event_time",
        "Event is older than 7 days.",
    ),
    (
        "time_future",
        at("event_time", NOW + 3600),
        40002,
        "event_time",
        "Event is more than 5 minutes in the future.",
    ),
    (
        "legacy_timestamp",
        at("timestamp", "2025-01-01T00:00:00Z"),
        40002,
        "timestamp",
        f"{LEGACY} event_time.",
    ),
    ("legacy_context", at("context", {}), 40002, "context", f"{LEGACY} user/page."),
    ("user_list", at("user", [HASH]), 40002, "user", TYPE),
    ("email_plain", at("user.email", "a@b.com"), 40062, "user.email", PII),
    ("email_upper", at("user.email", HASH.upper()), 40062, "user.email", PII),
    ("email_empty", at("user.email", ""), 40062, "user.email", PII),
    ("email_number", at("user.email", 5), 40002, "user.email", STR),
    ("phone_list_item", at("user.phone", [HASH, "+15551234"]), 40062, "user.phone.1", PII),
    (
        "phone_empty_list",
        at("user.phone", []),
        40002,
        "user.phone",
        "Shorter than minimum length 1.",
    ),
    ("external_id_plain", at("user.external_id", "cust-1"), 40062, "user.external_id", PII),
    ("first_name_plain", at("user.first_name", "Ann"), 40062, "user.first_name", PII),
    ("last_name_plain", at("user.last_name", "Lee"), 40062, "user.last_name", PII),
    ("zip_plain", at("user.zip_code", "94103"), 40062, "user.zip_code", PII),
    (
        "legacy_phone_number",
        at("user.phone_number", HASH),
        40002,
        "user.phone_number",
        f"{LEGACY} phone.",
    ),
    ("ttclid_number", at("user.ttclid", 1), 40002, "user.ttclid", STR),
    ("ttp_number", at("user.ttp", 1), 40002, "user.ttp", STR),
    ("ip_number", at("user.ip", 1), 40002, "user.ip", STR),
    ("ua_null", at("user.user_agent", None), 40002, "user.user_agent", STR),
    ("locale_number", at("user.locale", 1), 40002, "user.locale", STR),
    ("city_number", at("user.city", 1), 40002, "user.city", STR),
    ("state_number", at("user.state", 1), 40002, "user.state", STR),
    ("country_number", at("user.country", 1), 40002, "user.country", STR),
    ("props_list", at("properties", []), 40002, "properties", TYPE),
    ("value_string", at("properties.value", "20.5"), 40002, "properties.value", NUM),
    ("value_nan", at("properties.value", float("nan")), 40002, "properties.value", NUM),
    ("value_bool", at("properties.value", True), 40002, "properties.value", NUM),
    ("currency_missing", without("properties.currency"), 40002, "properties.currency", MISSING),
    (
        "currency_lower",
        at("properties.currency", "usd"),
        40002,
        "properties.currency",
        "Not a valid ISO 4217 currency code.",
    ),
    (
        "currency_retired",
        at("properties.currency", "HRK"),
        40002,
        "properties.currency",
        "Not a valid ISO 4217 currency code.",
    ),
    ("currency_number", at("properties.currency", 840), 40002, "properties.currency", STR),
    (
        "content_type_bad",
        at("properties.content_type", "socks"),
        40002,
        "properties.content_type",
        CHOICE,
    ),
    ("order_id_number", at("properties.order_id", 1001), 40002, "properties.order_id", STR),
    (
        "contents_object",
        at("properties.contents", {}),
        40002,
        "properties.contents",
        "Not a valid list.",
    ),
    ("content_not_object", at(CONTENT, "SKU1"), 40002, CONTENT, TYPE),
    (
        "content_id_number",
        at(f"{CONTENT}.content_id", 1077218),
        40002,
        f"{CONTENT}.content_id",
        STR,
    ),
    (
        "content_name_number",
        at(f"{CONTENT}.content_name", 1),
        40002,
        f"{CONTENT}.content_name",
        STR,
    ),
    (
        "content_item_type_bad",
        at(f"{CONTENT}.content_type", "socks"),
        40002,
        f"{CONTENT}.content_type",
        CHOICE,
    ),
    ("price_string", at(f"{CONTENT}.price", "10.25"), 40002, f"{CONTENT}.price", NUM),
    ("quantity_float", at(f"{CONTENT}.quantity", 2.0), 40002, f"{CONTENT}.quantity", INT),
    ("brand_number", at(f"{CONTENT}.brand", 1), 40002, f"{CONTENT}.brand", STR),
    ("page_string", at("page", "https://x"), 40002, "page", TYPE),
    ("page_url_number", at("page.url", 1), 40002, "page.url", STR),
    ("referrer_number", at("page.referrer", 1), 40002, "page.referrer", STR),
    (
        "ldu_string",
        at("limited_data_use", "false"),
        40002,
        "limited_data_use",
        "Not a valid boolean.",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "code", "path", "reason"),
    [case[1:] for case in EVENT_CASES],
    ids=[case[0] for case in EVENT_CASES],
)
def test_event_field_is_checked(
    standin: TikTokStandIn, mutate: Mutator, code: int, path: str, reason: str
) -> None:
    bad = make_event("order_2")
    mutate(bad)
    response = post(standin, make_body(make_event("order_1"), bad))
    assert_answer(response, code, f"data.1.{path}: {reason}")
    assert standin.accepted_events() == [], "one bad event must fail the whole batch"


def test_minimal_event_is_accepted(standin: TikTokStandIn) -> None:
    event = {"event": "Purchase", "event_id": "order_9", "event_time": int(time.time())}
    assert_answer(post(standin, make_body(event)), 0, "OK")


def test_optional_fields_accept_valid_values(standin: TikTokStandIn) -> None:
    event = make_event(user={"first_name": HASH, "last_name": HASH, "zip_code": HASH})
    event["properties"]["contents"][0]["content_type"] = "product_group"
    event["properties"]["value"] = 20  # an int is a number too
    event["properties"]["currency"] = "EUR"
    assert_answer(post(standin, make_body(event)), 0, "OK")


def test_event_time_window_edges() -> None:
    now = 1_750_000_000
    check_event_time(now - 7 * 86400 + 1, "t", now)
    check_event_time(now + 300, "t", now)
    with pytest.raises(Exception, match="older than 7 days"):
        check_event_time(now - 7 * 86400 - 1, "t", now)
    with pytest.raises(Exception, match="5 minutes in the future"):
        check_event_time(now + 301, "t", now)


# ---------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------


def test_fail_next_rate_limit_then_recovers(standin: TikTokStandIn) -> None:
    standin.fail_next(2, code=40100)
    for _ in range(2):
        response = post(standin, make_body())
        assert_answer(response, 40100, "Too many requests. Please retry in some time.")
    assert_answer(post(standin, make_body()), 0, "OK")
    assert [b.answer["code"] for b in standin.batches] == [40100, 40100, 0]
    assert len(standin.accepted_events()) == 1


def test_fail_next_http_500(standin: TikTokStandIn) -> None:
    standin.fail_next(1, http_status=500)
    response = post(standin, make_body())
    assert response.status_code == 500
    assert response.json()["code"] == 50000
    assert standin.batches[0].http_status == 500
    assert standin.accepted_events() == []


def test_fail_next_429_with_retry_after(standin: TikTokStandIn) -> None:
    standin.fail_next(1, http_status=429, retry_after=7, message="slow down")
    response = post(standin, make_body())
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == 40100
    assert response.json()["message"] == "slow down"


def fault_codes(standin: TikTokStandIn, n: int, seed: int) -> list[tuple[int, int]]:
    standin.reset()
    standin.set_random_faults(rate_limit=0.3, http_500=0.2, seed=seed)
    for i in range(n):
        post(standin, make_body(make_event(f"order_{i}")))
    return [(b.http_status, b.answer["code"]) for b in standin.batches]


def test_random_faults_follow_the_seed(standin: TikTokStandIn) -> None:
    first = fault_codes(standin, 40, seed=42)
    assert fault_codes(standin, 40, seed=42) == first
    assert (200, 40100) in first and (500, 50000) in first and (200, 0) in first
    assert fault_codes(standin, 40, seed=43) != first


def test_reject_event_ids_fails_the_whole_batch(standin: TikTokStandIn) -> None:
    standin.reject_event_ids({"order_bad"})
    body = make_body(make_event("order_ok"), make_event("order_bad"))
    assert_answer(post(standin, body), 40002, "data.1.event_id: Invalid value 'order_bad'.")
    assert_answer(post(standin, make_body(make_event("order_ok"))), 0, "OK")
    assert standin.accepted_event_ids() == ["order_ok"]


def test_reject_event_ids_with_another_code(standin: TikTokStandIn) -> None:
    standin.reject_event_ids({"order_bad"}, code=40062)
    response = post(standin, make_body(make_event("order_bad")))
    assert_answer(response, 40062, "data.0.event_id: Invalid value 'order_bad'.")


def test_drop_event_ids_answers_partial_success_naming_the_dropped(
    standin: TikTokStandIn,
) -> None:
    standin.drop_event_ids({"order_b", "order_d"})
    body = make_body(*(make_event(f"order_{letter}") for letter in "abcd"))
    assert_answer(
        post(standin, body),
        20001,
        "Partial success. data.1.event_id: Invalid value 'order_b'.; "
        "data.3.event_id: Invalid value 'order_d'.",
    )
    assert standin.accepted_event_ids() == ["order_a", "order_c"]


def test_drop_event_ids_without_naming_them(standin: TikTokStandIn) -> None:
    standin.drop_event_ids({"order_b"}, name_path=False)
    assert_answer(
        post(standin, make_body(make_event("order_a"), make_event("order_b"))),
        20001,
        "Partial success.",
    )
    assert_answer(post(standin, make_body(make_event("order_c"))), 0, "OK")
    assert standin.accepted_event_ids() == ["order_a", "order_c"]


def test_go_down_refuses_then_come_up_accepts_on_same_port(standin: TikTokStandIn) -> None:
    url = standin.base_url
    assert_answer(post(standin, make_body(make_event("order_before"))), 0, "OK")
    standin.go_down()
    with pytest.raises(requests.ConnectionError):
        post(standin, make_body(make_event("order_while_down")))
    standin.come_up()
    assert standin.base_url == url
    assert_answer(post(standin, make_body(make_event("order_after"))), 0, "OK")
    assert standin.accepted_event_ids() == ["order_before", "order_after"]


def test_go_down_cuts_a_request_in_flight(standin: TikTokStandIn) -> None:
    standin.delay_seconds = 0.8
    errors: list[Exception] = []

    def send() -> None:
        try:
            post(standin, make_body(make_event("order_in_flight")))
        except requests.ConnectionError as error:
            errors.append(error)

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(0.3)
    standin.go_down()
    thread.join(timeout=5)
    assert len(errors) == 1, "the client must see its connection cut"
    time.sleep(0.8)  # let the server thread finish its delay
    standin.come_up()
    assert standin.batches == []


def test_reset_brings_a_downed_stand_in_back(standin: TikTokStandIn) -> None:
    standin.go_down()
    standin.reset()
    assert_answer(post(standin, make_body()), 0, "OK")


def test_delay_slows_the_answer(standin: TikTokStandIn) -> None:
    standin.delay_seconds = 0.5
    started = time.monotonic()
    assert_answer(post(standin, make_body()), 0, "OK")
    assert time.monotonic() - started >= 0.5
    with pytest.raises(requests.ReadTimeout):
        post(standin, make_body(), timeout=0.2)


def test_reset_clears_batches_and_faults(standin: TikTokStandIn) -> None:
    post(standin, make_body())
    standin.fail_next(5)
    standin.reject_event_ids({"order_1001"})
    standin.drop_event_ids({"order_1001"})
    standin.delay_seconds = 3
    standin.reset()
    assert standin.batches == []
    assert_answer(post(standin, make_body()), 0, "OK")


# ---------------------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------------------


def test_wait_for_events_returns_once_enough_arrived(standin: TikTokStandIn) -> None:
    def send_later() -> None:
        time.sleep(0.3)
        post(standin, make_body(make_event("order_a"), make_event("order_b")))

    thread = threading.Thread(target=send_later)
    thread.start()
    events = standin.wait_for_events(2, timeout=5)
    thread.join()
    assert [e["event_id"] for e in events] == ["order_a", "order_b"]


def test_wait_for_events_times_out_with_summary(standin: TikTokStandIn) -> None:
    standin.fail_next(1, code=40100)
    post(standin, make_body())
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"got 0;.*\n.*code=40100: Too many requests"):
        standin.wait_for_events(1, timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 3


def test_concurrent_requests_are_all_recorded(standin: TikTokStandIn) -> None:
    threads = [
        threading.Thread(target=post, args=(standin, make_body(make_event(f"order_{i}"))))
        for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(standin.accepted_event_ids()) == sorted(f"order_{i}" for i in range(20))
