"""``connector stores consent``: shows the store's policy in words, changes it, keeps what is
not given, refuses what is not a policy, and names an unknown store."""

from __future__ import annotations

import json

import pytest

from connector.consent import ConsentPolicy
from connector.stores import consent_policy
from tests.support import invoke_connector

pytestmark = pytest.mark.postgres


def consent(settings, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = invoke_connector(settings, "stores", "consent", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_shows_and_changes_the_policy(settings, services, shopify_store):
    shown = consent(settings, shopify_store)
    assert (shown["policy"], shown["unknown"]) == ("respect", "send")
    assert "declined marketing cookies is not sent" in shown["means"]

    held = consent(settings, shopify_store, "--unknown", "hold")
    assert (held["policy"], held["unknown"]) == ("respect", "hold")
    assert "not known, the purchase is held back" in held["means"]
    limited = consent(settings, shopify_store, "--policy", "limited")
    assert (limited["policy"], limited["unknown"]) == ("limited", "hold")
    assert consent_policy(services, shopify_store) == ConsentPolicy("limited", "hold")


def test_refuses_an_unknown_policy_and_store(settings, services, shopify_store):
    wrong = invoke_connector(settings, "stores", "consent", shopify_store, "--policy", "maybe")
    assert wrong.returncode == 2 and "'maybe' is not one of" in wrong.stderr
    assert consent_policy(services, shopify_store) == ConsentPolicy()
    missing = invoke_connector(settings, "stores", "consent", "st_nope", "--policy", "ignore")
    assert missing.returncode == 1 and "no store st_nope" in missing.stderr
