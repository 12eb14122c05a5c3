"""The embedded pages' grant: short, for the shop of the App Bridge session token that got it,
renewed by the page's script with a fresh session token (security issue, item 1)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from connector.models import Store
from connector.stores import add_store
from tests.platforms.shopify.helpers import APP_URL
from tests.platforms.shopify.test_embedded import open_app, session_token
from tests.support import csrf_of

pytestmark = pytest.mark.postgres

RENEW = "/shopify/app/grant"
OTHER_SHOP = "other-shop.myshopify.com"


def renew(browser, token: str):  # type: ignore[no-untyped-def]
    return browser.post(RENEW, headers={"Authorization": f"Bearer {token}"}, base_url=APP_URL)


def installed_store(browser) -> str:  # type: ignore[no-untyped-def]
    answer = open_app(browser, session_token())
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return urlsplit(answer.headers["Location"]).path.split("/")[2]


def page(browser, store_id: str, grant: str, path: str = "settings"):  # type: ignore[no-untyped-def]
    return browser.get(
        f"/settings/{store_id}/{path}", query_string={"session": grant}, base_url=APP_URL
    )


def test_the_embedded_page_loads_the_renewal_script(browser, shopify):
    answer = open_app(browser, session_token())
    html = browser.get(answer.headers["Location"], base_url=APP_URL).get_data(as_text=True)
    assert f'src="/static/embedded-grant.js" data-renew-url="{RENEW}"' in html
    assert browser.get("/static/embedded-grant.js").status_code == 200


def test_a_fresh_session_token_renews_the_grant_and_its_csrf_token(browser, shopify):
    store_id = installed_store(browser)
    answer = renew(browser, session_token())
    assert answer.status_code == 200
    fresh = answer.json
    settings = page(browser, store_id, fresh["session"])
    assert settings.status_code == 200
    assert csrf_of(settings.get_data(as_text=True)) == fresh["csrf_token"]
    assert renew(browser, "not-a-token").status_code == 401
    assert renew(browser, session_token(exp=0)).status_code == 401


def test_a_grant_bound_to_one_shop_is_refused_for_another(browser, shopify, app_services):
    store_id = installed_store(browser)
    other = add_store(app_services, platform="shopify", domain=OTHER_SHOP, webhook_secret="s").id
    grant = renew(browser, session_token()).json["session"]
    assert page(browser, store_id, grant).status_code == 200
    assert page(browser, other, grant).status_code == 403
    assert page(browser, other, grant, path="").status_code == 403
    # The other shop's session token gets no grant: it has not installed the app.
    other_shops = session_token(iss=f"https://{OTHER_SHOP}/admin", dest=f"https://{OTHER_SHOP}")
    assert renew(browser, other_shops).status_code == 403


def test_the_grant_in_the_pages_links_names_its_shop(browser, shopify, app_services):
    """Redirected from ``/shopify/app``, the grant is the shop's: were the store's domain to
    change (another shop's store), the grant would no longer open it."""
    store_id = installed_store(browser)
    answer = open_app(browser, session_token())
    grant = parse_qs(urlsplit(answer.headers["Location"]).query)["session"][0]
    assert page(browser, store_id, grant).status_code == 200
    with app_services.db.session() as session:
        session.get(Store, store_id).domain = OTHER_SHOP
        session.commit()
    assert page(browser, store_id, grant).status_code == 403
