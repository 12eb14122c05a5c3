"""A shopper's browser family and device class, from the user agent, for the ledger.

The recovered-conversions ledger (:mod:`connector.recovered`) breaks purchases down by browser
and device because that is where browser pixels lose conversions: Safari's tracking limits,
in-app browsers, ad blockers on desktop. Only the family and class are kept on the event
row; the user agent itself is scrubbed after delivery (:mod:`connector.privacy`).

A few ordered patterns are enough for that breakdown; what no pattern knows is "Other".
In-app browsers come first because their user agents also name the engine (an Instagram
in-app browser on iOS says "Safari" too); Edge, Opera and Samsung Internet come before Chrome
for the same reason, and Chrome before Safari since Chrome's user agent contains "Safari".
Sources for the tokens: https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/User-Agent
and the browsers' own documentation of their strings (Edge "Edg/", Samsung Internet
"SamsungBrowser/", Chrome on iOS "CriOS/", Firefox on iOS "FxiOS/"); the in-app browsers'
tokens as they appear in their user agents (TikTok: "musical_ly" or "BytedanceWebview",
Instagram: "Instagram", Facebook: "FBAN"/"FBAV").
"""

from __future__ import annotations

import re

BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("TikTok in-app", re.compile(r"musical_ly|BytedanceWebview|TikTok", re.IGNORECASE)),
    ("Instagram in-app", re.compile(r"Instagram")),
    ("Facebook in-app", re.compile(r"FBAN|FBAV|FB_IAB")),
    ("Edge", re.compile(r"Edg(e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Chrome", re.compile(r"Chrome/|CriOS/")),
    ("Safari", re.compile(r"Safari/|AppleWebKit/.*Mobile/")),
)

TABLET = re.compile(r"iPad|Tablet|Android(?!.*Mobile)", re.IGNORECASE)
MOBILE = re.compile(r"Mobile|iPhone|iPod|Android|Windows Phone", re.IGNORECASE)


def browser_family(user_agent: str | None) -> str | None:
    """The browser family ("Chrome", "Safari", "Instagram in-app"...), "Other", or None
    without a user agent."""
    if not user_agent:
        return None
    return next((name for name, pattern in BROWSERS if pattern.search(user_agent)), "Other")


def device_class(user_agent: str | None) -> str | None:
    """ "mobile", "tablet" or "desktop", or None without a user agent."""
    if not user_agent:
        return None
    if TABLET.search(user_agent):
        return "tablet"
    return "mobile" if MOBILE.search(user_agent) else "desktop"
