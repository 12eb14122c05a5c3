"""WooCommerce: a store connected by webhooks signed with a secret we give it.

The webhooks are made by hand (``stores add-woocommerce``) or through the store's REST API
(``stores connect-woocommerce``); the worker checks the latter every 15 minutes and repairs
what WooCommerce disabled, and reads back with their keys the orders whose webhook never came
(``fetch_orders``, :mod:`platforms.woocommerce.reconcile`). The Settings page shows the
webhooks' health with a Repair button (or, for a store added by hand, how to make them) and
the click-capture plugin to download.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``PLATFORM``, imported on first use (PEP 562).

    Importing the package stays cheap and imports none of its modules, so ``python -m
    platforms.woocommerce.build_plugin`` runs a module runpy has not imported already (which
    would print a RuntimeWarning).
    """
    if name == "PLATFORM":
        from platforms.woocommerce.platform import PLATFORM

        return PLATFORM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
