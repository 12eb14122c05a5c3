"""Match-quality diagnostics (connector.diagnostics) over rows the real pipeline wrote.

Orders go through ``record_events``, failures through ``deliver_pending`` against the TikTok
stand-in, so the signal masks, click sources, skip reasons, codes and messages counted here
are the ones production writes.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from connector.delivery import deliver_pending
from connector.destinations.tiktok.advice import FAILURE_ADVICE
from connector.destinations.tiktok.advice import advice as advice_for
from connector.diagnostics import (
    CLICK_SOURCE_LABELS,
    SIGNAL_ACTIONS,
    SIGNAL_WEIGHTS,
    diagnose,
    tier_of,
)
from connector.events import Basket, Checkout, ClickIds, Order
from connector.models import OutboxEvent, utcnow
from connector.pipeline import record_events
from connector.plugins import load_store_platforms
from connector.services import Services
from connector.signals import SIGNALS
from platforms.shopify import PLATFORM as SHOPIFY
from platforms.shopify import advice as shopify_advice
from platforms.woocommerce import PLATFORM as WOOCOMMERCE
from platforms.woocommerce import advice as woocommerce_advice
from tests.support import connect_tiktok, make_order

pytestmark = pytest.mark.postgres

BOT_USER_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def order(order_id: str, *, clicks: ClickIds | None = None, **shopper: object) -> Order:
    """``make_order`` with some shopper fields changed (None removes a signal)."""
    base = make_order(order_id)
    return make_order(
        order_id,
        shopper=dataclasses.replace(base.shopper, **shopper),
        clicks=base.clicks if clicks is None else clicks,
    )


def checkout(token: str) -> Checkout:
    basket = make_order("unused")
    fields = {f.name: getattr(basket, f.name) for f in dataclasses.fields(Basket)}
    return Checkout(**fields, token=token)


def record(services: Services, store_id: str, *sources: Order | Checkout) -> None:
    for source in sources:
        topic = "orders/create" if isinstance(source, Order) else "checkouts/create"
        record_events(services, store_id, topic, source)


def age(services: Services, event_id: str, days: float) -> None:
    """Pretend the event was received ``days`` ago."""
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == event_id)
            .values(received_at=utcnow() - timedelta(days=days))
        )
        session.commit()


def give_up_now(services: Services) -> None:
    """Make every pending event due and past its retry horizon: the next retry is its last."""
    past = utcnow() - timedelta(seconds=1)
    with services.db.session() as session:
        session.execute(update(OutboxEvent).values(next_attempt_at=past, give_up_at=past))
        session.commit()


def test_coverage_per_event_name_counts_only_events_sent_to_tiktok(services, shopify_store):
    record(
        services,
        shopify_store,
        order("1"),
        order("2", email=None),
        order("3", phone=None, clicks=ClickIds()),
        order("4", user_agent=BOT_USER_AGENT),
        make_order("5", is_test=True),
        checkout("chk-1"),
    )

    result = diagnose(services, shopify_store, 7)

    assert result.sent == 4
    assert [(c.event_name, c.events) for c in result.coverage] == [
        ("CompletePayment", 3),
        ("InitiateCheckout", 1),
    ]
    purchases = result.coverage[0]
    assert [(s.signal, s.count) for s in purchases.signals] == [
        ("click_id", 2),
        ("email", 2),
        ("phone", 2),
        ("external_id", 3),
        ("ip", 3),
        ("user_agent", 3),
        ("browser_id", 2),
    ]
    assert purchases.share("email") == 2 / 3
    assert purchases.share("ip") == 1.0
    assert [s.share for s in result.coverage[1].signals] == [1.0] * len(SIGNALS)


def test_bots_and_other_skips_are_counted_by_reason(services, shopify_store):
    record(
        services,
        shopify_store,
        order("1"),
        order("2", user_agent=BOT_USER_AGENT),
        order("3", user_agent=BOT_USER_AGENT),
        make_order("4", is_test=True),
    )

    result = diagnose(services, shopify_store, 7)

    assert result.bots == 2
    assert [(s.reason, s.count) for s in result.skips] == [
        ("bot user agent", 2),
        ("test order: set a TikTok test event code to send test orders", 1),
    ]
    assert result.skipped == 3 and result.sent == 1


def test_click_sources_count_where_each_ttclid_came_from(services, woocommerce_store):
    store_id, _secret = woocommerce_store
    plugin = ClickIds(ttclid="E.C.P.meta", ttp="ttp", source="order_meta")
    record(
        services,
        store_id,
        order("1", clicks=plugin),
        order("2", clicks=plugin),
        order("3"),
        order("4", clicks=ClickIds()),
        order("5", clicks=ClickIds(ttp="ttp-only")),
    )

    sources = diagnose(services, store_id, 30, platform=WOOCOMMERCE).click_sources

    assert [(s.source, s.label, s.count) for s in sources] == [
        ("order_meta", woocommerce_advice.CLICK_SOURCE_LABELS["order_meta"], 2),
        (None, "No click id", 2),
        ("landing_site", "landing_site", 1),  # not a WooCommerce source: its own name
    ]


def test_click_sources_are_labelled_by_the_platform_that_writes_them(services, shopify_store):
    stored = ClickIds(ttclid="E.C.P.stored", source="stored_checkout_token")
    attributes = ClickIds(ttclid="E.C.P.attr", source="note_attributes")
    record(
        services,
        shopify_store,
        order("1", clicks=stored),
        order("2", clicks=stored),
        order("3", clicks=attributes),
    )

    shopify = diagnose(services, shopify_store, 7, platform=SHOPIFY).click_sources
    generic = diagnose(services, shopify_store, 7).click_sources

    assert [(s.source, s.label) for s in shopify] == [
        ("stored_checkout_token", CLICK_SOURCE_LABELS["stored_checkout_token"]),
        ("note_attributes", shopify_advice.CLICK_SOURCE_LABELS["note_attributes"]),
    ]
    assert [(s.source, s.label) for s in generic] == [
        ("stored_checkout_token", CLICK_SOURCE_LABELS["stored_checkout_token"]),
        ("note_attributes", "note_attributes"),
    ]


def test_score_is_the_weighted_coverage_of_purchases(services, shopify_store):
    record(
        services,
        shopify_store,
        order("1"),
        order("2", email=None),
        order("3", phone=None, clicks=ClickIds()),
        checkout("chk-1"),  # not a purchase: no part of the score
    )

    estimate = diagnose(services, shopify_store, 7).estimate

    # ttclid, email, phone and ttp on 2 of 3 purchases; customer id, IP and browser on all.
    expected = (30 + 25 + 20 + 5) * 2 / 3 + 10 + 5 + 5
    assert estimate is not None
    assert estimate.score == pytest.approx(expected)  # 73.3
    assert (estimate.tier, estimate.purchases) == ("Good", 3)


def test_every_purchase_name_counts_as_a_purchase(services, shopify_store):
    connect_tiktok(services, shopify_store, purchase_event="Purchase")
    record(services, shopify_store, order("1", clicks=ClickIds(), email=None, phone=None))

    estimate = diagnose(services, shopify_store, 7).estimate

    assert estimate is not None and estimate.purchases == 1
    assert estimate.score == 10 + 5 + 5
    assert estimate.tier == "Poor"


def test_best_change_is_the_largest_missing_coverage_times_weight(services, shopify_store):
    record(
        services,
        shopify_store,
        order("1", clicks=ClickIds(), phone=None),
        order("2", clicks=ClickIds(), phone=None),
        order("3", phone=None),
    )

    result = diagnose(services, shopify_store, 7, platform=SHOPIFY)
    change = result.best_change

    assert not result.capture_works  # the landing page is not click capture
    # Missing: ttclid 2/3 x 30 = 20 points, phone 3/3 x 20 = 20 points, ttp 2/3 x 5. A tie
    # goes to the stronger signal, the first in SIGNALS.
    assert change is not None
    assert (change.signal, change.points) == ("click_id", pytest.approx(20.0))
    assert change.share == 1 / 3
    assert change.action == shopify_advice.SIGNAL_ADVICE["click_id"]
    generic = diagnose(services, shopify_store, 7).best_change
    assert generic is not None and generic.action == SIGNAL_ACTIONS["click_id"]


def test_working_click_capture_moves_the_best_change_past_the_click_id(services, woocommerce_store):
    store_id, _secret = woocommerce_store
    plugin = ClickIds(ttclid="E.C.P.meta", ttp="ttp", source="order_meta")
    record(
        services,
        store_id,
        order("1", clicks=plugin),
        order("2", clicks=ClickIds(ttp="ttp"), email=None),
        order("3", clicks=ClickIds(ttp="ttp"), phone=None),
    )

    result = diagnose(services, store_id, 7, platform=WOOCOMMERCE)
    change = result.best_change

    assert result.capture_works
    # ttclid misses 2/3 x 30 = 20 points, but the plugin works: those orders did not come from
    # an ad. Next: email 1/3 x 25, for which WooCommerce has no advice of its own.
    assert change is not None
    assert (change.signal, change.points) == ("email", pytest.approx(25 / 3))
    assert "email" not in woocommerce_advice.SIGNAL_ADVICE
    assert change.action == SIGNAL_ACTIONS["email"]
    # Without its platform the core cannot know "order_meta" is click capture.
    assert not diagnose(services, store_id, 7).capture_works


def test_phone_advice_follows_the_platform(services, woocommerce_store):
    store_id, _secret = woocommerce_store
    plugin = ClickIds(ttclid="E.C.P.meta", ttp="ttp", source="order_meta")
    record(services, store_id, order("1", clicks=plugin, phone=None))

    change = diagnose(services, store_id, 7, platform=WOOCOMMERCE).best_change

    assert change is not None and change.signal == "phone"
    assert change.action == woocommerce_advice.SIGNAL_ADVICE["phone"]
    assert change.action == "Make the billing phone field required at checkout."


def test_nothing_to_improve_when_every_purchase_carries_every_signal(services, shopify_store):
    record(services, shopify_store, order("1"), order("2"))

    result = diagnose(services, shopify_store, 7)

    assert result.estimate is not None
    assert (result.estimate.score, result.estimate.tier) == (100, "Excellent")
    assert result.best_change is None


def test_failures_are_grouped_by_tiktok_code_with_the_latest_message(
    services, shopify_store, tiktok
):
    destination_id = connect_tiktok(services, shopify_store)
    stale = make_order("old", occurred_at=datetime.now(UTC) - timedelta(days=8))
    record(services, shopify_store, *(order(str(i)) for i in range(1, 6)), stale)
    tiktok.reject_event_ids({"2", "4"})  # code 40002, naming the event
    deliver_pending(services, destination_id)
    record(services, shopify_store, order("6"))
    give_up_now(services)
    tiktok.fail_next(1, code=40100)
    deliver_pending(services, destination_id)
    record(services, shopify_store, order("7"))
    give_up_now(services)
    tiktok.go_down()
    deliver_pending(services, destination_id)
    tiktok.come_up()

    failures = diagnose(services, shopify_store, 7).failures

    assert [(f.code, f.count) for f in failures] == [(None, 2), (40002, 2), (40100, 1)]
    unreachable, bad_field, throttled = failures
    assert unreachable.latest_message == "cannot reach TikTok: ConnectionError"
    # Order "4" was third in the batch resent without "2"; TikTok names it by its path.
    assert bad_field.latest_message == "data.2.event_id: Invalid value '4'."
    assert throttled.latest_message is not None and throttled.latest_message.endswith(
        "(code 40100)"
    )
    assert (bad_field.meaning, bad_field.action) == (
        FAILURE_ADVICE[40002].meaning,
        FAILURE_ADVICE[40002].action,
    )


def test_failed_events_still_count_in_the_coverage(services, shopify_store, tiktok):
    destination_id = connect_tiktok(services, shopify_store)
    record(services, shopify_store, order("1"), order("2", email=None))
    tiktok.reject_event_ids({"2"})
    deliver_pending(services, destination_id)

    result = diagnose(services, shopify_store, 7)

    assert result.sent == 2
    assert result.coverage[0].share("email") == 0.5


def test_windows_count_events_received_in_the_last_7_and_30_days(services, shopify_store):
    record(
        services,
        shopify_store,
        order("today"),
        order("last-week", email=None),
        order("last-month", user_agent=BOT_USER_AGENT),
        order("long-ago"),
    )
    age(services, "last-week", 8)
    age(services, "last-month", 29)
    age(services, "long-ago", 31)

    week = diagnose(services, shopify_store, 7)
    month = diagnose(services, shopify_store, 30)

    assert (week.sent, week.bots, week.coverage[0].share("email")) == (1, 0, 1.0)
    assert (month.sent, month.bots, month.coverage[0].share("email")) == (2, 1, 0.5)


def test_another_store_is_never_counted(services, shopify_store, woocommerce_store):
    other, _secret = woocommerce_store
    record(services, other, order("1"), order("2", user_agent=BOT_USER_AGENT))
    record(services, shopify_store, order("1", email=None))

    result = diagnose(services, shopify_store, 7)

    assert (result.sent, result.bots) == (1, 0)
    assert result.coverage[0].share("email") == 0.0


def test_a_store_without_events_is_empty(services, shopify_store):
    result = diagnose(services, shopify_store, 30)

    assert result.empty
    assert (result.coverage, result.click_sources, result.skips, result.failures) == (
        (),
        (),
        (),
        (),
    )
    assert result.estimate is None and result.best_change is None


@pytest.mark.parametrize(
    ("score", "tier"),
    [(100, "Excellent"), (80, "Excellent"), (79.9, "Good"), (60, "Good"), (59.9, "Fair")]
    + [(40, "Fair"), (39.9, "Poor"), (0, "Poor")],
)
def test_tiers_follow_the_issue(score: float, tier: str) -> None:
    assert tier_of(score) == tier


def test_weights_cover_every_signal_and_add_up_to_100() -> None:
    assert set(SIGNAL_WEIGHTS) == set(SIGNALS) == set(SIGNAL_ACTIONS)
    assert sum(SIGNAL_WEIGHTS.values()) == 100


def test_each_platform_speaks_for_itself_and_the_core_names_none() -> None:
    platforms = load_store_platforms()
    assert [p.name for p in platforms] == ["shopify", "woocommerce"]
    assert SHOPIFY.signal_advice is shopify_advice.SIGNAL_ADVICE
    assert SHOPIFY.click_source_labels is shopify_advice.CLICK_SOURCE_LABELS
    assert WOOCOMMERCE.signal_advice is woocommerce_advice.SIGNAL_ADVICE
    assert WOOCOMMERCE.click_source_labels is woocommerce_advice.CLICK_SOURCE_LABELS
    core_texts = " ".join([*SIGNAL_ACTIONS.values(), *CLICK_SOURCE_LABELS.values()]).lower()
    for platform in platforms:
        assert set(platform.signal_advice) <= set(SIGNALS), platform.name
        assert not set(platform.click_source_labels) & set(CLICK_SOURCE_LABELS), platform.name
        assert platform.name not in core_texts
        assert hash(platform) == hash(platform)  # still usable in sets and as a key


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (40001, "admin or operator"),
        (40102, "Connect TikTok again"),
        (40104, "Connect TikTok again"),
        (40105, "Connect TikTok again"),
        (40100, "retries by itself"),
        (40061, "connector bug"),
        (40062, "do not replay"),
        (50000, "once TikTok works again"),
        (51002, "once TikTok works again"),
        (None, "7 days old"),
        (12345, "Report the code"),
    ],
)
def test_every_code_says_what_to_do(code: int | None, words: str) -> None:
    assert words in advice_for(code).action
