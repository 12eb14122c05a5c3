"""The storefront code captures exactly the click ids and cookies connector/clicks.py lists.

Three copies of the list live outside Python: the Shopify Web Pixel extension, the Shopify
custom pixel and the WordPress plugin. Each declares it once, as a constant; these tests hold
every constant equal to :data:`connector.clicks.CAPTURED_URL_PARAMETERS` and
:data:`connector.clicks.CAPTURED_COOKIES`, and check that what the plugin writes as order meta
is what the WooCommerce parser reads (:data:`connector.clicks.ATTRIBUTE_KEYS`), so they cannot
drift apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from connector.clicks import ATTRIBUTE_KEYS, CAPTURED_COOKIES, CAPTURED_URL_PARAMETERS
from tests.support import ROOT

PIXELS = [
    ROOT / "extensions" / "tiktok-click-capture" / "src" / "index.js",
    ROOT / "platforms" / "shopify" / "storefront" / "tiktok-custom-pixel.js",
]
PLUGIN_FUNCTIONS = (
    ROOT
    / "platforms"
    / "woocommerce"
    / "wordpress-plugin"
    / "tiktok-click-capture"
    / "includes"
    / "functions.php"
)


def js_constant(source: str, name: str) -> object:
    """The JSON-shaped literal a ``const NAME = ...;`` declares, exactly once in the file."""
    [literal] = re.findall(rf"\bconst {name} = (\[[^\]]*\]|\{{[^}}]*\}});", source)
    return json.loads(literal)


def php_constant(source: str, name: str) -> list[str]:
    """The single-quoted strings of a ``const NAME = array( ... );``, exactly once in the file."""
    [literal] = re.findall(rf"^const {name} = array\(([^)]*)\);", source, re.MULTILINE)
    return re.findall(r"'([^']*)'", literal)


@pytest.mark.parametrize("path", PIXELS, ids=lambda path: path.name)
def test_each_pixel_captures_the_connectors_lists(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert js_constant(source, "URL_PARAMETERS") == list(CAPTURED_URL_PARAMETERS)
    assert js_constant(source, "COOKIES") == CAPTURED_COOKIES


def test_the_wordpress_plugin_captures_the_connectors_lists() -> None:
    source = PLUGIN_FUNCTIONS.read_text(encoding="utf-8")
    assert php_constant(source, "TCC_URL_PARAMETERS") == list(CAPTURED_URL_PARAMETERS)
    assert php_constant(source, "TCC_COOKIES") == list(CAPTURED_COOKIES)


def test_the_meta_keys_the_plugin_writes_are_read_by_the_parser() -> None:
    """The plugin writes ``_<parameter>`` and each cookie under its own name
    (``tcc_click_id_meta``)."""
    for name in CAPTURED_URL_PARAMETERS:
        assert f"_{name}" in ATTRIBUTE_KEYS[name], name
    for cookie, field in CAPTURED_COOKIES.items():
        assert cookie in ATTRIBUTE_KEYS[field], cookie
