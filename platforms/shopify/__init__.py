"""Shopify: the app's OAuth install, webhooks (orders, checkouts, privacy, uninstall), and
custom-app stores registered without OAuth."""

from connector.clicks import purge_expired_click_records
from connector.plugins import PeriodicTask, StorePlatform
from platforms.shopify.advice import CLICK_SOURCE_LABELS, SIGNAL_ADVICE, STOREFRONT_INSTALL
from platforms.shopify.commands import add_shopify, shopify_pixel
from platforms.shopify.custom_pixel import custom_pixel_panel
from platforms.shopify.install import REMOVE_DUPLICATE_WEBHOOKS, app_bridge_head
from platforms.shopify.install import blueprint as install_blueprint
from platforms.shopify.reconcile import fetch_orders
from platforms.shopify.webhooks import blueprint, read_kept_webhook

# Nested, so the install pages keep their own blueprint name and are not counted as webhooks.
blueprint.register_blueprint(install_blueprint)

PLATFORM = StorePlatform(
    name="shopify",
    blueprint=blueprint,
    commands=(add_shopify, shopify_pixel),
    periodic=(
        PeriodicTask("purge-click-records", 3600.0, purge_expired_click_records),
        REMOVE_DUPLICATE_WEBHOOKS,
    ),
    settings_panel=custom_pixel_panel,
    embedded_head=app_bridge_head,
    signal_advice=SIGNAL_ADVICE,
    click_source_labels=CLICK_SOURCE_LABELS,
    read_webhook=read_kept_webhook,
    capture_sources=frozenset({"note_attributes"}),
    fetch_orders=fetch_orders,
    storefront_install=STOREFRONT_INSTALL,
)
