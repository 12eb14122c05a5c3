"""What the Diagnostics page tells a Shopify merchant: how to raise each matching signal's
coverage in their store, and where a click id came from in Shopify's terms.

The app's Web Pixel is listed in the Shopify admin under Settings > Customer events, App pixels
tab (https://help.shopify.com/en/manual/promoting-marketing/pixels/app-pixels); the custom
pixel is the one the Settings page shows under "Browser pixel in your Shopify store"
(:mod:`platforms.shopify.custom_pixel`), pasted under Settings > Customer events > Add custom
pixel. Order webhooks carry email and phone only for apps granted protected customer data
access (README, "Request protected customer data access").
"""

from __future__ import annotations

SIGNAL_ADVICE: dict[str, str] = {
    "click_id": (
        "Turn on click capture, which records the ad's click id (TikTok, Meta, Google) when a "
        "shopper arrives from an ad: the app's Web Pixel (Shopify admin, Settings, Customer "
        "events, App pixels; if it is missing there, reinstall the app), or the custom pixel "
        'shown on the Settings page under "Browser pixel in your Shopify store".'
    ),
    "email": (
        "Ask Shopify for protected customer data access (Level 2) for this app: "
        "without it order webhooks carry no email. Also make email required at checkout."
    ),
    "phone": "Make the phone number required at checkout (Shopify admin, Settings, Checkout).",
    "ip": (
        "Orders created outside your online store (draft orders, other apps) carry no "
        "shopper IP address; check that sales go through the storefront checkout."
    ),
    "user_agent": (
        "Orders created outside your online store carry no browser details; check that "
        "sales go through the storefront checkout."
    ),
    "browser_id": (
        "Install the platform's pixel on your store (TikTok's sets _ttp, Meta's _fbp) and "
        "keep the connector's Web Pixel on, which copies the cookie to the order."
    ),
}
"""Shopify's words for :data:`connector.diagnostics.SIGNAL_ACTIONS`; the customer id keeps the
generic advice."""

CLICK_SOURCE_LABELS: dict[str, str] = {
    "note_attributes": "Shopify order attributes, written by storefront code",
    "landing_site": "The order's landing page address (Shopify)",
}
"""The ``click_source`` values :mod:`platforms.shopify.parse` writes; click ids from the Web
Pixel or custom pixel arrive as stored click records, which the core labels."""

STOREFRONT_INSTALL = (
    "Paste the connector's TikTok custom pixel, shown on the Settings page under \"Browser "
    'pixel in your Shopify store" (`connector stores shopify-pixel {store_id}` prints it), in '
    "the Shopify admin under Settings, Customer events, Add custom pixel, with Customer privacy "
    "set to 'Not required' (it honours the shopper's choice itself): it fires TikTok's pixel "
    "on the thank-you page and reports whether it loaded. The app's Web Pixel captures clicks "
    "but does not load TikTok's pixel, so it sends no receipts. Receipts are accepted only "
    "for a store installed through the app: a custom-app store's custom pixel reports from "
    "Shopify's sandbox, whose origin cannot be told from any other site's."
)
"""How a Shopify merchant installs the storefront code that sends pixel receipts
(:attr:`connector.plugins.StorePlatform.storefront_install`)."""
