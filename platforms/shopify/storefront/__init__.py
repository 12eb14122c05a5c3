"""JavaScript that runs on a Shopify storefront, rendered by :mod:`platforms.shopify.custom_pixel`.

A package only so that its files are installed with the connector (package data).
"""
