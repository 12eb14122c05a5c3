"""WooCommerce: a store connected by webhooks signed with a secret we give it."""

from connector.plugins import StorePlatform
from platforms.woocommerce.commands import add_woocommerce
from platforms.woocommerce.webhooks import blueprint

PLATFORM = StorePlatform(name="woocommerce", blueprint=blueprint, commands=(add_woocommerce,))
