"""``connector stores connect-woocommerce`` and ``check``, run as real subprocesses against the
WooCommerce stand-in, with ``APP_URL`` pointing at the live app so WooCommerce's creation ping
really reaches our webhook endpoint.
"""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector.embedded_redis import free_port
from connector.models import Store
from platforms.woocommerce.connect import StoreAddress, connect_store
from tests.platforms.woocommerce.helpers import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    READ_ONLY_KEY,
    READ_ONLY_SECRET,
    connect_args,
    error_line,
    output,
)


def stores(services) -> list[Store]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return list(session.scalars(select(Store)))


def secret_of(services, store_id: str) -> str:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return services.cipher.decrypt(session.get(Store, store_id).webhook_secret_encrypted)


# -- connect -----------------------------------------------------------------------------------


def test_connect_creates_working_webhooks(connector, woo, live_server, services):
    out = output(connector(*connect_args(woo.base_url), app_url=live_server))
    store_id = out["store_id"]
    hook_url = f"{live_server}/webhooks/woocommerce/{store_id}"
    assert (out["url"], out["webhook_url"], out["ok"]) == (woo.base_url, hook_url, True)
    assert [(w["topic"], w["status"], w["action"]) for w in out["webhooks"]] == [
        ("order.created", "active", "created"),
        ("order.updated", "active", "created"),
    ]
    made = woo.webhooks()
    assert [w.id for w in made] == [w["id"] for w in out["webhooks"]]
    secret = secret_of(services, store_id)
    for webhook in made:
        assert (webhook.status, webhook.delivery_url) == ("active", hook_url)
        assert webhook.secret == secret
        assert store_id in webhook.name and webhook.api_version == "wp_api_v3"
    # WooCommerce pinged each new webhook, and our live app answered exactly 200.
    assert [(p.url, p.status_code) for p in woo.pings()] == [(hook_url, 200)] * 2
    assert {key for _method, _path, key in woo.requests} == {CONSUMER_KEY}  # Basic auth
    [store] = stores(services)
    assert (store.platform, store.domain) == ("woocommerce", woo.base_url.removeprefix("http://"))
    assert store.webhook_url == hook_url  # the address repairs will keep them at
    assert json.loads(services.cipher.decrypt(store.access_token_encrypted)) == {
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "url": woo.base_url,
        "allow_http": True,  # --allow-http: later checks may call this local store too
    }
    assert CONSUMER_SECRET not in json.dumps(out) and secret not in json.dumps(out)


def test_connecting_again_reuses_the_store_and_its_webhooks(connector, woo, live_server, services):
    first = output(connector(*connect_args(woo.base_url), app_url=live_server))
    secret = secret_of(services, first["store_id"])
    again = output(connector(*connect_args(woo.base_url + "/"), app_url=live_server))
    assert again["store_id"] == first["store_id"]
    assert [w["id"] for w in again["webhooks"]] == [w["id"] for w in first["webhooks"]]
    assert {w["action"] for w in again["webhooks"]} == {"updated"}
    assert len(woo.webhooks()) == 2 and len(stores(services)) == 1
    assert secret_of(services, first["store_id"]) == secret


def test_connect_adopts_a_store_and_webhook_made_by_hand(connector, woo, live_server, services):
    added = output(
        connector("stores", "add-woocommerce", "--url", woo.base_url, app_url=live_server)
    )
    by_hand = woo.add_webhook(
        name="Order created",
        topic="order.created",
        delivery_url=added["webhook_url"],
        secret=added["secret"],
    )
    out = output(connector(*connect_args(woo.base_url), app_url=live_server))
    assert out["store_id"] == added["store_id"]
    assert [(w["id"], w["action"]) for w in out["webhooks"]][0] == (by_hand, "updated")
    assert len(woo.webhooks()) == 2
    assert woo.webhook(by_hand).secret == added["secret"]  # the pasted secret still signs
    assert added["store_id"] in woo.webhook(by_hand).name


def test_a_plain_http_app_url_is_refused_without_allow_http(connector, woo, services):
    args = ["stores", "connect-woocommerce", "--url", "https://shop.example",
            "--consumer-key", CONSUMER_KEY, "--consumer-secret", CONSUMER_SECRET]  # fmt: skip
    line = error_line(connector(*args, APP_URL=""))
    assert line == (
        "Error: refusing APP_URL http://localhost:8000: the store's orders would be sent to it"
        " over plain http://, and it would become the address the webhooks are kept at (is"
        " APP_URL set?); set APP_URL to the connector's public https:// address (--allow-http"
        " is for local test stores)"
    )
    assert woo.requests == [] and stores(services) == []


def test_connecting_with_a_new_app_url_moves_the_store(
    connector, woo, live_server, live_services, services
):
    address = StoreAddress.parse(woo.base_url)
    first = connect_store(live_services, address, CONSUMER_KEY, CONSUMER_SECRET)
    store_id = first["store_id"]
    moved_to = live_server.replace("127.0.0.1", "localhost")  # the same app, another address
    new_url = f"{moved_to}/webhooks/woocommerce/{store_id}"

    # A check run with the new APP_URL reports it and moves nothing.
    found = output(connector("stores", "check", store_id, "--repair", app_url=moved_to), status=1)
    assert found["problems"] == [
        {
            "problem": "app_url_mismatch",
            "webhook_url": first["webhook_url"],
            "app_url_webhook_url": new_url,
            "message": (
                f"APP_URL gives {new_url}, but the store's webhooks were set up for"
                f" {first['webhook_url']}: repairs keep them delivering there. If the connector"
                " has moved, run `connector stores connect-woocommerce` with the new APP_URL;"
                " otherwise set APP_URL to match in every process"
            ),
        }
    ]
    assert {w.delivery_url for w in woo.webhooks()} == {first["webhook_url"]}

    # Connecting again with it is the deliberate move.
    moved = output(connector(*connect_args(woo.base_url), app_url=moved_to))
    assert (moved["webhook_url"], moved["ok"]) == (new_url, True)
    assert {w.delivery_url for w in woo.webhooks()} == {new_url}
    assert len(woo.webhooks()) == 2
    [store] = stores(services)
    assert store.webhook_url == new_url


def test_plain_http_is_refused_without_allow_http(connector, woo, services):
    args = connect_args(woo.base_url)[:-1]
    line = error_line(connector(*args))
    assert line == (
        f"Error: refusing {woo.base_url}: over plain http:// the REST API keys and the webhook"
        " secret would travel in clear text; use the store's https:// address (--allow-http is"
        " for local test stores)"
    )
    assert woo.requests == [] and stores(services) == []


@pytest.mark.parametrize(
    ("key", "secret", "expected"),
    [
        (CONSUMER_KEY, "cs_wrong", "(HTTP 401 woocommerce_rest_authentication_error)"),
        ("ck_unknown", CONSUMER_SECRET, "(HTTP 401 woocommerce_rest_cannot_view)"),
    ],
    ids=["wrong-secret", "unknown-key"],
)
def test_wrong_keys_are_a_clear_error_and_register_nothing(
    connector, woo, services, key, secret, expected
):
    line = error_line(connector(*connect_args(woo.base_url, key, secret)))
    assert line.startswith("Error: WooCommerce refused the REST API keys (HTTP 401 ")
    assert expected in line
    assert "Consumer Secret" not in line and "Sorry" not in line  # WooCommerce's own words
    assert "check the consumer key and secret, and that the key's permissions are" in line
    assert "OAuth 1.0a" in line  # the store was reached over plain HTTP
    assert secret not in line
    assert stores(services) == [] and woo.webhooks() == []


def test_a_read_only_key_cannot_connect(connector, woo, services):
    line = error_line(connector(*connect_args(woo.base_url, READ_ONLY_KEY, READ_ONLY_SECRET)))
    assert line.startswith("Error: WooCommerce refused the REST API keys (HTTP 401 ")
    assert "that the key's permissions are Read/Write" in line
    assert "The API key provided does not have write permissions." not in line
    assert woo.webhooks() == []
    [store] = stores(services)
    assert store.access_token_encrypted is None  # not connected: keys kept only once they worked


def test_an_unreachable_store(connector, services):
    url = f"http://127.0.0.1:{free_port()}"
    line = error_line(connector(*connect_args(url)))
    assert line == f"Error: cannot reach {url}: connection refused"
    assert stores(services) == []


@Request.application
def plain_website(_request: Request) -> Response:
    return Response("<html><body>Welcome</body></html>", mimetype="text/html")


def test_sites_that_are_not_woocommerce(connector, woo, live_server, services):
    woo.woocommerce_active = False
    line = error_line(connector(*connect_args(woo.base_url)))
    assert line == (
        f"Error: {woo.base_url} runs WordPress but has no WooCommerce REST API (rest_no_route):"
        " is WooCommerce installed and active?"
    )
    line = error_line(connector(*connect_args(live_server)))
    assert line == (
        f"Error: {live_server} does not look like a WooCommerce store (HTTP 404 without a"
        " WordPress error at /wp-json/wc/v3/webhooks)"
    )
    site = make_server("127.0.0.1", 0, plain_website, threaded=True)
    threading.Thread(target=site.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{site.server_port}"
        line = error_line(connector(*connect_args(url)))
    finally:
        site.shutdown()
    assert line == (
        f"Error: {url} does not look like a WooCommerce store (HTTP 200 without JSON at"
        " /wp-json/wc/v3/webhooks)"
    )
    assert stores(services) == []


@Request.application
def redirecting_website(request: Request) -> Response:
    return Response(status=301, headers={"Location": f"https://www.shop.example{request.path}"})


def test_a_redirecting_store_is_named_not_followed(connector, services):
    site = make_server("127.0.0.1", 0, redirecting_website, threaded=True)
    threading.Thread(target=site.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{site.server_port}"
        line = error_line(connector(*connect_args(url)))
    finally:
        site.shutdown()
    assert line == (
        f"Error: {url}/wp-json/wc/v3/webhooks answered with a redirect (HTTP 301), which the"
        " connector does not follow: give the store's final address as --url (open the store"
        " in a browser to see where it leads)"
    )  # the Location is the site's to choose, so it is not repeated
    assert stores(services) == []


@pytest.mark.parametrize("url", ["ftp://shop.example", "shop.example", "https://u:p@x.example"])
def test_connect_refuses_what_is_not_a_store_address(connector, url):
    line = error_line(connector(*connect_args(url)))
    assert line == "Error: --url must be the store's address, like https://shop.example"


# -- check -------------------------------------------------------------------------------------


def test_check_finds_a_disabled_webhook_and_repair_fixes_it(connector, woo, live_server, services):
    out = output(connector(*connect_args(woo.base_url), app_url=live_server))
    store_id, updated = out["store_id"], out["webhooks"][1]["id"]
    woo.disable(updated)

    found = output(connector("stores", "check", store_id, app_url=live_server), status=1)
    assert found["ok"] is False
    assert [(w["topic"], w["status"], w["problems"]) for w in found["webhooks"]] == [
        ("order.created", "active", []),
        ("order.updated", "disabled", ["disabled"]),
    ]
    assert woo.webhook(updated).status == "disabled"  # a check alone changes nothing

    repaired = output(connector("stores", "check", store_id, "--repair", app_url=live_server))
    assert repaired["ok"] is True
    entry = repaired["webhooks"][1]
    assert (entry["replaced"], entry["status"], entry["fixed"], entry["action"]) == (
        updated,
        "active",
        ["disabled"],
        "recreated",
    )
    webhook = woo.webhook(entry["id"])
    assert (webhook.status, webhook.failure_count) == ("active", 0)
    assert webhook.secret == secret_of(services, store_id)
    assert output(connector("stores", "check", store_id, app_url=live_server))["ok"] is True


def test_check_refuses_stores_it_cannot_check(connector, shopify_store):
    added = output(connector("stores", "add-woocommerce", "--url", "https://shop.example"))
    line = error_line(connector("stores", "check", added["store_id"]))
    assert line.startswith(f"Error: store {added['store_id']} has no REST API keys: connect it")
    assert error_line(connector("stores", "check", "st_nope")) == (
        "Error: no WooCommerce store st_nope: see `connector stores list`"
    )
    assert error_line(connector("stores", "check", shopify_store)).startswith(
        f"Error: no WooCommerce store {shopify_store}"
    )


def test_check_after_the_encryption_key_changed_is_a_clear_error(connector, woo, live_server):
    out = output(connector(*connect_args(woo.base_url), app_url=live_server))
    result = connector("stores", "check", out["store_id"], SECRET_KEY="another-secret-key")
    assert error_line(result).startswith(
        "Error: a stored secret cannot be decrypted: TOKEN_ENCRYPTION_KEY or SECRET_KEY changed"
    )
