"""The ``connector`` command, run in-process against the test database and Redis.

Covered: ``db upgrade``; ``stores add-woocommerce`` (output, duplicate, bad URL);
``stores add-shopify`` (valid, hostile shop domains, missing webhook secret); ``stores list``
with destinations; ``tiktok set`` (options stored and merged, unknown store); ``events list``
with its filters; ``events replay`` by id and by status, and its usage errors; and
``tiktok test-event`` against the TikTok stand-in. The command and the test share the
database of the ``settings`` fixture: what one writes, the other reads.
``tests.support.invoke_connector`` runs the console script's click group in this process with
the environment a child would get; ``tests/test_cli_process.py`` runs the installed command
as real processes (entry point, exit statuses, environment).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, update

from connector.models import OutboxEvent, Store
from connector.pipeline import record_events
from tests.support import (
    PIXEL_CODE,
    SHOP_DOMAIN,
    TIKTOK_TOKEN,
    CommandResult,
    connect_tiktok,
    make_order,
)
from tests.support import invoke_connector as connector

ALL_OPTIONS = {
    "purchase_event": "CompletePayment",
    "order_trigger": "created",
    "value_basis": "total",
    "content_id": "variant",
    "send_initiate_checkout": True,
    "send_test_orders": True,
    "limited_data_use": False,
}


def json_lines(result: CommandResult) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def one_json(result: CommandResult) -> dict[str, Any]:
    [line] = json_lines(result)
    return line


def error_lines(result: CommandResult) -> list[str]:
    """stderr without the log lines the command's logging setup may print."""
    return [line for line in result.stderr.splitlines() if " INFO " not in line]


def stored_stores(services) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return [(s.platform, s.domain) for s in session.scalars(select(Store))]


def statuses(services) -> dict[int, str]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return {
            e.id: e.status for e in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        }


def set_status(services, event_id: int, status: str) -> None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id)
            .values(status=status, last_error="refused" if status == "failed" else None)
        )
        session.commit()


def record_orders(services, store_id: str, *order_ids: str) -> list[int]:  # type: ignore[no-untyped-def]
    for order_id in order_ids:
        record_events(services, store_id, "orders/create", make_order(order_id))
    with services.db.session() as session:
        query = select(OutboxEvent.id).where(
            OutboxEvent.store_id == store_id, OutboxEvent.event_id.in_(order_ids)
        )
        return list(session.scalars(query.order_by(OutboxEvent.id)))


# -- db ------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = connector(settings, "db", "upgrade", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert error_lines(result)[-1] == "database is up to date"
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"stores", "destinations", "events", "attempts", "alembic_version"} <= tables


def test_db_upgrade_twice_is_harmless(settings):
    assert connector(settings, "db", "upgrade").returncode == 0
    assert connector(settings, "db", "upgrade").returncode == 0


# -- stores add-woocommerce ----------------------------------------------------------------


def test_add_woocommerce_prints_what_to_paste(settings, services):
    out = one_json(
        connector(settings, "stores", "add-woocommerce", "--url", "https://shop.example")
    )
    assert set(out) == {"store_id", "url", "webhook_url", "secret"}
    assert out["store_id"].startswith("st_") and len(out["store_id"]) == 19
    assert out["url"] == "https://shop.example"
    assert out["webhook_url"] == f"http://connector.test/webhooks/woocommerce/{out['store_id']}"
    assert len(out["secret"]) >= 32
    with services.db.session() as session:
        store = session.get(Store, out["store_id"])
        assert (store.platform, store.domain) == ("woocommerce", "shop.example")
        assert services.cipher.decrypt(store.webhook_secret_encrypted) == out["secret"]


def test_add_woocommerce_keeps_a_given_secret(settings, services):
    args = ("stores", "add-woocommerce", "--url", "https://Shop.Example/store/", "--secret", "s3")
    out = one_json(connector(settings, *args))
    assert out["secret"] == "s3"
    assert stored_stores(services) == [("woocommerce", "shop.example/store")]


def test_add_woocommerce_twice_is_a_one_line_error(settings, services):
    args = ("stores", "add-woocommerce", "--url", "https://shop.example")
    assert connector(settings, *args).returncode == 0
    again = connector(settings, *args)
    assert again.returncode == 1
    assert again.stdout == ""
    assert error_lines(again) == [
        "Error: a woocommerce store for shop.example is already registered"
    ]
    assert stored_stores(services) == [("woocommerce", "shop.example")]


@pytest.mark.parametrize("url", ["ftp://x", "shop.example", "https://"])
def test_add_woocommerce_refuses_what_is_not_a_web_address(settings, services, url):
    result = connector(settings, "stores", "add-woocommerce", "--url", url)
    assert result.returncode == 2
    assert "must be the store's address, like https://shop.example" in result.stderr
    assert stored_stores(services) == []


# -- stores add-shopify --------------------------------------------------------------------


def test_add_shopify(settings, services):
    args = ("--shop", " Demo-Shop.MyShopify.com ", "--access-token", "shpat_1")
    out = one_json(connector(settings, "stores", "add-shopify", *args, "--webhook-secret", "whs"))
    assert set(out) == {"store_id", "shop", "webhook_url"}
    assert out["shop"] == "demo-shop.myshopify.com"
    assert out["webhook_url"] == "http://connector.test/webhooks/shopify"
    with services.db.session() as session:
        store = session.get(Store, out["store_id"])
        assert (store.platform, store.domain) == ("shopify", "demo-shop.myshopify.com")
        assert services.cipher.decrypt(store.webhook_secret_encrypted) == "whs"
        assert services.cipher.decrypt(store.access_token_encrypted) == "shpat_1"


@pytest.mark.parametrize(
    "shop",
    [
        "evil.com/x.myshopify.com",
        "x.myshopify.com.evil.com",
        "x.myshopify.com\nevil.com",
        "evil.com\nx.myshopify.com",
        "https://x.myshopify.com",
        "x.myshopify.com/admin",
    ],
)
def test_add_shopify_refuses_hostile_shop_domains(settings, services, shop):
    args = ("--shop", shop, "--access-token", "t", "--webhook-secret", "s")
    result = connector(settings, "stores", "add-shopify", *args)
    assert result.returncode == 2
    assert "must look like example.myshopify.com" in result.stderr
    assert stored_stores(services) == []


def test_add_shopify_trailing_newline_never_reaches_the_database(settings, services):
    """The command strips whitespace before the anchored check, so only the clean domain is
    stored (the brief expected exit 2 here; see the report)."""
    args = ("--shop", "x.myshopify.com\n", "--access-token", "t", "--webhook-secret", "s")
    out = one_json(connector(settings, "stores", "add-shopify", *args))
    assert out["shop"] == "x.myshopify.com"
    assert stored_stores(services) == [("shopify", "x.myshopify.com")]


def test_add_shopify_needs_a_webhook_secret(settings, services):
    result = connector(settings, "stores", "add-shopify", "--shop", "x.myshopify.com",
                       "--access-token", "t")  # fmt: skip
    assert result.returncode == 2
    assert "give --webhook-secret (the custom app's API secret key), or set SHOPIFY_API_SECRET" in (
        result.stderr
    )
    assert stored_stores(services) == []


def test_add_shopify_falls_back_to_the_app_secret(settings, services):
    args = ("--shop", "x.myshopify.com", "--access-token", "t")
    out = one_json(connector(settings, "stores", "add-shopify", *args, SHOPIFY_API_SECRET="app"))
    with services.db.session() as session:
        assert session.get(Store, out["store_id"]).webhook_secret_encrypted is None


def test_add_shopify_twice_is_an_error_that_names_the_store(settings, shopify_store):
    args = ("--shop", SHOP_DOMAIN, "--access-token", "t", "--webhook-secret", "s")
    result = connector(settings, "stores", "add-shopify", *args)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"Error: a shopify store for {SHOP_DOMAIN} is already registered as {shopify_store}"
    ]


# -- stores list and tiktok set ------------------------------------------------------------


NOT_RECONCILED = {"reconciled_until": None, "reconciled_at": None, "reconcile_error": None}


def test_stores_list_is_json_lines_with_destinations(settings, services, shopify_store):
    woo = one_json(
        connector(settings, "stores", "add-woocommerce", "--url", "https://shop.example")
    )
    connect_tiktok(services, shopify_store, test_event_code="TEST1")
    lines = json_lines(connector(settings, "stores", "list"))
    assert lines == [
        {
            "store_id": shopify_store,
            "platform": "shopify",
            "domain": SHOP_DOMAIN,
            "status": "active",
            "destinations": [
                {
                    "kind": "tiktok",
                    "label": "TikTok",
                    "pixel_code": PIXEL_CODE,
                    "test_event_code": "TEST1",
                    "status": "active",
                    "paused_reason": None,
                    "options": ALL_OPTIONS,
                }
            ],
            **NOT_RECONCILED,
        },
        {
            "store_id": woo["store_id"],
            "platform": "woocommerce",
            "domain": "shop.example",
            "status": "active",
            "destinations": [],
            **NOT_RECONCILED,
        },
    ]


def test_stores_list_of_nothing_prints_nothing(settings):
    assert json_lines(connector(settings, "stores", "list")) == []


def test_tiktok_set_stores_the_options(settings, services, shopify_store):
    out = one_json(
        connector(
            settings,
            "tiktok",
            "set",
            shopify_store,
            "--pixel-code",
            " CPIXELNEW ",
            "--access-token",
            "tok-new",
            "--purchase-event",
            "Purchase",
            "--send-on",
            "paid",
            "--value",
            "subtotal",
            "--content-id",
            "sku",
            "--no-initiate-checkout",
            "--no-test-orders",
        )  # fmt: skip
    )
    expected_options = {
        "purchase_event": "Purchase",
        "order_trigger": "paid",
        "value_basis": "subtotal",
        "content_id": "sku",
        "send_initiate_checkout": False,
        "send_test_orders": False,
        "limited_data_use": False,
    }
    assert out["store_id"] == shopify_store
    assert (out["kind"], out["pixel_code"], out["test_event_code"]) == ("tiktok", "CPIXELNEW", None)
    assert out["options"] == expected_options
    assert out["delivery_requested"] is True
    [store] = json_lines(connector(settings, "stores", "list"))
    [destination] = store["destinations"]
    assert destination["options"] == expected_options
    assert destination["pixel_code"] == "CPIXELNEW"


def test_tiktok_set_again_keeps_earlier_choices(settings, shopify_store):
    base = ("tiktok", "set", shopify_store, "--pixel-code", PIXEL_CODE, "--access-token", "t")
    first = connector(settings, *base, "--send-on", "paid", "--no-initiate-checkout")
    assert first.returncode == 0, first.stderr
    out = one_json(connector(settings, *base, "--value", "subtotal", "--test-event-code", "T9"))
    assert out["options"] == dict(
        ALL_OPTIONS, order_trigger="paid", send_initiate_checkout=False, value_basis="subtotal"
    )
    assert out["test_event_code"] == "T9"


def test_tiktok_set_for_an_unknown_store_fails(settings, services):
    args = ("--pixel-code", PIXEL_CODE, "--access-token", "t")
    result = connector(settings, "tiktok", "set", "st_nope", *args)
    assert result.returncode == 1
    assert error_lines(result) == ["Error: no store st_nope: see `connector stores list`"]


def test_tiktok_set_refuses_an_unknown_event_name(settings, shopify_store):
    args = ("--pixel-code", PIXEL_CODE, "--access-token", "t", "--purchase-event", "Buy")
    result = connector(settings, "tiktok", "set", shopify_store, *args)
    assert result.returncode == 1
    assert error_lines(result) == [
        "Error: purchase_event must be one of CompletePayment, Purchase, PlaceAnOrder; got 'Buy'"
    ]


# -- destinations ----------------------------------------------------------------------------


def test_destinations_set_list_and_remove_every_platform(settings, services, shopify_store):
    meta = ("--pixel-id", "123456789012345", "--access-token", "meta-secret-token")
    google = ("--customer-id", "123-456-7890", "--conversion-action", "987654321",
              "--refresh-token", "1//google-secret",
              "--login-customer-id", "111-222-3333")  # fmt: skip
    for kind, flags in (("meta", meta), ("google", google)):
        result = connector(settings, "destinations", "set", shopify_store, kind, *flags)
        assert result.returncode == 0, result.stderr
        assert "secret" not in result.stdout  # tokens are never printed
    connector(settings, "tiktok", "set", shopify_store, "--pixel-code", PIXEL_CODE,
              "--access-token", "tiktok-secret")  # fmt: skip

    listed = connector(settings, "destinations", "list", shopify_store)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["kind"], r["status"], r["paused_reason"]) for r in rows] == [
        ("google", "active", None),
        ("meta", "active", None),
        ("tiktok", "active", None),
    ]
    assert rows[0]["customer_id"] == "123-456-7890"
    assert (rows[0]["conversion_action"], rows[0]["login_customer_id"]) == (
        "987654321",
        "111-222-3333",
    )
    assert (
        rows[1]["pixel_id"] == "123456789012345"
        and rows[1]["options"]["purchase_event"] == "Purchase"
    )
    assert "secret" not in listed.stdout

    removed = connector(settings, "destinations", "remove", shopify_store, "google")
    assert json.loads(removed.stdout) == {
        "store_id": shopify_store,
        "kind": "google",
        "removed": True,
    }
    again = connector(settings, "destinations", "list", shopify_store)
    assert [json.loads(line)["kind"] for line in again.stdout.splitlines()] == ["meta", "tiktok"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("meta", "--pixel-code", "C1"), "Error: Meta has no --pixel-code"),
        (("meta", "--pixel-id", "12x", "--access-token", "t"), "Error: Meta: The Pixel (dataset"),
        (("meta", "--access-token", "t"), "Error: Meta: Enter the Pixel (dataset) ID"),
        (("pinterest", "--access-token", "t"), "choose one of google, meta, tiktok"),
    ],
)  # fmt: skip
def test_destinations_set_says_what_is_wrong(settings, shopify_store, args, error):
    result = connector(settings, "destinations", "set", shopify_store, *args)
    assert result.returncode in (1, 2)
    assert error in result.stderr


def test_events_list_by_destination(settings, services, shopify_store):
    connector(settings, "tiktok", "set", shopify_store, "--pixel-code", PIXEL_CODE,
              "--access-token", "t")  # fmt: skip
    connector(settings, "destinations", "set", shopify_store, "meta", "--pixel-id",
              "123456789012345", "--access-token", "m")  # fmt: skip
    record_events(services, shopify_store, "orders/create", make_order("5001"))
    result = connector(settings, "events", "list", "--destination", "meta")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["destination"], r["event"], r["event_id"]) for r in rows] == [
        ("meta", "Purchase", "5001")
    ]


# -- events list ---------------------------------------------------------------------------


def test_events_list_is_newest_first(settings, services, shopify_store):
    first, second = record_orders(services, shopify_store, "1", "2")
    lines = json_lines(connector(settings, "events", "list"))
    assert [line["id"] for line in lines] == [second, first]
    line = lines[0]
    assert {k: line[k] for k in ("store_id", "destination", "event", "event_id", "status")} == {
        "store_id": shopify_store,
        "destination": "tiktok",
        "event": "CompletePayment",
        "event_id": "2",
        "status": "pending",
    }
    assert (line["attempts"], line["last_error"], line["last_code"]) == (0, None, None)
    assert line["click_source"] == "landing_site"


def test_events_list_filters_by_status(settings, services, shopify_store):
    record_orders(services, shopify_store, "1")
    record_events(services, shopify_store, "orders/create", make_order("2", is_test=True))
    [skipped] = json_lines(connector(settings, "events", "list", "--status", "skipped"))
    assert (skipped["event_id"], skipped["status"]) == ("2", "skipped")
    assert skipped["last_error"] == "test order: set a TikTok test event code to send test orders"
    [pending] = json_lines(connector(settings, "events", "list", "--status", "pending"))
    assert pending["event_id"] == "1"
    assert json_lines(connector(settings, "events", "list", "--status", "delivered")) == []


def test_events_list_filters_by_store(settings, services, shopify_store, woocommerce_store):
    woo_id, _secret = woocommerce_store
    record_orders(services, shopify_store, "1", "2")
    record_orders(services, woo_id, "3")
    [woo] = json_lines(connector(settings, "events", "list", "--store", woo_id))
    assert (woo["store_id"], woo["event_id"]) == (woo_id, "3")
    shop = json_lines(connector(settings, "events", "list", "--store", shopify_store))
    assert [line["event_id"] for line in shop] == ["2", "1"]


def test_events_list_refuses_an_unknown_status(settings):
    assert connector(settings, "events", "list", "--status", "lost").returncode == 2


# -- events replay -------------------------------------------------------------------------


def test_replay_by_id_makes_a_failed_event_pending(settings, services, shopify_store):
    failed, other_failed = record_orders(services, shopify_store, "1", "2")
    set_status(services, failed, "failed")
    set_status(services, other_failed, "failed")
    out = one_json(connector(settings, "events", "replay", "--id", str(failed)))
    assert out == {"replayed": 1}
    assert statuses(services) == {failed: "pending", other_failed: "failed"}


def test_replay_by_status_leaves_delivered_events_alone(settings, services, shopify_store):
    failed, delivered, dead = record_orders(services, shopify_store, "1", "2", "3")
    set_status(services, failed, "failed")
    set_status(services, delivered, "delivered")
    set_status(services, dead, "dead")
    out = one_json(connector(settings, "events", "replay", "--status", "failed"))
    assert out == {"replayed": 1}
    assert statuses(services) == {failed: "pending", delivered: "delivered", dead: "dead"}


def test_replay_by_id_of_a_delivered_event_does_nothing(settings, services, shopify_store):
    [delivered] = record_orders(services, shopify_store, "1")
    set_status(services, delivered, "delivered")
    assert one_json(connector(settings, "events", "replay", "--id", str(delivered))) == {
        "replayed": 0
    }
    assert statuses(services) == {delivered: "delivered"}


@pytest.mark.parametrize("args", [(), ("--id", "1", "--status", "failed")], ids=["neither", "both"])
def test_replay_needs_exactly_one_of_id_or_status(settings, args):
    result = connector(settings, "events", "replay", *args)
    assert result.returncode == 2
    assert "Error: give either --id (one or more) or --status" in result.stderr


# -- tiktok test-event ---------------------------------------------------------------------


def test_test_event_needs_a_test_event_code(settings, services, shopify_store, tiktok):
    connect_tiktok(services, shopify_store)
    result = connector(settings, "tiktok", "test-event", shopify_store)
    assert result.returncode == 1
    [message] = error_lines(result)
    assert message.startswith("Error: set a test event code first")
    assert "--test-event-code CODE" in message
    assert tiktok.batches == []


def test_test_event_needs_a_tiktok_pixel(settings, shopify_store, tiktok):
    result = connector(settings, "tiktok", "test-event", shopify_store)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"Error: store {shopify_store} has no TikTok destination: run "
        f"`connector destinations set {shopify_store} tiktok` first"
    ]


def test_test_event_is_delivered_with_the_test_event_code(
    settings, services, shopify_store, tiktok
):
    connect_tiktok(services, shopify_store, test_event_code="TEST4242")
    result = connector(settings, "tiktok", "test-event", shopify_store)
    out = one_json(result)
    assert out["status"] == "delivered"
    assert (out["destination"], out["code"], out["message"]) == ("tiktok", 0, "OK")
    assert out["error"] is None
    assert out["event_id"].startswith("test-")
    [batch] = tiktok.batches
    assert batch.headers["Access-Token"] == TIKTOK_TOKEN
    assert batch.body["test_event_code"] == "TEST4242"
    assert batch.body["event_source_id"] == PIXEL_CODE
    assert [e["event_id"] for e in batch.body["data"]] == [out["event_id"]]
    assert out["request_id"] == batch.answer["request_id"]


def test_test_event_reports_tiktoks_refusal(settings, services, shopify_store, tiktok):
    connect_tiktok(services, shopify_store, test_event_code="TEST4242")
    tiktok.fail_next(1, code=40105, message="Access token is incorrect or has been revoked.")
    result = connector(settings, "tiktok", "test-event", shopify_store)
    assert result.returncode == 1
    [out] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (out["status"], out["code"]) == ("pending", 40105)
    assert out["message"] == "Access token is incorrect or has been revoked."


def test_a_database_never_migrated_gets_the_fix_not_a_traceback(settings, tmp_path):
    result = connector(settings, "stores", "list", DATABASE_URL=f"sqlite:///{tmp_path}/new.db")
    assert result.returncode == 1
    [line] = error_lines(result)
    assert line.startswith(
        f"Error: sqlite:///{tmp_path}/new.db has no connector tables (no such table: stores): "
        "it is a new database, or not the connector's."
    )
    assert line.endswith("for a new install, run `connector db upgrade`")


def test_bad_log_format_is_a_one_line_error(settings):
    result = connector(settings, "stores", "list", LOG_FORMAT="xml")
    assert result.returncode == 1
    assert error_lines(result) == ["Error: LOG_FORMAT must be one of text, json; got 'xml'"]
