"""The merchant pages through Flask's test client: login links, access control, CSRF,
security headers, settings, test event, delivery log and replay, status."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from connector.models import EventStatus, OutboxEvent, StoreDestination, utcnow
from connector.pipeline import record_events
from connector.stores import add_store
from connector.web.merchant.access import login_token
from tests.support import (
    PIXEL_CODE,
    TIKTOK_TOKEN,
    connect_meta,
    connect_tiktok,
    csrf_of,
    log_in,
    make_order,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def other_store(services) -> str:  # type: ignore[no-untyped-def]
    return add_store(
        services, platform="woocommerce", domain="other.example", webhook_secret="s"
    ).id


# -- login and access --------------------------------------------------------------------------


def test_login_link_shows_a_button_and_logs_in_once(client, services, shopify_store):
    path = f"/login/{login_token(services.settings.secret_key, shopify_store)}"
    page = client.get(path)
    assert page.status_code == 200 and b"Continue" in page.data
    assert "connector_session" not in (page.headers.get("Set-Cookie") or "")
    form = {"csrf_token": csrf_of(page.get_data(as_text=True))}
    answer = client.post(path, data=form)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/settings/{shopify_store}/")
    cookie = answer.headers["Set-Cookie"]
    assert "connector_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get(f"/settings/{shopify_store}/").status_code == 200
    again = client.post(path, data=form)
    assert again.status_code == 400 and b"already used" in again.data


def test_forged_and_expired_login_links_are_refused(client, services, shopify_store):
    forged = f"/login/{login_token('another-secret', shopify_store)}"
    assert client.get(forged).status_code == 400
    real = client.get(f"/login/{login_token(services.settings.secret_key, shopify_store)}")
    answer = client.post(forged, data={"csrf_token": csrf_of(real.get_data(as_text=True))})
    assert answer.status_code == 400 and b"not valid" in answer.data
    assert client.get(f"/settings/{shopify_store}/").status_code == 403


def test_session_cookie_is_secure_when_the_app_is_served_over_https(settings, shopify_store):
    from app import create_app
    from connector.services import build_services

    services = build_services(settings.with_overrides(app_url="https://connector.example"))
    client = create_app(services=services).test_client()
    path = f"/login/{login_token(services.settings.secret_key, shopify_store)}"
    page = client.get(path, base_url="https://connector.example")
    assert "; Secure" in page.headers["Set-Cookie"]
    form = {"csrf_token": csrf_of(page.get_data(as_text=True))}
    answer = client.post(path, data=form, base_url="https://connector.example")
    assert answer.status_code == 303
    assert "; Secure" in answer.headers["Set-Cookie"]
    services.db.dispose()


def test_a_store_session_cannot_read_or_change_another_store(
    client, services, shopify_store, other_store
):
    log_in(client, services, shopify_store)
    own = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    token = csrf_of(own)
    for path in ("/", "/settings", "/log"):
        assert client.get(f"/settings/{other_store}{path}").status_code == 403
    answer = client.post(
        f"/settings/{other_store}/settings",
        data={"csrf_token": token, "pixel_code": "X", "access_token": "Y"},
    )
    assert answer.status_code == 403
    answer = client.post(f"/settings/{other_store}/log/replay", data={"csrf_token": token})
    assert answer.status_code == 403
    with services.db.session() as session:
        assert (
            session.scalar(select(StoreDestination).where(StoreDestination.store_id == other_store))
            is None
        )


def test_unknown_store_and_anonymous_browser_get_the_same_403(client, shopify_store):
    assert client.get("/settings/st_nope/").status_code == 403
    assert client.get(f"/settings/{shopify_store}/").status_code == 403


def test_a_browser_gets_an_html_error_and_a_script_gets_json(client, shopify_store):
    html = client.get(f"/settings/{shopify_store}/", headers={"Accept": "text/html"})
    assert html.status_code == 403 and html.mimetype == "text/html"
    assert b"not logged in" in html.data
    script = client.get(f"/settings/{shopify_store}/", headers={"Accept": "*/*"})
    assert script.status_code == 403 and script.json["error"].startswith("you are not logged in")


def test_posts_without_the_csrf_token_are_refused(client, services, shopify_store):
    log_in(client, services, shopify_store)
    answer = client.post(
        f"/settings/{shopify_store}/settings",
        data={"pixel_code": PIXEL_CODE, "access_token": TIKTOK_TOKEN},
    )
    assert answer.status_code == 400 and b"reload the page" in answer.data
    answer = client.post(
        f"/settings/{shopify_store}/settings",
        data={"pixel_code": PIXEL_CODE, "access_token": TIKTOK_TOKEN, "csrf_token": "0" * 64},
    )
    assert answer.status_code == 400
    with services.db.session() as session:
        assert session.scalar(select(StoreDestination)) is None


def test_pages_carry_security_headers(client, services, shopify_store):
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"


def test_logging_out_ends_the_session(client, services, shopify_store):
    log_in(client, services, shopify_store)
    assert client.post("/logout").status_code == 303
    assert client.get(f"/settings/{shopify_store}/").status_code == 403


# -- settings and test event -------------------------------------------------------------------


def settings_form(page: str, **changes: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf_of(page),
        "pixel_code": PIXEL_CODE,
        "access_token": TIKTOK_TOKEN,
        "test_event_code": "",
        "purchase_event": "CompletePayment",
        "order_trigger": "created",
        "value_basis": "total",
        "content_id": "variant",
        "send_initiate_checkout": "on",
        "send_test_orders": "on",
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def test_settings_save_the_connection_and_options(client, services, shopify_store):
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    assert 'id="destination-tiktok"' in page and 'id="destination-meta"' in page
    assert TIKTOK_TOKEN not in page
    form = settings_form(
        page, purchase_event="Purchase", order_trigger="paid", content_id="sku", test_event_code=""
    )
    del form["send_initiate_checkout"]
    form["limited_data_use"] = "on"
    answer = client.post(f"/settings/{shopify_store}/settings", data=form)
    assert answer.status_code == 200 and b"Saved." in answer.data
    assert TIKTOK_TOKEN.encode() not in answer.data
    with services.db.session() as session:
        destination = session.scalar(select(StoreDestination))
    assert destination.account_id == PIXEL_CODE
    assert services.cipher.decrypt(destination.access_token_encrypted) == TIKTOK_TOKEN
    assert destination.options == {
        "purchase_event": "Purchase",
        "order_trigger": "paid",
        "value_basis": "total",
        "content_id": "sku",
        "send_initiate_checkout": False,
        "send_test_orders": True,
        "limited_data_use": True,
    }


def test_an_empty_token_keeps_the_current_one_and_a_save_lifts_a_pause(
    client, services, shopify_store
):
    destination_id = connect_tiktok(services, shopify_store)
    with services.db.session() as session:
        session.execute(
            update(StoreDestination).values(
                paused_reason="TikTok refused the token", paused_at=utcnow()
            )
        )
        session.commit()
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    assert "Sending is paused: TikTok refused the token" in page
    answer = client.post(
        f"/settings/{shopify_store}/settings", data=settings_form(page, access_token="")
    )
    assert answer.status_code == 200
    with services.db.session() as session:
        destination = session.get(StoreDestination, destination_id)
    assert destination.paused_reason is None
    assert services.cipher.decrypt(destination.access_token_encrypted) == TIKTOK_TOKEN


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pixel_code": ""}, b"TikTok: Enter the Pixel code (TikTok Events Manager"),
        ({"access_token": ""}, b"TikTok: Enter the Events API access token"),
        ({"pixel_code": "not a pixel"}, b"The Pixel code does not look right"),
        ({"purchase_event": "Buy"}, b"purchase_event must be one of"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(client, services, shopify_store, changes, message):
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    answer = client.post(f"/settings/{shopify_store}/settings", data=settings_form(page, **changes))
    assert answer.status_code == 400 and message in answer.data
    with services.db.session() as session:
        assert session.scalar(select(StoreDestination)) is None


def test_send_test_event_shows_tiktoks_answer(client, services, shopify_store, tiktok):
    connect_tiktok(services, shopify_store, test_event_code="TEST123")
    connect_meta(services, shopify_store)  # no test code there: the test must not reach it
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    answer = client.post(
        f"/settings/{shopify_store}/test-event", data={"csrf_token": csrf_of(page)}
    )
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200, text
    assert re.search(r"Test event test-[0-9a-f]+ to TikTok: delivered", text)
    assert "code <code>0</code>" in text
    [event] = tiktok.wait_for_events(1)
    assert event["event_id"].startswith("test-")
    with services.db.session() as session:
        assert session.scalars(select(OutboxEvent.destination)).all() == ["tiktok"]


def test_send_test_event_without_a_test_code_explains_why(client, services, shopify_store):
    connect_tiktok(services, shopify_store)
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    assert 'id="send-test-event-tiktok" disabled' in page
    answer = client.post(
        f"/settings/{shopify_store}/test-event", data={"csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 400 and b"set a test event code first" in answer.data


# -- delivery log, replay, status --------------------------------------------------------------


def record(services, store_id: str, *order_ids: str) -> None:  # type: ignore[no-untyped-def]
    for order_id in order_ids:
        record_events(services, store_id, "orders/create", make_order(order_id))


def mark(services, status: str, code: int | None, message: str, *event_ids: str) -> None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id.in_(event_ids))
            .values(status=status, last_code=code, last_error=message)
        )
        session.commit()


def test_log_lists_filters_and_pages(client, services, shopify_store, other_store):
    connect_tiktok(services, shopify_store)
    record(services, shopify_store, *(str(1000 + n) for n in range(60)))
    record(services, other_store, "9999")  # another store's order: never on this page
    mark(services, EventStatus.FAILED, 40002, "Invalid value for event_id", "1001")
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/log").get_data(as_text=True)
    assert page.count("data-event-id=") == 50 and 'data-event-id="9999"' not in page
    assert "Older events" in page
    failed = client.get(f"/settings/{shopify_store}/log?status=failed").get_data(as_text=True)
    assert failed.count("data-event-id=") == 1
    assert "<code>40002</code> Invalid value for event_id" in failed
    none = client.get(f"/settings/{shopify_store}/log?event=InitiateCheckout").get_data(
        as_text=True
    )
    assert "No events match these filters" in none
    older = re.search(r'href="([^"]*before=\d+[^"]*)"', page).group(1).replace("&amp;", "&")
    assert client.get(older).get_data(as_text=True).count("data-event-id=") == 10


def test_replay_one_and_all_failed_events(client, services, shopify_store, other_store):
    connect_tiktok(services, shopify_store)
    record(services, shopify_store, "1", "2", "3")
    record(services, other_store, "4")
    mark(services, EventStatus.FAILED, 40002, "bad", "1", "2", "4")
    mark(services, EventStatus.DEAD, None, "timed out", "3")
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/log").get_data(as_text=True)
    with services.db.session() as session:
        first = session.scalar(select(OutboxEvent.id).where(OutboxEvent.event_id == "1"))
        foreign = session.scalar(select(OutboxEvent.id).where(OutboxEvent.event_id == "4"))
    answer = client.post(
        f"/settings/{shopify_store}/log/replay",
        data={"csrf_token": csrf_of(page), "event": [str(first), str(foreign)]},
    )
    assert answer.status_code == 303 and "replayed=1" in answer.headers["Location"]
    assert b"1 event put back in the queue" in client.get(answer.headers["Location"]).data
    answer = client.post(
        f"/settings/{shopify_store}/log/replay", data={"csrf_token": csrf_of(page), "all": "yes"}
    )
    assert "replayed=2" in answer.headers["Location"]
    with services.db.session() as session:
        statuses = dict(session.execute(select(OutboxEvent.event_id, OutboxEvent.status)).all())
    assert statuses == {"1": "pending", "2": "pending", "3": "pending", "4": "failed"}


def test_status_page_says_what_is_wrong_and_how_to_fix_it(client, services, shopify_store):
    log_in(client, services, shopify_store)
    assert b"No ad platform is connected yet" in client.get(f"/settings/{shopify_store}/").data
    destination_id = connect_tiktok(services, shopify_store)
    record(services, shopify_store, "1", "2")
    with services.db.session() as session:
        session.execute(
            update(StoreDestination)
            .where(StoreDestination.id == destination_id)
            .values(paused_reason="TikTok says the token is invalid (40105)", paused_at=utcnow())
        )
        session.commit()
    page = client.get(f"/settings/{shopify_store}/").get_data(as_text=True)
    assert "Sending to TikTok is paused" in page and "(40105)" in page
    assert 'id="queue-depth">2<' in page
    assert "2 events wait" in page


def test_a_shopify_store_gets_its_custom_pixel_to_paste(settings, shopify_store, other_store):
    from app import create_app
    from connector.services import build_services

    services = build_services(settings.with_overrides(app_url="https://connector.example"))
    client = create_app(services=services).test_client()
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    assert "cannot be shown yet: connect TikTok first" in page
    connect_tiktok(services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/settings").get_data(as_text=True)
    assert 'id="custom-pixel"' in page and PIXEL_CODE in page
    assert "https://connector.example/collect" in page
    assert "Settings &gt; Customer events &gt; Add custom" in page
    client = create_app(services=services).test_client()
    log_in(client, services, other_store)
    page = client.get(f"/settings/{other_store}/settings").get_data(as_text=True)
    assert "custom-pixel" not in page  # WooCommerce has no such panel
    services.db.dispose()


def test_pages_outside_an_admin_load_no_foreign_script(client, services, shopify_store):
    log_in(client, services, shopify_store)
    page = client.get(f"/settings/{shopify_store}/")
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert b"app-bridge" not in page.data and b"<script" not in page.data


def test_a_login_while_redis_is_down_says_to_retry(settings, shopify_store):
    from app import create_app
    from connector.embedded_redis import free_port
    from connector.services import build_services

    unreachable = settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    services = build_services(unreachable)
    client = create_app(services=services).test_client()
    path = f"/login/{login_token(services.settings.secret_key, shopify_store)}"
    form = {"csrf_token": csrf_of(client.get(path).get_data(as_text=True))}
    answer = client.post(path, data=form)
    assert answer.status_code == 503 and b"retry soon" in answer.data
    assert "connector_session" not in (answer.headers.get("Set-Cookie") or "")
    services.db.dispose()
