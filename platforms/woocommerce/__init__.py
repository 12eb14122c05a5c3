"""WooCommerce: a store connected by webhooks signed with a secret we give it.

The webhooks are made by hand (``stores add-woocommerce``) or through the store's REST API
(``stores connect-woocommerce``); the worker checks the latter every 15 minutes and repairs
what WooCommerce disabled.
"""

from connector.plugins import StorePlatform
from platforms.woocommerce.advice import CLICK_SOURCE_LABELS, SIGNAL_ADVICE
from platforms.woocommerce.commands import add_woocommerce, check, connect_woocommerce
from platforms.woocommerce.connect import PERIODIC_CHECK
from platforms.woocommerce.webhooks import blueprint

PLATFORM = StorePlatform(
    name="woocommerce",
    blueprint=blueprint,
    commands=(add_woocommerce, connect_woocommerce, check),
    periodic=(PERIODIC_CHECK,),
    signal_advice=SIGNAL_ADVICE,
    click_source_labels=CLICK_SOURCE_LABELS,
    capture_sources=frozenset({"order_meta"}),
)
