"""Recognising orders placed by crawlers, so they are recorded but never sent to TikTok.

Detection is the maintained ``crawlerdetect`` package (a port of the widely used PHP
CrawlerDetect pattern list), not a list of our own: bots change faster than we would update one.
In-app browsers (TikTok, Instagram, Facebook) are ordinary WebViews to it, which matters because
TikTok ad clicks land in TikTok's in-app browser.

crawlerdetect answers with one regular expression of some 1,500 alternatives, which Python's
engine tries one by one at every position of the user agent: 0.7 ms for an iPhone Safari
agent and 3 ms for a TikTok in-app agent, whose device and app details differ from shopper to
shopper, so its per-agent cache rarely helps. That was more than the rest of a webhook
together (bench/profile_webhook.py). :class:`IndexedDetector` gives the very same verdicts from
the very same patterns by first looking up which patterns can match at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache, lru_cache

from crawlerdetect import CrawlerDetect
from crawlerdetect.providers import crawlers, exclusions

VERDICT_CACHE_SIZE = 4096
"""User agents whose verdict each process remembers (popular browsers repeat exactly)."""

_KEY_LENGTH = 3
_METACHARACTERS = frozenset(".^$*+?{}[]()|\\")
_OPTIONAL_AFTER = frozenset("?*{")
# A character class that may match nothing, at the start of a branch: ``[a-z0-9\-_]*``.
_OPTIONAL_CLASS_START = re.compile(r"\[(?:\\.|[^\]\\])+\]\*\??")


class IndexedDetector:
    """crawlerdetect's verdict for a user agent, without trying every pattern everywhere.

    crawlerdetect joins its patterns into one alternation, so an agent is a crawler when any
    branch of any pattern matches anywhere. A branch that starts with literal text can only
    match where that text appears, so the branches are indexed by the first three letters of
    their literal start (lowercased: they match regardless of case) and only those whose text
    occurs in the agent are searched; the few without such a start are always searched. A
    leading ``[...]*`` is dropped from a branch first: it may match nothing, so the branch
    matches somewhere exactly when the rest does, and searching it cost more than all others.
    Agents with non-ASCII characters go to crawlerdetect itself, because case-insensitive
    matching folds a few non-ASCII letters (the Kelvin sign, the long s) that ``lower()`` keeps.
    """

    def __init__(self, reference: CrawlerDetect) -> None:
        self._reference = reference
        # The same removal of browser tokens as crawlerdetect's own first step.
        self._exclusions = re.compile(f"({'|'.join(exclusions.data)})", re.IGNORECASE)
        self._indexed: dict[str, list[tuple[str, re.Pattern[str]]]] = defaultdict(list)
        always = []
        for pattern in crawlers.data:
            for branch in map(_without_optional_start, top_level_branches(pattern)):
                literal = literal_start(branch).lower()
                if len(literal) >= _KEY_LENGTH:
                    compiled = re.compile(branch, re.IGNORECASE)
                    self._indexed[literal[:_KEY_LENGTH]].append((literal, compiled))
                else:
                    always.append(branch)
        self._always = re.compile(f"({'|'.join(always)})", re.IGNORECASE) if always else None
        self.is_crawler = lru_cache(maxsize=VERDICT_CACHE_SIZE)(self._is_crawler)

    def _is_crawler(self, user_agent: str) -> bool:
        """True when one of crawlerdetect's patterns matches what its exclusions leave of the
        trimmed agent (crawlerdetect trims it too)."""
        if not user_agent.isascii():
            return self._reference.is_crawler(user_agent)
        agent = self._exclusions.sub("", user_agent.strip())
        if not agent:
            return False
        if self._always is not None and self._always.search(agent):
            return True
        lowered = agent.lower()
        for start in range(len(lowered) - _KEY_LENGTH + 1):
            for literal, pattern in self._indexed.get(lowered[start : start + _KEY_LENGTH], ()):
                if lowered.startswith(literal, start) and pattern.search(agent):
                    return True
        return False


def top_level_branches(pattern: str) -> list[str]:
    """``pattern`` split at the ``|`` outside groups and character classes."""
    branches, start, depth, index, in_class = [], 0, 0, 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" first in a class (after an optional "^") is a character, not the end.
            index += pattern.startswith("^", index + 1)
            index += pattern.startswith("]", index + 1)
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            branches.append(pattern[start:index])
            start = index + 1
        index += 1
    return [*branches, pattern[start:]]


def literal_start(branch: str) -> str:
    """The text every match of ``branch`` (one without a top-level ``|``) begins with,
    after a ``^``; "" when unsure.

    Stops at the first metacharacter and drops a character a quantifier makes optional.
    """
    text: list[str] = []
    index = 1 if branch.startswith("^") else 0
    while index < len(branch):
        char, step = branch[index], 1
        if char == "\\":
            escaped = branch[index + 1 : index + 2]
            if not escaped or escaped.isalnum():  # \d, \s, \b...: a class, not a character
                break
            char, step = escaped, 2
        elif char in _METACHARACTERS:
            break
        if branch[index + step : index + step + 1] in _OPTIONAL_AFTER:
            break
        text.append(char)
        index += step
    return "".join(text)


def _without_optional_start(branch: str) -> str:
    """The branch without a leading character class that may match nothing."""
    optional = _OPTIONAL_CLASS_START.match(branch)
    return branch[optional.end() :] if optional and optional.end() < len(branch) else branch


@cache
def _detector() -> IndexedDetector:
    """One detector per process, built on first use.

    Building it compiles the patterns, so it is done once. Besides its cache of verdicts it
    keeps no state per call (unlike crawlerdetect's ``matches`` attribute), so threads may
    share it.
    """
    return IndexedDetector(CrawlerDetect())


def is_bot(user_agent: str | None) -> bool:
    """True when the user agent belongs to a crawler, spider or automated HTTP client.

    A missing or blank user agent is not a bot: orders created on the server side (in the
    admin, by an app) often carry none, and they are real purchases.
    """
    if user_agent is None or not user_agent.strip():
        return False
    return _detector().is_crawler(user_agent.strip())
