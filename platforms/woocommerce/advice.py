"""What the Diagnostics page tells a WooCommerce merchant: how to raise each matching signal's
coverage in their shop, and where a click id came from in WooCommerce's terms.

WooCommerce keeps the shopper's address and browser on the order as ``customer_ip_address``
and ``customer_user_agent`` (WooCommerce REST API, order properties); the click-capture
WordPress plugin (``platforms/woocommerce/wordpress-plugin``) writes the click id and ``_ttp``
into the order's meta data.
"""

from __future__ import annotations

SIGNAL_ADVICE: dict[str, str] = {
    "click_id": (
        "Install and activate the click-capture WordPress plugin: it keeps the click id "
        "of an ad visit (TikTok, Meta, Google) and writes it onto the order."
    ),
    "phone": "Make the billing phone field required at checkout.",
    "ip": (
        "WooCommerce records the shopper's IP address on the order "
        "(customer_ip_address); check that no privacy plugin blanks it and that your "
        "host passes the visitor's address, not the proxy's."
    ),
    "user_agent": (
        "WooCommerce records the shopper's browser on the order (customer_user_agent); "
        "check that no privacy plugin blanks it."
    ),
    "browser_id": (
        "Install the platform's pixel on your site (TikTok's sets _ttp, Meta's _fbp) and "
        "the click-capture plugin, which copies the cookie onto the order."
    ),
}
"""WooCommerce's words for :data:`connector.diagnostics.SIGNAL_ACTIONS`; email and customer id
keep the generic advice."""

CLICK_SOURCE_LABELS: dict[str, str] = {
    "order_meta": "WooCommerce order details, written by the click-capture plugin",
}
"""The ``click_source`` value :mod:`platforms.woocommerce.parse` writes."""

STOREFRONT_INSTALL = (
    "Install and activate the connector's WordPress plugin (Settings page, Click-capture "
    "plugin: download it, then in WordPress Plugins, Add New, Upload Plugin) and enter the "
    "connector's /collect address in WordPress under Settings, General. It reports what "
    "TikTok's pixel did on the thank-you page."
)
"""How a WooCommerce merchant installs the storefront code that sends pixel receipts
(:attr:`connector.plugins.StorePlatform.storefront_install`)."""
