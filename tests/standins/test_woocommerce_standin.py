"""Tests for the WooCommerce stand-in, over real HTTP.

Why they exist: the connect and check tests trust the stand-in to refuse what WooCommerce
refuses, to ping and sign like WooCommerce, and to disable a failing webhook. If one of those
behaviours silently broke, the connector's tests would pass against a store that accepts
anything. Each test asserts the exact WordPress error code, header or counter.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .woocommerce import (
    API,
    WooCommerceStandIn,
    is_valid_topic,
    is_valid_url,
    signature,
    wp_json_encode,
)

KEY, SECRET = "ck_" + "1" * 40, "cs_" + "2" * 40
READ_KEY, WRITE_KEY = "ck_" + "3" * 40, "ck_" + "4" * 40


class Receiver:
    """A delivery URL that records what arrives and answers with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"

    @Request.application
    def _app(self, incoming: Request) -> Response:
        self.received.append((dict(incoming.headers), incoming.get_data()))
        return Response("ok", status=self.status)

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[WooCommerceStandIn]:
    keys = {KEY: (SECRET, "read_write"), READ_KEY: ("cs_r", "read"), WRITE_KEY: ("cs_w", "write")}
    stand_in = WooCommerceStandIn(keys).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def store(server: WooCommerceStandIn) -> WooCommerceStandIn:
    server.reset()
    return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def call(
    store: WooCommerceStandIn,
    method: str,
    path: str = "/webhooks",
    auth: tuple[str, str] | None = (KEY, SECRET),
    **kwargs: Any,
) -> requests.Response:
    return requests.request(method, store.base_url + API + path, auth=auth, timeout=10, **kwargs)


def create(store: WooCommerceStandIn, url: str, **fields: Any) -> dict[str, Any]:
    answer = call(store, "POST", json={"topic": "order.created", "delivery_url": url, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def error_of(answer: requests.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["code"]


# -- authentication ----------------------------------------------------------------------------


def test_anonymous_callers_get_each_routes_permission_error(store):
    assert error_of(call(store, "GET", auth=None)) == (401, "woocommerce_rest_cannot_view")
    body = {"topic": "order.created", "delivery_url": "https://x.example/h"}
    answer = call(store, "POST", auth=("ck_unknown", "cs_x"), json=body)
    assert error_of(answer) == (401, "woocommerce_rest_cannot_create")
    assert answer.json()["message"] == "Sorry, you are not allowed to create resources."
    assert answer.json()["data"] == {"status": 401}
    assert store.webhooks() == []


def test_a_wrong_secret_is_refused_before_the_route_runs(store):
    answer = call(store, "GET", "/no-such-route", auth=(KEY, "cs_wrong"))
    assert error_of(answer) == (401, "woocommerce_rest_authentication_error")
    assert answer.json()["message"] == "Consumer Secret is invalid."
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="WooCommerce API')


def test_key_permissions_are_enforced(store, receiver):
    body = {"topic": "order.created", "delivery_url": receiver.url}
    read_only = call(store, "POST", auth=(READ_KEY, "cs_r"), json=body)
    assert error_of(read_only) == (401, "woocommerce_rest_authentication_error")
    assert "does not have write permissions" in read_only.json()["message"]
    write_only = call(store, "GET", auth=(WRITE_KEY, "cs_w"))
    assert "does not have read permissions" in write_only.json()["message"]
    assert call(store, "GET", auth=(READ_KEY, "cs_r")).status_code == 200
    assert store.webhooks() == []


def test_keys_in_the_query_string_work_too(store):
    answer = call(store, "GET", auth=None, params={"consumer_key": KEY, "consumer_secret": SECRET})
    assert answer.status_code == 200 and answer.json() == []


# -- create ------------------------------------------------------------------------------------


def test_create_needs_topic_and_delivery_url(store):
    answer = call(store, "POST", json={"name": "x"})
    assert error_of(answer) == (400, "rest_missing_callback_param")
    assert answer.json()["data"]["params"] == ["topic", "delivery_url"]


@pytest.mark.parametrize("topic", ["order", "order.paid", "orders.created", "", "action.foo"])
def test_create_refuses_an_invalid_topic(store, topic):
    answer = call(store, "POST", json={"topic": topic, "delivery_url": "https://x.example/h"})
    assert error_of(answer) == (400, "woocommerce_rest_shop_webhook_invalid_topic")


@pytest.mark.parametrize("url", ["ftp://x.example/h", "x.example/h", "https://", "http://a b/"])
def test_create_refuses_an_invalid_delivery_url(store, url):
    answer = call(store, "POST", json={"topic": "order.created", "delivery_url": url})
    assert error_of(answer) == (400, "woocommerce_rest_shop_webhook_invalid_delivery_url")
    assert store.webhooks() == []


def test_create_refuses_an_unknown_status(store, receiver):
    body = {"topic": "order.created", "delivery_url": receiver.url, "status": "on"}
    assert error_of(call(store, "POST", json=body)) == (400, "rest_invalid_param")


def test_create_answers_201_without_the_secret_and_pings(store, receiver):
    created = create(store, receiver.url, secret="s3cret", status="paused", name="Orders")
    assert created["status"] == "active"  # REST create always saves an active webhook
    assert "secret" not in created and "s3cret" not in json.dumps(created)
    assert (created["topic"], created["resource"], created["event"]) == (
        "order.created",
        "order",
        "created",
    )
    [(headers, body)] = receiver.received
    assert body == f"webhook_id={created['id']}".encode()
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert not any(name.startswith("X-Wc-") for name in headers)
    [ping] = store.pings()
    assert ping.succeeded
    webhook = store.webhook(created["id"])
    assert (webhook.secret, webhook.api_version, webhook.pending_delivery) == (
        "s3cret",
        "wp_api_v3",
        False,
    )


def test_a_ping_answered_with_anything_but_200_is_a_failure(store, receiver):
    receiver.status = 204
    created = create(store, receiver.url)
    [ping] = store.pings()
    assert ping.status_code == 204 and not ping.succeeded
    assert store.webhook(created["id"]).pending_delivery is True


def test_create_without_a_secret_gets_a_generated_one(store, receiver):
    created = create(store, receiver.url)
    assert len(store.webhook(created["id"]).secret) == 50


# -- list, get, update -------------------------------------------------------------------------


def test_list_is_paged_and_filtered(store, receiver):
    ids = [create(store, receiver.url)["id"] for _ in range(3)]
    store.disable(ids[0])
    page = call(store, "GET", params={"per_page": 2})
    assert (page.headers["X-WP-Total"], page.headers["X-WP-TotalPages"]) == ("3", "2")
    assert len(page.json()) == 2
    second = call(store, "GET", params={"per_page": 2, "page": 2}).json()
    assert [w["id"] for w in page.json() + second] == sorted(ids, reverse=True)
    disabled = call(store, "GET", params={"status": "disabled"}).json()
    assert [(w["id"], w["status"]) for w in disabled] == [(ids[0], "disabled")]
    too_many = call(store, "GET", params={"per_page": 101})
    assert error_of(too_many) == (400, "rest_invalid_param")


def test_get_and_update_an_unknown_id(store):
    assert call(store, "GET", "/webhooks/999").json()["message"] == "ID is invalid."
    assert error_of(call(store, "PUT", "/webhooks/999", json={"status": "active"})) == (
        400,
        "woocommerce_rest_shop_webhook_invalid_id",
    )


def test_update_reactivates_and_pings_when_the_first_ping_failed(store, receiver):
    receiver.status = 500
    created = create(store, receiver.url)
    store.disable(created["id"])
    receiver.status = 200
    answer = call(store, "PUT", f"/webhooks/{created['id']}", json={"status": "active"})
    assert answer.status_code == 200 and answer.json()["status"] == "active"
    assert [p.status_code for p in store.pings()] == [500, 200]
    assert store.webhook(created["id"]).pending_delivery is False


def test_update_validates_like_create(store, receiver):
    created = create(store, receiver.url)
    path = f"/webhooks/{created['id']}"
    assert error_of(call(store, "PUT", path, json={"status": "broken"}))[1] == "rest_invalid_param"
    assert (
        error_of(call(store, "PUT", path, json={"topic": "order.paid"}))[1]
        == "woocommerce_rest_shop_webhook_invalid_topic"
    )
    assert (
        error_of(call(store, "PUT", path, json={"delivery_url": "nope"}))[1]
        == "woocommerce_rest_shop_webhook_invalid_delivery_url"
    )
    assert store.webhook(created["id"]).delivery_url == receiver.url


def test_delete_needs_force_and_an_existing_id(store, receiver):
    created = create(store, receiver.url)
    path = f"/webhooks/{created['id']}"
    not_forced = call(store, "DELETE", path)
    assert error_of(not_forced) == (501, "woocommerce_rest_trash_not_supported")
    assert not_forced.json()["message"] == "Webhooks do not support trashing."
    assert error_of(call(store, "DELETE", path, params={"force": "maybe"})) == (
        400,
        "rest_invalid_param",
    )
    assert error_of(call(store, "DELETE", path, auth=(READ_KEY, "cs_r"), params={"force": 1}))[
        1
    ] == ("woocommerce_rest_authentication_error")
    assert error_of(call(store, "DELETE", path, auth=None, params={"force": "true"})) == (
        401,
        "woocommerce_rest_cannot_delete",
    )
    assert len(store.webhooks()) == 1

    deleted = call(store, "DELETE", path, params={"force": "true"})
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"]
    assert store.webhooks() == []
    assert error_of(call(store, "DELETE", path, params={"force": "true"})) == (
        404,
        "woocommerce_rest_shop_webhook_invalid_id",
    )


def test_unknown_routes_and_an_inactive_woocommerce_are_rest_no_route(store):
    assert error_of(call(store, "GET", "/coupons")) == (404, "rest_no_route")
    assert error_of(call(store, "DELETE", "/webhooks")) == (404, "rest_no_route")
    store.woocommerce_active = False
    assert error_of(call(store, "GET")) == (404, "rest_no_route")


# -- deliveries --------------------------------------------------------------------------------


def test_order_deliveries_are_signed_like_woocommerce(store, receiver):
    created = create(store, receiver.url, secret="s3cret")
    order = {"id": 1187, "status": "processing", "note": "a/b é"}
    [delivery] = store.trigger("order.created", order)
    headers, body = receiver.received[-1]
    assert body == b'{"id":1187,"status":"processing","note":"a\\/b \\u00e9"}'
    assert json.loads(body) == order
    assert headers["X-Wc-Webhook-Signature"] == signature("s3cret", body)
    assert headers["X-Wc-Webhook-Topic"] == "order.created"
    assert headers["X-Wc-Webhook-Id"] == str(created["id"])
    assert headers["X-Wc-Webhook-Source"] == f"{store.base_url}/"
    assert delivery.succeeded
    assert store.trigger("order.updated", order) == []  # no webhook has that topic


def test_the_seventh_failure_in_a_row_disables_the_webhook(store, receiver):
    created = create(store, receiver.url)
    receiver.status = 500
    for _ in range(6):
        store.trigger("order.created", {"id": 1})
    assert store.webhook(created["id"]).status == "active"
    store.trigger("order.created", {"id": 1})
    assert store.webhook(created["id"]).status == "disabled"
    assert store.trigger("order.created", {"id": 1}) == []  # disabled: nothing is sent


def test_reactivating_over_rest_keeps_the_failure_count(store, receiver):
    """Why a repair must recreate a disabled webhook: the REST API cannot reset the count."""
    created = create(store, receiver.url)
    receiver.status = 500
    for _ in range(7):
        store.trigger("order.created", {"id": 1})
    assert (store.webhook(created["id"]).status, store.webhook(created["id"]).failure_count) == (
        "disabled",
        6,
    )
    receiver.status = 200
    call(store, "PUT", f"/webhooks/{created['id']}", json={"status": "active"})
    assert store.webhook(created["id"]).failure_count == 6
    receiver.status = 500
    [failed] = store.trigger("order.created", {"id": 1})
    assert not failed.succeeded
    assert store.webhook(created["id"]).status == "disabled"  # at its first failure


def test_a_success_resets_the_failure_count_and_redirects_count_as_success(store, receiver):
    created = create(store, receiver.url)
    receiver.status = 500
    for _ in range(5):
        store.trigger("order.created", {"id": 1})
    receiver.status = 302
    store.trigger("order.created", {"id": 1})
    assert store.webhook(created["id"]).failure_count == 0


def test_helpers_mirror_woocommerce_validation():
    assert is_valid_topic("order.restored") and is_valid_topic("action.woocommerce_x")
    assert not is_valid_topic("order.paid") and not is_valid_topic(None)
    assert is_valid_url("https://shop.example/a?b=1") and not is_valid_url("HTTPS://x.example")
    assert wp_json_encode({"u": "http://x/"}) == b'{"u":"http:\\/\\/x\\/"}'
    assert signature("a&amp;b", b"x") == signature("a&b", b"x")
