"""What the storefront code leaves on an order reaches its ``ClickIds``, for every ad platform.

Shopify: cart attributes (``note_attributes``) and the landing page (``landing_site``).
WooCommerce: the order meta the WordPress plugin writes, produced here by the plugin's own PHP
functions from a landing URL's query and the browser's cookies, then read by the parser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from connector.events import ClickIds
from platforms.shopify.parse import parse_order as parse_shopify_order
from platforms.woocommerce.parse import parse_order as parse_woocommerce_order
from tests.support import ROOT, fixture_bytes

FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
FBC = f"fb.1.1554763741205.{FBCLID}"
FBP = "fb.1.1596403881668.1116446470"
TTCLID = "E.C.P.CqgBvN3xY8kLm2Qw8vR7yZ3nA4sF6hJ1uP0tG5bW"  # orders_create.json's landing ttclid
PLUGIN_FUNCTIONS = (
    ROOT / "platforms/woocommerce/wordpress-plugin/tiktok-click-capture/includes/functions.php"
)


def shopify_order(**changes: object) -> dict[str, Any]:
    payload = json.loads(fixture_bytes("shopify", "orders_create.json"))
    payload.update(changes)
    return payload


def test_shopify_landing_site_gives_every_platforms_click_id():
    landing = f"/?ttclid=E.C.P.t&fbclid={FBCLID}&gclid=g1&gbraid=gb1&wbraid=wb1&utm_source=x"
    order = parse_shopify_order(
        shopify_order(note_attributes=[], landing_site=landing), "orders/create"
    )
    assert order.clicks == ClickIds(
        ttclid="E.C.P.t",
        fbclid=FBCLID,
        gclid="g1",
        gbraid="gb1",
        wbraid="wb1",
        source="landing_site",
    )


def test_shopify_note_attributes_come_first_field_by_field():
    attributes = [
        {"name": "_fbc", "value": FBC},
        {"name": "_fbp", "value": FBP},
        {"name": "gclid", "value": "gclid-note"},
    ]
    landing = f"/?gclid=gclid-landing&wbraid=wb1&ttclid={TTCLID}"
    order = parse_shopify_order(
        shopify_order(note_attributes=attributes, landing_site=landing), "orders/create"
    )
    assert order.clicks == ClickIds(
        ttclid=TTCLID,
        fbc=FBC,
        fbp=FBP,
        gclid="gclid-note",
        wbraid="wb1",
        source="note_attributes",
    )


def test_shopify_cookies_alone_in_attributes_leave_the_source_to_the_landing_page():
    order = parse_shopify_order(shopify_order(), "orders/create")  # a _ttp attribute only
    assert order.clicks == ClickIds(
        ttclid=TTCLID, ttp="2gKx7TqW4mZr9LbVn3PcY8sHdJf", source="landing_site"
    )


PHP_PLUGIN_META = """
define( 'ABSPATH', '/' );
require $argv[1];
$input = json_decode( $argv[2], true );
$cookies = array_merge( tcc_click_id_cookies( $input['query'] ), $input['cookies'] );
$meta = array();
foreach ( tcc_click_id_meta( $cookies ) as $key => $value ) {
	$meta[] = array( 'id' => count( $meta ) + 1, 'key' => $key, 'value' => $value );
}
echo json_encode( $meta );
"""


def plugin_meta(query: dict[str, str], cookies: dict[str, str]) -> list[dict[str, Any]]:
    """The ``meta_data`` the WordPress plugin gives an order whose shopper landed with
    ``query`` and pays with ``cookies`` in the browser."""
    php = shutil.which("php")
    if php is None:
        pytest.skip("php is not installed: the plugin's functions are not run")
    answer = subprocess.run(
        [
            php,
            "-r",
            PHP_PLUGIN_META,
            str(PLUGIN_FUNCTIONS),
            json.dumps({"query": query, "cookies": cookies}),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr + answer.stdout
    return json.loads(answer.stdout)


def test_woocommerce_order_meta_from_the_plugin_gives_every_click_id_and_cookie():
    query = {"ttclid": "E.C.P.t", "fbclid": FBCLID, "gclid": "g1", "gbraid": "gb1", "wbraid": "wb1"}
    cookies = {"_ttp": "ttp-cookie", "_fbc": FBC, "_fbp": FBP}
    payload = json.loads(fixture_bytes("woocommerce", "order_created__processing.json"))
    payload["meta_data"] = plugin_meta(query, cookies)
    assert parse_woocommerce_order(payload).clicks == ClickIds(
        ttclid="E.C.P.t",
        ttp="ttp-cookie",
        fbclid=FBCLID,
        fbc=FBC,
        fbp=FBP,
        gclid="g1",
        gbraid="gb1",
        wbraid="wb1",
        source="order_meta",
    )


def test_woocommerce_order_meta_with_a_google_click_alone():
    payload = json.loads(fixture_bytes("woocommerce", "order_created__processing.json"))
    payload["meta_data"] = plugin_meta({"wbraid": " wb1 "}, {})
    assert parse_woocommerce_order(payload).clicks == ClickIds(wbraid="wb1", source="order_meta")
