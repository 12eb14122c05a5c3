"""The WooCommerce panel of the Settings page, through Flask's test client: webhook health read
live from the store stand-in, the Repair button, an unreachable or silent store, a store added
by hand (steps, secret on request), the plugin download, and who may use them; and what the
Status page says when a process's APP_URL disagrees with a store's recorded webhook address.

The client's app has ``APP_URL`` set to the live server (``live_services``), so the delivery
URL the panel expects is where the stand-in's pings really arrive.
"""

from __future__ import annotations

import io
import re
import socket
import time
import zipfile
from collections.abc import Iterator

import pytest

from app import create_app
from connector.embedded_redis import free_port
from connector.models import Store
from connector.services import build_services
from connector.stores import add_store
from platforms.woocommerce.connect import (
    StoreAddress,
    StoreKeys,
    check_store,
    connect_store,
    save_keys,
)
from platforms.woocommerce.panel import LIVE_READ_SECONDS
from tests.platforms.woocommerce.helpers import CONSUMER_KEY, CONSUMER_SECRET
from tests.support import csrf_of, log_in

pytestmark = pytest.mark.postgres

MANUAL_SECRET = "pasted-by-hand-" + "x7" * 10


@pytest.fixture
def web(live_services):  # type: ignore[no-untyped-def]
    """A test client of an app whose APP_URL is the live server."""
    return create_app(services=live_services).test_client()


@pytest.fixture
def connected(live_services, woo) -> dict:  # type: ignore[no-untyped-def]
    """A store connected to the stand-in with REST keys; its two webhooks work."""
    address = StoreAddress.parse(woo.base_url)
    report = connect_store(live_services, address, CONSUMER_KEY, CONSUMER_SECRET)
    woo.requests.clear()  # from here on, every REST call the stand-in records is the test's
    return report


@pytest.fixture
def manual(live_services) -> str:  # type: ignore[no-untyped-def]
    """A store added by hand (``add-woocommerce``): no REST keys."""
    return add_store(
        live_services,
        platform="woocommerce",
        domain="by-hand.example",
        webhook_secret=MANUAL_SECRET,
    ).id


@pytest.fixture
def silent_store() -> Iterator[str]:
    """An address that accepts connections and never answers (a hung WordPress host)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def settings_page(client, store_id: str, **query: str) -> str:  # type: ignore[no-untyped-def]
    answer = client.get(f"/settings/{store_id}/settings", query_string=query)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def status_page(client, store_id: str) -> str:  # type: ignore[no-untyped-def]
    answer = client.get(f"/settings/{store_id}/")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def row(page: str, topic: str) -> str:
    """The panel's table row of one topic."""
    found = re.search(rf'<tr id="webhook-{topic.replace(".", "-")}".*?</tr>', page, re.DOTALL)
    assert found, f"no row for {topic}"
    return found.group(0)


def ids(report: dict) -> tuple[int, int]:
    created, updated = report["webhooks"]
    return created["id"], updated["id"]


def secret_of(services, store_id: str) -> str:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return services.cipher.decrypt(session.get(Store, store_id).webhook_secret_encrypted)


def writes(woo) -> list[tuple[str, str, str | None]]:  # type: ignore[no-untyped-def]
    return [call for call in woo.requests if call[0] != "GET"]


# -- a store connected with REST keys ----------------------------------------------------------


def test_the_panel_shows_each_webhook_as_the_store_reports_it(web, live_services, connected, woo):
    store_id = connected["store_id"]
    created, _updated = ids(connected)
    elsewhere = f"https://old-connector.example/webhooks/woocommerce/{store_id}"
    woo.tamper(created, status="paused", delivery_url=elsewhere)
    log_in(web, live_services, store_id)

    page = settings_page(web, store_id)

    paused = row(page, "order.created")
    assert 'data-status="paused"' in paused and f"#{created}" in paused
    assert f"elsewhere: <code>{elsewhere}</code>" in paused
    assert "paused; delivers to another address" in paused
    active = row(page, "order.updated")
    assert 'data-status="active"' in active and "this connector" in active
    assert '<span class="ok">none</span>' in active
    assert 'id="webhooks-broken"' in page and 'id="repair-webhooks"' in page
    assert MANUAL_SECRET not in page and secret_of(live_services, store_id) not in page
    assert writes(woo) == []  # showing the page changes nothing in the store


def test_a_disabled_webhook_is_shown_and_the_repair_button_fixes_it(
    web, live_services, connected, woo
):
    store_id = connected["store_id"]
    _created, updated = ids(connected)
    woo.disable(updated)
    log_in(web, live_services, store_id)
    page = settings_page(web, store_id)
    assert 'data-status="disabled"' in row(page, "order.updated")
    assert "disabled by WooCommerce after repeated failed deliveries" in row(page, "order.updated")

    answer = web.post(
        f"/settings/{store_id}/woocommerce/repair", data={"csrf_token": csrf_of(page)}
    )

    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(
        f"/settings/{store_id}/settings?woocommerce_repair=repaired#woocommerce-webhooks"
    )
    [webhook] = [w for w in woo.webhooks() if w.topic == "order.updated"]
    assert webhook.id != updated  # made anew, so WooCommerce counts its failures from zero
    assert (webhook.status, webhook.delivery_url) == ("active", connected["webhook_url"])
    assert webhook.secret == secret_of(live_services, store_id)
    page = settings_page(web, store_id, woocommerce_repair="repaired")
    assert 'id="repair-result"' in page and "Repaired: your order webhooks are active" in page
    assert 'data-status="active"' in row(page, "order.updated")
    assert 'id="webhooks-healthy"' in page


def test_repairing_a_healthy_store_changes_nothing(web, live_services, connected, woo):
    store_id = connected["store_id"]
    log_in(web, live_services, store_id)
    token = csrf_of(settings_page(web, store_id))
    answer = web.post(f"/settings/{store_id}/woocommerce/repair", data={"csrf_token": token})
    assert "woocommerce_repair=healthy" in answer.headers["Location"]
    assert writes(woo) == []
    assert "Nothing needed repair" in settings_page(web, store_id, woocommerce_repair="healthy")


def test_an_unreachable_store_is_explained_and_the_page_still_answers(
    web, live_services, connected
):
    store_id = connected["store_id"]
    gone = f"http://127.0.0.1:{free_port()}"
    save_keys(live_services, store_id, StoreKeys(gone, CONSUMER_KEY, CONSUMER_SECRET))
    log_in(web, live_services, store_id)

    page = settings_page(web, store_id)

    assert 'id="webhooks-unreadable"' in page
    assert f"Cannot reach {gone}: connection refused." in page
    assert "What to do: Check that your site is online" in page
    assert 'id="repair-webhooks"' in page and 'id="settings-form-tiktok"' in page
    answer = web.post(
        f"/settings/{store_id}/woocommerce/repair", data={"csrf_token": csrf_of(page)}
    )
    assert "woocommerce_repair=unreachable" in answer.headers["Location"]
    page = settings_page(web, store_id, woocommerce_repair="unreachable")
    assert "The repair did not finish. Check that your site is online" in page


def test_a_store_that_never_answers_does_not_hold_the_page(
    web, live_services, connected, silent_store
):
    store_id = connected["store_id"]
    save_keys(live_services, store_id, StoreKeys(silent_store, CONSUMER_KEY, CONSUMER_SECRET))
    log_in(web, live_services, store_id)

    started = time.monotonic()
    page = settings_page(web, store_id)
    took = time.monotonic() - started

    # The store never answers: the page must not wait for it (a generous bound, not a timing).
    assert LIVE_READ_SECONDS <= took < LIVE_READ_SECONDS + 20
    assert f"did not answer within {LIVE_READ_SECONDS:.0f} seconds" in page
    assert "reload it to try again" in page


def test_without_a_recorded_address_the_repair_button_changes_nothing(
    web, live_services, connected, woo
):
    store_id = connected["store_id"]
    _created, updated = ids(connected)
    with live_services.db.session() as session:
        session.get(Store, store_id).webhook_url = None  # connected before addresses were kept
        session.commit()
    woo.disable(updated)  # and the webhooks deliver over plain http: nothing to adopt
    log_in(web, live_services, store_id)
    page = status_page(web, store_id)
    assert "has no record yet of the address your WooCommerce webhooks deliver to" in page

    token = csrf_of(settings_page(web, store_id))
    answer = web.post(f"/settings/{store_id}/woocommerce/repair", data={"csrf_token": token})

    assert "woocommerce_repair=address-unknown" in answer.headers["Location"]
    assert writes(woo) == [] and woo.webhook(updated).status == "disabled"
    page = settings_page(web, store_id, woocommerce_repair="address-unknown")
    assert "The connector changed nothing: it has no record of the address" in page


def test_the_status_page_says_when_an_app_url_disagrees(
    web, live_services, settings, connected, woo
):
    store_id = connected["store_id"]
    log_in(web, live_services, store_id)
    assert 'class="notice warn platform-notice"' not in status_page(web, store_id)

    # A worker started without APP_URL checks the store: the web process hears of it.
    default = build_services(settings.with_overrides(app_url="http://localhost:8000"))
    try:
        check_store(default, store_id, repair=True)
    finally:
        default.db.dispose()

    page = status_page(web, store_id)
    [notice] = re.findall(r'<div class="notice warn platform-notice">(.*?)</div>', page, re.S)
    assert (
        "A connector process is set up with another address: it would have your webhooks"
        f" deliver to http://localhost:8000/webhooks/woocommerce/{store_id}, but they were set"
        f" up to deliver to {connected['webhook_url']}. They keep delivering to"
        f" {connected['webhook_url']}: nothing was changed."
    ) in " ".join(notice.split())
    assert {w.delivery_url for w in woo.webhooks()} == {connected["webhook_url"]}


def test_an_unknown_repair_outcome_in_the_link_shows_nothing(web, live_services, connected):
    store_id = connected["store_id"]
    log_in(web, live_services, store_id)
    page = settings_page(web, store_id, woocommerce_repair="Your store was hacked, call us")
    assert 'id="repair-result"' not in page and "hacked" not in page


# -- a store added by hand ---------------------------------------------------------------------


def test_a_store_added_by_hand_gets_the_steps_and_its_secret_only_on_request(
    web, live_services, manual
):
    log_in(web, live_services, manual)
    page = settings_page(web, manual)

    url = f"{live_services.settings.app_url}/webhooks/woocommerce/{manual}"
    assert f'<code id="delivery-url">{url}</code>' in page
    assert "WooCommerce &gt; Settings &gt; Advanced &gt; Webhooks" in page
    assert "Order created" in page and "Order updated" in page
    assert "WP REST API Integration v3" in page
    assert f"TikTok conversions: order.created ({manual})" in page
    assert MANUAL_SECRET not in page
    assert 'id="repair-webhooks"' not in page and 'id="webhooks"' not in page

    refused = web.post(f"/settings/{manual}/woocommerce/webhook-secret")
    assert refused.status_code == 400 and MANUAL_SECRET.encode() not in refused.data

    shown = web.post(
        f"/settings/{manual}/woocommerce/webhook-secret", data={"csrf_token": csrf_of(page)}
    )
    assert shown.status_code == 200
    assert f'<code id="webhook-secret">{MANUAL_SECRET}</code>' in shown.get_data(as_text=True)
    assert shown.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in shown.headers["Content-Security-Policy"]


def test_the_repair_route_refuses_a_store_added_by_hand(web, live_services, manual):
    log_in(web, live_services, manual)
    token = csrf_of(settings_page(web, manual))
    answer = web.post(f"/settings/{manual}/woocommerce/repair", data={"csrf_token": token})
    assert answer.status_code == 400 and b"added by hand" in answer.data


# -- the plugin --------------------------------------------------------------------------------


def test_the_plugin_zip_downloads_and_holds_the_plugin(web, live_services, manual):
    log_in(web, live_services, manual)
    page = settings_page(web, manual)
    href = f"/settings/{manual}/woocommerce/plugin.zip"
    assert f'href="{href}"' in page and "Plugins &gt; Add New &gt; Upload Plugin" in page
    collect_url = f"{live_services.settings.app_url}/collect"  # where its receipts go
    assert f'<code id="plugin-collect-url">{collect_url}</code>' in page

    answer = web.get(href)

    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    disposition = answer.headers["Content-Disposition"]
    assert disposition == "attachment; filename=tiktok-click-capture-0.2.0.zip"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        main = archive.read("tiktok-click-capture/tiktok-click-capture.php").decode()
    assert "tiktok-click-capture/includes/functions.php" in names
    assert "Plugin Name:" in main
    assert web.get(href).data == answer.data  # the same bytes every time


# -- who may use them --------------------------------------------------------------------------


def test_another_stores_session_cannot_repair_download_or_see_the_secret(
    web, live_services, connected, manual, woo
):
    store_a = connected["store_id"]
    _created, updated = ids(connected)
    woo.disable(updated)
    log_in(web, live_services, manual)
    token = csrf_of(settings_page(web, manual))

    assert (
        web.post(f"/settings/{store_a}/woocommerce/repair", data={"csrf_token": token}).status_code
        == 403
    )
    assert web.get(f"/settings/{store_a}/woocommerce/plugin.zip").status_code == 403
    secret_path = f"/settings/{store_a}/woocommerce/webhook-secret"
    assert web.post(secret_path, data={"csrf_token": token}).status_code == 403
    assert woo.webhook(updated).status == "disabled" and writes(woo) == []

    stranger = create_app(services=live_services).test_client()
    assert stranger.get(f"/settings/{manual}/woocommerce/plugin.zip").status_code == 403


def test_a_repair_without_the_csrf_token_is_refused(web, live_services, connected, woo):
    store_id = connected["store_id"]
    _created, updated = ids(connected)
    woo.disable(updated)
    log_in(web, live_services, store_id)
    path = f"/settings/{store_id}/woocommerce/repair"

    assert web.post(path).status_code == 400
    assert web.post(path, data={"csrf_token": "0" * 64}).status_code == 400
    assert woo.webhook(updated).status == "disabled" and writes(woo) == []


def test_a_shopify_store_has_no_woocommerce_routes(web, live_services, shopify_store):
    log_in(web, live_services, shopify_store)
    assert web.get(f"/settings/{shopify_store}/woocommerce/plugin.zip").status_code == 404
    page = settings_page(web, shopify_store)
    assert "woocommerce-webhooks" not in page and "plugin.zip" not in page
