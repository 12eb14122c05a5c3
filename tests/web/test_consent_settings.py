"""The Settings page's consent section: the default in words, a change saved, a bad choice
refused, and the CSRF token required like every merchant form."""

from __future__ import annotations

import pytest

from connector.consent import ConsentPolicy
from connector.stores import consent_policy
from tests.support import csrf_of, log_in

pytestmark = pytest.mark.postgres


def settings_page(client, store_id: str) -> str:  # type: ignore[no-untyped-def]
    return client.get(f"/settings/{store_id}/settings").get_data(as_text=True)


def test_the_default_is_respect_and_sending_when_unknown(client, services, shopify_store):
    log_in(client, services, shopify_store)
    page = settings_page(client, shopify_store)
    assert 'data-policy="respect" data-unknown="send"' in page
    assert 'id="consent-respect" checked' in page and 'id="consent-unknown-send" checked' in page
    assert "declined marketing cookies is not sent" in page


def test_a_merchant_changes_the_policy(client, services, shopify_store):
    log_in(client, services, shopify_store)
    form = {"csrf_token": csrf_of(settings_page(client, shopify_store))}
    answer = client.post(
        f"/settings/{shopify_store}/settings/consent",
        data={**form, "policy": "respect", "unknown": "hold"},
    )
    assert answer.status_code == 303 and answer.headers["Location"].endswith("#consent")
    assert consent_policy(services, shopify_store) == ConsentPolicy("respect", "hold")
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert 'id="consent-saved"' in page and 'data-unknown="hold"' in page


def test_a_bad_choice_or_a_missing_token_changes_nothing(client, services, shopify_store):
    log_in(client, services, shopify_store)
    form = {"csrf_token": csrf_of(settings_page(client, shopify_store))}
    path = f"/settings/{shopify_store}/settings/consent"
    bad = client.post(path, data={**form, "policy": "whatever"})
    assert bad.status_code == 400 and b"consent policy must be one of" in bad.data
    no_token = client.post(path, data={"policy": "ignore"})
    assert no_token.status_code == 400 and b"reload the page" in no_token.data
    assert consent_policy(services, shopify_store) == ConsentPolicy()
