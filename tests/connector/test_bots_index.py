"""The indexed bot detector gives crawlerdetect's own verdict for every user agent.

connector.bots looks up which of crawlerdetect's patterns can match before searching, for
speed; these tests hold it to crawlerdetect's answer on real agents and on agents built from
every one of its patterns (matches, near misses, other case, inside a browser's agent).
"""

from __future__ import annotations

import pytest
from crawlerdetect import CrawlerDetect
from crawlerdetect.providers import crawlers

from connector.bots import IndexedDetector, literal_start, top_level_branches
from tests.connector.test_bots import BOT_USER_AGENTS, BROWSER_USER_AGENTS

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def agents_from_patterns() -> list[str]:
    """For each pattern: its literal start alone and upper-cased, inside a browser's agent,
    and cut short by one character (a near miss)."""
    found = []
    for pattern in crawlers.data:
        literal = literal_start(pattern) or pattern.strip("^$")
        found += [literal.upper(), f"{IPHONE} {literal}/1.0", f"{IPHONE} {literal[:-1]}"]
    return found


@pytest.fixture(scope="module")
def detectors() -> tuple[IndexedDetector, CrawlerDetect]:
    return IndexedDetector(CrawlerDetect()), CrawlerDetect()


def test_same_verdicts_as_crawlerdetect_on_agents_built_from_every_pattern(detectors):
    indexed, reference = detectors
    agents = agents_from_patterns()
    differing = [a for a in agents if indexed.is_crawler(a) != reference.is_crawler(a)]
    assert differing == []
    assert sum(reference.is_crawler(a) for a in agents) > len(crawlers.data)  # real matches


@pytest.mark.parametrize(
    "agent",
    [
        *BOT_USER_AGENTS.values(),
        *BROWSER_USER_AGENTS.values(),
        "Mozilla/5.0 (compatible; Googlebot/2.1) \u00fcn\u00efcode",
        "Mozilla/5.0 (compatible; \u212aelvin \u017fpider)",  # Kelvin sign, long s
        "Ruby",
        "Mozilla/5.0 Ruby/3.2",
        "my-uptime-checker",
    ],
)
def test_same_verdicts_as_crawlerdetect_on_real_agents(detectors, agent):
    indexed, reference = detectors
    assert indexed.is_crawler(agent) == reference.is_crawler(agent)


@pytest.mark.parametrize(
    ("pattern", "start"),
    [
        (r"^Aether", "Aether"),
        (r"Googlebot\/", "Googlebot/"),
        (r"Goose\/", "Goose/"),
        (r"abc?d", "ab"),
        (r"abc{2}", "ab"),
        (r"ab+c", "ab"),
        (r"Mail\.Ru", "Mail.Ru"),
        (r"curl\/\d", "curl/"),
        (r"[a-z]+bot", ""),
        (r"(foo)bar", ""),
    ],
)
def test_literal_start_is_text_every_match_begins_with(pattern, start):
    assert literal_start(pattern) == start


@pytest.mark.parametrize(
    ("pattern", "branches"),
    [
        (r"^Ruby|Ruby\/[0-9]", ["^Ruby", r"Ruby\/[0-9]"]),
        (r"[a-z0-9\-_]*(bot|crawl|spider)", [r"[a-z0-9\-_]*(bot|crawl|spider)"]),
        (r"a[|]b|c", ["a[|]b", "c"]),
        (r"a[]|]b|c\|d", ["a[]|]b", r"c\|d"]),
        (r"(?:x|y)z|w", ["(?:x|y)z", "w"]),
    ],
)
def test_top_level_branches_split_only_outside_groups_and_classes(pattern, branches):
    assert top_level_branches(pattern) == branches
