"""TikTok for Business OAuth calls (connector.destinations.tiktok.oauth) against the stand-in.

Covered: the authorization URL; a consent given in the stand-in's page exchanged for a grant;
the refusals a merchant or operator must understand (wrong secret, used code, TikTok down,
app not configured), each with TikTok's code and what to do; refresh of an expiring token;
the advertiser list and the pixel list across pages.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from connector.destinations.tiktok.oauth import (
    PIXEL_LIST_PATH,
    Advertiser,
    Pixel,
    TikTokOAuthError,
    authorize_url,
    exchange_auth_code,
    list_advertisers,
    list_pixels,
    oauth_enabled,
    refresh_grant,
)
from tests.destinations.tiktok_oauth_support import (
    ADVERTISER,
    ADVERTISER_NAME,
    APP_ID,
    OAUTH_PIXEL,
    OTHER_ADVERTISER,
    consent,
    oauth_settings,
    prepare_tiktok,
    query_of,
)

REDIRECT = "https://connector.example/tiktok/callback"


@pytest.fixture
def settings(settings, tiktok):  # type: ignore[no-untyped-def]
    prepare_tiktok(tiktok, REDIRECT)
    return oauth_settings(settings, tiktok)


def granted_code(settings) -> str:  # type: ignore[no-untyped-def]
    location = consent(authorize_url(settings, redirect_uri=REDIRECT, state="s1"))
    return query_of(location)["auth_code"]


def test_authorize_url_names_the_app_the_way_back_and_the_state(settings) -> None:
    url = authorize_url(settings, redirect_uri=REDIRECT, state="a b&c")
    query = urlencode({"app_id": APP_ID, "redirect_uri": REDIRECT, "state": "a b&c"})
    assert url == f"{settings.env('TIKTOK_AUTH_URL')}?{query}"


def test_the_default_authorization_page_is_tiktoks() -> None:
    from connector.config import load_settings

    settings = load_settings({"SECRET_KEY": "k", "TIKTOK_APP_ID": "1", "TIKTOK_APP_SECRET": "2"})
    assert authorize_url(settings, redirect_uri=REDIRECT, state="s").startswith(
        "https://ads.tiktok.com/marketing_api/auth?app_id=1&"
    )
    overridden = load_settings({"SECRET_KEY": "k", "TIKTOK_AUTH_URL": "http://127.0.0.1:9/auth"})
    assert overridden.env("TIKTOK_AUTH_URL") == "http://127.0.0.1:9/auth"


def test_consent_is_exchanged_for_a_long_term_token(services, tiktok) -> None:
    location = consent(authorize_url(services.settings, redirect_uri=REDIRECT, state="s1"))
    assert location.startswith(REDIRECT + "?")
    assert query_of(location)["state"] == "s1"
    grant = exchange_auth_code(services.http, services.settings, query_of(location)["auth_code"])
    assert grant.access_token in tiktok.oauth.issued_tokens()
    assert grant.advertiser_ids == (ADVERTISER, OTHER_ADVERTISER)
    assert (grant.refresh_token, grant.expires_in, grant.refresh_token_expires_in) == (
        None,
        None,
        None,
    )


def test_wrong_secret_names_tiktoks_answer_and_the_fix(services) -> None:
    code = granted_code(services.settings)
    wrong = services.settings.with_env(TIKTOK_APP_SECRET="not-the-secret")
    with pytest.raises(TikTokOAuthError) as refused:
        exchange_auth_code(services.http, wrong, code)
    assert refused.value.code == 40001
    message = str(refused.value)
    assert "app_id or secret is invalid. (code 40001)" in message
    assert "TIKTOK_APP_SECRET" in message


def test_a_used_code_says_to_connect_again(services) -> None:
    code = granted_code(services.settings)
    exchange_auth_code(services.http, services.settings, code)
    with pytest.raises(TikTokOAuthError, match="code 40110.*Connect with TikTok again") as used:
        exchange_auth_code(services.http, services.settings, code)
    assert used.value.code == 40110


def test_tiktok_down_is_a_try_again_later(services, tiktok) -> None:
    tiktok.go_down()
    with pytest.raises(TikTokOAuthError, match="did not answer.*try again") as down:
        exchange_auth_code(services.http, services.settings, "ac_x")
    assert down.value.code is None


def test_nothing_is_called_without_an_app(services, tiktok) -> None:
    bare = services.settings.with_env(TIKTOK_APP_ID=None, TIKTOK_APP_SECRET=None)
    assert not oauth_enabled(bare) and oauth_enabled(services.settings)
    with pytest.raises(TikTokOAuthError, match="TIKTOK_APP_ID and TIKTOK_APP_SECRET"):
        exchange_auth_code(services.http, bare, "ac_x")
    with pytest.raises(TikTokOAuthError, match="not set up"):
        authorize_url(bare, redirect_uri=REDIRECT, state="s")
    assert tiktok.oauth.calls == []


def test_an_expiring_token_is_refreshed_and_the_refresh_token_rotates(services, tiktok) -> None:
    tiktok.oauth.token_lifetime = 86400
    grant = exchange_auth_code(services.http, services.settings, granted_code(services.settings))
    assert (grant.expires_in, grant.refresh_token_expires_in) == (86400, 365 * 86400)
    assert grant.refresh_token
    renewed = refresh_grant(services.http, services.settings, grant.refresh_token)
    assert renewed.access_token != grant.access_token
    assert renewed.refresh_token not in (None, grant.refresh_token)
    with pytest.raises(TikTokOAuthError, match="code 40107.*Connect with TikTok again"):
        refresh_grant(services.http, services.settings, grant.refresh_token)


def test_advertisers_and_their_pixels_across_pages(services, tiktok) -> None:
    pixels = {f"CPX{index:03d}": f"Pixel {index}" for index in range(23)}
    tiktok.oauth.add_advertiser(ADVERTISER, ADVERTISER_NAME, {OAUTH_PIXEL: "Main", **pixels})
    token = exchange_auth_code(
        services.http, services.settings, granted_code(services.settings)
    ).access_token
    advertisers = list_advertisers(services.http, services.settings, token)
    assert advertisers[0] == Advertiser(ADVERTISER, ADVERTISER_NAME)
    assert [a.advertiser_id for a in advertisers] == [ADVERTISER, OTHER_ADVERTISER]
    found = list_pixels(services.http, services.settings, token, ADVERTISER)
    assert len(found) == 24
    assert Pixel(ADVERTISER, OAUTH_PIXEL, "Main") in found
    assert [call.body["page"] for call in tiktok.oauth.calls_to(PIXEL_LIST_PATH)] == ["1", "2"]


def test_pixels_of_an_account_the_token_cannot_see_are_refused(services, tiktok) -> None:
    tiktok.oauth.grant_advertiser_ids = [OTHER_ADVERTISER]
    token = exchange_auth_code(
        services.http, services.settings, granted_code(services.settings)
    ).access_token
    with pytest.raises(TikTokOAuthError, match=f"advertiser {ADVERTISER}. \\(code 40001\\)"):
        list_pixels(services.http, services.settings, token, ADVERTISER)
