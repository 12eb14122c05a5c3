"""The test event of every destination kind, against its strict stand-in: TikTok and Meta with
the merchant's test event code, Google validated without being recorded (``validateOnly``);
through ``connector destinations test STORE KIND`` and the Settings page's test-event button.

Meta requires ``event_source_url`` for website events (Server Event Parameters,
https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event),
so the made-up order must carry a page as a real one does: the store's own origin.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from connector.models import OutboxEvent, Store
from connector.standins.google import GoogleStandIn
from connector.standins.meta import MetaStandIn
from connector.standins.tiktok import TikTokStandIn
from connector.stores import add_store, set_destination
from tests.support import (
    GOOGLE_ACTION,
    GOOGLE_CLIENT,
    GOOGLE_CUSTOMER,
    META_PIXEL,
    META_TOKEN,
    PIXEL_CODE,
    SHOP_DOMAIN,
    connect_google,
    connect_tiktok,
    csrf_of,
    google_env,
    invoke_connector,
    log_in,
)

pytestmark = pytest.mark.postgres

KINDS = ("tiktok", "meta", "google")
STOREFRONT = "shop.demo-brand.example"


@pytest.fixture
def settings(settings, meta, google):  # type: ignore[no-untyped-def]
    """The test settings pointed at Meta's and Google's stand-ins too."""
    return google_env(settings, google).with_env(META_API_BASE=meta.base_url)


def connect(services, store_id: str, kind: str, google: GoogleStandIn) -> None:  # type: ignore[no-untyped-def]
    """Connect one destination as a merchant ready to test it: with a test event code where
    the platform has them."""
    if kind == "tiktok":
        connect_tiktok(services, store_id, test_event_code="TEST4242")
    elif kind == "meta":
        values = {"pixel_id": META_PIXEL, "access_token": META_TOKEN, "test_event_code": "TEST77"}
        set_destination(services, store_id, kind="meta", values=values)
    else:
        connect_google(
            services, store_id, google.issue_refresh_token(GOOGLE_CLIENT, {GOOGLE_CUSTOMER})
        )


def sent_page(
    kind: str, tiktok: TikTokStandIn, meta: MetaStandIn, google: GoogleStandIn
) -> str | None:
    """The one test event the platform received, checked for its test marker; its page URL
    (None for Google, whose events name no page)."""
    if kind == "tiktok":
        [batch] = tiktok.batches
        assert batch.body["test_event_code"] == "TEST4242"
        assert batch.body["event_source_id"] == PIXEL_CODE
        [event] = batch.body["data"]
        return event.get("page", {}).get("url")
    if kind == "meta":
        [batch] = meta.batches
        assert batch.http_status == 200, batch.answer
        assert batch.body["test_event_code"] == "TEST77"
        [event] = batch.body["data"]
        assert event["action_source"] == "website"
        assert event["user_data"]["client_user_agent"]  # required for website events too
        return event["event_source_url"]
    [batch] = google.batches
    assert batch.http_status == 200 and batch.validate_only, batch.answer
    assert google.accepted_events() == []  # validated, never recorded as a conversion
    [event] = batch.body["events"]
    assert [d["productDestinationId"] for d in batch.body["destinations"]] == [GOOGLE_ACTION]
    assert event["transactionId"].startswith("test-")
    return None


def page_of(kind: str, origin: str) -> str | None:
    return None if kind == "google" else origin


@pytest.mark.parametrize("kind", KINDS)
def test_destinations_test_command_reaches_every_platform(
    settings, services, shopify_store, tiktok, meta, google, kind
):
    connect(services, shopify_store, kind, google)
    result = invoke_connector(settings, "destinations", "test", shopify_store, kind)
    assert result.returncode == 0, (result.stdout, result.stderr)
    out = json.loads(result.stdout)
    assert (out["destination"], out["status"], out["error"]) == (kind, "delivered", None)
    assert out["event_id"].startswith("test-")
    assert sent_page(kind, tiktok, meta, google) == page_of(kind, f"https://{SHOP_DOMAIN}/")


def test_the_test_event_is_sent_from_the_storefront_a_shopper_sees(
    settings, services, shopify_store, meta, google
):
    """A Shopify shop served from its own domain: real orders' pages are there, so is the
    test event's."""
    with services.db.session() as session:
        session.get(Store, shopify_store).storefront_domains = [STOREFRONT]
        session.commit()
    connect(services, shopify_store, "meta", google)
    result = invoke_connector(settings, "destinations", "test", shopify_store, "meta")
    assert result.returncode == 0, (result.stdout, result.stderr)
    [event] = meta.accepted_events()
    assert event["event_source_url"] == f"https://{STOREFRONT}/"


def test_a_woocommerce_stores_test_event_carries_its_site(services, settings, tiktok, meta, google):
    store = add_store(services, platform="woocommerce", domain="shop.example", webhook_secret="s")
    connect(services, store.id, "meta", google)
    result = invoke_connector(settings, "destinations", "test", store.id, "meta")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert sent_page("meta", tiktok, meta, google) == "https://shop.example/"


@pytest.mark.parametrize("kind", KINDS)
def test_settings_page_test_button_reaches_every_platform(
    client, services, shopify_store, tiktok, meta, google, kind
):
    for each in KINDS:  # every card is there; only the chosen platform gets the test
        connect(services, shopify_store, each, google)
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    assert f'id="send-test-event-{kind}"' in page
    answer = client.post(
        f"/settings/{shopify_store}/test-event", data={"csrf_token": csrf_of(page), "kind": kind}
    )
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200, text
    label = {"tiktok": "TikTok", "meta": "Meta", "google": "Google Ads"}[kind]
    assert re.search(rf"Test event test-[0-9a-f]+ to {label}: delivered", text), text
    assert sent_page(kind, tiktok, meta, google) == page_of(kind, f"https://{SHOP_DOMAIN}/")
    others = {"tiktok": tiktok.batches, "meta": meta.batches, "google": google.batches}
    assert [name for name, batches in others.items() if batches] == [kind]
    with services.db.session() as session:
        recorded = session.scalars(select(OutboxEvent.destination)).all()
    assert recorded == ([] if kind == "google" else [kind])  # validation records nothing
