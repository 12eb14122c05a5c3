"""Every destination package keeps the contract the core relies on
(connector.destinations.Destination), and the core names none of them.

These checks run over whatever packages are installed, so a new destination is held to the
same rules the day its folder appears.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.config import Settings
from connector.delivery import requests_per_second
from connector.destinations import Destination, FailureAdvice, load_destinations
from connector.events import CLICK_ID_FIELDS, ClickIds, Content, ConversionEvent, Shopper
from connector.signals import SIGNALS, carries, keys_for

ROOT = Path(__file__).resolve().parents[2]
DESTINATIONS = load_destinations()
KINDS = sorted(DESTINATIONS)
STORED_AS = {"account_id", "access_token", "refresh_token", "test_event_code", "setting"}
RAW_EMAIL = "Jane.Doe+ads@Example.com"
RAW_PHONE = "+1 (650) 555-1212"
EVERY_CLICK = ClickIds(
    ttclid="E.C.P.tt",
    ttp="ttp-cookie",
    fbclid="IwAR-fb",
    fbc="fb.1.1700000000000.IwAR-fb",
    fbp="fb.1.1700000000000.123456",
    gclid="Cj0-gclid",
    gbraid="gbraid-1",
    wbraid="wbraid-1",
    source="landing_site",
)
SHOPPER = Shopper(
    email=RAW_EMAIL,
    phone=RAW_PHONE,
    customer_id="7012345",
    first_name="Jane",
    last_name="Doe",
    zip_code="94035-1234",
    city="Mountain View",
    state="CA",
    country_code="US",
    ip="203.0.113.9",
    user_agent="Mozilla/5.0 (iPhone)",
    locale="en-US",
)


def test_the_three_ad_platforms_are_installed() -> None:
    assert {"tiktok", "meta", "google"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_identity_environment_and_fields(kind: str) -> None:
    api = DESTINATIONS[kind]
    assert api.kind == kind and api.label and api.setup and api.test_hint
    base = api.env[0]
    assert base.name.endswith("_API_BASE") and (base.default or "").startswith("https://")
    names = [field.name for field in api.fields]
    assert len(names) == len(set(names))
    assert [f.stored_as for f in api.fields].count("account_id") == 1
    for field in api.fields:
        assert field.stored_as in STORED_AS and field.label and field.help
        assert field.flag == "--" + field.name.replace("_", "-")
        if field.pattern:
            re.compile(field.pattern)
    assert api.test_mode in ("code", "validate")
    if api.test_mode == "code":
        assert any(f.stored_as == "test_event_code" for f in api.fields)
    assert 0 < api.max_batch <= 10_000
    assert api.max_requests_per_second >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_events_signals_and_advice(kind: str) -> None:
    api = DESTINATIONS[kind]
    assert api.event_names.get("purchase"), "every destination takes purchases"
    assert set(api.event_names) <= {"purchase", "checkout"}
    assert set(api.signal_keys) <= set(SIGNALS) and "email" in api.signal_keys
    assert set(api.click_ids) <= set(CLICK_ID_FIELDS)
    assert isinstance(api.advice(None), FailureAdvice)
    assert isinstance(api.advice(123456789), FailureAdvice)


@pytest.mark.parametrize("kind", KINDS)
def test_user_data_never_holds_raw_email_or_phone(kind: str) -> None:
    user = DESTINATIONS[kind].user_data(SHOPPER, EVERY_CLICK, 1_700_000_000)
    text = repr(user).lower()
    assert RAW_EMAIL.lower() not in text and "jane.doe" not in text
    assert "6505551212" not in text.replace(" ", "").replace("-", "")
    for signal in ("email", "phone"):
        [key] = keys_for(DESTINATIONS[kind].signal_keys, signal)
        assert re.fullmatch(r"[0-9a-f]{64}", str(user[key]).strip("[]'\"")), (signal, user[key])


@pytest.mark.parametrize("kind", KINDS)
def test_user_data_carries_only_the_destinations_own_click_ids(kind: str) -> None:
    api = DESTINATIONS[kind]
    user = api.user_data(SHOPPER, EVERY_CLICK, 1_700_000_000)
    values = set(map(str, _leaves(user)))
    foreign = {getattr(EVERY_CLICK, name) for name in CLICK_ID_FIELDS} - {
        getattr(EVERY_CLICK, name) for name in api.click_ids
    }
    assert not values & foreign, values & foreign
    assert carries(user, api.signal_keys, "click_id"), f"{kind} drops its own click id"


def test_the_core_imports_no_destination_package() -> None:
    """The platform-neutral core reaches destinations only through the registry."""
    core = ROOT / "connector"
    allowed = {core / "destinations", core / "standins", core / "demo"}
    offenders = []
    for path in core.rglob("*.py"):
        if any(folder in path.parents for folder in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["connector", "destinations"] and len(parts) > 2:
                    offenders.append(f"{path.relative_to(ROOT)}: {node.module}")
    assert offenders == []


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_an_event_time_in_the_past_is_accepted_and_an_ancient_one_is_not() -> None:
    now = int(datetime.now(UTC).timestamp())
    for kind in KINDS:
        api = DESTINATIONS[kind]
        fresh = _event(api, now - 3600)
        ancient = _event(api, now - 400 * 86400)
        assert api.problem(fresh, now) is None, kind
        assert api.problem(ancient, now), kind


def _event(api: Destination, event_time: int) -> ConversionEvent:
    return ConversionEvent(
        event_name=api.event_names["purchase"][0],
        event_id="1001",
        event_time=event_time,
        user=api.user_data(SHOPPER, EVERY_CLICK, event_time),
        value=10.0,
        currency="USD",
        contents=(Content(content_id="1", name="x", price=10.0, quantity=1),),
        order_id="1001",
    )


def test_delivery_keeps_to_the_slower_of_the_operators_and_the_platforms_rate() -> None:
    settings = Settings(
        instance_path=ROOT, database_url="sqlite://", redis_url=None, secret_key="k",
        token_encryption_key=None, app_url="http://x", max_requests_per_second=20.0,
    )  # fmt: skip
    assert requests_per_second(settings, DESTINATIONS["google"]) == 5.0  # Google: 300 a minute
    assert requests_per_second(settings, DESTINATIONS["tiktok"]) == 20.0
    unlimited = settings.with_overrides(max_requests_per_second=0.0)
    assert requests_per_second(unlimited, DESTINATIONS["tiktok"]) == 0.0
