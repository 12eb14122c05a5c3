"""What the "Connect with TikTok" tests share: the app's settings and a merchant's consent.

The merchant's browser is played by ``requests`` against the TikTok stand-in's authorization
page: it clicks "Grant" (or "Deny") and stops at TikTok's redirect back to the connector.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import requests

from connector.config import Settings
from connector.standins.tiktok import TikTokStandIn

APP_ID = "7100000000000000001"
APP_SECRET = "tiktok-app-secret"
ADVERTISER = "7000000000000000001"
ADVERTISER_NAME = "Demo shop ads"
OTHER_ADVERTISER = "7000000000000000002"
OAUTH_PIXEL = "COAUTHPIXEL0001"
OTHER_PIXEL = "COAUTHPIXEL0002"


def oauth_settings(settings: Settings, standin: TikTokStandIn) -> Settings:
    """Settings with a TikTok app whose authorization page is the stand-in's."""
    return settings.with_overrides(
        destination_env={
            **settings.destination_env,
            "TIKTOK_APP_ID": APP_ID,
            "TIKTOK_APP_SECRET": APP_SECRET,
            "TIKTOK_AUTH_URL": standin.authorize_url,
        },
    )


def prepare_tiktok(standin: TikTokStandIn, redirect_uri: str) -> None:
    """Register the app (with this redirect URL) and two ad accounts with a pixel each."""
    standin.oauth.register_app(APP_ID, APP_SECRET, redirect_uri)
    standin.oauth.add_advertiser(ADVERTISER, ADVERTISER_NAME, {OAUTH_PIXEL: "Demo shop pixel"})
    standin.oauth.add_advertiser(OTHER_ADVERTISER, "Agency ads", {OTHER_PIXEL: "Agency pixel"})


def consent(authorize_url: str, *, link: str = "grant") -> str:
    """Open TikTok's authorization page, click ``link``; the URL TikTok sends the browser to."""
    page = requests.get(authorize_url, timeout=5)
    assert page.status_code == 200, page.text
    match = re.search(rf"id='{link}' href='([^']+)'", page.text)
    assert match, page.text
    parts = urlsplit(authorize_url)
    click = f"{parts.scheme}://{parts.netloc}{html.unescape(match.group(1))}"
    answer = requests.get(click, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
