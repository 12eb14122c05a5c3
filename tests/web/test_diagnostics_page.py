"""The Diagnostics page through Flask's test client: its numbers are the database's, its
window switch, its empty state, and that one store's session never sees another's."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from markupsafe import escape
from sqlalchemy import select, update

from connector.diagnostics import CLICK_SOURCE_LABELS, SENT_STATUSES, SIGNAL_WEIGHTS
from connector.events import ClickIds, Order
from connector.models import EventStatus, OutboxEvent, utcnow
from connector.pipeline import record_events
from connector.services import Services
from connector.signals import signals_in
from connector.stores import set_destination
from platforms.shopify import advice as shopify_advice
from platforms.woocommerce import advice as woocommerce_advice
from tests.support import connect_tiktok, log_in, make_order

pytestmark = pytest.mark.postgres

BOT_USER_AGENT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, in document order."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def with_attr(self, name: str) -> list[dict[str, str]]:
        return [attrs for _tag, attrs in self.tags if name in attrs]

    def by_id(self, element_id: str) -> dict[str, str]:
        return next(attrs for _tag, attrs in self.tags if attrs.get("id") == element_id)


def order(order_id: str, *, clicks: ClickIds | None = None, **shopper: object) -> Order:
    base = make_order(order_id)
    return make_order(
        order_id,
        shopper=dataclasses.replace(base.shopper, **shopper),
        clicks=base.clicks if clicks is None else clicks,
    )


def record_a_month(services: Services, store_id: str) -> None:
    """A mix of what a real month holds: full and partial orders, a bot, failures, old ones."""
    for source in (
        order("1"),
        order("2", email=None),
        order("3", phone=None, clicks=ClickIds()),
        order("4", customer_id=None, clicks=ClickIds(ttclid="E.C.P.x", source="note_attributes")),
        order("5", user_agent=BOT_USER_AGENT),
        order("6"),
        order("7", email=None, phone=None),
    ):
        record_events(services, store_id, "orders/create", source)
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == "6")
            .values(status=EventStatus.FAILED, last_code=40002, last_error="data.0.x: bad")
        )
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == "7")
            .values(received_at=utcnow() - timedelta(days=20))
        )
        session.commit()


def sent_rows(services: Services, store_id: str, days: int) -> list[OutboxEvent]:
    since = utcnow() - timedelta(days=days)
    with services.db.session() as session:
        return list(
            session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.store_id == store_id,
                    OutboxEvent.received_at >= since,
                    OutboxEvent.status.in_(SENT_STATUSES),
                )
            )
        )


@pytest.mark.parametrize("days", [7, 30])
def test_chart_and_score_show_the_database_numbers(client, services, shopify_store, days):
    record_a_month(services, shopify_store)
    log_in(client, services, shopify_store)

    answer = client.get(f"/settings/{shopify_store}/diagnostics?days={days}")

    assert answer.status_code == 200
    page = Elements(answer.get_data(as_text=True))
    rows = sent_rows(services, shopify_store, days)
    bars = page.with_attr("data-signal")
    chart_bars = [b for b in bars if "bar-row" in b.get("class", "")]
    assert len(chart_bars) == len(SIGNAL_WEIGHTS)  # one event name: CompletePayment
    for bar in chart_bars:
        carried = sum(bar["data-signal"] in signals_in(row.signals or 0) for row in rows)
        assert int(bar["data-count"]) == carried, bar["data-signal"]
        assert float(bar["data-share"]) == pytest.approx(carried / len(rows), abs=1e-4)
    score = sum(
        SIGNAL_WEIGHTS[signal] * sum(signal in signals_in(row.signals or 0) for row in rows)
        for signal in SIGNAL_WEIGHTS
    ) / len(rows)
    tier = page.by_id("match-tier")
    assert float(tier["data-score"]) == pytest.approx(score, abs=0.05)
    assert page.by_id("bots")["data-count"] == "1"


def test_failures_click_sources_and_skips_match_the_database(client, services, shopify_store):
    record_a_month(services, shopify_store)
    log_in(client, services, shopify_store)

    text = client.get(f"/settings/{shopify_store}/diagnostics?days=30").get_data(as_text=True)
    page = Elements(text)

    failures = {row["data-code"] for row in page.with_attr("data-code")}
    assert failures == {"40002"}
    assert "data.0.x: bad" in text and "TikTok refused a field of the event" in text
    sources = {row["data-source"] for row in page.with_attr("data-source")}
    assert sources == {"landing_site", "note_attributes", "none"}
    for label in (*shopify_advice.CLICK_SOURCE_LABELS.values(), CLICK_SOURCE_LABELS[None]):
        assert f"<td>{escape(label)}</td>" in text
    assert 'id="capture-works"' in text  # order 4's click id came from storefront code
    assert "bot user agent" in text


def test_window_switch_shows_both_windows_and_refuses_others(client, services, shopify_store):
    record_a_month(services, shopify_store)
    log_in(client, services, shopify_store)

    week = Elements(client.get(f"/settings/{shopify_store}/diagnostics").get_data(as_text=True))
    month = client.get(f"/settings/{shopify_store}/diagnostics?days=30")

    chosen = [a for a in week.with_attr("data-days") if a.get("aria-current")]
    assert [a["data-days"] for a in chosen] == ["7"]
    purchases = [e for e in week.with_attr("data-event")]
    assert [e["data-events"] for e in purchases] == ["5"]
    assert 'data-events="6"' in month.get_data(as_text=True)
    assert client.get(f"/settings/{shopify_store}/diagnostics?days=5").status_code == 400


def test_best_change_names_the_signal_and_the_action(client, services, shopify_store):
    for i in range(3):
        record_events(services, shopify_store, "orders/create", order(str(i), phone=None))
    log_in(client, services, shopify_store)

    text = client.get(f"/settings/{shopify_store}/diagnostics").get_data(as_text=True)

    assert Elements(text).by_id("best-change")["data-signal"] == "phone"
    assert str(escape(shopify_advice.SIGNAL_ADVICE["phone"])) in text
    assert "not TikTok's own match quality score" in text


def test_a_woocommerce_store_gets_woocommerce_words(client, services, woocommerce_store):
    store_id, _secret = woocommerce_store
    plugin = ClickIds(ttclid="E.C.P.meta", ttp="ttp", source="order_meta")
    record_events(services, store_id, "orders/create", order("1", clicks=plugin, phone=None))
    log_in(client, services, store_id)

    text = client.get(f"/settings/{store_id}/diagnostics").get_data(as_text=True)

    assert Elements(text).by_id("best-change")["data-signal"] == "phone"
    assert str(escape(woocommerce_advice.SIGNAL_ADVICE["phone"])) in text
    label = woocommerce_advice.CLICK_SOURCE_LABELS["order_meta"]
    assert f"<td>{escape(label)}</td>" in text
    assert "Shopify" not in text


def test_a_store_without_events_says_what_to_do(client, services, shopify_store):
    log_in(client, services, shopify_store)

    text = client.get(f"/settings/{shopify_store}/diagnostics").get_data(as_text=True)

    assert 'id="empty"' in text and "No orders in the last 7 days yet" in text
    assert 'id="coverage-chart"' not in text


def test_the_page_needs_no_outside_assets_or_inline_script(client, services, shopify_store):
    record_a_month(services, shopify_store)
    log_in(client, services, shopify_store)

    answer = client.get(f"/settings/{shopify_store}/diagnostics")

    page = Elements(answer.get_data(as_text=True))
    assert not [attrs for tag, attrs in page.tags if tag == "script"]
    links = [attrs.get("href", "") + attrs.get("src", "") for _tag, attrs in page.tags]
    assert not [link for link in links if link.startswith(("http:", "https:", "//"))]
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert client.get("/static/diagnostics.css").status_code == 200


def test_another_stores_session_gets_403(client, services, shopify_store, woocommerce_store):
    other, _secret = woocommerce_store
    record_a_month(services, shopify_store)

    assert client.get(f"/settings/{shopify_store}/diagnostics").status_code == 403
    log_in(client, services, other)
    answer = client.get(f"/settings/{shopify_store}/diagnostics")
    assert answer.status_code == 403
    assert "CompletePayment" not in answer.get_data(as_text=True)
    assert client.get(f"/settings/{other}/diagnostics").status_code == 200


def test_each_destination_has_its_own_diagnostics(client, services, shopify_store):
    """One order, two destinations: each page counts its own rows, names its own click id
    and explains its own platform's codes."""
    connect_tiktok(services, shopify_store)
    meta = {"pixel_id": "123456789012345", "access_token": "meta-token"}
    set_destination(services, shopify_store, kind="meta", values=meta)
    tiktok_click = ClickIds(ttclid="E.C.P.only-tiktok", source="landing_site")
    record_events(services, shopify_store, "orders/create", order("1", clicks=tiktok_click))
    with services.db.session() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.destination == "meta")
            .values(status=EventStatus.FAILED, last_code=190, last_error="token expired")
        )
        session.commit()
    log_in(client, services, shopify_store)

    meta_page = client.get(f"/settings/{shopify_store}/diagnostics?destination=meta").get_data(
        as_text=True
    )
    tiktok_page = client.get(f"/settings/{shopify_store}/diagnostics").get_data(as_text=True)

    assert "Meta click id" in meta_page and "Meta cookie (_fbp)" in meta_page
    meta_bars = Elements(meta_page).with_attr("data-count")
    assert {a["data-count"] for a in meta_bars if a.get("data-signal") == "click_id"} == {"0"}
    assert "TikTok click id" in tiktok_page  # TikTok's is the deployment's default
    tiktok_bars = Elements(tiktok_page).with_attr("data-count")
    assert {a["data-count"] for a in tiktok_bars if a.get("data-signal") == "click_id"} == {"1"}
    assert "Meta&#39;s access token expired" in meta_page
    assert 'data-destination="meta" aria-current="true"' in meta_page
    answer = client.get(f"/settings/{shopify_store}/diagnostics?destination=nope")
    assert answer.status_code == 400
