"""The strict Google stand-in (connector.standins.google) enforces the documented contract.

Covered: the token endpoint's refresh grant and its OAuth errors; events:ingest authentication
(401), account and conversion action permission (403, manager accounts), field checks that
name every bad event by path (400 INVALID_ARGUMENT with BadRequest), the 2,000-event limit,
validateOnly recording nothing, injected faults with Retry-After, and requestStatus:retrieve.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from connector.hashing import sha256_hex
from connector.standins.google import INGEST_PATH, STATUS_PATH, GoogleStandIn

CLIENT, SECRET = "client-1.apps.googleusercontent.com", "secret-1"
CUSTOMER, ACTION = "1234567890", "555"
MANAGER, CLIENT_CUSTOMER = "9999999999", "1111111111"


@pytest.fixture(scope="module")
def running() -> Iterator[GoogleStandIn]:
    with GoogleStandIn() as standin:
        yield standin


@pytest.fixture
def google(running: GoogleStandIn) -> GoogleStandIn:
    running.reset()
    running.register_client(CLIENT, SECRET)
    running.add_account(CUSTOMER, {ACTION})
    running.add_account(MANAGER, set())
    running.add_account(CLIENT_CUSTOMER, {"777"}, manager=MANAGER)
    return running


def token_call(google: GoogleStandIn, **form: str) -> requests.Response:
    fields = {"grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET}
    fields.update(form)
    return requests.post(google.token_url, data=fields, timeout=5)


def access_token(google: GoogleStandIn, customers: set[str] | None = None) -> str:
    refresh = google.issue_refresh_token(CLIENT, customers or {CUSTOMER})
    return token_call(google, refresh_token=refresh).json()["access_token"]


def when(seconds_ago: float = 60) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transactionId": "1001",
        "eventTimestamp": when(),
        "eventSource": "WEB",
        "conversionValue": 59.9,
        "currency": "USD",
        "userData": {
            "userIdentifiers": [
                {"emailAddress": sha256_hex("shopper@example.com")},
                {
                    "address": {
                        "givenName": sha256_hex("jane"),
                        "familyName": sha256_hex("doe"),
                        "regionCode": "US",
                        "postalCode": "94043",
                    }
                },
            ]
        },
        "adIdentifiers": {"gclid": "Cj0KCQ"},
        "eventDeviceInfo": {"ipAddress": "203.0.113.7", "userAgent": "Mozilla/5.0"},
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def body(*events: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CUSTOMER},
                "productDestinationId": ACTION,
            }
        ],
        "events": list(events) or [event()],
        "encoding": "HEX",
    }
    data.update(changes)
    return data


def ingest(google: GoogleStandIn, payload: dict[str, Any], token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(google.base_url + INGEST_PATH, json=payload, headers=headers, timeout=5)


def violations(response: requests.Response) -> list[tuple[str, str]]:
    details = response.json()["error"].get("details", [])
    found = [d for d in details if d["@type"].endswith("google.rpc.BadRequest")]
    return [(v["field"], v["reason"]) for d in found for v in d["fieldViolations"]]


# -- the token endpoint -------------------------------------------------------------------------


def test_refresh_grant_gives_an_hour_long_bearer_token(google: GoogleStandIn) -> None:
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    answer = token_call(google, refresh_token=refresh)
    assert answer.status_code == 200
    grant = answer.json()
    assert grant["expires_in"] == 3599 and grant["token_type"] == "Bearer"
    assert grant["access_token"] in google.issued_access_tokens()


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "other"}, 401, "invalid_client"),
        ({"refresh_token": "1//never-issued"}, 400, "invalid_grant"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_endpoint_errors(
    google: GoogleStandIn, form: dict[str, str], status: int, error: str
) -> None:
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    answer = token_call(google, **{"refresh_token": refresh, **form})
    assert (answer.status_code, answer.json()["error"]) == (status, error)


def test_a_revoked_refresh_token_is_an_invalid_grant_and_kills_its_tokens(
    google: GoogleStandIn,
) -> None:
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    token = token_call(google, refresh_token=refresh).json()["access_token"]
    google.revoke(refresh)
    assert token_call(google, refresh_token=refresh).json()["error"] == "invalid_grant"
    assert ingest(google, body(), token).status_code == 401


def test_token_endpoint_wants_a_form(google: GoogleStandIn) -> None:
    refresh = google.issue_refresh_token(CLIENT, {CUSTOMER})
    fields = {"grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET}
    answer = requests.post(google.token_url, json={**fields, "refresh_token": refresh}, timeout=5)
    assert answer.json()["error"] == "invalid_request"


# -- events:ingest: authentication and permission --------------------------------------------


def test_a_valid_batch_is_accepted_with_a_request_id(google: GoogleStandIn) -> None:
    answer = ingest(google, body(), access_token(google))
    assert answer.status_code == 200
    assert answer.json()["requestId"] in google.request_ids()
    assert [e["transactionId"] for e in google.accepted_events()] == ["1001"]


@pytest.mark.parametrize("token", ["", "ya29.never-issued"])
def test_unknown_token_is_unauthenticated(google: GoogleStandIn, token: str) -> None:
    answer = ingest(google, body(), token)
    assert answer.status_code == 401
    assert answer.json()["error"]["status"] == "UNAUTHENTICATED"
    assert google.accepted_events() == []


def test_expired_access_token_is_unauthenticated(google: GoogleStandIn) -> None:
    token = access_token(google)
    google.expire_access_tokens()
    assert ingest(google, body(), token).json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("customers", "destination"),
    [
        ({"2222222222"}, {}),  # the user cannot reach the customer
        ({CUSTOMER}, {"productDestinationId": "999"}),  # no such conversion action
        ({MANAGER}, {}),  # a manager that is not above this customer
    ],
)
def test_permission_denied(
    google: GoogleStandIn, customers: set[str], destination: dict[str, Any]
) -> None:
    payload = body()
    payload["destinations"][0].update(destination)
    if customers == {MANAGER}:
        payload["destinations"][0]["loginAccount"] = {
            "accountType": "GOOGLE_ADS",
            "accountId": MANAGER,
        }
    answer = ingest(google, payload, access_token(google, customers))
    assert answer.status_code == 403
    assert answer.json()["error"]["status"] == "PERMISSION_DENIED"


def test_a_manager_login_reaches_its_client(google: GoogleStandIn) -> None:
    payload = body()
    payload["destinations"] = [
        {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CLIENT_CUSTOMER},
            "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": MANAGER},
            "productDestinationId": "777",
        }
    ]
    assert ingest(google, payload, access_token(google, {MANAGER})).status_code == 200
    payload["destinations"][0].pop("loginAccount")
    assert ingest(google, payload, access_token(google, {MANAGER})).status_code == 403


def test_customer_id_with_dashes_is_invalid(google: GoogleStandIn) -> None:
    payload = body()
    payload["destinations"][0]["operatingAccount"]["accountId"] = "123-456-7890"
    answer = ingest(google, payload, access_token(google))
    assert violations(answer) == [
        ("destinations[0].operating_account.account_id", "INVALID_DESTINATION")
    ]


# -- events:ingest: the fields of each event --------------------------------------------------

ADDRESS = event()["userData"]["userIdentifiers"][1]["address"]


@pytest.mark.parametrize(
    ("changes", "path", "reason"),
    [
        ({"transactionId": None}, "events[0].transaction_id", "REQUIRED_FIELD_MISSING"),
        ({"eventTimestamp": "1700000000"}, "events[0].event_timestamp", "INVALID_FORMAT"),
        ({"eventTimestamp": when(91 * 86400)}, "events[0].event_timestamp", "EVENT_TIME_INVALID"),
        ({"eventTimestamp": when(-3600)}, "events[0].event_timestamp", "EVENT_TIME_INVALID"),
        ({"conversionValue": "59.9"}, "events[0].conversion_value", "INVALID_NUMBER_FORMAT"),
        ({"currency": "usd"}, "events[0].currency", "INVALID_CURRENCY_CODE"),
        ({"eventSource": "web"}, "events[0].event_source", "INVALID_ENUM_VALUE"),
        ({"event_time": 1}, "events[0].event_time", "INVALID_ARGUMENT"),
        (
            {"userData": {"userIdentifiers": [{"emailAddress": "shopper@example.com"}]}},
            "events[0].user_data.user_identifiers[0].email_address",
            "INVALID_SHA256_FORMAT",
        ),
        (
            {"userData": {"userIdentifiers": [{"phoneNumber": "+16505551212"}]}},
            "events[0].user_data.user_identifiers[0].phone_number",
            "INVALID_SHA256_FORMAT",
        ),
        (
            {"userData": {"userIdentifiers": [{"address": {**ADDRESS, "regionCode": "us"}}]}},
            "events[0].user_data.user_identifiers[0].address.region_code",
            "INVALID_REGION_CODE",
        ),
        (
            {
                "userData": {
                    "userIdentifiers": [{"address": {**ADDRESS, "postalCode": sha256_hex("94043")}}]
                }
            },
            "events[0].user_data.user_identifiers[0].address.postal_code",
            "INVALID_POSTAL_CODE",
        ),
        (
            {"userData": {"userIdentifiers": [{"address": {**ADDRESS, "givenName": "jane"}}]}},
            "events[0].user_data.user_identifiers[0].address.given_name",
            "INVALID_SHA256_FORMAT",
        ),
        (
            {"userData": {"userIdentifiers": [{"emailAddress": sha256_hex("a")}] * 11}},
            "events[0].user_data.user_identifiers",
            "TOO_MANY_USER_IDENTIFIERS",
        ),
        (
            {"eventDeviceInfo": {"ipAddress": "unknown"}},
            "events[0].event_device_info.ip_address",
            "INVALID_FORMAT",
        ),
        ({"userData": None, "adIdentifiers": None}, "events[0]", "NO_IDENTIFIERS_PROVIDED"),
        (
            {"consent": {"adUserData": "GRANTED"}},
            "events[0].consent.ad_user_data",
            "INVALID_ENUM_VALUE",
        ),
    ],
)
def test_a_bad_field_is_named_by_its_path(
    google: GoogleStandIn, changes: dict[str, Any], path: str, reason: str
) -> None:
    answer = ingest(google, body(event(**changes)), access_token(google))
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert violations(answer) == [(path, reason)]
    assert google.accepted_events() == []


def test_every_bad_event_is_named_and_the_whole_request_refused(google: GoogleStandIn) -> None:
    events = [
        event(transactionId="1"),
        event(transactionId="2", currency="dollars"),
        event(transactionId="3"),
        event(transactionId="4", eventTimestamp="yesterday"),
    ]
    answer = ingest(google, body(*events), access_token(google))
    assert [path for path, _ in violations(answer)] == [
        "events[1].currency",
        "events[3].event_timestamp",
    ]
    assert google.accepted_events() == []


def test_hex_case_does_not_matter(google: GoogleStandIn) -> None:
    upper = event(userData={"userIdentifiers": [{"emailAddress": sha256_hex("a").upper()}]})
    assert ingest(google, body(upper), access_token(google)).status_code == 200


def test_user_data_needs_an_encoding(google: GoogleStandIn) -> None:
    payload = body()
    del payload["encoding"]
    assert violations(ingest(google, payload, access_token(google))) == [
        ("encoding", "REQUIRED_FIELD_MISSING")
    ]


def test_at_most_2000_events(google: GoogleStandIn) -> None:
    token = access_token(google)
    assert ingest(google, body(*[event()] * 2000), token).status_code == 200
    assert violations(ingest(google, body(*[event()] * 2001), token)) == [
        ("events", "TOO_MANY_EVENTS")
    ]


def test_rejected_transaction_ids_are_named(google: GoogleStandIn) -> None:
    google.reject_transaction_ids({"2"})
    events = [event(transactionId="1"), event(transactionId="2")]
    answer = ingest(google, body(*events), access_token(google))
    assert violations(answer) == [("events[1].transaction_id", "INVALID_EVENT")]


def test_validate_only_checks_and_records_nothing(google: GoogleStandIn) -> None:
    token = access_token(google)
    answer = ingest(google, body(validateOnly=True), token)
    assert (answer.status_code, answer.json()) == (200, {})
    assert google.accepted_events() == [] and google.request_ids() == []
    bad = ingest(google, body(event(currency="usd"), validateOnly=True), token)
    assert violations(bad) == [("events[0].currency", "INVALID_CURRENCY_CODE")]


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "name"), [(503, "UNAVAILABLE"), (429, "RESOURCE_EXHAUSTED")])
def test_injected_faults(google: GoogleStandIn, status: int, name: str) -> None:
    google.fail_next(2, http_status=status, retry_after=7)
    token = access_token(google)
    for _ in range(2):
        answer = ingest(google, body(), token)
        assert (answer.status_code, answer.json()["error"]["status"]) == (status, name)
        assert answer.headers["Retry-After"] == "7"
    assert ingest(google, body(), token).status_code == 200


# -- requestStatus:retrieve --------------------------------------------------------------------


def retrieve(google: GoogleStandIn, request_id: str, token: str) -> requests.Response:
    return requests.get(
        google.base_url + STATUS_PATH,
        params={"requestId": request_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_request_status_of_an_accepted_request(google: GoogleStandIn) -> None:
    token = access_token(google)
    request_id = ingest(google, body(event(), event(transactionId="2")), token).json()["requestId"]
    entry = retrieve(google, request_id, token).json()["requestStatusPerDestination"][0]
    assert entry["requestStatus"] == "SUCCESS"
    assert entry["eventsIngestionStatus"] == {"recordCount": "2"}
    google.set_request_status(
        request_id, "PARTIAL_SUCCESS", {"PROCESSING_ERROR_REASON_INVALID_GCLID": 1}
    )
    entry = retrieve(google, request_id, token).json()["requestStatusPerDestination"][0]
    assert entry["errorInfo"]["errorCounts"] == [
        {"reason": "PROCESSING_ERROR_REASON_INVALID_GCLID", "recordCount": "1"}
    ]


def test_request_status_of_an_unknown_request(google: GoogleStandIn) -> None:
    answer = retrieve(google, "no-such-request", access_token(google))
    assert answer.status_code == 400
    assert violations(answer) == [("request_id", "INVALID_REQUEST_ID")]
    assert retrieve(google, "x", "ya29.nope").status_code == 401
