"""The Settings page's consent section: the default in words, a change saved, a bad choice
refused, and the CSRF token required like every merchant form; held-back purchases shown in
the delivery log and diagnostics."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from connector.consent import ConsentPolicy
from connector.events import Consent
from connector.models import OutboxEvent
from connector.pipeline import record_events
from connector.stores import consent_policy, set_consent_policy
from tests.support import connect_tiktok, csrf_of, log_in, make_order

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


# -- held back, and shown ----------------------------------------------------------------------


def test_held_back_purchases_show_in_the_log_and_diagnostics(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    set_consent_policy(services, shopify_store, ConsentPolicy("respect", "hold"))
    choices = {
        "declined-1": Consent(marketing=False),
        "declined-2": Consent(marketing=False, sale_of_data=True),
        "opted-out": Consent(marketing=True, sale_of_data=False),
        "allowed": Consent(marketing=True),
        "unknown": Consent(),
    }
    for order_id, consent in choices.items():
        record_events(
            services, shopify_store, "orders/create", make_order(order_id, consent=consent)
        )
    with services.db.session() as session:
        rows = session.execute(select(OutboxEvent.event_id, OutboxEvent.status)).all()
    assert dict(rows) == {
        "declined-1": "skipped",
        "declined-2": "skipped",
        "opted-out": "pending",
        "allowed": "pending",
        "unknown": "skipped",
    }
    log_in(client, services, shopify_store)

    log = client.get(f"/settings/{shopify_store}/log?status=skipped").get_data(as_text=True)
    assert log.count(">held back</span>") == 3 and log.count("no marketing consent") == 2

    page = client.get(f"/settings/{shopify_store}/diagnostics").get_data(as_text=True)
    assert 'id="held-back" data-count="3"' in page
    assert "Held back: <strong>2</strong>, no marketing consent." in page
    assert "Held back: <strong>1</strong>, consent unknown" in page
    states = dict(re.findall(r'data-state="(\w+)">.*?data-count="(\d+)"', page))
    assert states == {"granted": "1", "limited": "1", "denied": "2", "unknown": "1"}
