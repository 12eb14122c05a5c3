"""Tests for the Meta Graph events stand-in, over real HTTP.

Why they exist: the client tests trust the stand-in to refuse what Meta refuses and to inject
faults on demand. If a check silently stopped working, they would pass against a stand-in
that accepts anything. Each test here asserts the exact Graph code and the field named in
Meta's words, so a broken check makes it fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connector.standins.meta import MetaStandIn, check_event_time

TOKEN = "tok-good"
PIXEL = "1234567890"
HASH = hashlib.sha256(b"john_smith@gmail.com").hexdigest()

Mutator = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def server() -> Iterator[MetaStandIn]:
    with MetaStandIn({TOKEN: {PIXEL}}) as stand_in:
        yield stand_in


@pytest.fixture
def meta(server: MetaStandIn) -> MetaStandIn:
    server.reset()
    return server


def make_event(event_id: str = "1001", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "Purchase",
        "event_time": int(time.time()),
        "event_id": event_id,
        "action_source": "website",
        "event_source_url": "https://shop.example/thanks",
        "user_data": {
            "em": [HASH],
            "ph": HASH,
            "external_id": HASH,
            "client_ip_address": "203.0.113.4",
            "client_user_agent": "Mozilla/5.0",
            "fbc": "fb.1.1554763741205.AbCdEfGh",
            "fbp": "fb.1.1558571054389.1098115397",
        },
        "custom_data": {
            "value": 20.5,
            "currency": "USD",
            "content_type": "product",
            "contents": [{"id": "SKU1", "quantity": 2, "item_price": 10.25}],
            "num_items": 2,
            "order_id": "1001",
        },
        "data_processing_options": [],
    }
    event.update(overrides)
    return event


def post(
    meta: MetaStandIn,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = TOKEN,
    pixel: str = PIXEL,
    version: str = "v26.0",
    params: dict[str, str] | None = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"data": [make_event()]} if body is None else body
    url = f"{meta.base_url}/{version}/{pixel}/events"
    return requests.post(url, json=body, headers=headers, params=params, timeout=5)


def error_of(answer: requests.Response) -> dict[str, Any]:
    return answer.json()["error"]


def with_event(change: Mutator) -> dict[str, Any]:
    event = make_event()
    change(event)
    return {"data": [make_event("ok"), event]}


# -- accepted ----------------------------------------------------------------------------


def test_valid_batch_is_received_and_recorded(meta: MetaStandIn) -> None:
    answer = post(meta, {"data": [make_event("a"), make_event("b")], "test_event_code": "T1"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["events_received"] == 2
    assert body["messages"] == []
    assert len(body["fbtrace_id"]) == 23
    assert [event["event_id"] for event in meta.accepted_events()] == ["a", "b"]
    assert meta.batches[-1].body["test_event_code"] == "T1"


def test_token_in_query_and_form_encoded_data_are_accepted(meta: MetaStandIn) -> None:
    url = f"{meta.base_url}/v25.0/{PIXEL}/events"
    form = {"data": json.dumps([make_event()])}
    answer = requests.post(url, data=form, params={"access_token": TOKEN}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["events_received"] == 1


def test_limited_data_use_with_geolocation_is_accepted(meta: MetaStandIn) -> None:
    event = make_event(
        data_processing_options=["LDU"],
        data_processing_options_country=0,
        data_processing_options_state=0,
    )
    assert post(meta, {"data": [event]}).status_code == 200


# -- token, pixel, path -------------------------------------------------------------------


def test_missing_token_is_104(meta: MetaStandIn) -> None:
    answer = post(meta, token=None)
    assert (answer.status_code, error_of(answer)["code"]) == (400, 104)


def test_unknown_token_is_190_with_http_401(meta: MetaStandIn) -> None:
    answer = post(meta, token="forged")
    assert (answer.status_code, error_of(answer)["code"]) == (401, 190)
    assert error_of(answer)["type"] == "OAuthException"


def test_revoked_token_is_190_subcode_460(meta: MetaStandIn) -> None:
    meta.revoke(TOKEN)
    error = error_of(post(meta))
    assert (error["code"], error["error_subcode"]) == (190, 460)


def test_pixel_the_token_may_not_use_is_100_subcode_33(meta: MetaStandIn) -> None:
    answer = post(meta, pixel="5555")
    error = error_of(answer)
    assert (answer.status_code, error["code"], error["error_subcode"]) == (400, 100, 33)
    assert "Object with ID '5555' does not exist" in error["message"]
    meta.allow(TOKEN, "5555")
    assert post(meta, pixel="5555").status_code == 200


def test_unknown_version_is_an_unknown_path(meta: MetaStandIn) -> None:
    assert error_of(post(meta, version="latest"))["code"] == 2500


def test_appsecret_proof_is_checked_when_required() -> None:
    with MetaStandIn({TOKEN: {PIXEL}}, app_secret="s3cret") as meta:
        assert "require an appsecret_proof" in error_of(post(meta))["message"]
        wrong = post(meta, params={"appsecret_proof": "0" * 64})
        assert "Invalid appsecret_proof" in error_of(wrong)["message"]
        proof = hmac.new(b"s3cret", TOKEN.encode(), hashlib.sha256).hexdigest()
        assert post(meta, params={"appsecret_proof": proof}).status_code == 200


# -- data -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[], None, "not json", {"event_name": "Purchase"}])
def test_data_must_be_a_non_empty_list(meta: MetaStandIn, data: Any) -> None:
    error = error_of(post(meta, {"data": data}))
    assert error["code"] == 100
    assert "$['data']" in error["error_user_msg"]


def test_more_than_1000_events_are_refused(meta: MetaStandIn) -> None:
    error = error_of(post(meta, {"data": [make_event(str(i)) for i in range(1001)]}))
    assert error["code"] == 100
    assert "at most 1000" in error["error_user_msg"]
    assert post(meta, {"data": [make_event(str(i)) for i in range(1000)]}).status_code == 200


def test_old_event_fails_the_whole_batch_with_metas_words(meta: MetaStandIn) -> None:
    old = make_event("old", event_time=int(time.time()) - 8 * 86400)
    error = error_of(post(meta, {"data": [make_event(), old]}))
    assert (error["code"], error["error_subcode"]) == (100, 2804003)
    assert error["error_user_title"] == "Event Timestamp Too Old"
    assert meta.accepted_events() == []


def test_event_time_window() -> None:
    now = 1_700_000_000
    check_event_time(now - 7 * 86400, 0, now)
    check_event_time(now + 300, 0, now)
    for bad in (now + 301, now * 1000, "1700000000", now - 7 * 86400 - 1):
        with pytest.raises(Exception, match="Invalid parameter"):
            check_event_time(bad, 0, now)


def _delete(*path: str) -> Mutator:
    def change(event: dict[str, Any]) -> None:
        target = event
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def _set(value: Any, *path: str) -> Mutator:
    def change(event: dict[str, Any]) -> None:
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_delete("event_name"), "['event_name'] is required"),
        (_delete("event_time"), "['event_time'] is required"),
        (_set("1700000000", "event_time"), "['event_time'] must be an integer"),
        (_delete("action_source"), "['action_source'] is required"),
        (_set("web", "action_source"), "['action_source'] must be one of"),
        (_delete("event_source_url"), "['event_source_url'] is required"),
        (_set("shop.example/x", "event_source_url"), "['event_source_url'] must begin"),
        (_set(1001, "event_id"), "['event_id'] must be a non-empty string"),
        (_delete("user_data"), "['user_data'] is required"),
        (_delete("user_data", "client_user_agent"), "['client_user_agent'] is required"),
        (_set("john@example.com", "user_data", "em"), "['em'] must be a lowercase SHA-256"),
        (_set([HASH.upper()], "user_data", "em"), "['em'] must be a lowercase SHA-256"),
        (_set([], "user_data", "ph"), "['ph'] must not be empty"),
        (_set("us", "user_data", "country"), "['country'] must be a lowercase SHA-256"),
        (_set("Cust-1", "user_data", "external_id"), "['external_id'] must be a lowercase"),
        (_set(HASH, "user_data", "client_ip_address"), "['client_ip_address'] must not be hashed"),
        (_set("not-an-ip", "user_data", "client_ip_address"), "must be an IPv4 or IPv6"),
        (_set(HASH, "user_data", "fbc"), "['fbc'] must not be hashed"),
        (_set("IwAR2xYz", "user_data", "fbc"), "['fbc'] must look like fb."),
        (_set("fb.1.15587.1098", "user_data", "fbp"), "['fbp'] must look like fb."),
        (_delete("custom_data", "value"), "['value'] is required"),
        (_delete("custom_data", "currency"), "['currency'] is required"),
        (_set("59.90", "custom_data", "value"), "['value'] must be a number"),
        (_set("dollars", "custom_data", "currency"), "['currency'] must be an ISO 4217"),
        (_set("products", "custom_data", "content_type"), "['content_type'] must be product"),
        (_set([{"quantity": 1}], "custom_data", "contents"), "['contents'][0]['id'] is required"),
        (_set(["GDPR"], "data_processing_options"), 'may only hold "LDU"'),
        (_set("0", "data_processing_options_state"), "must be an integer"),
    ],
)
def test_each_field_check_names_the_event_and_field(
    meta: MetaStandIn, change: Mutator, named: str
) -> None:
    answer = post(meta, with_event(change))
    error = error_of(answer)
    assert (answer.status_code, error["code"], error["error_subcode"]) == (400, 100, 2804019)
    assert error["error_user_msg"].startswith("The parameter $['data'][1]")
    assert named in error["error_user_msg"]
    assert meta.accepted_events() == []


def test_non_website_events_need_no_page_or_user_agent(meta: MetaStandIn) -> None:
    event = make_event(action_source="physical_store")
    del event["event_source_url"]
    del event["user_data"]["client_user_agent"]
    assert post(meta, {"data": [event]}).status_code == 200


def test_checkout_needs_no_value(meta: MetaStandIn) -> None:
    event = make_event(event_name="InitiateCheckout", custom_data={"content_type": "product"})
    assert post(meta, {"data": [event]}).status_code == 200


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [4, 17, 613])
def test_rate_limit_fault(meta: MetaStandIn, code: int) -> None:
    meta.rate_limit(1, code=code, retry_after=7)
    answer = post(meta)
    error = error_of(answer)
    assert (error["code"], error["is_transient"]) == (code, True)
    assert answer.headers["Retry-After"] == "7"
    assert post(meta).status_code == 200


def test_server_error_storm(meta: MetaStandIn) -> None:
    meta.server_errors(3, http_status=503)
    statuses = [post(meta).status_code for _ in range(4)]
    assert statuses == [503, 503, 503, 200]
    assert len(meta.accepted_events()) == 1


def test_fail_next_with_any_graph_error(meta: MetaStandIn) -> None:
    meta.fail_next(1, code=190, error_subcode=463, message="Session has expired")
    error = error_of(post(meta))
    assert (error["code"], error["error_subcode"]) == (190, 463)


def test_reset_forgets_batches_faults_and_revocations(meta: MetaStandIn) -> None:
    meta.revoke(TOKEN)
    meta.rate_limit(2)
    post(meta)
    meta.reset()
    assert meta.batches == []
    assert post(meta).status_code == 200


def test_wait_for_events_times_out_with_a_count(meta: MetaStandIn) -> None:
    post(meta)
    assert len(meta.wait_for_events(1, timeout=1)) == 1
    with pytest.raises(AssertionError, match="wanted 2 accepted events, got 1"):
        meta.wait_for_events(2, timeout=0.2)
