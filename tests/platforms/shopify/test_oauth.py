"""The install checks on their own: shop domain, query hmac, timestamp, state, session token."""

from __future__ import annotations

import time

import jwt
import pytest
import shopify

from platforms.shopify.oauth import (
    OAuthError,
    StateError,
    authorize_url,
    check_state,
    decode_session_token,
    new_state,
    query_hmac,
    valid_shop,
    verify_query,
)

# Shopify's published vectors (ShopifyAPI's test suite; also quoted by exshopify).
VECTOR = {
    "code": "0907a61c0c8d55e99db179b68161bc00",
    "shop": "some-shop.myshopify.com",
    "timestamp": "1337178173",
}
VECTOR_HMAC = "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"
SECRET = "app-secret-long-enough-for-hs256-0123456789"
VECTOR_WITH_STATE_HMAC = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"


def test_query_hmac_matches_shopifys_published_vectors() -> None:
    assert query_hmac("hush", VECTOR) == VECTOR_HMAC
    with_state = {**VECTOR, "state": "0.6784241404160823"}
    assert query_hmac("hush", with_state) == VECTOR_WITH_STATE_HMAC


@pytest.mark.parametrize(
    "params",
    [
        {**VECTOR, "ids[]": ["1", "2"]},
        {**VECTOR, "a%b": "c=d&e", "x=y": "100%"},
        {**VECTOR, "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw"},
    ],
)
def test_query_hmac_agrees_with_shopifyapi_on_escaping_and_arrays(params, monkeypatch) -> None:
    monkeypatch.setattr(shopify.Session, "secret", "hush")  # its class-level state, in a test
    assert query_hmac("hush", params) == shopify.Session.calculate_hmac(params)


def test_hmac_param_itself_is_left_out() -> None:
    assert query_hmac("hush", {**VECTOR, "hmac": "anything"}) == VECTOR_HMAC


@pytest.mark.parametrize(
    "shop",
    [
        "evil.com/x.myshopify.com",
        "x.myshopify.com.evil.com",
        "x.myshopify.com\n",
        "x.myshopify.com\nLocation: evil",
        "x.myshopify.com:443",
        "https://x.myshopify.com",
        "-x.myshopify.com",
        "x.myshopify.co",
        "x_y.myshopify.com",
        "x.evil.myshopify.com",
        "",
        None,
        ["x.myshopify.com"],
    ],
)
def test_hostile_shop_domains_are_refused(shop) -> None:
    assert valid_shop(shop) is None


def test_valid_shop_is_lowercased() -> None:
    assert valid_shop("Demo-Store.myshopify.com") == "demo-store.myshopify.com"


def signed(params: dict[str, str], secret: str = "hush") -> dict[str, str]:
    return {**params, "hmac": query_hmac(secret, params)}


def test_verify_query_returns_the_shop_of_a_fresh_signed_request() -> None:
    params = signed({"shop": "a.myshopify.com", "timestamp": str(int(time.time()))})
    assert verify_query("hush", params) == "a.myshopify.com"


def test_published_vector_verifies_within_a_day_of_its_timestamp() -> None:
    params = {**VECTOR, "hmac": VECTOR_HMAC}
    assert verify_query("hush", params, now=1337178173 + 3600) == "some-shop.myshopify.com"
    with pytest.raises(OAuthError, match="more than a day old"):
        verify_query("hush", params, now=1337178173 + 24 * 3600 + 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hmac": "0" * 64}, "hmac"),
        ({"shop": "b.myshopify.com"}, "hmac"),  # signed for another shop
        ({"shop": "evil.com"}, "shop"),
        ({"timestamp": "soon"}, "hmac"),
    ],
)
def test_tampered_requests_are_refused(change, message) -> None:
    params = {**signed({"shop": "a.myshopify.com", "timestamp": str(int(time.time()))}), **change}
    with pytest.raises(OAuthError, match=message):
        verify_query("hush", params)


def test_missing_hmac_or_timestamp_is_refused() -> None:
    params = signed({"shop": "a.myshopify.com", "timestamp": str(int(time.time()))})
    with pytest.raises(OAuthError, match="hmac"):
        verify_query("hush", {k: v for k, v in params.items() if k != "hmac"})
    no_time = signed({"shop": "a.myshopify.com"})
    with pytest.raises(OAuthError, match="timestamp"):
        verify_query("hush", no_time)


def test_authorize_url_names_the_app_scopes_callback_and_state() -> None:
    url = authorize_url(
        "https://a.myshopify.com",
        api_key="key",
        scopes="read_orders,write_pixels",
        redirect_uri="https://app.example/shopify/callback",
        state="s1",
    )
    assert url == (
        "https://a.myshopify.com/admin/oauth/authorize?client_id=key"
        "&scope=read_orders%2Cwrite_pixels"
        "&redirect_uri=https%3A%2F%2Fapp.example%2Fshopify%2Fcallback&state=s1"
    )


def test_state_round_trip_for_the_same_browser_and_shop() -> None:
    state = new_state("k", "a.myshopify.com", "nonce-1")
    check_state("k", state, shop="a.myshopify.com", browser_nonce="nonce-1")
    # Started before SECRET_KEY changed: the former key, listed first, still checks it.
    check_state(["k", "new-k"], state, shop="a.myshopify.com", browser_nonce="nonce-1")
    with pytest.raises(StateError):
        check_state("new-k", state, shop="a.myshopify.com", browser_nonce="nonce-1")


@pytest.mark.parametrize(
    ("secret", "shop", "nonce", "message"),
    [
        ("k", "a.myshopify.com", "nonce-2", "this browser"),
        ("k", "a.myshopify.com", None, "this browser"),
        ("k", "b.myshopify.com", "nonce-1", "another shop"),
        ("other-key", "a.myshopify.com", "nonce-1", "invalid"),
    ],
)
def test_state_from_elsewhere_is_refused(secret, shop, nonce, message) -> None:
    state = new_state(secret, "a.myshopify.com", "nonce-1")
    with pytest.raises(StateError, match=message):
        check_state("k", state, shop=shop, browser_nonce=nonce)


def test_expired_state_is_refused() -> None:
    state = new_state("k", "a.myshopify.com", "n")
    time.sleep(1.1)
    with pytest.raises(StateError, match="too long"):
        check_state("k", state, shop="a.myshopify.com", browser_nonce="n", max_age=0)


def session_token(**changes: object) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://demo.myshopify.com/admin",
        "dest": "https://demo.myshopify.com",
        "aud": "key",
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": "jti-1",
        "sid": "sid-1",
    }
    claims.update(changes)
    secret = str(claims.pop("_secret", SECRET))
    claims = {k: v for k, v in claims.items() if v is not None}
    return "Bearer " + jwt.encode(claims, secret, algorithm="HS256")


def test_session_token_gives_its_shop() -> None:
    assert decode_session_token(session_token(), api_key="key", secret=SECRET) == (
        "demo.myshopify.com"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"_secret": "not-the-app-secret-but-just-as-long-0123"},
        {"aud": "another-app"},
        {"exp": int(time.time()) - 60},
        {"nbf": int(time.time()) + 600},
        {"exp": None},
        {"nbf": None},
        {"dest": "https://other.myshopify.com"},  # iss and dest disagree
        {"iss": "https://evil.com/admin", "dest": "https://evil.com"},
        {"iss": "https://demo.myshopify.com:8443/admin", "dest": "https://demo.myshopify.com:8443"},
        {"iss": "http://demo.myshopify.com/admin", "dest": "http://demo.myshopify.com"},
    ],
)
def test_hostile_session_tokens_are_refused(changes) -> None:
    with pytest.raises(OAuthError, match="invalid session token"):
        decode_session_token(session_token(**changes), api_key="key", secret=SECRET)


def test_session_token_signed_with_none_is_refused() -> None:
    token = jwt.encode({"aud": "key", "dest": "https://demo.myshopify.com"}, None, algorithm="none")
    with pytest.raises(OAuthError):
        decode_session_token("Bearer " + token, api_key="key", secret=SECRET)
