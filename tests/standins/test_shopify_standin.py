"""The Shopify stand-in refuses what Shopify would refuse, so the install tests mean something."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
import requests

from platforms.shopify.admin_api import API_VERSION
from platforms.shopify.oauth import query_hmac
from tests.standins.shopify import ShopifyStandIn
from tests.standins.shopify_admin import AdminGraphQL

KEY, SECRET = "key", "secret-that-is-long-enough-for-hs256"
CALLBACK = "https://app.example/shopify/callback"
SHOP = "demo.myshopify.com"


@pytest.fixture(scope="module")
def standin() -> Iterator[ShopifyStandIn]:
    server = ShopifyStandIn(KEY, SECRET, CALLBACK).start()
    yield server
    server.stop()


def authorize(standin: ShopifyStandIn, **changes: str) -> requests.Response:
    params = {"client_id": KEY, "scope": "read_orders", "redirect_uri": CALLBACK, "state": "s"}
    params.update(changes)
    url = f"{standin.base_url}/{SHOP}/admin/oauth/authorize"
    return requests.get(url, params=params, allow_redirects=False, timeout=5)


def token(standin: ShopifyStandIn, body: dict, **kwargs: object) -> requests.Response:
    url = f"{standin.base_url}/{SHOP}/admin/oauth/access_token"
    return requests.post(url, json=body, timeout=5, **kwargs)  # type: ignore[arg-type]


def grant(standin: ShopifyStandIn) -> dict:
    body = {"client_id": KEY, "client_secret": SECRET, "code": standin.issue_code(SHOP)}
    answer = token(standin, {**body, "expiring": 1})
    assert answer.status_code == 200, answer.text
    return answer.json()


SCOPES_QUERY = "{ currentAppInstallation { accessScopes { handle } } }"


def graphql(  # type: ignore[no-untyped-def]
    standin: ShopifyStandIn,
    access: str,
    query: str = SCOPES_QUERY,
    variables: dict | None = None,
    version: str = API_VERSION,
):
    url = f"{standin.base_url}/{SHOP}/admin/api/{version}/graphql.json"
    body = {"query": query, "variables": variables or {}}
    return requests.post(url, json=body, headers={"X-Shopify-Access-Token": access}, timeout=5)


def test_authorize_redirects_back_with_a_signed_query(standin):
    answer = authorize(standin)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    query = dict(parse_qsl(urlsplit(location).query))
    assert set(query) == {"code", "hmac", "host", "shop", "state", "timestamp"}
    assert query["hmac"] == query_hmac(SECRET, query)  # two implementations agree


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": "other"},
        {"redirect_uri": "https://evil.example/callback"},
        {"scope": "read_orders,write_products"},
        {"state": ""},
        {"grant_options[]": "per-user"},
    ],
)
def test_authorize_refuses_bad_parameters(standin, changes):
    assert authorize(standin, **changes).status_code == 400


def test_code_exchange_gives_an_expiring_token_once(standin):
    code = standin.issue_code(SHOP)
    body = {"client_id": KEY, "client_secret": SECRET, "code": code, "expiring": 1}
    first = token(standin, body)
    assert first.status_code == 200
    assert {"access_token", "scope", "expires_in", "refresh_token", "refresh_token_expires_in"} <= (
        set(first.json())
    )
    assert token(standin, body).status_code == 400  # a code works once


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"client_id": KEY, "client_secret": "wrong", "code": "c", "expiring": 1}, 401),
        ({"client_id": KEY, "client_secret": SECRET, "code": "c"}, 400),  # not expiring
        ({"client_id": KEY, "client_secret": SECRET, "code": "c", "expiring": 0}, 400),
        ({"client_id": KEY, "client_secret": SECRET, "grant_type": "refresh_token"}, 400),
    ],
)
def test_token_endpoint_refuses_bad_requests(standin, body, status):
    if "code" in body:
        body = {**body, "code": standin.issue_code(SHOP)}
    assert token(standin, body).status_code == status


def test_token_endpoint_takes_json_only(standin):
    url = f"{standin.base_url}/{SHOP}/admin/oauth/access_token"
    body = {"client_id": KEY, "client_secret": SECRET, "code": standin.issue_code(SHOP)}
    assert requests.post(url, data={**body, "expiring": "1"}, timeout=5).status_code == 400


def test_refresh_rotates_and_the_old_tokens_stop_working(standin):
    first = grant(standin)
    body = {"client_id": KEY, "client_secret": SECRET, "grant_type": "refresh_token"}
    second = token(standin, {**body, "refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert token(standin, {**body, "refresh_token": first["refresh_token"]}).status_code == 400
    assert graphql(standin, first["access_token"]).status_code == 401
    assert graphql(standin, second.json()["access_token"]).status_code == 200


def test_graphql_needs_a_known_token_and_a_served_version(standin):
    access = grant(standin)["access_token"]
    assert graphql(standin, "shpat_unknown").status_code == 401
    assert graphql(standin, access, version="2025-10").status_code == 404  # no checkoutToken
    assert graphql(standin, access).json()["data"]["currentAppInstallation"] == {
        "accessScopes": [{"handle": "read_orders"}, {"handle": "write_pixels"}]
    }


def test_a_revoked_shop_answers_401_and_refuses_its_refresh_token(standin):
    granted = grant(standin)
    standin.revoke(SHOP)
    assert graphql(standin, granted["access_token"]).status_code == 401
    body = {"client_id": KEY, "client_secret": SECRET, "grant_type": "refresh_token"}
    assert token(standin, {**body, "refresh_token": granted["refresh_token"]}).status_code == 400


LIST_SUBSCRIPTIONS = """
query list($after: String) {
  webhookSubscriptions(first: 2, after: $after) {
    nodes { id topic } pageInfo { hasNextPage endCursor }
  }
}
"""
DELETE = "mutation d($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }"  # noqa: E501


def test_shop_subscriptions_are_listed_by_page_and_deleted(standin):
    access = grant(standin)["access_token"]
    made = [standin.add_shop_subscription(SHOP, t, "https://a.example/w") for t in ("A", "B", "C")]
    first = graphql(standin, access, LIST_SUBSCRIPTIONS).json()["data"]["webhookSubscriptions"]
    assert [n["id"] for n in first["nodes"]] == sorted(made)[:2]
    assert first["pageInfo"]["hasNextPage"] is True
    after = {"after": first["pageInfo"]["endCursor"]}
    rest = graphql(standin, access, LIST_SUBSCRIPTIONS, after).json()["data"]
    assert [n["id"] for n in rest["webhookSubscriptions"]["nodes"]] == sorted(made)[2:]
    deleted = graphql(standin, access, DELETE, {"id": made[0]}).json()["data"]
    assert deleted["webhookSubscriptionDelete"]["deletedWebhookSubscriptionId"] == made[0]
    again = graphql(standin, access, DELETE, {"id": made[0]}).json()["data"]
    assert again["webhookSubscriptionDelete"]["userErrors"]
    assert len(standin.subscriptions[SHOP]) == 2


def test_token_exchange_needs_a_valid_session_token_for_the_shop(standin):
    now = int(time.time())
    claims = {"aud": KEY, "dest": f"https://{SHOP}", "exp": now + 60}
    body = {
        "client_id": KEY,
        "client_secret": SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        "expiring": 1,
    }
    good = jwt.encode(claims, SECRET, algorithm="HS256")
    assert token(standin, {**body, "subject_token": good}).status_code == 200
    other_shop = jwt.encode({**claims, "dest": "https://x.myshopify.com"}, SECRET, "HS256")
    assert token(standin, {**body, "subject_token": other_shop}).status_code == 400
    forged = jwt.encode(claims, "not-the-secret-but-as-long-as-the-real-one", algorithm="HS256")
    assert token(standin, {**body, "subject_token": forged}).status_code == 400
    online = {
        **body,
        "requested_token_type": "urn:shopify:params:oauth:token-type:online-access-token",
    }
    assert token(standin, {**online, "subject_token": good}).status_code == 400


# -- the orders query (tests/standins/shopify_admin.py) -----------------------------------------

ORDERS_QUERY = """
query o($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { legacyResourceId updatedAt %s }
  }
}
"""
NOW = datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def order(number: int, updated: datetime, created: datetime | None = None) -> dict:
    return {
        "id": f"gid://shopify/Order/{number}",
        "legacyResourceId": str(number),
        "createdAt": iso(created or updated),
        "updatedAt": iso(updated),
        "customer": {"legacyResourceId": "7"},
        "lineItems": [{"sku": f"S{i}", "quantity": 1} for i in range(3)],
    }


def orders_answer(standin, access, since: str, *, first=2, after=None, extra="", **changes):  # type: ignore[no-untyped-def]
    variables = {"first": first, "after": after, "query": f"updated_at:>='{since}'", **changes}
    return graphql(standin, access, ORDERS_QUERY % extra, variables).json()


@pytest.fixture
def shop_orders(standin: ShopifyStandIn) -> list[dict]:
    standin.admin = AdminGraphQL(bucket_size=2000, restore_rate=1000)
    made = [order(n, NOW - timedelta(minutes=10 - n)) for n in range(1, 6)]
    made.append(order(9, NOW - timedelta(minutes=7)))  # the same change time as order 3
    standin.orders[SHOP] = list(reversed(made))
    return made


def test_orders_are_paged_by_cursor_oldest_change_first(standin, shop_orders):
    access = grant(standin)["access_token"]
    since, seen, after = iso(NOW - timedelta(minutes=7)), [], None
    while True:
        answer = orders_answer(standin, access, since, after=after)
        page = answer["data"]["orders"]
        seen += [node["legacyResourceId"] for node in page["nodes"]]
        assert answer["extensions"]["cost"]["requestedQueryCost"] == 2 + 2 * 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["3", "9", "4", "5"]  # from the checkpoint itself (>=), ties by id
    strictly = orders_answer(standin, access, since, first=10)
    assert strictly["data"]["orders"]["nodes"][0]["legacyResourceId"] == "3"
    later = orders_answer(standin, access, since, first=10, query=f"updated_at:>'{since}'")
    assert [n["legacyResourceId"] for n in later["data"]["orders"]["nodes"]] == ["4", "5"]


@pytest.mark.parametrize(
    ("changes", "extra", "error"),
    [
        ({"first": 251}, "", "first cannot exceed 250"),
        ({"query": f"updated_at:>{iso(NOW)}"}, "", "Invalid search query"),  # date not quoted
        ({"query": f"created_at:>'{iso(NOW)}'"}, "", "Invalid search query"),
        ({"after": "not-a-cursor"}, "", "Invalid cursor"),
        ({}, "browserIp", "Field 'browserIp' doesn't exist on type 'Order'"),
        ({}, "customer { legacyResourceId }", "Required access: `read_customers`"),
        ({}, "lineItems(first: 5) { nodes { variant { id } } }", "`read_products`"),
        ({"first": 250}, "lineItems(first: 250) { nodes { sku } }", "exceeds the single query"),
    ],
)
def test_an_orders_query_shopify_would_refuse_is_refused(
    standin, shop_orders, changes, extra, error
):
    access = grant(standin)["access_token"]
    answer = orders_answer(standin, access, iso(NOW - timedelta(hours=1)), extra=extra, **changes)
    assert "data" not in answer
    assert error in answer["errors"][0]["message"]


def test_a_granted_scope_opens_its_fields(standin, shop_orders):
    access = standin.issue_custom_app_token(SHOP, {"read_orders", "read_customers"})
    extra = "customer { legacyResourceId } lineItems(first: 2) { nodes { sku } }"
    answer = orders_answer(standin, access, iso(NOW - timedelta(hours=1)), first=1, extra=extra)
    node = answer["data"]["orders"]["nodes"][0]
    assert node["customer"] == {"legacyResourceId": "7"}
    assert [line["sku"] for line in node["lineItems"]["nodes"]] == ["S0", "S1"]


def test_only_the_last_60_days_without_read_all_orders(standin, shop_orders):
    standin.orders[SHOP].append(order(50, NOW, created=NOW - timedelta(days=61)))
    since = iso(NOW - timedelta(minutes=1))
    recent_only = standin.issue_custom_app_token(SHOP, {"read_orders"})
    everything = standin.issue_custom_app_token(SHOP, {"read_orders", "read_all_orders"})
    assert orders_answer(standin, recent_only, since)["data"]["orders"]["nodes"] == []
    found = orders_answer(standin, everything, since)["data"]["orders"]["nodes"]
    assert [n["legacyResourceId"] for n in found] == ["50"]


def test_every_call_is_charged_to_a_bucket_that_throttles_when_short(standin, shop_orders):
    standin.admin = AdminGraphQL(bucket_size=30, restore_rate=1)
    access = grant(standin)["access_token"]
    extra = "lineItems(first: 5) { nodes { sku } }"
    since = iso(NOW - timedelta(hours=1))
    first = orders_answer(standin, access, since, extra=extra)
    cost = first["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 2 + 2 * (1 + 2 + 5)  # 18
    assert cost["actualQueryCost"] == 2 + 2 * (1 + 2 + 3)  # three lines each: 14, refunded
    assert cost["throttleStatus"]["currentlyAvailable"] == 30 - 14
    throttled = orders_answer(standin, access, since, extra=extra)
    assert throttled["errors"] == [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]
    assert throttled["extensions"]["cost"]["actualQueryCost"] is None
    assert standin.admin.throttled == 1
