"""The TikTok custom pixel for one Shopify store, ready to paste in Settings > Customer events.

The template is ``storefront/tiktok-custom-pixel.js`` (its header says what it does and why).
Rendering fills in one ``CONFIG`` object: the pixel code and ``/collect`` address, and the
choices that decide what the server sends (purchase event name, whether InitiateCheckout is
sent, value basis, content id source), so the browser event always carries the same name and
``event_id`` as the server's and TikTok merges the two. Values are written with ``json.dumps``,
so whatever they hold stays a JavaScript string.

The same pixel reports every ad platform's click ids and ad cookies to ``/collect``
(:data:`connector.clicks.CAPTURED_URL_PARAMETERS`, :data:`connector.clicks.CAPTURED_COOKIES`),
for shops that cannot use the app's Web Pixel extension.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from flask import render_template

from connector.destinations.tiktok.client import EVENT_NAMES as TIKTOK_EVENT_NAMES
from connector.mapping import EventOptions
from connector.models import Store
from connector.services import Services
from connector.stores import find_destination

TEMPLATE = Path(__file__).with_name("storefront") / "tiktok-custom-pixel.js"
CONFIG_PLACEHOLDER = "{} /* CONNECTOR_CONFIG */"

PIXEL_CODE = re.compile(r"[A-Za-z0-9]{1,64}")
"""TikTok pixel codes are letters and digits (``C4SGRA4B8F4N0C1DFNFG``); the value goes into
the events.js URL, so nothing else is accepted."""

COLLECT_URL = re.compile(r"https?://[^\s\"'<>\\]+/collect")


class CustomPixelError(ValueError):
    """The pixel cannot be made for this store; the message says what to do first."""


def custom_pixel_code(
    pixel_code: str, collect_url: str, options: EventOptions | None = None
) -> str:
    """The custom pixel's JavaScript for this TikTok pixel, reporting clicks to ``collect_url``.

    ``options`` are the TikTok destination's event options (default: the connector's
    defaults); pass the store's own, or the browser may send another event name than the server.

    Raises:
        CustomPixelError: the pixel code or the ``/collect`` address is not usable.
    """
    pixel_code = pixel_code.strip()
    if not PIXEL_CODE.fullmatch(pixel_code):
        raise CustomPixelError(
            "the TikTok pixel code must be letters and digits, like C4SGRA4B8F4N0C1DFNFG "
            "(TikTok Events Manager > Data sources > your pixel)"
        )
    if not COLLECT_URL.fullmatch(collect_url):
        raise CustomPixelError(
            f"{collect_url!r} is not the connector's /collect address: set APP_URL to the "
            "connector's public https address"
        )
    options = options or EventOptions()
    config = {
        "pixelCode": pixel_code,
        "collectUrl": collect_url,
        "purchaseEvent": options.purchase_event or TIKTOK_EVENT_NAMES["purchase"][0],
        "initiateCheckout": options.send_initiate_checkout,
        "valueBasis": options.value_basis,
        "contentId": options.content_id,
    }
    template = TEMPLATE.read_text(encoding="utf-8")
    if template.count(CONFIG_PLACEHOLDER) != 1:
        raise RuntimeError(f"{TEMPLATE} must hold {CONFIG_PLACEHOLDER!r} exactly once")
    return template.replace(CONFIG_PLACEHOLDER, json.dumps(config, ensure_ascii=True))


def store_custom_pixel_code(services: Services, store_id: str) -> str:
    """The custom pixel of a Shopify store, from its TikTok destination and ``APP_URL``.

    Raises:
        CustomPixelError: no such Shopify store, or TikTok is not connected yet.
    """
    with services.db.session() as session:
        store = session.get(Store, store_id)
        if store is None or store.platform != "shopify":
            raise CustomPixelError(f"no Shopify store {store_id}: see `connector stores list`")
        destination = find_destination(session, store_id, "tiktok")
        if destination is None:
            raise CustomPixelError(
                "connect TikTok first: connector tiktok set "
                f"{store_id} --pixel-code P --access-token T"
            )
        pixel_code, options = destination.account_id, EventOptions.from_json(destination.options)
    collect_url = f"{services.settings.app_url.rstrip('/')}/collect"
    return custom_pixel_code(pixel_code, collect_url, options)


def custom_pixel_panel(services: Services, store_id: str) -> str:
    """The Settings page's panel: the store's custom pixel to paste, or what to do first."""
    try:
        code, problem = store_custom_pixel_code(services, store_id), None
    except CustomPixelError as exc:
        code, problem = None, f"The browser pixel code cannot be shown yet: {exc}."
    return render_template("shopify/custom_pixel_panel.html", code=code, problem=problem)
