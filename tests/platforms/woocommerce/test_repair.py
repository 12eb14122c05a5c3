"""Finding and repairing broken webhooks, in process: every kind of problem, the periodic check
the worker runs, and what it logs. The stand-in plays the store; ``live_services`` has
``APP_URL`` set to the live app, so repaired webhooks are proven by a real signed delivery.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import select

from connector.models import Event, Store
from connector.services import build_services
from connector.stores import add_store
from connector.worker import periodic_tasks
from platforms.woocommerce import PLATFORM
from platforms.woocommerce.connect import (
    CHECK_EVERY_SECONDS,
    PERIODIC_CHECK,
    StoreAddress,
    StoreKeys,
    check_connected_stores,
    check_store,
    connect_store,
    save_keys,
    start_periodic_check,
)
from platforms.woocommerce.rest import RestError
from tests.platforms.woocommerce.helpers import CONSUMER_KEY, CONSUMER_SECRET, order
from tests.support import wait_until


@pytest.fixture
def connected(live_services, woo) -> dict:  # type: ignore[no-untyped-def]
    """A store connected to the stand-in; its two webhooks work."""
    address = StoreAddress.parse(woo.base_url)
    return connect_store(live_services, address, CONSUMER_KEY, CONSUMER_SECRET)


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
        return list(session.scalars(select(Event.event_id)))


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
    assert [(w["id"], w["fixed"]) for w in fixed["webhooks"]] == [
        (created, ["paused", "points_elsewhere"]),
        (updated, ["wrong_topic"]),
    ]
    secret = secret_of(live_services, store_id)
    for webhook_id, topic in ((created, "order.created"), (updated, "order.updated")):
        webhook = woo.webhook(webhook_id)
        assert (webhook.topic, webhook.status, webhook.secret) == (topic, "active", secret)
        assert webhook.delivery_url == connected["webhook_url"]
    assert woo.webhook(theirs).delivery_url == "http://127.0.0.1:9/erp"  # not ours: untouched

    deliveries = woo.trigger("order.created", order("order_created__processing.json"))
    [delivery] = [d for d in deliveries if d.webhook_id == created]
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
    _created, updated = ids(connected)
    woo.disable(updated)
    report = check_store(live_services, connected["store_id"], repair=True)
    assert [w["id"] for w in report["webhooks"]] == list(ids(connected))
    assert report["webhooks"][1]["fixed"] == ["disabled"]  # found on page 2, not recreated


def test_a_revoked_key_is_a_clear_error(connected, live_services, woo):
    woo.revoke(CONSUMER_KEY)
    with pytest.raises(RestError, match="refused the REST API keys .*woocommerce_rest_cannot_view"):
        check_store(live_services, connected["store_id"], repair=True)


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

    assert woo.webhook(updated).status == "active"
    messages = [record.getMessage() for record in caplog.records]
    assert (
        f"woocommerce.webhook.repaired store={store_id} webhook={updated} topic=order.updated"
        " problem=disabled"
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
    wait_until(lambda: woo.webhook(updated).status == "active", timeout=15)
    for thread in threading.enumerate():
        if thread.name == "woocommerce-webhook-check":
            thread.join(timeout=15)  # before live_services is disposed


def test_a_round_still_running_is_not_started_twice(live_services, monkeypatch):
    calls = []

    def slow_round(_services) -> None:  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        time.sleep(0.5)

    monkeypatch.setattr("platforms.woocommerce.connect.check_connected_stores", slow_round)
    start_periodic_check(live_services)
    start_periodic_check(live_services)
    time.sleep(0.8)
    start_periodic_check(live_services)
    wait_until(lambda: len(calls) == 2, timeout=5)
    time.sleep(0.6)
    assert len(calls) == 2
