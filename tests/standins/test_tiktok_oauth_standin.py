"""Tests for the OAuth side of the TikTok stand-in, over real HTTP.

Why they exist: the "Connect with TikTok" tests trust the stand-in to refuse what TikTok
refuses (a foreign redirect URL, a wrong secret, a used auth code, a rotated refresh token, a
token without access to an advertiser) and to issue tokens /event/track/ accepts for that
advertiser's pixels only. Each refusal is asserted with its exact code and message.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connector.standins.tiktok import (
    ADVERTISERS_PATH,
    PIXEL_LIST_PATH,
    REFRESH_PATH,
    TOKEN_PATH,
    TRACK_PATH,
    TikTokStandIn,
)

from .test_tiktok_standin import make_body, make_event

APP_ID = "7100000000000000001"
SECRET = "app-secret"
REDIRECT = "https://connector.example/tiktok/callback"
ADVERTISER = "7000000000000000001"
OTHER_ADVERTISER = "7000000000000000002"
PIXEL = "CPIXEL123"  # make_body() sends to this pixel
OTHER_PIXEL = "COTHERPIXEL"


@pytest.fixture(scope="module")
def server() -> Iterator[TikTokStandIn]:
    stand_in = TikTokStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def standin(server: TikTokStandIn) -> TikTokStandIn:
    server.reset()
    server.oauth.register_app(APP_ID, SECRET, REDIRECT)
    server.oauth.add_advertiser(ADVERTISER, "Demo shop ads", {PIXEL: "Demo shop pixel"})
    server.oauth.add_advertiser(OTHER_ADVERTISER, "Other ads", {OTHER_PIXEL: "Other pixel"})
    return server


def authorize(
    standin: TikTokStandIn, *, link: str = "grant", **overrides: str
) -> requests.Response:
    """Open the authorization page, click a link, and return TikTok's redirect (not followed)."""
    params = {"app_id": APP_ID, "redirect_uri": REDIRECT, "state": "st-1", **overrides}
    page = requests.get(standin.authorize_url, params=params, timeout=5)
    assert page.status_code == 200, page.text
    match = re.search(rf"id='{link}' href='([^']+)'", page.text)
    assert match, page.text
    return requests.get(
        standin.base_url + html.unescape(match.group(1)), allow_redirects=False, timeout=5
    )


def redirect_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def auth_code(standin: TikTokStandIn) -> str:
    return redirect_query(authorize(standin))["auth_code"]


def api_post(standin: TikTokStandIn, path: str, body: dict) -> dict:
    response = requests.post(standin.base_url + path, json=body, timeout=5)
    assert response.status_code == 200
    return response.json()


def api_get(standin: TikTokStandIn, path: str, params: dict, token: str | None) -> dict:
    headers = {"Access-Token": token} if token else {}
    response = requests.get(standin.base_url + path, params=params, headers=headers, timeout=5)
    assert response.status_code == 200
    return response.json()


def exchange(standin: TikTokStandIn, code: str, secret: str = SECRET) -> dict:
    return api_post(standin, TOKEN_PATH, {"app_id": APP_ID, "secret": secret, "auth_code": code})


def token_for(standin: TikTokStandIn) -> str:
    return exchange(standin, auth_code(standin))["data"]["access_token"]


def assert_refused(answer: dict, code: int, message: str) -> None:
    assert (answer["code"], answer["message"]) == (code, message), answer
    assert answer["request_id"]


# -- the authorization page --------------------------------------------------------------------


def test_grant_sends_the_browser_back_with_a_code_and_the_state(standin: TikTokStandIn) -> None:
    query = redirect_query(authorize(standin))
    assert query["state"] == "st-1"
    assert query["auth_code"] == query["code"]
    assert query["auth_code"].startswith("ac_")


def test_deny_link_sends_the_browser_back_without_a_code(standin: TikTokStandIn) -> None:
    assert redirect_query(authorize(standin, link="deny")) == {"state": "st-1"}


def test_told_to_deny_the_grant_link_grants_nothing(standin: TikTokStandIn) -> None:
    standin.oauth.deny = True
    assert redirect_query(authorize(standin)) == {"state": "st-1"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"app_id": "999"}, "app_id '999' is not a registered app."),
        (
            {"redirect_uri": "https://evil.example/cb"},
            "redirect_uri 'https://evil.example/cb' does not match the app's advertiser "
            "redirect URL.",
        ),
    ],
    ids=["unknown_app", "foreign_redirect"],
)
def test_authorization_page_refuses(
    standin: TikTokStandIn, params: dict[str, str], message: str
) -> None:
    query = {"app_id": APP_ID, "redirect_uri": REDIRECT, "state": "s", **params}
    for path in ("", "/confirm"):
        page = requests.get(standin.authorize_url + path, params=query, timeout=5)
        assert page.status_code == 400
        assert message in html.unescape(page.text)


# -- token exchange ----------------------------------------------------------------------------


def test_exchange_answers_a_long_term_token_for_the_granted_advertisers(
    standin: TikTokStandIn,
) -> None:
    answer = exchange(standin, auth_code(standin))
    assert (answer["code"], answer["message"]) == (0, "OK")
    data = answer["data"]
    assert data["advertiser_ids"] == [ADVERTISER, OTHER_ADVERTISER]
    assert isinstance(data["scope"], list)
    assert data["access_token"] in standin.oauth.issued_tokens()
    assert "refresh_token" not in data and "expires_in" not in data


def test_auth_codes_are_single_use(standin: TikTokStandIn) -> None:
    code = auth_code(standin)
    assert exchange(standin, code)["code"] == 0
    assert_refused(exchange(standin, code), 40110, "Auth code is invalid, used or expired.")


def test_auth_codes_expire(standin: TikTokStandIn) -> None:
    standin.oauth.auth_code_seconds = 0
    code = auth_code(standin)
    time.sleep(0.01)
    assert_refused(exchange(standin, code), 40110, "Auth code is invalid, used or expired.")


def test_wrong_secret_is_refused_and_the_code_survives(standin: TikTokStandIn) -> None:
    code = auth_code(standin)
    assert_refused(exchange(standin, code, secret="nope"), 40001, "app_id or secret is invalid.")
    assert exchange(standin, code)["code"] == 0
    assert standin.oauth.calls_to(TOKEN_PATH)[0].body["secret"] == "<set>"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"app_id": APP_ID, "secret": SECRET}, "auth_code: Missing data for required field."),
        ({"secret": SECRET, "auth_code": "x"}, "app_id: Missing data for required field."),
        ({"app_id": APP_ID, "secret": SECRET, "auth_code": 5}, "auth_code: Not a valid string."),
    ],
    ids=["no_code", "no_app", "code_number"],
)
def test_exchange_checks_its_fields(standin: TikTokStandIn, body: dict, message: str) -> None:
    assert_refused(api_post(standin, TOKEN_PATH, body), 40002, message)


def test_exchange_wants_json(standin: TikTokStandIn) -> None:
    response = requests.post(
        standin.base_url + TOKEN_PATH, data={"app_id": APP_ID, "secret": SECRET}, timeout=5
    )
    assert_refused(response.json(), 40002, "Content-Type: Must be application/json.")


def test_only_the_advertisers_the_merchant_picked_are_granted(standin: TikTokStandIn) -> None:
    standin.oauth.grant_advertiser_ids = [OTHER_ADVERTISER]
    assert exchange(standin, auth_code(standin))["data"]["advertiser_ids"] == [OTHER_ADVERTISER]


# -- expiring tokens and refresh ---------------------------------------------------------------


def refresh(standin: TikTokStandIn, refresh_token: str, **extra: str) -> dict:
    body = {"app_id": APP_ID, "secret": SECRET, "refresh_token": refresh_token, **extra}
    return api_post(standin, REFRESH_PATH, body)


def test_expiring_tokens_come_with_a_rotating_refresh_token(standin: TikTokStandIn) -> None:
    standin.oauth.token_lifetime = 86400
    data = exchange(standin, auth_code(standin))["data"]
    assert data["expires_in"] == 86400
    assert data["refresh_token_expires_in"] == 365 * 86400
    renewed = refresh(standin, data["refresh_token"], grant_type="refresh_token")
    assert renewed["code"] == 0
    assert renewed["data"]["access_token"] != data["access_token"]
    assert renewed["data"]["refresh_token"] != data["refresh_token"]
    assert_refused(refresh(standin, data["refresh_token"]), 40107, "Refresh token is invalid.")
    assert refresh(standin, renewed["data"]["refresh_token"])["code"] == 0


def test_refresh_refusals(standin: TikTokStandIn) -> None:
    standin.oauth.token_lifetime = 60
    standin.oauth.refresh_token_lifetime = 0
    data = exchange(standin, auth_code(standin))["data"]
    assert_refused(
        refresh(standin, data["refresh_token"], grant_type="password"),
        40108,
        "grant_type must be refresh_token.",
    )
    assert_refused(refresh(standin, data["refresh_token"]), 40103, "Refresh token has expired.")
    wrong = api_post(standin, REFRESH_PATH, {"app_id": APP_ID, "secret": "x", "refresh_token": "r"})
    assert_refused(wrong, 40001, "app_id or secret is invalid.")


# -- advertisers and pixels --------------------------------------------------------------------


def test_advertiser_get_lists_the_granted_accounts(standin: TikTokStandIn) -> None:
    token = token_for(standin)
    answer = api_get(standin, ADVERTISERS_PATH, {"app_id": APP_ID, "secret": SECRET}, token)
    assert answer["data"]["list"] == [
        {"advertiser_id": ADVERTISER, "advertiser_name": "Demo shop ads"},
        {"advertiser_id": OTHER_ADVERTISER, "advertiser_name": "Other ads"},
    ]
    wrong = api_get(standin, ADVERTISERS_PATH, {"app_id": APP_ID, "secret": "x"}, token)
    assert_refused(wrong, 40001, "app_id or secret is invalid.")


def test_pixel_list_pages(standin: TikTokStandIn) -> None:
    pixels = {f"C{index:03d}": f"Pixel {index}" for index in range(25)}
    standin.oauth.add_advertiser(ADVERTISER, "Demo shop ads", pixels)
    token = token_for(standin)
    seen = []
    for page in (1, 2):
        params = {"advertiser_id": ADVERTISER, "page": page, "page_size": 20}
        data = api_get(standin, PIXEL_LIST_PATH, params, token)["data"]
        assert data["page_info"] == {
            "page": page,
            "page_size": 20,
            "total_number": 25,
            "total_page": 2,
        }
        seen += [(p["pixel_code"], p["pixel_name"]) for p in data["pixels"]]
    assert seen == sorted(pixels.items())


@pytest.mark.parametrize(
    ("params", "token", "code", "message"),
    [
        ({"advertiser_id": ADVERTISER}, None, 40104, "Access token is empty."),
        (
            {"advertiser_id": ADVERTISER},
            "made-up",
            40105,
            "Access token is incorrect or has been revoked.",
        ),
        ({}, "good", 40002, "advertiser_id: Missing data for required field."),
        (
            {"advertiser_id": ADVERTISER, "page_size": "21"},
            "good",
            40002,
            "page_size: Must be between 1 and 20.",
        ),
        (
            {"advertiser_id": "7999"},
            "good",
            40001,
            "No permission to operate advertiser 7999.",
        ),
    ],
    ids=["no_token", "bad_token", "no_advertiser", "page_too_big", "foreign_advertiser"],
)
def test_pixel_list_refusals(
    standin: TikTokStandIn, params: dict, token: str | None, code: int, message: str
) -> None:
    good = token_for(standin)
    answer = api_get(standin, PIXEL_LIST_PATH, params, good if token == "good" else token)
    assert_refused(answer, code, message)


def test_pixel_list_refuses_an_advertiser_the_merchant_did_not_grant(
    standin: TikTokStandIn,
) -> None:
    standin.oauth.grant_advertiser_ids = [ADVERTISER]
    token = token_for(standin)
    answer = api_get(standin, PIXEL_LIST_PATH, {"advertiser_id": OTHER_ADVERTISER}, token)
    assert_refused(answer, 40001, f"No permission to operate advertiser {OTHER_ADVERTISER}.")


def test_expired_token_is_refused_everywhere(standin: TikTokStandIn) -> None:
    token = token_for(standin)
    standin.oauth.expire_token(token)
    answer = api_get(standin, PIXEL_LIST_PATH, {"advertiser_id": ADVERTISER}, token)
    assert_refused(answer, 40102, "Access token has expired.")
    assert_refused(track(standin, token, PIXEL), 40102, "Access token has expired.")


# -- OAuth tokens on /event/track/ -------------------------------------------------------------


def track(standin: TikTokStandIn, token: str, pixel: str) -> dict:
    body = make_body(make_event())
    body["event_source_id"] = pixel
    headers = {"Access-Token": token}
    return requests.post(
        standin.base_url + TRACK_PATH, json=body, headers=headers, timeout=5
    ).json()


def test_track_accepts_an_oauth_token_for_its_advertisers_pixels_only(
    standin: TikTokStandIn,
) -> None:
    standin.oauth.grant_advertiser_ids = [ADVERTISER]
    token = token_for(standin)
    assert track(standin, token, PIXEL)["code"] == 0
    assert_refused(
        track(standin, token, OTHER_PIXEL),
        40001,
        f"No permission to operate pixel code: {OTHER_PIXEL}. "
        "You must be an admin or operator of this advertiser account.",
    )
    assert len(standin.accepted_events()) == 1


def test_reset_forgets_apps_and_tokens(standin: TikTokStandIn) -> None:
    token = token_for(standin)
    standin.reset()
    assert_refused(
        track(standin, token, PIXEL), 40105, "Access token is incorrect or has been revoked."
    )
    page = requests.get(
        standin.authorize_url, params={"app_id": APP_ID, "redirect_uri": REDIRECT}, timeout=5
    )
    assert page.status_code == 400
