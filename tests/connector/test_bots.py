"""Bot detection on the shopper's user agent (connector.bots).

The verdicts asserted here are what crawlerdetect 0.4.2 really returns for these strings.
"""

from __future__ import annotations

import pytest

from connector import bots
from connector.bots import is_bot

BOT_USER_AGENTS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "googlebot smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 "
        "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ),
    "ahrefsbot": "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "headless chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.109 Safari/537.36"
    ),
    "bytespider": (
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)"
    ),
    "facebook link preview": (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
    ),
    "curl": "curl/8.4.0",
    "python-requests": "python-requests/2.31.0",
}

BROWSER_USER_AGENTS = {
    "iphone safari": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
    ),
    "chrome on windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36"
    ),
    "android chrome": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    ),
    "firefox on mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0"
    ),
    "tiktok in-app ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI "
        "Channel/App Store ByteLocale/en Region/US ByteFullLocale/en RevealType/Dialog "
        "isDarkMode/0 WKWebView/1 BytedanceWebview/d8a21c6 FalconTag/"
    ),
    "tiktok in-app android": (
        "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 "
        "trill_320404 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/trill "
        "app_version/32.4.4 ByteLocale/en ByteFullLocale/en Region/GB AppId/1180 "
        "Spark/1.4.6.3-bugfix AppVersion/32.4.4 BytedanceWebview/d8a21c6"
    ),
    "instagram in-app ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 Instagram 311.0.2.16.109 (iPhone14,5; iOS 17_1_2; "
        "en_US; en; scale=3.00; 1170x2532; 546503371)"
    ),
    "instagram in-app android": (
        "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 "
        "Instagram 309.1.0.41.113 Android (33/13; 480dpi; 1080x2340; samsung; SM-S911B; dm1q; "
        "qcom; en_US; 541635890)"
    ),
    "facebook in-app ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.38.110;FBBV/545445542;"
        "FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]"
    ),
}


@pytest.mark.parametrize("user_agent", BOT_USER_AGENTS.values(), ids=BOT_USER_AGENTS.keys())
def test_crawlers_and_http_clients_are_bots(user_agent: str) -> None:
    assert is_bot(user_agent)


@pytest.mark.parametrize("user_agent", BROWSER_USER_AGENTS.values(), ids=BROWSER_USER_AGENTS.keys())
def test_browsers_and_in_app_browsers_are_not_bots(user_agent: str) -> None:
    # TikTok ad clicks open in TikTok's in-app browser: flagging it would drop real purchases.
    assert not is_bot(user_agent)


@pytest.mark.parametrize("user_agent", [None, "", "   ", "\t\n"])
def test_missing_user_agent_is_not_a_bot(user_agent: str | None) -> None:
    assert not is_bot(user_agent)


def test_detector_is_built_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    class CountingDetector(bots.CrawlerDetect):
        def __init__(self) -> None:
            built.append(self)
            super().__init__()

    monkeypatch.setattr(bots, "CrawlerDetect", CountingDetector)
    bots._detector.cache_clear()
    try:
        is_bot(None)
        is_bot("")
        assert built == []

        is_bot(BOT_USER_AGENTS["googlebot"])
        is_bot(BROWSER_USER_AGENTS["iphone safari"])
        assert len(built) == 1
    finally:
        bots._detector.cache_clear()
