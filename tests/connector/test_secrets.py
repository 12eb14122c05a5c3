"""Secrets that survive an operator: a changed SECRET_KEY with the old one in
SECRET_KEY_FALLBACKS loses no webhook and logs no merchant out; ``connector secrets rotate``
moves everything to the new key, after which the fallback can go; a process whose keys read
no stored secret, or whose key is weak, refuses to start with the fix.

Commands run as real subprocesses against the test database (PostgreSQL too, when
TEST_DATABASE_URL is set); webhooks go through the app with the keys each step's process
would have.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest
from sqlalchemy import select, update

from app import create_app
from connector.crypto import TokenCipher
from connector.models import Store, StoreDestination, UnreadableWebhook
from connector.services import Services, build_services
from connector.stored_secrets import check_secrets, rotate_secrets, startup_refusal
from connector.stores import add_store, find_destination
from connector.web.merchant.access import login_token
from tests.support import (
    SHOP_DOMAIN,
    SHOPIFY_SECRET,
    TIKTOK_TOKEN,
    connect_tiktok,
    csrf_of,
    fixture_bytes,
    fresh,
    log_in,
    shopify_headers,
    woocommerce_headers,
)
from tests.support import run_connector as connector

OLD_KEY = "oIAbnC0xUtuXgwbxXvY1Ua2cMt9-wWPyuKk3EE0ndr4OYRN6QKx3tn8xoELPJyLS"
NEW_KEY = "JGOMJmscFlo8i6-8VL_r1thmEEsQRi-LMszriITVeY_Huk7C7RvY3PBzX6ub-521"
WOO_SECRET = "woo-webhook-secret"
WOO_DOMAIN = "shop.example"
ROTATE = ("secrets", "rotate")
TOKENS = "destinations.access_token_encrypted"


# -- helpers -----------------------------------------------------------------------------------


def with_keys(settings, key: str, *fallbacks: str) -> Services:  # type: ignore[no-untyped-def]
    """The services of a process started with SECRET_KEY=key and these fallbacks."""
    return build_services(settings.with_overrides(secret_key=key, secret_key_fallbacks=fallbacks))


def errors(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without log lines."""
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def post_shopify(client, order_id: int | None):  # type: ignore[no-untyped-def]
    """A signed order; without an id it cannot be read, and is kept encrypted."""
    payload = json.loads(fresh(fixture_bytes("shopify", "orders_create.json")))
    payload["id"] = order_id
    if order_id is None:
        del payload["id"]
    body = json.dumps(payload).encode()
    return client.post(
        "/webhooks/shopify", data=body, headers=shopify_headers("orders/create", body)
    )


def post_woocommerce(client, store_id: str, order_id: int):  # type: ignore[no-untyped-def]
    payload = json.loads(fresh(fixture_bytes("woocommerce", "order_created__processing.json")))
    payload["id"] = order_id
    body = json.dumps(payload).encode()
    headers = woocommerce_headers("order.created", body, WOO_SECRET)
    return client.post(f"/webhooks/woocommerce/{store_id}", data=body, headers=headers)


def accepted(answer) -> bool:  # type: ignore[no-untyped-def]
    return answer.status_code == 200 and answer.json.get("status") == "accepted"


def stores_with_secrets(services: Services) -> tuple[str, str]:
    """A Shopify custom-app store and a WooCommerce store, each with its own webhook secret
    and a TikTok token, all encrypted with ``services``' key."""
    shop = add_store(
        services, platform="shopify", domain=SHOP_DOMAIN, webhook_secret=SHOPIFY_SECRET
    )
    woo = add_store(services, platform="woocommerce", domain=WOO_DOMAIN, webhook_secret=WOO_SECRET)
    connect_tiktok(services, shop.id)
    connect_tiktok(services, woo.id)
    return shop.id, woo.id


def write_with_unknown_key(services: Services, store_id: str) -> None:
    """The store's webhook secret and TikTok token as a process with some other key would
    have written them."""
    foreign = TokenCipher(None, "a-key-nobody-configured-" * 3)
    with services.db.session() as session:
        session.execute(
            update(Store)
            .where(Store.id == store_id)
            .values(webhook_secret_encrypted=foreign.encrypt(WOO_SECRET))
        )
        session.execute(
            update(StoreDestination)
            .where(StoreDestination.store_id == store_id)
            .values(access_token_encrypted=foreign.encrypt(TIKTOK_TOKEN))
        )
        session.commit()


# -- a key change ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_changed_key_with_the_old_one_as_fallback_loses_no_webhook(settings, tiktok):
    before = with_keys(settings, OLD_KEY)
    _shop, woo = stores_with_secrets(before)
    old_app = create_app(services=before).test_client()
    assert post_shopify(old_app, 1001).status_code == 200
    assert post_shopify(old_app, None).status_code == 200

    # Restarted with a new SECRET_KEY and the old one as its fallback: nothing is refused.
    rotated = create_app(services=with_keys(settings, NEW_KEY, OLD_KEY)).test_client()
    assert accepted(post_shopify(rotated, 1003))
    assert accepted(post_woocommerce(rotated, woo, 2001))

    first = connector(settings, *ROTATE, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    # Two webhook secrets, two TikTok tokens and the kept body moved to the new key.
    assert (report["rotated"], report["current"], report["undecryptable"]) == (5, 0, 0)
    assert report["columns"]["stores.webhook_secret_encrypted"]["rotated"] == 2
    assert report["columns"]["destinations.access_token_encrypted"]["rotated"] == 2
    assert report["columns"]["unreadable_webhooks.body_encrypted"]["rotated"] == 1
    again = rotate_secrets(with_keys(settings, NEW_KEY, OLD_KEY))
    assert sum(column.fallback for column in again) == 0  # running it again changes nothing
    assert sum(column.current for column in again) == 5

    check = connector(settings, "secrets", "check", SECRET_KEY=NEW_KEY)  # no fallback now
    assert check.returncode == 0, check.stderr
    assert (json.loads(check.stdout)["fallback"], json.loads(check.stdout)["current"]) == (0, 5)

    # The fallback dropped: webhooks still verify, and the worker delivers with the tokens.
    after = create_app(services=with_keys(settings, NEW_KEY)).test_client()
    assert accepted(post_shopify(after, 1004))
    assert accepted(post_woocommerce(after, woo, 2002))
    worker = connector(settings, "worker", "--burst", SECRET_KEY=NEW_KEY)
    assert worker.returncode == 0, worker.stderr
    assert {"1001", "1003", "1004", "2001", "2002"} <= set(tiktok.accepted_event_ids())
    new_only = with_keys(settings, NEW_KEY)
    with new_only.db.session() as session:
        [kept] = session.scalars(select(UnreadableWebhook.body_encrypted))
    assert '"order_number"' in new_only.cipher.decrypt(kept)  # the kept body reads too


@pytest.mark.postgres
def test_sessions_login_links_and_forms_from_before_a_key_change_still_work(settings):
    before = with_keys(settings, OLD_KEY)
    store = add_store(before, platform="woocommerce", domain=WOO_DOMAIN, webhook_secret=WOO_SECRET)
    old_client = create_app(services=before).test_client()
    log_in(old_client, before, store.id)
    form = old_client.get(f"/settings/{store.id}/settings").get_data(as_text=True)
    cookie = old_client.get_cookie("connector_session")
    assert cookie is not None

    def client_of(services: Services):  # type: ignore[no-untyped-def]
        client = create_app(services=services).test_client()
        client.set_cookie("connector_session", cookie.value, domain=cookie.domain)
        return client

    rotated = client_of(with_keys(settings, NEW_KEY, OLD_KEY))
    assert rotated.get(f"/settings/{store.id}/").status_code == 200  # still logged in
    replay = {"csrf_token": csrf_of(form)}
    assert rotated.post(f"/settings/{store.id}/log/replay", data=replay).status_code == 303
    unused_link = f"/login/{login_token(before.settings.secret_key, store.id)}"
    assert rotated.get(unused_link).status_code == 200

    assert client_of(with_keys(settings, NEW_KEY)).get(f"/settings/{store.id}/").status_code == 403


@pytest.mark.postgres
def test_a_weak_former_key_decrypts_but_signs_nobody_in(settings):
    """Moving off a guessable key must not leave sessions forgeable with it."""
    weak = "changeme"
    before = with_keys(settings, weak)
    store = add_store(before, platform="woocommerce", domain=WOO_DOMAIN, webhook_secret=WOO_SECRET)
    old_client = create_app(services=before).test_client()
    log_in(old_client, before, store.id)
    cookie = old_client.get_cookie("connector_session")

    rotated = with_keys(settings, NEW_KEY, weak)
    client = create_app(services=rotated).test_client()
    assert accepted(post_woocommerce(client, store.id, 3001))  # its secret still decrypts
    client.set_cookie("connector_session", cookie.value, domain=cookie.domain)
    assert client.get(f"/settings/{store.id}/").status_code == 403
    assert client.get(f"/login/{login_token(weak, store.id)}").status_code == 400


# -- refusing to start -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["web", "worker", "run"])
def test_processes_refuse_to_start_when_stored_secrets_do_not_decrypt(settings, command):
    before = with_keys(settings, OLD_KEY)
    shop, woo = stores_with_secrets(before)
    result = connector(settings, command, SECRET_KEY=NEW_KEY)
    assert result.returncode == 1
    [line] = errors(result)
    assert line.startswith(
        "Error: stored secrets do not decrypt with SECRET_KEY, TOKEN_ENCRYPTION_KEY or "
        "SECRET_KEY_FALLBACKS: stores.webhook_secret_encrypted (2; stores "
    )
    assert shop in line and woo in line
    assert "destinations.access_token_encrypted (2; stores" in line
    assert "Put the key they were written with in SECRET_KEY_FALLBACKS" in line
    assert OLD_KEY not in result.stderr and NEW_KEY not in result.stderr


@pytest.mark.parametrize(
    ("command", "env", "why"),
    [
        ("web", {"CONNECTOR_ENV": "production", "SECRET_KEY": "changeme" * 4}, "placeholder"),
        ("worker", {"APP_URL": "https://connector.example", "SECRET_KEY": ""}, "required"),
    ],
)
def test_a_weak_or_missing_key_in_production_refuses_to_start(settings, command, env, why):
    result = connector(settings, command, **env)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()  # one line, and nothing was started before it
    assert line.startswith("Error: SECRET_KEY is ")
    assert why in line
    assert 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in line
    assert env["SECRET_KEY"] == "" or env["SECRET_KEY"] not in line


@pytest.mark.postgres
def test_the_start_up_sample_meets_a_key_that_wrote_only_some_rows(settings):
    """Three keys in turn wrote the TikTok tokens; the middle one was never listed as a
    fallback. A sample of 5 of 30 rows finds it, as the full check does."""
    forgotten = "a-key-between-the-old-and-the-new-one-" * 2
    for key in (OLD_KEY, forgotten, NEW_KEY):
        writer = with_keys(settings, key)
        for _ in range(10):
            domain = f"{secrets.token_hex(4)}.example"
            store = add_store(writer, platform="woocommerce", domain=domain, webhook_secret=None)
            connect_tiktok(writer, store.id)
    configured = with_keys(settings, NEW_KEY, OLD_KEY)

    [sampled] = [r for r in check_secrets(configured, sample=5) if r.column == TOKENS]
    assert sampled.current + sampled.fallback + sampled.undecryptable <= 6
    assert sampled.undecryptable >= 1
    [full] = [r for r in check_secrets(configured) if r.column == TOKENS]
    assert (full.current, full.fallback, full.undecryptable) == (10, 10, 10)


# -- rotate --------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_rotate_reports_what_no_key_decrypts_and_forget_is_the_way_out(settings):
    before = with_keys(settings, OLD_KEY)
    shop, woo = stores_with_secrets(before)
    write_with_unknown_key(before, woo)

    result = connector(settings, *ROTATE, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["rotated"], report["undecryptable"]) == (2, 2)  # the rest still rotated
    assert report["columns"]["stores.webhook_secret_encrypted"]["stores"] == [woo]
    assert errors(result) == [
        "Error: not decryptable with any configured key: stores.webhook_secret_encrypted "
        f"(1; stores {woo}); destinations.access_token_encrypted (1; stores {woo}); put the "
        "key they were written with in SECRET_KEY_FALLBACKS, or enter those secrets again "
        "(`connector secrets forget` removes them, when the key is lost for good)"
    ]
    after = with_keys(settings, NEW_KEY)
    client = create_app(services=after).test_client()
    assert accepted(post_shopify(client, 1005))
    assert post_woocommerce(client, woo, 2003).status_code == 503
    assert startup_refusal(after) is not None

    # The key is lost for good: forget what it wrote, and enter the store's secrets again.
    forgot = connector(settings, "secrets", "forget", "--yes", SECRET_KEY=NEW_KEY)
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout)["forgotten"] == 2
    assert startup_refusal(after) is None
    with after.db.session() as session:
        assert session.get(Store, woo).webhook_secret_encrypted is None
        assert find_destination(session, woo, "tiktok") is None
        assert find_destination(session, shop, "tiktok") is not None  # readable: untouched
    connect_tiktok(after, woo)
