"""Recognising orders placed by crawlers, so they are recorded but never sent to TikTok.

Detection is the maintained ``crawlerdetect`` package (a port of the widely used PHP
CrawlerDetect pattern list), not a list of our own: bots change faster than we would update one.
In-app browsers (TikTok, Instagram, Facebook) are ordinary WebViews to it, which matters because
TikTok ad clicks land in TikTok's in-app browser.
"""

from __future__ import annotations

from functools import cache

from crawlerdetect import CrawlerDetect


@cache
def _detector() -> CrawlerDetect:
    """One detector per process, built on first use.

    It compiles two large regular expressions and keeps an LRU cache of verdicts per user agent,
    so building it on every webhook would waste both. Only its ``is_crawler`` return value is
    used: its ``matches`` attribute is shared state and would race between threads.
    """
    return CrawlerDetect()


def is_bot(user_agent: str | None) -> bool:
    """True when the user agent belongs to a crawler, spider or automated HTTP client.

    A missing or blank user agent is not a bot: orders created on the server side (in the
    admin, by an app) often carry none, and they are real purchases.
    """
    if user_agent is None or not user_agent.strip():
        return False
    return _detector().is_crawler(user_agent)
