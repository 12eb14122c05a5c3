"""The WooCommerce :class:`~connector.plugins.StorePlatform`, built on first use by the package."""

from connector.plugins import StorePlatform
from platforms.woocommerce.advice import CLICK_SOURCE_LABELS, SIGNAL_ADVICE, STOREFRONT_INSTALL
from platforms.woocommerce.commands import add_woocommerce, check, connect_woocommerce
from platforms.woocommerce.connect import PERIODIC_CHECK
from platforms.woocommerce.panel import settings_panel, status_notices
from platforms.woocommerce.parse import read_webhook
from platforms.woocommerce.reconcile import fetch_orders
from platforms.woocommerce.settings import blueprint as settings_blueprint
from platforms.woocommerce.webhooks import blueprint

# Nested, so the Settings page's actions keep their own blueprint name and are not counted as
# webhooks.
blueprint.register_blueprint(settings_blueprint)

PLATFORM = StorePlatform(
    name="woocommerce",
    blueprint=blueprint,
    commands=(add_woocommerce, connect_woocommerce, check),
    periodic=(PERIODIC_CHECK,),
    settings_panel=settings_panel,
    status_notices=status_notices,
    signal_advice=SIGNAL_ADVICE,
    click_source_labels=CLICK_SOURCE_LABELS,
    read_webhook=read_webhook,
    fetch_orders=fetch_orders,
    capture_sources=frozenset({"order_meta"}),
    storefront_install=STOREFRONT_INSTALL,
)
