"""Shopify: webhooks of a custom-app store (OAuth install comes with the Shopify app)."""

from connector.plugins import StorePlatform
from platforms.shopify.commands import add_shopify
from platforms.shopify.webhooks import blueprint

PLATFORM = StorePlatform(name="shopify", blueprint=blueprint, commands=(add_shopify,))
