"""Rendering the TikTok custom pixel for a store, and ``connector stores shopify-pixel``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.mapping import EventOptions
from platforms.shopify.custom_pixel import (
    CustomPixelError,
    custom_pixel_code,
    store_custom_pixel_code,
)
from tests.support import PIXEL_CODE, ROOT, connect_tiktok, settings_environment

CONFIG_LINE = re.compile(r"^const CONFIG = (\{.*\});$", re.MULTILINE)
NODE = shutil.which("node")


def config_of(code: str) -> dict:
    [config] = CONFIG_LINE.findall(code)
    return json.loads(config)


def assert_valid_javascript(code: str, tmp_path: Path) -> None:
    """``node --check`` parses it (skipped where Node.js is not installed)."""
    if NODE is None:
        return
    path = tmp_path / "pixel.js"
    path.write_text(code, encoding="utf-8")
    checked = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_pixel_carries_the_connectors_defaults(tmp_path):
    code = custom_pixel_code(PIXEL_CODE, "https://connector.example.com/collect")
    assert config_of(code) == {
        "pixelCode": PIXEL_CODE,
        "collectUrl": "https://connector.example.com/collect",
        "purchaseEvent": "CompletePayment",
        "initiateCheckout": True,
        "valueBasis": "total",
        "contentId": "variant",
    }
    assert code.startswith("/**") and "CONNECTOR_CONFIG" not in code
    assert_valid_javascript(code, tmp_path)


def test_the_pixel_follows_the_stores_event_options():
    options = EventOptions(
        purchase_event="Purchase",
        send_initiate_checkout=False,
        value_basis="subtotal",
        content_id="sku",
    )
    config = config_of(custom_pixel_code(PIXEL_CODE, "https://c.example/collect", options))
    assert (
        config["purchaseEvent"],
        config["initiateCheckout"],
        config["valueBasis"],
        config["contentId"],
    ) == ("Purchase", False, "subtotal", "sku")


@pytest.mark.parametrize("pixel_code", ["", "CPIX EL", "C4SG&lib=x", "C" * 65, 'C4"};alert(1)//'])
def test_a_pixel_code_that_is_not_one_is_refused(pixel_code):
    with pytest.raises(CustomPixelError, match="letters and digits"):
        custom_pixel_code(pixel_code, "https://connector.example.com/collect")


@pytest.mark.parametrize(
    "url",
    [
        "connector.example.com/collect",
        "javascript:alert(1)//collect",
        "https://connector.example.com/other",
        'https://c.example/"};alert(1);//collect',
    ],
)
def test_a_collect_address_that_is_not_one_is_refused(url):
    with pytest.raises(CustomPixelError, match="APP_URL"):
        custom_pixel_code(PIXEL_CODE, url)


def test_a_store_pixel_uses_its_destination_and_app_url(services, shopify_store):
    connect_tiktok(services, shopify_store, purchase_event="PlaceAnOrder")
    config = config_of(store_custom_pixel_code(services, shopify_store))
    assert config["pixelCode"] == PIXEL_CODE
    assert config["collectUrl"] == f"{services.settings.app_url}/collect"
    assert config["purchaseEvent"] == "PlaceAnOrder"


def test_a_store_without_tiktok_is_told_to_connect_it(services, shopify_store):
    with pytest.raises(CustomPixelError, match=f"connector tiktok set {shopify_store}"):
        store_custom_pixel_code(services, shopify_store)


def test_only_shopify_stores_have_a_custom_pixel(services, woocommerce_store):
    store_id, _secret = woocommerce_store
    with pytest.raises(CustomPixelError, match="no Shopify store"):
        store_custom_pixel_code(services, store_id)


# -- the command -------------------------------------------------------------------------------


def shopify_pixel(settings, store_id: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", "stores", "shopify-pixel", store_id],
        env=settings_environment(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_prints_the_code_to_paste(settings, services, shopify_store, tmp_path):
    connect_tiktok(services, shopify_store)
    result = shopify_pixel(settings, shopify_store)
    assert result.returncode == 0, result.stderr
    assert result.stdout == store_custom_pixel_code(services, shopify_store)
    assert_valid_javascript(result.stdout, tmp_path)


def test_the_command_says_what_to_do_first(settings, shopify_store):
    result = shopify_pixel(settings, shopify_store)
    assert result.returncode == 1 and result.stdout == ""
    assert f"connect TikTok first: connector tiktok set {shopify_store}" in result.stderr
