"""Finding and repairing broken webhooks, in process: every kind of problem, a repaired webhook
surviving its next failure, concurrent repairs, the recorded delivery address, the periodic
check the worker runs, and what it logs. The stand-in plays the store; ``live_services`` has
``APP_URL`` set to the live app, so repaired webhooks are proven by a real signed delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from unittest.mock import ANY

import pytest
from sqlalchemy import select, update

from connector.models import OutboxEvent, Store
from connector.services import Services, build_services
from connector.stores import add_store
from connector.worker import periodic_tasks
from platforms.woocommerce import PLATFORM
from platforms.woocommerce.connect import (
    CHECK_EVERY_SECONDS,
    PERIODIC_CHECK,
    StoreAddress,
    StoreKeys,
    app_url_disagreements,
    check_connected_stores,
    check_store,
    connect_store,
    save_keys,
)
from platforms.woocommerce.rest import RestError
from tests.platforms.woocommerce.helpers import CONSUMER_KEY, CONSUMER_SECRET, order
from tests.standins.tcpproxy import TcpProxy
from tests.support import wait_until


@pytest.fixture
def connected(live_services, woo) -> dict:  # type: ignore[no-untyped-def]
    """A store connected to the stand-in; its two webhooks work."""
    address = StoreAddress.parse(woo.base_url)
    return connect_store(live_services, address, CONSUMER_KEY, CONSUMER_SECRET)


@pytest.fixture
def proxied(settings, live_server: str) -> Iterator[tuple[Services, TcpProxy]]:  # type: ignore[no-untyped-def]
    """Services whose APP_URL reaches the live app through a proxy the test can cut: the
    connector out of the store's reach, for real."""
    proxy = TcpProxy("127.0.0.1", int(live_server.rsplit(":", 1)[1])).start()
    built = build_services(settings.with_overrides(app_url=f"http://127.0.0.1:{proxy.port}"))
    yield built, proxy
    proxy.cut()
    built.db.dispose()


@pytest.fixture
def default_app_url(settings) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    """A process started without APP_URL: its default address."""
    built = build_services(settings.with_overrides(app_url="http://localhost:8000"))
    yield built
    built.db.dispose()


def ids(report: dict) -> tuple[int, int]:
    created, updated = report["webhooks"]
    return created["id"], updated["id"]


def problems(report: dict) -> list[tuple[str, list[str]]]:
    return [(w["topic"], w["problems"]) for w in report["webhooks"]]


def secret_of(services, store_id: str) -> str:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return services.cipher.decrypt(session.get(Store, store_id).webhook_secret_encrypted)


def stored_event_ids(services) -> list[str]:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return list(session.scalars(select(OutboxEvent.event_id)))


def recorded_url(services, store_id: str) -> str | None:  # type: ignore[no-untyped-def]
    with services.db.session() as session:
        return session.get(Store, store_id).webhook_url


def forget_recorded_url(services, store_id: str) -> None:  # type: ignore[no-untyped-def]
    """As for a store connected before delivery addresses were recorded."""
    with services.db.session() as session:
        session.execute(update(Store).where(Store.id == store_id).values(webhook_url=None))
        session.commit()


def writes(woo) -> list[tuple[str, str, str | None]]:  # type: ignore[no-untyped-def]
    return [call for call in woo.requests if call[0] != "GET"]


def test_every_kind_of_problem_is_found_then_repaired(connected, live_services, woo):
    store_id = connected["store_id"]
    created, updated = ids(connected)
    old_url = f"https://old-connector.example/webhooks/woocommerce/{store_id}"
    woo.tamper(created, status="paused", delivery_url=old_url, secret="changed-in-wp-admin")
    woo.tamper(updated, topic="order.deleted")
    theirs = woo.add_webhook(topic="order.created", delivery_url="http://127.0.0.1:9/erp")

    found = check_store(live_services, store_id, repair=False)
    assert problems(found) == [
        ("order.created", ["paused", "points_elsewhere"]),
        ("order.updated", ["wrong_topic"]),
    ]
    assert found["ok"] is False

    fixed = check_store(live_services, store_id, repair=True)
    assert fixed["ok"] is True
    assert [(w["replaced"], w["action"], w["fixed"]) for w in fixed["webhooks"]] == [
        (created, "recreated", ["paused", "points_elsewhere"]),
        (updated, "recreated", ["wrong_topic"]),
    ]
    new_created, new_updated = ids(fixed)
    secret = secret_of(live_services, store_id)
    for webhook_id, topic in ((new_created, "order.created"), (new_updated, "order.updated")):
        webhook = woo.webhook(webhook_id)
        assert (webhook.topic, webhook.status, webhook.secret) == (topic, "active", secret)
        assert (webhook.delivery_url, webhook.failure_count) == (connected["webhook_url"], 0)
    assert [w.id for w in woo.webhooks()] == [theirs, new_created, new_updated]  # old ones gone
    assert woo.webhook(theirs).delivery_url == "http://127.0.0.1:9/erp"  # not ours: untouched

    deliveries = woo.trigger("order.created", order("order_created__processing.json"))
    [delivery] = [d for d in deliveries if d.webhook_id == new_created]
    assert delivery.status_code == 200  # signed with the secret the repair sent
    assert stored_event_ids(live_services) == ["1187"]


def test_a_missing_webhook_is_recreated(connected, live_services, woo):
    store_id = connected["store_id"]
    _created, updated = ids(connected)
    woo.tamper(updated, name="Sync to ERP", delivery_url="https://erp.example/hook")  # not ours
    assert problems(check_store(live_services, store_id, repair=False))[1] == (
        "order.updated",
        ["missing"],
    )
    entry = check_store(live_services, store_id, repair=True)["webhooks"][1]
    assert (entry["action"], entry["fixed"], entry["status"]) == ("created", ["missing"], "active")
    assert entry["id"] not in (updated, None)
    assert woo.pings()[-1].url == connected["webhook_url"] and woo.pings()[-1].succeeded


def test_a_healthy_store_is_left_alone(connected, live_services, woo):
    before = [(w.id, w.modified) for w in woo.webhooks()]
    report = check_store(live_services, connected["store_id"], repair=True)
    assert report["ok"] is True and {w["action"] for w in report["webhooks"]} == {None}
    assert [(w.id, w.modified) for w in woo.webhooks()] == before
    assert [method for method, _path, _key in woo.requests[-1:]] == ["GET"]


def test_ours_are_found_among_many_pages_of_webhooks(connected, live_services, woo):
    for number in range(120):  # newer than ours, so ours are on the second page of 100
        woo.add_webhook(topic="product.updated", delivery_url=f"https://erp.example/{number}")
    created, updated = ids(connected)
    woo.disable(updated)
    report = check_store(live_services, connected["store_id"], repair=True)
    assert report["webhooks"][0]["id"] == created
    entry = report["webhooks"][1]
    assert (entry["replaced"], entry["fixed"]) == (updated, ["disabled"])  # found on page 2
    assert len(woo.webhooks()) == 122


def test_a_repaired_webhook_survives_its_next_failure(proxied, woo):
    services, proxy = proxied
    address = StoreAddress.parse(woo.base_url)
    connected = connect_store(services, address, CONSUMER_KEY, CONSUMER_SECRET)
    created, _updated = ids(connected)
    placed = order("order_created__processing.json")

    proxy.cut()
    for _ in range(7):  # WooCommerce disables a webhook at its 7th failure in a row
        [failed] = woo.trigger("order.created", placed)
        assert not failed.succeeded
    assert (woo.webhook(created).status, woo.webhook(created).failure_count) == ("disabled", 6)
    proxy.restore()

    entry = check_store(services, connected["store_id"], repair=True)["webhooks"][0]
    assert (entry["action"], entry["replaced"], entry["fixed"]) == (
        "recreated",
        created,
        ["disabled"],
    )
    assert created not in [w.id for w in woo.webhooks()]
    made = woo.webhook(entry["id"])
    assert (made.topic, made.delivery_url, made.secret) == (
        "order.created",
        connected["webhook_url"],
        secret_of(services, connected["store_id"]),
    )
    assert (made.status, made.failure_count) == ("active", 0)

    proxy.cut()
    [failed] = woo.trigger("order.created", placed)
    assert not failed.succeeded
    assert (woo.webhook(made.id).status, woo.webhook(made.id).failure_count) == ("active", 1)
    proxy.restore()
    [delivered] = woo.trigger("order.created", placed)
    assert delivered.status_code == 200 and woo.webhook(made.id).failure_count == 0
    assert stored_event_ids(services) == ["1187"]


def test_two_repairs_at_once_leave_one_webhook_per_topic(connected, live_services, woo):
    store_id = connected["store_id"]
    created, updated = ids(connected)
    woo.disable(created)
    woo.tamper(updated, name="Sync to ERP", delivery_url="https://erp.example/hook")  # not ours
    woo.requests.clear()
    woo.hold_lists(2)  # both repairs read the same broken store, as two quick clicks would

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(
            pool.map(lambda _: check_store(live_services, store_id, repair=True), [1, 2])
        )

    ours = [w for w in woo.webhooks() if store_id in w.name]
    assert sorted((w.topic, w.status) for w in ours) == [
        ("order.created", "active"),
        ("order.updated", "active"),
    ]
    assert (
        [ids(report) for report in reports]
        == [ids(reports[0])] * 2
        == [tuple(w.id for w in ours)] * 2
    )
    assert all(report["ok"] for report in reports)
    assert sum(1 for method, _path, _key in woo.requests if method == "POST") == 4  # both made


def test_a_revoked_key_is_a_clear_error(connected, live_services, woo):
    woo.revoke(CONSUMER_KEY)
    refusal = r"refused the REST API keys \(HTTP 401 woocommerce_rest_cannot_view\)"
    with pytest.raises(RestError, match=refusal):
        check_store(live_services, connected["store_id"], repair=True)


# -- the recorded delivery address -------------------------------------------------------------


def test_a_process_without_app_url_repairs_only_toward_the_recorded_address(
    connected, live_services, default_app_url, woo, caplog
):
    store_id = connected["store_id"]
    _created, updated = ids(connected)
    woo.disable(updated)
    default = f"http://localhost:8000/webhooks/woocommerce/{store_id}"

    with caplog.at_level(logging.INFO, logger="platforms.woocommerce.connect"):
        check_connected_stores(default_app_url)

    assert [(w.status, w.delivery_url) for w in woo.webhooks()] == [
        ("active", connected["webhook_url"])
    ] * 2
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if "url-mismatch" in m] == [
        f"woocommerce.webhook.url-mismatch store={store_id}"
        f" webhook_url={connected['webhook_url']} app_url_webhook_url={default}"
    ]
    report = check_store(default_app_url, store_id, repair=True)
    assert report["problems"] == [
        {
            "problem": "app_url_mismatch",
            "webhook_url": connected["webhook_url"],
            "app_url_webhook_url": default,
            "message": ANY,
        }
    ]
    assert report["ok"] is False and not any(w["problems"] for w in report["webhooks"])
    assert recorded_url(live_services, store_id) == connected["webhook_url"]
    with live_services.db.session() as session:
        store = session.get(Store, store_id)
    assert app_url_disagreements(live_services, store) == [default]  # for the Status page
    deliveries = woo.trigger("order.updated", order("order_updated__completed.json"))
    assert [d.status_code for d in deliveries] == [200]


def test_a_store_connected_before_addresses_were_recorded_adopts_its_https_one(
    connected, live_services, woo, caplog
):
    store_id = connected["store_id"]
    forget_recorded_url(live_services, store_id)
    https = f"https://connector.example/webhooks/woocommerce/{store_id}"
    for webhook_id in ids(connected):
        woo.tamper(webhook_id, delivery_url=https)

    with caplog.at_level(logging.INFO, logger="platforms.woocommerce.connect"):
        report = check_store(live_services, store_id, repair=False)

    assert recorded_url(live_services, store_id) == https
    assert report["webhook_url"] == https
    assert [w["problems"] for w in report["webhooks"]] == [[], []]
    assert [p["problem"] for p in report["problems"]] == ["app_url_mismatch"]
    assert f"woocommerce.webhook.url-adopted store={store_id} webhook_url={https}" in [
        record.getMessage() for record in caplog.records
    ]


@pytest.mark.parametrize("case", ["plain-http-default", "disagreeing"])
def test_without_a_recorded_address_nothing_is_repaired(connected, live_services, woo, case):
    store_id = connected["store_id"]
    created, updated = ids(connected)
    forget_recorded_url(live_services, store_id)
    if case == "plain-http-default":  # what the old periodic check did to a store
        for webhook_id in (created, updated):
            woo.tamper(
                webhook_id, delivery_url=f"http://localhost:8000/webhooks/woocommerce/{store_id}"
            )
    else:
        woo.tamper(created, delivery_url=f"https://old.example/webhooks/woocommerce/{store_id}")
    woo.disable(updated)
    woo.requests.clear()

    report = check_store(live_services, store_id, repair=True)

    assert writes(woo) == [] and recorded_url(live_services, store_id) is None
    [problem] = report["problems"]
    assert problem["problem"] == "webhook_url_unknown"
    assert problem["delivery_urls"] == sorted({w.delivery_url for w in woo.webhooks()})
    assert "connect-woocommerce" in problem["message"] and report["ok"] is False
    assert woo.webhook(updated).status == "disabled"


# -- the periodic check ------------------------------------------------------------------------


def test_the_periodic_check_repairs_what_woocommerce_disabled(
    connected, live_services, woo, caplog
):
    store_id = connected["store_id"]
    _created, updated = ids(connected)
    woo.disable(updated)
    by_hand = add_store(live_services, platform="woocommerce", domain="manual.example",
                        webhook_secret="pasted")  # fmt: skip
    broken = add_store(live_services, platform="woocommerce", domain="gone.example",
                       webhook_secret="s")  # fmt: skip
    save_keys(live_services, broken.id, StoreKeys(woo.base_url + "/gone", CONSUMER_KEY, "cs_x"))

    with caplog.at_level(logging.INFO, logger="platforms.woocommerce.connect"):
        check_connected_stores(live_services)  # never raises, whatever each store does

    [(replacement, status)] = [(w.id, w.status) for w in woo.webhooks() if w.id > updated]
    assert status == "active"
    messages = [record.getMessage() for record in caplog.records]
    assert (
        f"woocommerce.webhook.repaired store={store_id} topic=order.updated"
        f" webhook={replacement} replaced={updated} problems=disabled"
    ) in messages
    [failed] = [m for m in messages if "check-failed" in m]
    assert failed == f"woocommerce.webhook.check-failed store={broken.id} reason=not-woocommerce"
    assert not any(by_hand.id in m for m in messages)  # no keys: not ours to check
    secret = secret_of(live_services, store_id)
    assert not any(CONSUMER_SECRET in m or secret in m for m in messages)


def test_the_periodic_check_survives_a_revoked_key(connected, live_services, woo, caplog):
    woo.revoke(CONSUMER_KEY)
    with caplog.at_level(logging.WARNING, logger="platforms.woocommerce.connect"):
        check_connected_stores(live_services)
    [record] = caplog.records
    assert record.getMessage() == (
        f"woocommerce.webhook.check-failed store={connected['store_id']} reason=keys-refused"
    )


def test_the_periodic_check_survives_a_changed_encryption_key(connected, settings, caplog):
    other = build_services(settings.with_overrides(secret_key="another-secret-key"))
    try:
        with caplog.at_level(logging.WARNING, logger="platforms.woocommerce.connect"):
            check_connected_stores(other)
    finally:
        other.db.dispose()
    assert [r.getMessage() for r in caplog.records] == [
        f"woocommerce.webhook.check-failed store={connected['store_id']} reason=secrets"
    ]


def test_the_worker_runs_the_check_every_15_minutes_without_waiting_for_it(
    connected, live_services, woo
):
    assert PLATFORM.periodic == (PERIODIC_CHECK,)
    assert (PERIODIC_CHECK.name, PERIODIC_CHECK.every_seconds) == ("woocommerce-webhooks", 900)
    assert CHECK_EVERY_SECONDS == 15 * 60
    assert PERIODIC_CHECK in periodic_tasks(live_services)
    _created, updated = ids(connected)
    woo.disable(updated)
    started = time.monotonic()
    PERIODIC_CHECK.run(live_services)
    assert time.monotonic() - started < 0.5  # the round runs in its own thread
    wait_until(
        lambda: [w.status for w in woo.webhooks() if w.topic == "order.updated"] == ["active"],
        timeout=15,
    )
    for thread in threading.enumerate():
        if thread.name == "woocommerce-webhook-check":
            thread.join(timeout=15)  # before live_services is disposed
