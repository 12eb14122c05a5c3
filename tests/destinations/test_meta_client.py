"""The Meta Conversions API client (connector.destinations.meta.client).

Covered: the request body (event fields, user_data on the wire, custom_data, Limited Data
Use, test event code); ``classify`` for Graph's success body and error object, code by code
(answers built as ``requests.Response`` objects by hand); real batches sent to the strict
Meta stand-in (delivered, bad token, revoked token, rate limit, 5xx, old event, a bad event
named by path, oversize batch, appsecret_proof, unreachable); ``problem``; ``advice``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import requests

from connector.crypto import TokenCipher
from connector.destinations import DestinationConfig, Outcome, SendResult
from connector.destinations.meta import DESTINATION
from connector.destinations.meta.client import (
    appsecret_proof,
    build_body,
    classify,
    event_data,
    events_url,
)
from connector.events import Content, ConversionEvent
from connector.models import StoreDestination
from connector.standins.meta import MetaStandIn

PIXEL = "123456789012345"
TOKEN = "EAAB-system-user-token"
EMAIL_HASH = hashlib.sha256(b"john_smith@gmail.com").hexdigest()
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)"


def config(base: str = "https://graph.invalid", **changes: object) -> DestinationConfig:
    fields: dict[str, object] = {
        "api_base": base,
        "account_id": PIXEL,
        "access_token": TOKEN,
        "test_event_code": None,
        "timeout": 5,
        "env": {"META_API_VERSION": "v26.0"},
    }
    fields.update(changes)
    return DestinationConfig(**fields)  # type: ignore[arg-type]


def conversion(**changes: object) -> ConversionEvent:
    fields: dict[str, object] = {
        "event_name": "Purchase",
        "event_id": "1001",
        "event_time": int(time.time()) - 60,
        "user": {
            "em": EMAIL_HASH,
            "client_ip_address": "203.0.113.7",
            "client_user_agent": UA,
            "fbc": "fb.1.1700000000000.IwAR2xYz",
        },
        "value": 59.9,
        "currency": "USD",
        "contents": (
            Content(content_id="42", name="Black tee", price=24.95, quantity=2),
            Content(content_id="43", name="Cap", price=10.0, quantity=1),
        ),
        "order_id": "1001",
        "page_url": "https://shop.example/checkouts/1/thank_you",
    }
    fields.update(changes)
    return ConversionEvent(**fields)  # type: ignore[arg-type]


def response(
    status: int, body: object = None, *, raw: bytes | None = None, headers: dict | None = None
) -> requests.Response:
    """A ``requests.Response`` as if Graph (or something in front of it) had answered."""
    answer = requests.Response()
    answer.status_code = status
    answer._content = raw if raw is not None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    return answer


def graph_error(code: int, status: int = 400, **error: object) -> requests.Response:
    body = {"error": {"message": "msg", "type": "OAuthException", "code": code, **error}}
    body["error"].setdefault("fbtrace_id", "AaHYqjNBCshoHed-uN2beUP")
    return response(status, body)


# -- the request ---------------------------------------------------------------------------


def test_url_is_base_version_pixel_events() -> None:
    assert events_url(config()) == f"https://graph.invalid/v26.0/{PIXEL}/events"
    assert events_url(config(env={})) == f"https://graph.invalid/v26.0/{PIXEL}/events"
    assert "/v25.0/" in events_url(config(env={"META_API_VERSION": "v25.0"}))


def test_event_data_shape() -> None:
    event = conversion(event_time=1_700_000_000, referrer="https://shop.example/cart")
    assert event_data(event) == {
        "event_name": "Purchase",
        "event_time": 1_700_000_000,
        "event_id": "1001",
        "action_source": "website",
        "event_source_url": "https://shop.example/checkouts/1/thank_you",
        "referrer_url": "https://shop.example/cart",
        "user_data": {
            "em": [EMAIL_HASH],
            "client_ip_address": "203.0.113.7",
            "client_user_agent": UA,
            "fbc": "fb.1.1700000000000.IwAR2xYz",
        },
        "custom_data": {
            "value": 59.9,
            "currency": "USD",
            "content_type": "product",
            "contents": [
                {"id": "42", "quantity": 2, "item_price": 24.95},
                {"id": "43", "quantity": 1, "item_price": 10.0},
            ],
            "num_items": 3,
            "order_id": "1001",
        },
        "data_processing_options": [],
    }


def test_limited_data_use_asks_meta_to_geolocate() -> None:
    data = event_data(conversion(limited_data_use=True))
    assert data["data_processing_options"] == ["LDU"]
    assert data["data_processing_options_country"] == 0
    assert data["data_processing_options_state"] == 0


def test_missing_page_and_empty_fields_are_left_out() -> None:
    event = conversion(
        page_url=None, contents=(), order_id=None, user={"em": EMAIL_HASH, "ph": "", "fbp": None}
    )
    data = event_data(event)
    assert "event_source_url" not in data
    assert data["user_data"] == {"em": [EMAIL_HASH]}
    assert data["custom_data"] == {"value": 59.9, "currency": "USD", "content_type": "product"}


def test_checkout_event_id_is_the_token_as_a_string() -> None:
    data = event_data(conversion(event_name="InitiateCheckout", event_id="c1a2b3", order_id=None))
    assert (data["event_name"], data["event_id"]) == ("InitiateCheckout", "c1a2b3")
    assert "order_id" not in data["custom_data"]


def test_body_carries_the_test_event_code_only_when_set() -> None:
    assert build_body(config(test_event_code="TEST123"), [])["test_event_code"] == "TEST123"
    assert build_body(config(), [conversion()]).keys() == {"data"}


def test_appsecret_proof_is_hmac_sha256_of_the_token() -> None:
    expected = hmac.new(b"secret", TOKEN.encode(), hashlib.sha256).hexdigest()
    assert appsecret_proof("secret", TOKEN) == expected


# -- classify ------------------------------------------------------------------------------


def test_events_received_is_delivered_with_the_trace_id() -> None:
    answer = {"events_received": 2, "messages": [], "fbtrace_id": "ATHEd8F7ddsITPV0fE5TWjY"}
    result = classify(response(200, answer))
    assert result.outcome is Outcome.DELIVERED
    assert result.request_id == "ATHEd8F7ddsITPV0fE5TWjY"
    assert result.message == "2 events received"


@pytest.mark.parametrize(
    ("code", "extra", "outcome"),
    [
        (1, {}, Outcome.RETRY),
        (2, {}, Outcome.RETRY),
        (4, {}, Outcome.RETRY),
        (17, {}, Outcome.RETRY),
        (32, {}, Outcome.RETRY),
        (341, {}, Outcome.RETRY),
        (613, {}, Outcome.RETRY),
        (80004, {}, Outcome.RETRY),
        (100, {"is_transient": True}, Outcome.RETRY),
        (190, {}, Outcome.PAUSE),
        (190, {"error_subcode": 460}, Outcome.PAUSE),
        (102, {}, Outcome.PAUSE),
        (104, {}, Outcome.PAUSE),
        (10, {}, Outcome.PAUSE),
        (200, {}, Outcome.PAUSE),
        (294, {}, Outcome.PAUSE),
        (100, {"error_subcode": 33}, Outcome.PAUSE),
        (2500, {}, Outcome.PAUSE),
        (100, {"error_subcode": 2804003}, Outcome.REJECTED),
        (100, {}, Outcome.REJECTED),
        (999999, {}, Outcome.REJECTED),
    ],
)
def test_graph_codes(code: int, extra: dict, outcome: Outcome) -> None:
    result = classify(graph_error(code, **extra))
    assert (result.outcome, result.code) == (outcome, code)
    assert result.request_id == "AaHYqjNBCshoHed-uN2beUP"


def test_pause_tells_the_merchant_how_to_get_a_new_token() -> None:
    result = classify(graph_error(190, status=401))
    assert result.fix is not None and "Generate a new access token" in result.fix
    assert "Events Manager" in result.fix


def test_permission_and_pixel_pauses_say_what_to_check() -> None:
    assert "dataset" in (classify(graph_error(10)).fix or "")
    assert "Pixel (dataset) ID" in (classify(graph_error(100, error_subcode=33)).fix or "")


def test_5xx_and_429_retry_whatever_the_code() -> None:
    assert classify(graph_error(100, status=500)).outcome is Outcome.RETRY
    assert classify(graph_error(100, status=429)).outcome is Outcome.RETRY
    assert classify(response(502, raw=b"<html>bad gateway</html>")).outcome is Outcome.RETRY


def test_retry_after_is_honoured() -> None:
    answer = graph_error(17, is_transient=True)
    answer.headers["Retry-After"] = "30"
    assert classify(answer).retry_after == 30.0


def test_rejection_keeps_subcode_and_metas_words() -> None:
    result = classify(
        graph_error(
            100,
            message="Invalid parameter",
            error_subcode=2804003,
            error_user_title="Event Timestamp Too Old",
            error_user_msg="The timestamp for this event is too far in the past.",
        )
    )
    assert result.outcome is Outcome.REJECTED
    assert "100/2804003" in result.message
    assert "too far in the past" in result.message
    assert result.refused == {}  # names no event: the delivery loop bisects


def test_rejection_names_the_events_meta_names_by_path() -> None:
    message = "The parameter $['data'][3]['event_time'] is required."
    result = classify(graph_error(100, error_subcode=2804019, error_user_msg=message))
    assert result.refused == {3: message}


def test_answers_without_graph_json() -> None:
    assert classify(response(401, raw=b"")).outcome is Outcome.PAUSE
    assert classify(response(404, raw=b"not found")).outcome is Outcome.PAUSE
    assert classify(response(400, raw=b"oops")).outcome is Outcome.REJECTED
    assert classify(response(200, {"unexpected": True})).outcome is Outcome.RETRY


# -- problem and advice -----------------------------------------------------------------------


def test_problem_refuses_events_older_than_7_days_or_in_the_future() -> None:
    now = 1_700_000_000
    assert DESTINATION.problem(conversion(event_time=now - 7 * 86400), now) is None
    assert "7 days" in (DESTINATION.problem(conversion(event_time=now - 7 * 86400 - 1), now) or "")
    assert DESTINATION.problem(conversion(event_time=now + 60), now) is None
    assert "future" in (DESTINATION.problem(conversion(event_time=now + 3600), now) or "")


def test_advice_knows_token_rate_and_parameter_codes() -> None:
    assert "token" in DESTINATION.advice(190).meaning
    assert "slowly" in DESTINATION.advice(17).meaning
    assert "slowly" in DESTINATION.advice(80004).meaning
    assert "field" in DESTINATION.advice(100).meaning
    assert "could not be reached" in DESTINATION.advice(None).meaning
    assert "does not know" in DESTINATION.advice(424242).meaning


# -- against the strict stand-in -------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[MetaStandIn]:
    with MetaStandIn({TOKEN: {PIXEL}}) as stand_in:
        yield stand_in


@pytest.fixture
def meta(server: MetaStandIn) -> MetaStandIn:
    server.reset()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_batch_is_delivered_as_sent(meta: MetaStandIn, http: requests.Session) -> None:
    cfg = config(meta.base_url, test_event_code="TEST123")
    result = DESTINATION.send(http, cfg, [conversion(), conversion(event_id="1002")])
    assert result.outcome is Outcome.DELIVERED, result.message
    assert result.request_id
    batch = meta.batches[-1]
    assert batch.body["test_event_code"] == "TEST123"
    assert batch.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "access_token" not in batch.query
    assert [event["event_id"] for event in meta.accepted_events()] == ["1001", "1002"]


def test_checkout_without_custom_money_fields_still_passes(
    meta: MetaStandIn, http: requests.Session
) -> None:
    event = conversion(event_name="InitiateCheckout", event_id="tok1", order_id=None, contents=())
    assert DESTINATION.send(http, config(meta.base_url), [event]).outcome is Outcome.DELIVERED


def test_limited_data_use_is_accepted(meta: MetaStandIn, http: requests.Session) -> None:
    result = DESTINATION.send(http, config(meta.base_url), [conversion(limited_data_use=True)])
    assert result.outcome is Outcome.DELIVERED, result.message


def test_unknown_token_pauses(meta: MetaStandIn, http: requests.Session) -> None:
    result = DESTINATION.send(http, config(meta.base_url, access_token="nope"), [conversion()])
    assert (result.outcome, result.code, result.http_status) == (Outcome.PAUSE, 190, 401)
    assert meta.accepted_events() == []


def test_revoked_token_pauses(meta: MetaStandIn, http: requests.Session) -> None:
    meta.revoke(TOKEN)
    result = DESTINATION.send(http, config(meta.base_url), [conversion()])
    assert (result.outcome, result.code) == (Outcome.PAUSE, 190)
    assert "460" in result.message


def test_pixel_the_token_may_not_use_pauses(meta: MetaStandIn, http: requests.Session) -> None:
    result = DESTINATION.send(http, config(meta.base_url, account_id="999999"), [conversion()])
    assert (result.outcome, result.code) == (Outcome.PAUSE, 100)
    assert "999999" in result.message


def test_rate_limit_retries_after_metas_delay(meta: MetaStandIn, http: requests.Session) -> None:
    meta.rate_limit(1, code=17, retry_after=12)
    first = DESTINATION.send(http, config(meta.base_url), [conversion()])
    assert (first.outcome, first.code, first.retry_after) == (Outcome.RETRY, 17, 12.0)
    assert DESTINATION.send(http, config(meta.base_url), [conversion()]).outcome is (
        Outcome.DELIVERED
    )


def test_server_errors_retry(meta: MetaStandIn, http: requests.Session) -> None:
    meta.server_errors(2)
    for _ in range(2):
        result = DESTINATION.send(http, config(meta.base_url), [conversion()])
        assert (result.outcome, result.http_status) == (Outcome.RETRY, 500)


def test_old_event_rejects_the_batch_without_naming_it(
    meta: MetaStandIn, http: requests.Session
) -> None:
    old = conversion(event_id="old", event_time=int(time.time()) - 8 * 86400)
    result = DESTINATION.send(http, config(meta.base_url), [conversion(), old])
    assert (result.outcome, result.code) == (Outcome.REJECTED, 100)
    assert "2804003" in result.message
    assert result.refused == {}
    assert meta.accepted_events() == []


def test_a_bad_event_is_named_by_its_position(meta: MetaStandIn, http: requests.Session) -> None:
    unhashed = conversion(event_id="bad", user={"em": "john@example.com", "client_user_agent": UA})
    result = DESTINATION.send(http, config(meta.base_url), [conversion(), unhashed])
    assert result.outcome is Outcome.REJECTED
    assert list(result.refused) == [1]
    assert "['user_data']['em']" in result.refused[1]


def test_event_without_a_page_is_refused_as_metas_docs_require(
    meta: MetaStandIn, http: requests.Session
) -> None:
    result = DESTINATION.send(http, config(meta.base_url), [conversion(page_url=None)])
    assert result.outcome is Outcome.REJECTED
    assert "event_source_url" in result.refused[0]


def test_oversize_batch_is_rejected(meta: MetaStandIn, http: requests.Session) -> None:
    events = [conversion(event_id=str(i)) for i in range(1001)]
    result = DESTINATION.send(http, config(meta.base_url), events)
    assert (result.outcome, result.code) == (Outcome.REJECTED, 100)
    assert "at most 1000" in result.message


def test_appsecret_proof_is_sent_when_the_app_secret_is_set(http: requests.Session) -> None:
    with MetaStandIn({TOKEN: {PIXEL}}, app_secret="s3cret") as meta:
        without = DESTINATION.send(http, config(meta.base_url), [conversion()])
        assert (without.outcome, without.code) == (Outcome.PAUSE, 100)
        assert "META_APP_SECRET" in (without.fix or "")
        env = {"META_API_VERSION": "v26.0", "META_APP_SECRET": "s3cret"}
        result = DESTINATION.send(http, config(meta.base_url, env=env), [conversion()])
        assert result.outcome is Outcome.DELIVERED, result.message
        assert meta.batches[-1].query["appsecret_proof"] == appsecret_proof("s3cret", TOKEN)


def test_unreachable_meta_is_retried(http: requests.Session) -> None:
    stand_in = MetaStandIn().start()
    base = stand_in.base_url
    stand_in.stop()
    result = DESTINATION.send(http, config(base), [conversion()])
    assert result.outcome is Outcome.RETRY
    assert result.message.startswith("cannot reach Meta")
    assert TOKEN not in result.message


# -- tokens ----------------------------------------------------------------------------------


def test_access_token_is_the_decrypted_pasted_token_and_after_send_keeps_the_answer() -> None:
    cipher = TokenCipher(None, "a-long-enough-test-secret-key-for-fernet-derivation")
    services = SimpleNamespace(cipher=cipher)
    row = StoreDestination(account_id=PIXEL, access_token_encrypted=cipher.encrypt(TOKEN))
    assert DESTINATION.access_token(services, row) == TOKEN  # type: ignore[arg-type]
    assert DESTINATION.access_token(services, StoreDestination(account_id=PIXEL)) == ""  # type: ignore[arg-type]
    paused = SendResult(Outcome.PAUSE, "expired", 400, 190)

    def resend(_config: DestinationConfig) -> SendResult:
        raise AssertionError("Meta tokens are never renewed and resent")

    assert DESTINATION.after_send(services, row, config(), paused, resend) is paused  # type: ignore[arg-type]
